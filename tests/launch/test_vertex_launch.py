"""Launching through the real google-cloud-aiplatform, -storage and -build clients against local servers."""

from __future__ import annotations

import json

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import types

from jobs.launch.accelerators import ACCELERATORS
from jobs.launch.backends import VertexBackend
from jobs.launch.builders import CloudBuilder
from jobs.launch.launcher import DuplicateRun, PreflightError, TrainOptions
from jobs.launch.registry import Registry
from jobs.launch.runs import RunStore
from jobs.launch.session import CloudSession, Declined
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
    from google.cloud.devtools import cloudbuild_v1

    def connect(stack: StackOutputs | None = None, with_data: bool = True) -> CloudSession:
        stack = stack or make_stack()
        bucket = storage_emulator.bucket(BUCKET)
        if not bucket.exists():
            bucket = storage_emulator.create_bucket(BUCKET)
        if with_data:
            bucket.blob("data/dataset.json").upload_from_string(json.dumps(
                {"content_hash": "c0ffee", "classes": [{"id": 1, "name": "spaghetti"}]}))
        build_client = cloudbuild_v1.CloudBuildClient(
            credentials=AnonymousCredentials(), transport="rest",
            client_options={"api_endpoint": build_server.url})
        return CloudSession(
            stack=stack,
            backend=VertexBackend(stack, api_endpoint=vertex_server.url, credentials=AnonymousCredentials()),
            store=RunStore(stack.runs_prefix, storage_emulator),
            storage=storage_emulator,
            registry=Registry(token=lambda: "test-token", base_url=registry_server.url),
            builder=CloudBuilder(stack, build_client=build_client, storage_client=storage_emulator,
                                 sleep=lambda s: None),
        )

    return connect


def yes(plan) -> bool:
    return True


def submitted(vertex_server, index=-1) -> types.CustomJob:
    return types.CustomJob.from_json(json.dumps(vertex_server.created()[index]), ignore_unknown_fields=True)


@pytest.mark.parametrize("name", sorted(ACCELERATORS))
def test_worker_pool_spec_for_every_accelerator(cloud, vertex_server, name):
    accelerator = ACCELERATORS[name]
    session = cloud()
    plan, record, info, image = session.train(
        TrainOptions("retinanet-mobilenet-256", name, run_id=f"run-{name.replace('.', '')}", spot=True), yes)
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
    args = list(container.args)
    assert args[args.index("--device") + 1] == accelerator.device
    assert int(args[args.index("--batch-size") + 1]) % accelerator.cores == 0
    assert args[args.index("--model-dir") + 1] == f"gs://{BUCKET}/checkpoints/{plan.run_id}"
    assert job.job_spec.service_account == "job-exp-prints@acme-ml.iam.gserviceaccount.com"
    assert job.job_spec.base_output_directory.output_uri_prefix == f"gs://{BUCKET}/runs/{plan.run_id}"
    assert job.job_spec.scheduling.strategy == types.Scheduling.Strategy.SPOT
    assert job.job_spec.scheduling.restart_job_on_worker_restart
    assert job.job_spec.scheduling.timeout.total_seconds() == 24 * 3600
    assert dict(job.labels) == {"experiment": "exp-prints", "run": plan.run_id,
                                "preset": "retinanet-mobilenet-256", "kind": "train"}
    assert info.state == "JOB_STATE_PENDING" and info.name == job.name if job.name else True


def test_several_gpu_replicas_get_a_chief_and_a_worker_pool(cloud, vertex_server):
    cloud().train(TrainOptions("retinanet-resnet50fpn-640", "gpu-l4-1", replicas=3, run_id="multi", seed=7), yes)
    chief, workers = submitted(vertex_server).job_spec.worker_pool_specs
    assert (chief.replica_count, workers.replica_count) == (1, 2)
    assert workers.machine_spec == chief.machine_spec
    assert workers.container_spec.args == chief.container_spec.args
    args = list(chief.container_spec.args)
    assert args[args.index("--batch-size") + 1] == "24"  # 8 per GPU x 3 replicas
    assert args[args.index("--seed") + 1] == "7"


def test_on_demand_and_tensorboard(cloud, vertex_server):
    board = "projects/1/locations/us-central1/tensorboards/7"
    cloud(make_stack(tensorboard=board)).train(TrainOptions("retinanet-mobilenet-256", "tpu-v3-8", run_id="od"),
                                               yes)
    spec = submitted(vertex_server).job_spec
    assert spec.scheduling.strategy == types.Scheduling.Strategy.STRATEGY_UNSPECIFIED
    assert spec.tensorboard == board


@pytest.mark.parametrize(("options", "stack", "message"), [
    (TrainOptions("retinanet-mobilenet-256", "tpu-v3-8"), make_stack("asia-south1"),
     "tpu-v3-8 is not offered for Vertex AI training in asia-south1"),
    (TrainOptions("retinanet-mobilenet-256", "tpu-v5e-4", replicas=2), make_stack(),
     "tpu-v5e-4 takes 1 to 1 replica(s), not 2 (Vertex TPU jobs have exactly one worker)"),
    (TrainOptions("retinanet-mobilenet-256", "tpu-v2-8", batch_size=12), make_stack(),
     "batch size 12 does not split over the 8 cores/replicas of tpu-v2-8 x1; use a multiple of 8"),
    (TrainOptions("retinanet-mobilenet-256", "gpu-t4-1", replicas=2, batch_size=7), make_stack(),
     "batch size 7 does not split over the 2 cores/replicas of gpu-t4-1 x2"),
])
def test_preflight_rejects_before_anything_is_submitted(cloud, vertex_server, build_server, options, stack, message):
    with pytest.raises(PreflightError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cloud(stack).train(options, yes)
    assert vertex_server.created() == [] and build_server.builds == {}


def test_missing_data_is_reported_with_the_prepare_command(cloud, vertex_server):
    with pytest.raises(PreflightError, match=f"no prepared data at gs://{BUCKET}/data/other"):
        cloud(with_data=False).train(TrainOptions("retinanet-mobilenet-256", "tpu-v3-8", data="other"), yes)
    assert vertex_server.created() == []


def test_declined_launch_submits_and_builds_nothing(cloud, vertex_server, build_server):
    with pytest.raises(Declined):
        cloud().train(TrainOptions("retinanet-mobilenet-256", "tpu-v3-8"), lambda plan: False)
    assert vertex_server.created() == [] and build_server.builds == {}


def test_image_is_built_once_then_reused(cloud, build_server, storage_emulator):
    session = cloud()
    first = session.train(TrainOptions("retinanet-mobilenet-256", "tpu-v3-8", run_id="one"), yes)[3]
    second = session.train(TrainOptions("retinanet-mobilenet-256", "tpu-v3-8", run_id="two"), yes)[3]
    assert first.built and not second.built and first.ref == second.ref and first.digest == second.digest
    (build,) = build_server.builds.values()
    assert build["images"] == [first.ref]
    assert build["steps"][0]["args"][:3] == ["build", "-f", "images/trainer/Dockerfile"]
    source = build["source"]["storageSource"]
    tarball = storage_emulator.bucket(BUCKET).blob(source["object"]).download_as_bytes()
    from jobs.launch.context import build_context

    assert tarball == build_context("trainer").tarball


def test_duplicate_run_id_with_a_live_job_starts_nothing(cloud, vertex_server):
    session = cloud()
    session.train(TrainOptions("retinanet-mobilenet-256", "tpu-v3-8", run_id="dup"), yes)
    (name,) = vertex_server.jobs
    vertex_server.set_state(name, "JOB_STATE_RUNNING")
    with pytest.raises(DuplicateRun, match=f"run dup already has a live train job {name} "):
        session.train(TrainOptions("retinanet-mobilenet-256", "tpu-v3-8", run_id="dup"), yes)
    assert len(vertex_server.created()) == 1
    vertex_server.set_state(name, "JOB_STATE_FAILED")
    session.train(TrainOptions("retinanet-mobilenet-256", "tpu-v3-8", run_id="dup"), yes)
    assert len(vertex_server.created()) == 2
    record, _ = session.store.load("dup")
    assert record.jobs["train"] != name


def test_run_record_holds_config_dataset_image_and_job(cloud, storage_emulator):
    session = cloud()
    plan, _, info, image = session.train(TrainOptions("retinanet-mobilenet-640", "tpu-v5e-8", run_id="rec",
                                                      steps=500), yes)
    stored = json.loads(storage_emulator.bucket(BUCKET).blob("runs/rec/run.json").download_as_text())
    assert stored["config"]["steps"] == 500 and stored["config"]["accelerator"] == "tpu-v5e-8"
    assert stored["config"]["init_checkpoint"].startswith("gs://tf_model_garden/")
    assert stored["dataset"] == {"uri": f"gs://{BUCKET}/data", "content_hash": "c0ffee", "classes": ["spaghetti"]}
    assert stored["images"]["trainer"] == {"ref": image.ref, "digest": image.digest}
    assert stored["jobs"]["train"] == info.name


def test_state_polling_cancel_and_evaluation_job(cloud, vertex_server):
    session = cloud()
    session.train(TrainOptions("retinanet-mobilenet-256", "tpu-v3-8", run_id="live"), yes)
    (name,) = vertex_server.jobs
    assert session.backend.get(name).state == "JOB_STATE_PENDING"
    vertex_server.set_state(name, "JOB_STATE_RUNNING")
    info = session.backend.get(name)
    assert info.live and info.console_url.endswith(f"/training/{name.rsplit('/', 1)[-1]}/cpu?project=acme-ml")
    session.evaluate("live", "gpu-t4-1", False, yes)
    job = submitted(vertex_server)
    (pool,) = job.job_spec.worker_pool_specs
    assert pool.machine_spec.accelerator_type.name == "NVIDIA_TESLA_T4"
    assert list(pool.container_spec.command) == ["python", "-m", "jobs.runtime.evaluate"]
    assert list(pool.container_spec.args) == ["--model-dir", f"gs://{BUCKET}/checkpoints/live", "--data",
                                              f"gs://{BUCKET}/data", "--continuous"]
    assert pool.container_spec.image_uri.split("/")[-1].startswith("evaluator:")
    cancelled = session.cancel("live")
    assert {i.state for i in cancelled} == {"JOB_STATE_CANCELLING"}
    assert sum(path.endswith(":cancel") for _, path, _ in vertex_server.requests) == 2
    assert session.cancel("live") == []  # nothing live any more: no second cancel


def test_status_copies_the_latest_evaluation_into_the_run_record(cloud, storage_emulator):
    session = cloud()
    session.train(TrainOptions("retinanet-mobilenet-256", "tpu-v3-8", run_id="done"), yes)
    record, jobs, metrics = session.status("done")
    assert metrics is None and set(jobs) == {"train"}
    evaluation = {"step": 400, "summary": {"AP": 0.5, "AP50": 0.8}, "per_class": {}}
    storage_emulator.bucket(BUCKET).blob("checkpoints/done/eval/metrics.json").upload_from_string(
        json.dumps(evaluation))
    record, jobs, metrics = session.status("done")
    assert metrics == evaluation
    assert session.store.load("done")[0].metrics == evaluation
