"""The local launcher as the Vertex one is used: flags it cannot honour refused, a run recorded in its model dir,
its state, logs and cancelling seen from another launcher (as ``runs show`` in another terminal sees them).

The jobs are the real entrypoints in subprocesses; they stop early (missing data, a cancel) to keep this quick.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import fields

import pytest

from jobs.console import NoiseFilter
from jobs.errors import UsageError
from jobs.launch.backends import Watch
from jobs.launch.context import REPO_ROOT
from jobs.launch.launcher import (
    DuplicateRun,
    EvalOptions,
    JobFailed,
    TrainOptions,
    UnsupportedFlag,
    launcher_for,
)
from jobs.launch.local import LocalLauncher
from jobs.launch.runs import UnknownRun
from jobs.launch.vertex import VertexLauncher
from jobs.runtime.spec import RUN_RECORD, EvalArgs, ProgressEvent, TrainArgs, check_model_dir, flag, job_log
from jobs.stack import StackOutputs

PRESET = "retinanet-tiny-128"
VERTEX_VALUES = {"accelerator": "gpu-t4-1", "replicas": 2, "spot": True, "run_id": "r", "timeout_hours": 2.0,
                 "yes": True, "run": "r"}


def stack() -> StackOutputs:
    return StackOutputs.from_outputs({
        "project": "acme-ml", "region": "us-central1", "bucket": "b", "dataPrefix": "gs://b/data",
        "runsPrefix": "gs://b/runs", "checkpointsPrefix": "gs://b/checkpoints", "jobServiceAccount": "j@x",
        "repositoryUrl": "us-central1-docker.pkg.dev/acme-ml/detector", "tensorboard": "", "experiment": "exp"},
        "test")


def vertex_fields(cls) -> list[str]:
    return [item.name for item in fields(cls) if item.name != "args"]


@pytest.mark.parametrize("name", vertex_fields(TrainOptions))
def test_local_training_refuses_each_vertex_flag(name):
    options = TrainOptions(TrainArgs(PRESET, "data", "model"), **{name: VERTEX_VALUES[name]})
    with pytest.raises(UnsupportedFlag, match=f"^{flag(name)}: the local backend cannot honour it") as raised:
        LocalLauncher().plan_training(options)
    assert raised.value.exit_code == 2


@pytest.mark.parametrize("name", vertex_fields(EvalOptions))
def test_local_evaluation_refuses_each_vertex_flag(name):
    with pytest.raises(UnsupportedFlag, match=f"^{flag(name)}: the local backend cannot honour it"):
        LocalLauncher().plan_evaluation(EvalOptions(EvalArgs("model"), **{name: VERTEX_VALUES[name]}))


@pytest.mark.parametrize(("args", "refused"), [
    (TrainArgs(PRESET, model_dir="runs/first"), "--model-dir"), (TrainArgs(PRESET, device="cpu"), "--device"),
    (TrainArgs(PRESET, model_dir="m", device="gpu"), "--model-dir, --device"),
])
def test_vertex_training_refuses_what_it_decides_itself(args, refused):
    with pytest.raises(UnsupportedFlag, match=f"^{refused}: the vertex backend cannot honour"):
        VertexLauncher(stack()).plan_training(TrainOptions(args, "tpu-v5e-4"))  # contacts nothing


@pytest.mark.parametrize("args", [EvalArgs("runs/first"), EvalArgs(model="exported")])
def test_vertex_evaluation_follows_a_run_not_a_folder(args):
    with pytest.raises(UnsupportedFlag, match="the vertex backend cannot honour it .*give --run"):
        VertexLauncher(stack()).plan_evaluation(EvalOptions(args, run="r"))


def test_the_backend_is_chosen_in_one_place(tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"project": "p", "region": "us-central1", "bucket": "b", "dataPrefix": "gs://b/d",
                                   "runsPrefix": "gs://b/r", "jobServiceAccount": "j", "repositoryUrl": "u",
                                   "tensorboard": "", "experiment": "e"}))
    assert launcher_for().backend == "local"
    assert launcher_for(stack_outputs=outputs).backend == "vertex"
    with pytest.raises(UnsupportedFlag, match="^--stack-outputs: the local backend cannot honour it"):
        launcher_for("local", stack_outputs=outputs)
    with pytest.raises(UnsupportedFlag, match="^--local-docker: the local backend"):
        launcher_for(local_docker=True)
    with pytest.raises(UnsupportedFlag, match="^--runs-dir: the vertex backend"):
        launcher_for(stack_outputs=outputs, runs_dir=tmp_path)
    with pytest.raises(UsageError, match="--backend colab: choose local or vertex"):
        launcher_for("colab")


def test_cli_exits_2_naming_the_flag_and_the_backend(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jobs", "train", "--preset", PRESET, "--data", str(tmp_path / "data"), "--model-dir",
         str(tmp_path / "model"), "--spot", "--accelerator", "gpu-t4-1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "error: --accelerator, --spot: the local backend cannot honour them" in " ".join(result.stderr.split())
    assert not (tmp_path / "model").exists()


@pytest.fixture
def no_data(tmp_path):
    """Prepared data that is not there: the trainer starts, then refuses it (exit 2)."""
    return tmp_path / "missing-data"


def test_a_local_run_is_recorded_in_its_model_dir_and_its_failure_is_the_trainers_exit_code(no_data, tmp_path):
    model_dir = tmp_path / "runs" / "first"
    launcher = LocalLauncher(tmp_path / "runs")
    lines: list[str] = []
    errors: list[str] = []
    plan = launcher.plan_training(TrainOptions(TrainArgs(PRESET, str(no_data), str(model_dir), 5, 2, device="cpu")))
    assert plan.request()["command"][1:4] == ["-m", "jobs.runtime.train", "--preset"]
    with pytest.raises(JobFailed) as raised:
        launcher.launch(plan, watch=Watch(line=lines.append, error=errors.append))
    assert raised.value.exit_code == 2
    assert [line for line in errors if line.startswith("error:")] == [
        f"error: {no_data}/dataset.json not found: run `python -m jobs data prepare` first"]
    assert not any(line.startswith("error:") for line in lines)
    assert sorted(p.name for p in model_dir.iterdir()) == [RUN_RECORD, job_log("train")]
    check_model_dir(str(model_dir), str(no_data))  # still a model dir the trainer accepts

    other = LocalLauncher(tmp_path / "runs")  # another process: `runs show`
    status = other.status(str(model_dir))
    train = status.jobs["train"]
    assert (train.state, train.exit_code) == ("JOB_STATE_FAILED", 2)
    assert status.record.config == {"preset": PRESET, "data": str(no_data), "model_dir": str(model_dir),
                                    "steps": 5, "batch_size": 2, "init_checkpoint": None, "seed": 0,
                                    "device": "cpu"}
    assert any("dataset.json not found" in line for line in other.logs(str(model_dir), "train", 10))
    assert [run.record.run_id for run in other.runs()] == [str(model_dir)]
    with pytest.raises(UsageError, match=f"run {model_dir} has no evaluate job"):
        list(other.logs(str(model_dir), "evaluate", 10))
    with pytest.raises(UnknownRun, match="no run nowhere in its model dir"):
        other.status("nowhere")


@pytest.mark.slow
def test_a_live_local_job_reports_progress_is_refused_twice_and_is_cancelled_from_another_launcher(synthetic,
                                                                                                   tmp_path):
    from jobs.dataset.pipeline import CheckOptions
    from jobs.dataset.prepare import PrepareOptions, prepare

    data, model_dir = tmp_path / "data", tmp_path / "model"
    prepare(PrepareOptions(CheckOptions(synthetic.labels_csv, synthetic.images_dir), data))
    launcher = LocalLauncher()
    plan = launcher.plan_training(TrainOptions(TrainArgs(PRESET, str(data), str(model_dir), 5000, 2, device="cpu")))
    events: list[ProgressEvent] = []
    lines: list[str] = []
    errors: list[str] = []
    outcome: list[BaseException] = []
    watch = Watch(events.append, lines.append, errors.append)
    thread = threading.Thread(target=_launch, args=(launcher, plan, watch, outcome))
    thread.start()
    deadline = time.monotonic() + 300
    while not events:  # the first training loop
        assert thread.is_alive() and time.monotonic() < deadline, lines
        time.sleep(0.2)
    assert events[0].stage == "train" and events[0].total == 5000 and events[0].loss is not None
    assert not any(line.startswith("{") for line in lines)  # events never reach the plain lines
    other = LocalLauncher()  # as `runs show` and `runs cancel` in another terminal
    assert other.status(str(model_dir)).jobs["train"].state == "JOB_STATE_RUNNING"
    with pytest.raises(DuplicateRun, match=f"run {model_dir} already has a live train job"):
        other.launch(plan)
    assert [info.state for info in other.cancel(str(model_dir))] == ["JOB_STATE_CANCELLING"]
    thread.join(300)  # the trainer ends its current loop and saves a checkpoint first: as long as a loop may take
    assert not thread.is_alive()
    (failed,) = outcome
    assert isinstance(failed, JobFailed) and "cancelled" in str(failed)
    assert other.status(str(model_dir)).jobs["train"].state == "JOB_STATE_CANCELLED"
    assert other.cancel(str(model_dir)) == []
    kept = (model_dir / job_log("train")).read_text(encoding="utf-8").splitlines()
    assert set(errors) <= set(kept)  # the log keeps every line of the job's output
    noise = NoiseFilter()
    assert [line for line in errors if not noise.keep(line)] == []  # the user is shown none of the noise


def _launch(launcher, plan, watch, outcome: list[BaseException]) -> None:
    try:
        launcher.launch(plan, watch=watch)
    except BaseException as err:  # handed to the test's thread
        outcome.append(err)


def test_local_dry_run_prints_the_command_and_starts_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jobs", "evaluate", "--model-dir", str(tmp_path / "model"), "--split", "test",
         "--dry-run"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    request = json.loads(result.stdout[result.stdout.index("{"):])
    assert request["command"][:3] == [sys.executable, "-m", "jobs.runtime.evaluate"]
    assert EvalArgs.from_argv(request["command"][3:]) == EvalArgs(str(tmp_path / "model"), split="test")
    assert not (tmp_path / "model").exists()
