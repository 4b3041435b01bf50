"""Launching through the real google-cloud-aiplatform, -storage and -build clients against local servers."""

from __future__ import annotations

import json

import pytest
from google.cloud.aiplatform_v1 import types
from launch_servers import local_launcher

from jobs.launch.accelerators import ACCELERATORS, MACHINE_PRICES
from jobs.launch.launcher import Declined, DuplicateRun, EvalOptions, PreflightError, TrainOptions
from jobs.launch.runs import UnknownRun
from jobs.launch.vertex import VertexLauncher
from jobs.runtime.spec import EvalArgs, TrainArgs
from jobs.stack import StackOutputs

pytest_plugins = ["launch_servers"]

BUCKET = "acme-exp-prints"


def make_stack(region="us-central1", tensorboard="") -> StackOutputs:
    return StackOutputs.from_outputs({
        "project": "acme-ml", "region": region, "bucket": BUCKET, "dataPrefix": f"gs://{BUCKET}/data",
        "runsPrefix": f"gs://{BUCKET}/runs", "checkpointsPrefix": f"gs://{BUCKET}/checkpoints",
        "jobServiceAccount": "job-exp-prints@acme-ml.iam.gserviceaccount.com",
        "repositoryUrl": "us-central1-docker.pkg.dev/acme-ml/detector", "tensorboard": tensorboard,
        "experiment": "exp-prints"}, "test")


@pytest.fixture
def cloud(storage_emulator, vertex_server, registry_server, build_server):
    """A VertexLauncher whose clients talk to the local servers."""

    def connect(stack: StackOutputs | None = None, with_data: bool = True) -> VertexLauncher:
        stack = stack or make_stack()
        bucket = storage_emulator.bucket(BUCKET)
        if not bucket.exists():
            bucket = storage_emulator.create_bucket(BUCKET)
        if with_data:
            bucket.blob("data/dataset.json").upload_from_string(json.dumps(
                {"content_hash": "c0ffee", "classes": [{"id": 1, "name": "spaghetti"}]}))
        return local_launcher(stack, storage_emulator, vertex_server.url, build_server.url, registry_server.url)

    return connect


def yes(plan) -> bool:
    return True


def options(preset="retinanet-mobilenet-256", accelerator=None, *, data=None, batch_size=None, seed=0, steps=None,
            **vertex) -> TrainOptions:
    return TrainOptions(TrainArgs(preset, data, steps=steps, batch_size=batch_size, seed=seed), accelerator,
                        **vertex)


def train(launcher: VertexLauncher, train_options: TrainOptions, confirm=yes):
    return launcher.launch(launcher.plan_training(train_options), confirm)


def evaluate(launcher: VertexLauncher, run: str, accelerator: str = "gpu-t4-1", **args):
    return launcher.launch(launcher.plan_evaluation(EvalOptions(EvalArgs(**args), run, accelerator)), yes)


def submitted(vertex_server, index=-1) -> types.CustomJob:
    return types.CustomJob.from_json(json.dumps(vertex_server.created()[index]), ignore_unknown_fields=True)


@pytest.mark.parametrize("name", sorted(ACCELERATORS))
def test_worker_pool_spec_for_every_accelerator(cloud, vertex_server, name):
    accelerator = ACCELERATORS[name]
    launched = train(cloud(), options(accelerator=name, run_id=f"run-{name.replace('.', '')}", spot=True))
    plan, info, image = launched.plan, launched.job, launched.image
    job = submitted(vertex_server)
    (pool,) = job.job_spec.worker_pool_specs
    assert pool.replica_count == 1
    assert pool.machine_spec.machine_type == accelerator.machine_type
    if accelerator.accelerator_type:
        assert pool.machine_spec.accelerator_type.name == accelerator.accelerator_type
        assert pool.machine_spec.accelerator_count == accelerator.accelerator_count
    else:
        assert pool.machine_spec.accelerator_count == 0
    assert pool.machine_spec.tpu_topology == (accelerator.tpu_topology or "")
    container = pool.container_spec
    assert container.image_uri == image.ref
    assert image.ref.startswith(f"us-central1-docker.pkg.dev/acme-ml/detector/{plan.spec.image}:")
    assert plan.spec.image == ("trainer" if accelerator.device == "tpu" else "evaluator")
    assert list(container.command) == ["python", "-m", "jobs.runtime.train"]
    args = TrainArgs.from_argv(list(container.args))  # what the container's entrypoint reads
    assert args == plan.spec.args
    assert args.device == accelerator.device
    assert args.batch_size % accelerator.cores == 0
    assert args.model_dir == f"gs://{BUCKET}/checkpoints/{plan.run_id}"
    assert job.job_spec.service_account == "job-exp-prints@acme-ml.iam.gserviceaccount.com"
    assert job.job_spec.base_output_directory.output_uri_prefix == f"gs://{BUCKET}/runs/{plan.run_id}"
    assert job.job_spec.scheduling.strategy == types.Scheduling.Strategy.SPOT
    assert job.job_spec.scheduling.restart_job_on_worker_restart
    assert job.job_spec.scheduling.timeout.total_seconds() == 24 * 3600
    assert dict(job.labels) == {"experiment": "exp-prints", "run": plan.run_id,
                                "preset": "retinanet-mobilenet-256", "kind": "train"}
    assert info.state == "JOB_STATE_PENDING" and info.name == job.name if job.name else True


def test_several_gpu_replicas_get_a_chief_and_a_worker_pool(cloud, vertex_server):
    train(cloud(), options("retinanet-resnet50fpn-640", "gpu-l4-1", replicas=3, run_id="multi", seed=7))
    chief, workers = submitted(vertex_server).job_spec.worker_pool_specs
    assert (chief.replica_count, workers.replica_count) == (1, 2)
    assert workers.machine_spec == chief.machine_spec
    assert workers.container_spec.args == chief.container_spec.args
    args = TrainArgs.from_argv(list(chief.container_spec.args))
    assert (args.batch_size, args.seed) == (24, 7)  # 8 per GPU x 3 replicas


def test_on_demand_and_tensorboard(cloud, vertex_server):
    board = "projects/1/locations/us-central1/tensorboards/7"
    train(cloud(make_stack(tensorboard=board)), options(accelerator="tpu-v3-8", run_id="od"))
    spec = submitted(vertex_server).job_spec
    assert spec.scheduling.strategy == types.Scheduling.Strategy.STRATEGY_UNSPECIFIED
    assert spec.tensorboard == board


@pytest.mark.parametrize(("train_options", "stack", "message"), [
    (options(accelerator="tpu-v3-8"), make_stack("asia-south1"),
     "tpu-v3-8 is not offered for Vertex AI training in asia-south1"),
    (options(accelerator="tpu-v5e-4", replicas=2), make_stack(),
     "tpu-v5e-4 takes 1 to 1 replica(s), not 2 (Vertex TPU jobs have exactly one worker)"),
    (options(accelerator="tpu-v2-8", batch_size=12), make_stack(),
     "batch size 12 does not split over the 8 cores/replicas of tpu-v2-8 x1; use a multiple of 8"),
    (options(accelerator="gpu-t4-1", replicas=2, batch_size=7), make_stack(),
     "batch size 7 does not split over the 2 cores/replicas of gpu-t4-1 x2"),
])
def test_preflight_rejects_before_anything_is_submitted(cloud, vertex_server, build_server, train_options, stack,
                                                        message):
    with pytest.raises(PreflightError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(cloud(stack), train_options)
    assert vertex_server.created() == [] and build_server.builds == {}


def test_missing_data_is_reported_with_the_prepare_command(cloud, vertex_server):
    with pytest.raises(PreflightError, match=f"no prepared data at gs://{BUCKET}/data/other"):
        train(cloud(with_data=False), options(accelerator="tpu-v3-8", data="other"))
    assert vertex_server.created() == []


def test_declined_launch_submits_and_builds_nothing(cloud, vertex_server, build_server):
    with pytest.raises(Declined):
        train(cloud(), options(accelerator="tpu-v3-8"), lambda plan: False)
    assert vertex_server.created() == [] and build_server.builds == {}


def test_image_is_built_once_then_reused(cloud, build_server, storage_emulator):
    launcher = cloud()
    first = train(launcher, options(accelerator="tpu-v3-8", run_id="one")).image
    second = train(launcher, options(accelerator="tpu-v3-8", run_id="two")).image
    assert first.built and not second.built and first.ref == second.ref and first.digest == second.digest
    (build,) = build_server.builds.values()
    assert build["images"] == [first.ref]
    assert build["steps"][0]["args"][:3] == ["build", "-f", "images/trainer/Dockerfile"]
    source = build["source"]["storageSource"]
    tarball = storage_emulator.bucket(BUCKET).blob(source["object"]).download_as_bytes()
    from jobs.launch.context import build_context

    assert tarball == build_context("trainer").tarball


def test_duplicate_run_id_with_a_live_job_starts_nothing(cloud, vertex_server):
    launcher = cloud()
    train(launcher, options(accelerator="tpu-v3-8", run_id="dup"))
    (name,) = vertex_server.jobs
    vertex_server.set_state(name, "JOB_STATE_RUNNING")
    with pytest.raises(DuplicateRun, match=f"run dup already has a live train job {name} "):
        train(launcher, options(accelerator="tpu-v3-8", run_id="dup"))
    assert len(vertex_server.created()) == 1
    vertex_server.set_state(name, "JOB_STATE_FAILED")
    train(launcher, options(accelerator="tpu-v3-8", run_id="dup"))
    assert len(vertex_server.created()) == 2
    assert launcher.status("dup").record.jobs["train"] != name


def test_run_record_holds_config_dataset_image_and_job(cloud, storage_emulator):
    launched = train(cloud(), options("retinanet-mobilenet-640", "tpu-v5e-8", run_id="rec", steps=500))
    stored = json.loads(storage_emulator.bucket(BUCKET).blob("runs/rec/run.json").download_as_text())
    assert stored["config"]["steps"] == 500 and stored["config"]["accelerator"] == "tpu-v5e-8"
    assert stored["config"]["init_checkpoint"].startswith("gs://tf_model_garden/")
    assert stored["dataset"] == {"uri": f"gs://{BUCKET}/data", "content_hash": "c0ffee", "classes": ["spaghetti"]}
    assert stored["images"]["trainer"] == {"ref": launched.image.ref, "digest": launched.image.digest}
    assert stored["jobs"]["train"] == launched.job.name


def test_state_polling_cancel_and_evaluation_job(cloud, vertex_server):
    launcher = cloud()
    train(launcher, options(accelerator="tpu-v3-8", run_id="live"))
    (name,) = vertex_server.jobs
    assert launcher.status("live").jobs["train"].state == "JOB_STATE_PENDING"
    vertex_server.set_state(name, "JOB_STATE_RUNNING")
    info = launcher.status("live").jobs["train"]
    assert info.live and info.console_url.endswith(f"/training/{name.rsplit('/', 1)[-1]}/cpu?project=acme-ml")
    evaluate(launcher, "live", split="test", score_threshold=0.4)
    job = submitted(vertex_server)
    (pool,) = job.job_spec.worker_pool_specs
    assert pool.machine_spec.accelerator_type.name == "NVIDIA_TESLA_T4"
    assert list(pool.container_spec.command) == ["python", "-m", "jobs.runtime.evaluate"]
    assert EvalArgs.from_argv(list(pool.container_spec.args)) == EvalArgs(
        f"gs://{BUCKET}/checkpoints/live", split="test", score_threshold=0.4, continuous=True,
        eval_dir=f"gs://{BUCKET}/runs/live/eval",  # results beside the record, not among expiring checkpoints
        timeout=24 * 3600.0)  # it waits for the run and each checkpoint as long as a training job may run
    assert job.job_spec.scheduling.timeout.total_seconds() == 24 * 3600
    assert dict(job.labels) == {"experiment": "exp-prints", "run": "live", "kind": "evaluate"}
    assert pool.container_spec.image_uri.split("/")[-1].startswith("evaluator:")
    cancelled = launcher.cancel("live")
    assert {i.state for i in cancelled} == {"JOB_STATE_CANCELLING"}
    assert sum(path.endswith(":cancel") for _, path, _ in vertex_server.requests) == 2
    assert launcher.cancel("live") == []  # nothing live any more: no second cancel


def test_an_evaluation_waits_as_long_as_its_run_may_train_unless_told(cloud, vertex_server):
    launcher = cloud()
    train(launcher, options(accelerator="tpu-v3-8", run_id="long", timeout_hours=48.0))
    plan = launcher.plan_evaluation(EvalOptions(EvalArgs(), "long", "gpu-t4-1"))
    assert plan.spec.timeout_s == 24 * 3600  # planning reads nothing: the default until the record is read
    launcher.launch(plan, yes)
    job = submitted(vertex_server)
    (pool,) = job.job_spec.worker_pool_specs
    assert EvalArgs.from_argv(list(pool.container_spec.args)).timeout == 48 * 3600.0
    assert job.job_spec.scheduling.timeout.total_seconds() == 48 * 3600
    vertex_server.set_state(list(vertex_server.jobs)[-1], "JOB_STATE_CANCELLED")  # the evaluation ended
    evaluate(launcher, "long", timeout=600.0)  # a --timeout given wins
    (pool,) = submitted(vertex_server).job_spec.worker_pool_specs
    assert EvalArgs.from_argv(list(pool.container_spec.args)).timeout == 600.0


def test_an_unknown_run_is_one_error_wherever_it_is_named(cloud, vertex_server):
    launcher = cloud()
    for call in (lambda: evaluate(launcher, "ghost"), lambda: launcher.status("ghost"),
                 lambda: launcher.cancel("ghost"), lambda: list(launcher.logs("ghost", "train", 10))):
        with pytest.raises(UnknownRun, match=f"no run ghost in gs://{BUCKET}/runs: see `runs list`") as raised:
            call()
        assert raised.value.exit_code == 2
    assert vertex_server.created() == []


def test_status_copies_the_latest_evaluation_into_the_run_record(cloud, storage_emulator):
    launcher = cloud()
    train(launcher, options(accelerator="tpu-v3-8", run_id="done"))
    status = launcher.status("done")
    assert status.metrics is None and set(status.jobs) == {"train"}
    evaluation = {"step": 400, "summary": {"AP": 0.5, "AP50": 0.8}, "per_class": {}}
    bucket = storage_emulator.bucket(BUCKET)
    bucket.blob("checkpoints/done/eval/metrics.json").upload_from_string(json.dumps({**evaluation, "step": 1}))
    bucket.blob("runs/done/eval/metrics.json").upload_from_string(json.dumps(evaluation))
    status = launcher.status("done")
    assert status.metrics == evaluation and status.eval_dir == f"gs://{BUCKET}/runs/done/eval"
    assert status.model_dir == f"gs://{BUCKET}/checkpoints/done"
    assert launcher.cloud.store.load("done")[0].metrics == evaluation
    assert [(run.record.run_id, run.jobs["train"].state, run.metrics) for run in launcher.runs()] == [
        ("done", "JOB_STATE_PENDING", evaluation)]


def test_evaluation_of_a_run_trained_elsewhere_submits_nothing(cloud, vertex_server, storage_emulator):
    launcher = cloud()
    train(launcher, options(accelerator="tpu-v3-8", run_id="moved"))
    record, generation = launcher.cloud.store.load("moved")
    record.config["model_dir"] = "gs://other-bucket/checkpoints/moved"
    launcher.cloud.store.save(record, generation)
    with pytest.raises(PreflightError, match="run moved keeps its checkpoints in gs://other-bucket/checkpoints/moved"):
        evaluate(launcher, "moved")
    assert len(vertex_server.created()) == 1  # the training only


def test_every_machine_type_has_a_price_entry_and_unknown_prices_are_named(monkeypatch):
    assert {accelerator.machine_type for accelerator in ACCELERATORS.values()} <= set(MACHINE_PRICES)
    monkeypatch.setitem(MACHINE_PRICES, "n1-standard-8", (None, None))  # as the table holds it today
    plan = VertexLauncher(make_stack()).plan_evaluation(EvalOptions(EvalArgs(), "r", "gpu-t4-1", spot=True))
    cost = plan.cost()
    assert cost.hourly is None and cost.ceiling is None
    assert cost.unknown == ("Vertex AI n1-standard-8 machine (Spot)",)
    assert cost.known_hourly == pytest.approx(ACCELERATORS["gpu-t4-1"].spot_usd_per_hour)


def test_the_estimate_is_accelerator_plus_machine_for_every_replica(monkeypatch):
    monkeypatch.setitem(MACHINE_PRICES, "g2-standard-8", (0.9, 0.3))  # a price as the table would hold it
    launcher = VertexLauncher(make_stack())
    on_demand = launcher.plan_training(options("retinanet-resnet50fpn-640", "gpu-l4-1", replicas=3)).cost()
    assert on_demand.hourly == pytest.approx(3 * (ACCELERATORS["gpu-l4-1"].usd_per_hour + 0.9))
    assert on_demand.ceiling == pytest.approx(on_demand.hourly * 24) and on_demand.unknown == ()
    spot = launcher.plan_training(options("retinanet-resnet50fpn-640", "gpu-l4-1", replicas=3, spot=True)).cost()
    assert spot.hourly == pytest.approx(3 * (ACCELERATORS["gpu-l4-1"].spot_usd_per_hour + 0.3))
