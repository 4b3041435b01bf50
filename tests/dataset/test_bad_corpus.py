"""The corpus of malformed datasets under tests/data/bad/: each case runs ``data prepare`` as a user would and
checks the rule code, the message (with file and row), the exit code, that nothing partial is left and that the
inputs are exactly as they were (every file, link and FIFO of the case, hashed before and after).

A case is a folder with its label files and ``expected.json``: ``args`` (paths relative to the case), ``images``
(made at test time, see image_kinds.py: images, FIFOs, symbolic links), ``exit``, ``code`` (null for usage errors)
and ``message``; optionally ``rows`` (the row counts the report must give) and ``not_written`` (image names that
must be in neither the records nor the COCO ground truth). The table runs
through ``jobs.cli.main`` in this process (what ``python -m jobs`` runs; a hundred interpreter start-ups would cost a
minute); ``test_exit_codes_of_a_real_process`` runs one case per exit code as a real ``python -m jobs`` process.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import stat
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
BLOCKED_AFTER = 60  # seconds


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
    """Exit code and stderr; a run that blocks (a FIFO opened for reading) fails after a minute instead of hanging
    the suite."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "argv", ["jobs", *args])
    previous = signal.signal(signal.SIGALRM, _blocked)
    signal.alarm(BLOCKED_AFTER)
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                main()
                code = 0
            except SystemExit as exit_:
                code = exit_.code or 0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return code, stderr.getvalue()


def _blocked(signum, frame):
    raise TimeoutError(f"data prepare blocked for {BLOCKED_AFTER} s")


def _inputs(work: Path) -> dict[str, str]:
    """Every entry of the case but the output (and what the tool keeps beside it): a file's mode, time and SHA-256,
    a link's target, another entry's mode. Nothing is opened but regular files (a FIFO would block)."""
    entries = {}
    for folder, dirs, files in os.walk(work):
        if Path(folder) == work:
            dirs[:] = [name for name in dirs if not _is_output(name)]
            files = [name for name in files if not _is_output(name)]
        for name in dirs + files:
            path = Path(folder) / name
            status = path.lstat()
            what = stat.filemode(status.st_mode)
            if stat.S_ISLNK(status.st_mode):
                what += f" -> {os.readlink(path)}"
            elif stat.S_ISREG(status.st_mode):
                what += f" {status.st_mtime_ns} {hashlib.sha256(path.read_bytes()).hexdigest()}"
            entries[path.relative_to(work).as_posix()] = what
    return entries


def _is_output(name: str) -> bool:
    return name == "out" or name.startswith(".out")


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
        assert rows == expected.get("rows", rows)
        assert (work / "out" / "dataset.json").is_file()
        for name in expected.get("not_written", []):
            assert name not in _written_names(work / "out"), f"{case}: {name} was written"
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


def _written_names(out: Path) -> str:
    """The file names in the COCO ground truth and, as bytes, everything in the records."""
    names = [image["file_name"] for coco in out.glob("*_coco.json")
             for image in json.loads(coco.read_text(encoding="utf-8"))["images"]]
    records = b"".join(shard.read_bytes() for shard in out.glob("*.tfrecord"))
    return "\n".join(names) + records.decode("latin-1")


@pytest.mark.parametrize("case", CASES)
def test_bad_dataset(case, tmp_path, monkeypatch):
    work, args = _workspace(case, tmp_path)
    before = _inputs(work)
    monkeypatch.chdir(work)
    code, stderr = _in_process(args, monkeypatch)
    _check(case, work, code, stderr)
    assert _inputs(work) == before, "the inputs changed"


@pytest.mark.parametrize("case", ["vott-outside", "img-truncated", "vertex-no-images-folder", "img-fifo"])
def test_exit_codes_of_a_real_process(case, tmp_path):
    work, args = _workspace(case, tmp_path)
    before = _inputs(work)
    env = os.environ | {"COLUMNS": "1000", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "jobs", *args], cwd=work, env=env, capture_output=True,
                            text=True, timeout=120)
    _check(case, work, result.returncode, result.stderr)
    assert _inputs(work) == before, "the inputs changed"
