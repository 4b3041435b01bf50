"""``data prepare``, ``data stats`` and ``data check --report`` never replace what they did not write, never write
over an input, and leave nothing behind when they fail, are killed or race each other (real processes)."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from image_kinds import make_image

from jobs.io import OUTPUT_MARKER

REPO = Path(__file__).resolve().parents[2]
PREPARE = ("data", "prepare", "--input", "labels.csv", "--images", "images", "--no-stats")


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobs", *args]


def environment() -> dict[str, str]:
    return os.environ | {"COLUMNS": "1000", "PYTHONPATH": str(REPO)}


def run(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), cwd=cwd, env=environment(), capture_output=True, text=True, timeout=120,
                          **kwargs)


def tree(root: Path, skip: str | None = None) -> dict[str, str]:
    """Every file below ``root`` (but ``skip``) with its SHA-256: what a command must leave as it was."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not (skip and p.relative_to(root).parts[0] == skip)}


def hidden(folder: Path) -> list[str]:
    """Temporary folders, old outputs and locks beside the outputs."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def labelled(root: Path, count: int = 3) -> Path:
    images = root / "images"
    rows = ["image,xmin,ymin,xmax,ymax,label"]
    for index in range(count):
        make_image(images / f"i{index:05d}.jpg", "jpeg")
        rows.append(f"i{index:05d}.jpg,8,8,40,40,{'cat' if index % 2 else 'dog'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def data(tmp_path) -> Path:
    return labelled(tmp_path)


@pytest.mark.parametrize("out", ["images", ".", "images/..", "labels.csv"])
def test_out_that_is_or_holds_an_input_is_refused(data, out):
    before = tree(data)
    result = run(*PREPARE, "--out", out, cwd=data)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "error: --out" in result.stderr
    assert tree(data) == before and hidden(data) == []


def test_out_inside_the_images_is_never_read_back_as_images(data):
    before = tree(data / "images")
    first = run(*PREPARE[:-1], "--unlabeled-as-negatives", "--out", "images/prepared", cwd=data)
    assert first.returncode == 0, first.stderr
    assert (data / "images" / "prepared" / "stats" / "samples.png").is_file()  # PNGs below the images folder
    (data / "labels.csv").write_text((data / "labels.csv").read_text() + "i00000.jpg,1,1,30,30,cat\n")  # not unchanged
    second = run(*PREPARE[:-1], "--unlabeled-as-negatives", "--out", "images/prepared", cwd=data)
    assert second.returncode == 0, second.stderr
    summary = json.loads((data / "images" / "prepared" / "dataset.json").read_text())
    assert sum(split["images"] for split in summary["splits"].values()) == 3
    assert tree(data / "images", skip="prepared") == before


def test_a_label_map_inside_the_output_is_refused(data):
    (data / "out").mkdir()
    (data / "out" / "classes.pbtxt").write_text('item { id: 1 name: "cat" }\nitem { id: 2 name: "dog" }\n')
    result = run(*PREPARE, "--label-map", "out/classes.pbtxt", "--out", "out", cwd=data)
    assert result.returncode == 2 and "contains the input" in result.stderr
    assert (data / "out" / "classes.pbtxt").is_file()


@pytest.mark.parametrize("kind", ["notes", "a dataset.json of the user's", "a file"])
def test_what_this_tool_did_not_write_is_never_replaced(data, kind):
    target = data / "thesis"
    if kind == "a file":
        target.write_text("chapter 1")
    else:
        target.mkdir()
        (target / ("dataset.json" if "dataset" in kind else "notes.txt")).write_text("{}")
    before = tree(data)
    result = run(*PREPARE, "--out", "thesis", cwd=data)
    assert result.returncode == 2, result.stderr
    assert "thesis" in result.stderr and ("did not write" in result.stderr or "is a file" in result.stderr)
    assert tree(data) == before and hidden(data) == []


def test_an_empty_folder_and_an_earlier_output_are_replaced(data):
    (data / "out").mkdir()
    assert run(*PREPARE, "--out", "out", cwd=data).returncode == 0
    assert json.loads((data / "out" / OUTPUT_MARKER).read_text()) == {"tool": "detector", "kind": "dataset"}
    (data / "labels.csv").write_text((data / "labels.csv").read_text().replace("8,8,40,40", "9,9,40,40"))
    again = run(*PREPARE, "--out", "out", cwd=data)
    assert again.returncode == 0 and "output written" in again.stdout
    assert hidden(data) == []


def test_an_output_of_another_kind_is_not_replaced(data):
    assert run("data", "stats", "--input", "labels.csv", "--images", "images", "--out", "charts",
               cwd=data).returncode == 0
    result = run(*PREPARE, "--out", "charts", cwd=data)
    assert result.returncode == 2 and "another kind of output" in result.stderr


def test_stats_and_check_report_never_write_over_inputs(data):
    before = tree(data)
    stats = run("data", "stats", "--input", "labels.csv", "--images", "images", "--out", ".", cwd=data)
    assert stats.returncode == 2 and "contains the input" in stats.stderr
    over_labels = run("data", "check", "--input", "labels.csv", "--images", "images", "--report", "labels.csv",
                      cwd=data)
    assert over_labels.returncode == 2 and "is the input" in over_labels.stderr
    (data / "mine.json").write_text('{"mine": 1}')
    over_mine = run("data", "check", "--input", "labels.csv", "--images", "images", "--report", "mine.json", cwd=data)
    assert over_mine.returncode == 2 and "not written by this tool" in over_mine.stderr
    assert tree(data) == before | {"mine.json": hashlib.sha256(b'{"mine": 1}').hexdigest()}
    for _ in range(2):  # its own report is replaced
        assert run("data", "check", "--input", "labels.csv", "--images", "images", "--report", "report.json",
                   cwd=data).returncode == 0


def test_a_deleted_or_truncated_output_file_is_rewritten(data):
    assert run(*PREPARE, "--out", "out", cwd=data).returncode == 0
    unchanged = run(*PREPARE, "--out", "out", cwd=data)
    assert "output unchanged, nothing rewritten" in unchanged.stdout
    shard = next((data / "out").glob("train-*.tfrecord"))
    written = shard.read_bytes()
    shard.write_bytes(written[:-10])
    truncated = run(*PREPARE, "--out", "out", cwd=data)
    assert f"{shard.name} is {len(written) - 10} bytes, {len(written)} were written" in truncated.stdout
    assert "output written" in truncated.stdout and shard.read_bytes() == written
    (data / "out" / "val_coco.json").unlink()
    deleted = run(*PREPARE, "--out", "out", cwd=data)
    assert "val_coco.json is missing" in deleted.stdout and (data / "out" / "val_coco.json").is_file()


def test_verify_full_compares_the_content_too(data):
    full = (*PREPARE, "--verify", "full", "--out", "out")
    assert run(*full, cwd=data).returncode == 0
    assert "output unchanged" in run(*full, cwd=data).stdout
    shard = next((data / "out").glob("train-*.tfrecord"))
    written = shard.read_bytes()
    damaged = bytearray(written)
    damaged[-5] ^= 0xFF  # same size, other content
    shard.write_bytes(bytes(damaged))
    repaired = run(*full, cwd=data)
    assert f"{shard.name} differs from what was written (SHA-256)" in repaired.stdout
    assert shard.read_bytes() == written


def test_bad_numbers_and_unwritable_places_are_one_line_errors(data):
    nan = run(*PREPARE, "--val-fraction", "nan", "--out", "out", cwd=data)
    assert nan.returncode == 2 and "--val-fraction must be between 0 and 0.9, not nan" in nan.stderr
    unwritable = run(*PREPARE, "--out", "/proc/detector-test/out", cwd=data)
    assert unwritable.returncode == 1 and "cannot create /proc/detector-test" in unwritable.stderr
    for result in (nan, unwritable):
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (data / "out").exists() and hidden(data) == []


def test_a_failed_write_leaves_the_previous_output_and_no_temporary_files(tmp_path):
    data = labelled(tmp_path, count=80)  # parallel workers
    assert run(*PREPARE, "--out", "out", cwd=data).returncode == 0
    before = tree(data)
    (data / "labels.csv").write_text((data / "labels.csv").read_text().replace("8,8,40,40", "9,9,40,40"))
    before["labels.csv"] = hashlib.sha256((data / "labels.csv").read_bytes()).hexdigest()

    def small_files() -> None:  # every write past 4 KB fails as on a full disk (EFBIG instead of ENOSPC)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    result = run(*PREPARE, "--out", "out", cwd=data, preexec_fn=small_files)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "error: cannot write" in result.stderr and ".tfrecord" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert tree(data) == before and hidden(data) == []


def test_the_second_of_two_runs_on_one_output_exits_naming_the_first(data):
    from jobs.io import output_lock

    with output_lock((data / "out").resolve()):
        result = run(*PREPARE, "--out", "out", cwd=data)
    assert result.returncode == 1
    assert f"is being written by pid {os.getpid()}" in result.stderr
    assert not (data / "out").exists()


def test_runs_racing_for_one_output_leave_one_complete_output(tmp_path):
    data = labelled(tmp_path, count=80)
    runs = [subprocess.Popen(command(*PREPARE, "--out", "out", "--seed", str(seed)), cwd=data, env=environment(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in range(4)]
    results = [(process.wait(timeout=120), process.stderr.read()) for process in runs]
    for process in runs:
        process.stdout.close()
        process.stderr.close()
    assert all(code == 0 or (code == 1 and "is being written by pid" in err) for code, err in results), results
    assert any(code == 0 for code, _ in results)
    assert (data / "out" / "dataset.json").is_file() and hidden(data) == []


def _stage(data: Path, timeout: float = 60) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stages = [p for p in data.glob(".out.tmp-*") if any(p.glob("*.tfrecord"))]
        if stages:
            return stages[0]
        time.sleep(0.01)
    raise AssertionError("prepare never started writing")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def many(tmp_path) -> Path:
    """Enough images that prepare is still writing when the test signals it."""
    data = labelled(tmp_path, count=1)
    image = (data / "images" / "i00000.jpg").read_bytes()
    rows = ["image,xmin,ymin,xmax,ymax,label"]
    for index in range(6000):
        (data / "images" / f"m{index:05d}.jpg").write_bytes(image)
        rows.append(f"m{index:05d}.jpg,8,8,40,40,{'cat' if index % 2 else 'dog'}")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    return data


def test_sigterm_cleans_up_like_ctrl_c(many):
    process = subprocess.Popen(command(*PREPARE, "--verify", "full", "--out", "out"), cwd=many, env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _stage(many)
    workers = _children(process.pid)
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 143, stderr
    assert "terminated" in stderr and "Traceback" not in stderr
    assert hidden(many) == [] and not (many / "out").exists()
    assert all(_gone(worker) for worker in workers)


def test_after_kill_9_workers_die_and_the_next_run_removes_the_litter(many):
    process = subprocess.Popen(command(*PREPARE, "--verify", "full", "--out", "out"), cwd=many, env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage = _stage(many)
    workers = _children(process.pid)
    assert workers, "prepare runs its workers in child processes"
    process.kill()
    process.wait()
    assert all(_gone(worker) for worker in workers), "workers outlived their parent"
    assert stage.exists()
    again = run(*PREPARE, "--out", "out", cwd=many)
    assert again.returncode == 0, again.stderr
    assert f"removed {stage}: left by a run that died" in again.stdout
    assert hidden(many) == []
