"""The trainer entrypoint survives kill -9 and SIGTERM (a Spot preemption) and starts from a checkpoint archive."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from jobs.launch.context import REPO_ROOT
from jobs.runtime.spec import ProgressEvent, TrainArgs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from jobs.dataset.pipeline import CheckOptions
    from jobs.dataset.prepare import PrepareOptions, prepare
    from jobs.dataset.synthetic import make_dataset

    root = tmp_path_factory.mktemp("resume")
    synthetic = make_dataset(root / "synthetic", count=60, seed=2)
    prepare(PrepareOptions(CheckOptions(synthetic.labels_csv, synthetic.images_dir), root / "data"))
    return root / "data"


def trainer(data, model_dir, steps, init_checkpoint=None) -> list[str]:
    args = TrainArgs("retinanet-tiny-128", str(data), str(model_dir), steps, 4, init_checkpoint, device="cpu")
    return [sys.executable, "-m", TrainArgs.ENTRYPOINT, *args.to_argv()]


def checkpoint_step(model_dir) -> int:
    state = (model_dir / "checkpoint").read_text()
    return int(re.search(r'model_checkpoint_path: "ckpt-(\d+)"', state).group(1))


def losses(output: str) -> list[float]:
    events = [ProgressEvent.from_line(line) for line in output.splitlines()]
    return [event.loss for event in events if event is not None and event.loss is not None]


def test_kill_9_after_a_checkpoint_then_relaunch_continues_from_it(data, tmp_path):
    model_dir = tmp_path / "model"
    process = subprocess.Popen(trainer(data, model_dir, 300), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (model_dir / "checkpoint").exists():
        assert process.poll() is None, "the trainer died before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 4 minutes"
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    step = checkpoint_step(model_dir)
    assert 0 < step < 300
    # The same command again, as Vertex restarts a preempted worker's container.
    done = subprocess.run(trainer(data, model_dir, 300), cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming from step {step} of 300" in done.stdout
    assert "to step 300 in" in done.stdout
    assert checkpoint_step(model_dir) == 300
    # Seeded from --seed (0) plus the step it resumed at: reproducible, without replaying the first batches.
    assert json.loads((model_dir / "experiment.json").read_text())["seed"] == 0
    assert re.search(rf"^\s+seed: {step}$", (model_dir / "params.yaml").read_text(), re.M)


def test_sigterm_saves_a_checkpoint_at_the_step_reached_and_a_relaunch_resumes_from_it(data, tmp_path):
    model_dir = tmp_path / "model"
    process = subprocess.Popen(trainer(data, model_dir, 300), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        event = ProgressEvent.from_line(line)
        if event is not None and event.done == 100:  # checkpointed at 100; the next loop ends at 150, between two
            process.send_signal(signal.SIGTERM)     # periodic checkpoints (100 and 200)
            break
    rest = process.stdout.read()
    assert process.wait(timeout=300) == -signal.SIGTERM  # it ends as killed by the signal: a launcher sees that
    # The loop that sees the signal saves: the one ending at 150, or (when the signal lands between the progress
    # event of step 100 and that loop's own check) the one ending at 100.
    step = checkpoint_step(model_dir)
    assert step in (100, 150), step
    assert f"SIGTERM: saved a checkpoint at step {step}" in rest
    assert [event.done for event in map(ProgressEvent.from_line, rest.splitlines()) if event] in ([], [150])
    done = subprocess.run(trainer(data, model_dir, 300), cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming from step {step} of 300" in done.stdout
    assert checkpoint_step(model_dir) == 300


def test_init_checkpoint_from_a_tar_gz_archive(data, tmp_path):
    trained = tmp_path / "trained"
    subprocess.run(trainer(data, trained, 200), cwd=REPO_ROOT, capture_output=True, check=True, timeout=300)
    archive = tmp_path / "ckpt.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in trained.glob("ckpt-200.*"):
            tar.add(path, arcname=f"model/{path.name}")
    scratch = subprocess.run(trainer(data, tmp_path / "scratch", 50), cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True, timeout=300)
    warm = subprocess.run(trainer(data, tmp_path / "warm", 50, str(archive)),
                          cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=300)
    assert losses(warm.stdout)[-1] < losses(scratch.stdout)[-1]
