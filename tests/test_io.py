"""``jobs.io``: output folders are claimed only when they may be replaced, swapped in whole, and every failure
leaves the previous output and no temporary file behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jobs import io
from jobs.io import (
    OUTPUT_MARKER,
    OutputBusy,
    OutputRefused,
    atomic_file,
    check_output_folder,
    output_lock,
    remove_stale,
    staged_dir,
)


def _listing(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def _previous_output(folder):
    with staged_dir(folder, "thing") as stage:
        (stage / "a.txt").write_text("old")


def test_a_failure_inside_the_block_keeps_the_previous_output(tmp_path):
    out = tmp_path / "out"
    _previous_output(out)
    with pytest.raises(RuntimeError), staged_dir(out, "thing") as stage:
        (stage / "a.txt").write_text("new")
        raise RuntimeError("while writing")
    assert (out / "a.txt").read_text() == "old"
    assert _listing(tmp_path) == ["out", f"out/{OUTPUT_MARKER}", "out/a.txt"]


@pytest.mark.parametrize("exchange", [True, False], ids=["rename-exchange", "two-renames"])
def test_the_new_output_replaces_the_old_whole(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(io, "_exchange", lambda first, second: False)  # a system without renameat2
    out = tmp_path / "out"
    _previous_output(out)
    (out / "stale.txt").write_text("of the old output")
    with staged_dir(out, "thing") as stage:
        (stage / "b.txt").write_text("new")
    assert _listing(tmp_path) == ["out", f"out/{OUTPUT_MARKER}", "out/b.txt"]


def test_a_failed_swap_keeps_the_previous_output(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _previous_output(out)

    def failing(first, second):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(io, "_exchange", failing)
    with pytest.raises(OSError, match="I/O error"), staged_dir(out, "thing") as stage:
        (stage / "a.txt").write_text("new")
    assert (out / "a.txt").read_text() == "old" and _listing(tmp_path) == ["out", f"out/{OUTPUT_MARKER}", "out/a.txt"]


def test_only_empty_folders_and_own_outputs_of_the_kind_are_claimed(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_output_folder(tmp_path / "empty", "thing") == tmp_path / "empty"
    _previous_output(tmp_path / "mine")
    assert check_output_folder(tmp_path / "mine", "thing")
    with pytest.raises(OutputRefused, match="another kind of output"):
        check_output_folder(tmp_path / "mine", "other")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / OUTPUT_MARKER).write_text(json.dumps({"tool": "something else", "kind": "thing"}))
    with pytest.raises(OutputRefused, match="files that this tool did not write"):
        check_output_folder(tmp_path / "theirs", "thing")
    with pytest.raises(OutputRefused, match="contains the input"):
        check_output_folder(tmp_path / "mine" / "..", "thing", inputs=[tmp_path / "labels.csv"])


def test_stale_temporary_folders_of_dead_runs_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for name in (f".out.tmp-{dead_pid}-abc", f".out.old-{dead_pid}", f".out.tmp-{alive.pid}-abc",
                     ".out.tmp-notapid", ".other.tmp-1-abc", "out.tmp-1-abc"):
            (tmp_path / name).mkdir()
        removed = remove_stale(tmp_path, ".out")
    finally:
        alive.kill()
        alive.wait()
    assert sorted(p.name for p in removed) == [f".out.old-{dead_pid}", f".out.tmp-{dead_pid}-abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-1-abc", f".out.tmp-{alive.pid}-abc",
                                                          ".out.tmp-notapid", "out.tmp-1-abc"]


def test_one_writer_at_a_time_and_no_lock_file_left(tmp_path):
    out = tmp_path / "out"
    with output_lock(out), pytest.raises(OutputBusy, match="being written by pid"), output_lock(out):
        pass
    assert list(tmp_path.iterdir()) == []
    with output_lock(out):  # free again
        pass


def test_atomic_file_keeps_the_previous_file_on_failure(tmp_path):
    path = tmp_path / "report.json"
    with atomic_file(path, "w") as stream:
        stream.write("first")
    with pytest.raises(RuntimeError), atomic_file(path, "w") as stream:
        stream.write("half")
        raise RuntimeError
    assert path.read_text() == "first" and _listing(tmp_path) == ["report.json"]
