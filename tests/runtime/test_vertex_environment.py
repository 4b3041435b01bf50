"""The jobs as Vertex AI runs them: summaries in $AIP_TENSORBOARD_LOG_DIR, an evaluator that waits for its run, the
devices in the log, and the GPU guard of a multi-worker run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from jobs.launch.context import REPO_ROOT
from jobs.runtime import devices
from jobs.runtime.experiment import make_spec, save_spec
from jobs.runtime.spec import EvalArgs, ProgressEvent, TrainArgs


def job(args, env: dict | None = None, **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", args.ENTRYPOINT, *args.to_argv()], cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}, **options)


def tags(folder) -> set[str]:
    found = set()
    for path in folder.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            found |= {value.tag for value in event.summary.value}
    return found


@pytest.mark.slow
def test_an_evaluator_started_before_its_run_waits_and_both_jobs_write_to_the_vertex_tensorboard_folder(
        prepared, tmp_path):
    model_dir, logs = tmp_path / "model", tmp_path / "logs"
    vertex = {"AIP_TENSORBOARD_LOG_DIR": str(logs)}
    evaluator = job(EvalArgs(str(model_dir), continuous=True, timeout=300.0), vertex)
    assert evaluator.stdout.readline().startswith("TensorFlow sees CPU")  # it has started, and nothing to follow
    trainer = job(TrainArgs("retinanet-tiny-128", str(prepared), str(model_dir), 20, 2, device="cpu"), vertex)
    trained, trainer_errors = trainer.communicate(timeout=600)
    assert trainer.returncode == 0, trainer_errors[-3000:]
    assert trained.startswith("TensorFlow sees CPU")
    output, errors = evaluator.communicate(timeout=600)
    assert evaluator.returncode == 0, errors[-3000:]
    evaluated = [event for event in map(ProgressEvent.from_line, output.splitlines())
                 if event is not None and event.stage == "evaluated"]
    assert [event.done for event in evaluated] == [20]
    # Vertex AI streams $AIP_TENSORBOARD_LOG_DIR to the job's TensorBoard: the curves are there, not twice.
    assert any(tag.endswith("loss") for tag in tags(logs / "train"))
    assert "coco/AP" in tags(logs / "eval")
    assert not (model_dir / "train").exists()
    assert not list((model_dir / "eval").glob("events.out.tfevents.*"))
    assert (model_dir / "eval" / "metrics.json").is_file()


def test_the_evaluator_waits_for_a_run_a_bounded_time(tmp_path):
    started = time.monotonic()
    evaluator = job(EvalArgs(str(tmp_path / "never"), continuous=True, timeout=3.0))
    _, errors = evaluator.communicate(timeout=120)
    assert evaluator.returncode == 2
    assert "experiment.json not found" in errors
    assert time.monotonic() - started >= 3


def test_the_evaluator_fails_when_no_checkpoint_comes_before_the_last_step(prepared, tmp_path):
    model_dir = tmp_path / "model"
    save_spec(make_spec("retinanet-tiny-128", str(prepared), 20, 2, None), str(model_dir))  # a run, no checkpoint
    evaluator = job(EvalArgs(str(model_dir), continuous=True, timeout=2.0))
    _, errors = evaluator.communicate(timeout=120)
    assert evaluator.returncode == 1, errors[-3000:]  # not "done": Vertex AI would mark the job SUCCEEDED
    assert f"no new checkpoint in {model_dir} for 2 s (evaluated nothing of 20)" in errors


def test_a_multi_worker_gpu_run_on_a_machine_without_a_gpu_stops_before_choosing_a_strategy(monkeypatch):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    cluster = {"chief": ["localhost:1"], "worker": ["localhost:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert devices.workers() == 2
    with pytest.raises(devices.NoDevice, match="TensorFlow sees no GPU"):
        devices.make_strategy("gpu")


def test_only_the_chief_of_a_multi_worker_run_writes_summaries():
    """Two real workers of a MultiWorkerMirroredStrategy on this machine's CPU, each asked whether it writes."""
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("localhost", 0))
            ports.append(probe.getsockname()[1])
    cluster = {"chief": [f"localhost:{ports[0]}"], "worker": [f"localhost:{ports[1]}"]}
    probe = ("import tensorflow as tf; from jobs.runtime import devices; "
             "print(devices.writes_summaries(tf.distribute.MultiWorkerMirroredStrategy()))")
    workers = [subprocess.Popen([sys.executable, "-c", probe], cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env={
                                    **os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
                                    "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": 0}})})
               for kind in ("chief", "worker")]
    answers = [worker.communicate(timeout=120) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [errors[-2000:] for _, errors in answers]
    assert [output.strip().splitlines()[-1] for output, _ in answers] == ["True", "False"]
