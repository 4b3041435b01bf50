"""The corpus of malformed datasets under tests/data/bad/: each case runs ``data prepare`` as a user would and
checks the rule code, the message (with file and row), the exit code and that nothing partial is left.

A case is a folder with its label files and ``expected.json``: ``args`` (paths relative to the case), ``images``
(made at test time, see image_kinds.py), ``exit``, ``code`` (null for usage errors) and ``message``. The table runs
through ``jobs.cli.main`` in this process (what ``python -m jobs`` runs; 70 interpreter start-ups would cost a
minute); ``test_exit_codes_of_a_real_process`` runs one case per exit code as a real ``python -m jobs`` process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from image_kinds import make_image

from jobs.cli import main
from jobs.dataset.findings import RULES

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "bad"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "expected.json").is_file())


def _expected(case: str) -> dict:
    return json.loads((CORPUS / case / "expected.json").read_text(encoding="utf-8"))


def _workspace(case: str, root: Path) -> tuple[Path, list[str]]:
    """A copy of the case with its images made; returns it and the prepare arguments."""
    work = root / case
    shutil.copytree(CORPUS / case, work)
    expected = _expected(case)
    for relative, spec in expected["images"].items():
        make_image(work / relative, spec)
    return work, ["data", "prepare", *expected["args"], "--out", "out", "--no-stats"]


def _in_process(args: list[str], monkeypatch) -> tuple[int, str]:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "argv", ["jobs", *args])
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code or 0
    return code, stderr.getvalue()


def _squeezed(text: str) -> str:
    """Without any whitespace: the console wraps long lines wherever it likes."""
    return "".join(text.split())


def _check(case: str, work: Path, code: int, stderr: str) -> None:
    expected = _expected(case)
    assert code == expected["exit"], f"{case}: {expected['doc']}\n{stderr}"
    assert [p.name for p in work.iterdir() if p.name.startswith(".out")] == [], "temporary output left behind"
    if expected["exit"] == 0:
        report = json.loads((work / "out" / "report.json").read_text(encoding="utf-8"))
        found = [f"{f['location']}: {f['code']} {f['rule']}: {f['message']}" for f in report["findings"]
                 if f["code"] == expected["code"]]
        assert any(expected["message"] in line for line in found), f"{case}: {found}"
        rows = report["rows"]
        assert rows["in"] == rows["written"] + rows["reported"]
        assert (work / "out" / "dataset.json").is_file()
    else:
        assert not (work / "out").exists(), "a failed run must leave no output"
        assert _squeezed(expected["message"]) in _squeezed(stderr), f"{case}: {stderr}"
        if expected["code"]:
            assert _squeezed(f"{expected['code']} {RULES[expected['code']].name}") in _squeezed(stderr)


def test_the_corpus_covers_every_rule_and_format():
    expected = [_expected(case) for case in CASES]
    assert sum(1 for e in expected if e["code"]) >= 40
    assert {e["code"] for e in expected if e["code"]} == set(RULES)
    inputs = {e["args"][e["args"].index("--input") + 1] for e in expected}
    assert {"labels.csv", "vertex.csv", "annotations", "instances.json", "data.yaml", "."} <= inputs
    assert {e["exit"] for e in expected} == {0, 1, 2}


@pytest.mark.parametrize("case", CASES)
def test_bad_dataset(case, tmp_path, monkeypatch):
    work, args = _workspace(case, tmp_path)
    monkeypatch.chdir(work)
    code, stderr = _in_process(args, monkeypatch)
    _check(case, work, code, stderr)


@pytest.mark.parametrize("case", ["vott-outside", "img-truncated", "vertex-no-images-folder"])
def test_exit_codes_of_a_real_process(case, tmp_path):
    work, args = _workspace(case, tmp_path)
    env = os.environ | {"COLUMNS": "1000", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "jobs", *args], cwd=work, env=env, capture_output=True,
                            text=True, timeout=120)
    _check(case, work, result.returncode, result.stderr)
