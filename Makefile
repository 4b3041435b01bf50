# Two entry points on a fresh machine: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint browser

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m jobs demo --out demo-output

test: $(STAMP) browser
	$(PY) -m ruff check jobs infra tests bench
	$(PY) -m mypy
	$(PY) -m pytest

# The evaluation report is checked in headless Chromium (Debian's package). Installed where possible (root);
# elsewhere that one test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } \
		|| echo "chromium is not installed: the report's browser test will skip"

lint: $(STAMP)
	$(PY) -m ruff check jobs infra tests bench
	$(PY) -m mypy
