"""``data prepare --engine dataflow`` submits through Beam's real DataflowRunner: its Dataflow API calls go to a local
Dataflow service (``dataflow_service.FakeDataflow``; ``dataflow_endpoint`` on localhost makes Beam use the REST
transport; ``no_auth``), its staging and the jobs file to gcp-storage-emulator (``STORAGE_EMULATOR_HOST``). The test
stops at the job's creation: the recorded ``CreateJob`` request is what Dataflow would receive."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from dataflow_service import JOB_ID, FakeDataflow
from gcs_emulator import BUCKET, emulated_storage
from google.cloud.dataflow_v1beta3 import WorkerIPAddressConfiguration

from jobs.dataset.annotations import Box
from jobs.dataset.beam import parse_job
from jobs.dataset.dataflow import DataflowPlan, workers_may_read
from jobs.dataset.examine import ImageJob
from jobs.errors import UsageError
from jobs.stack import StackOutputs

SUBNETWORK = "https://www.googleapis.com/compute/v1/projects/acme-ml/regions/europe-west4/subnetworks/dataflow-platform"
WORKER = "detector-df-exp-coco@acme-ml.iam.gserviceaccount.com"
STACK = StackOutputs(
    project="acme-ml", region="europe-west4", bucket=BUCKET, data_prefix=f"gs://{BUCKET}/data",
    runs_prefix=f"gs://{BUCKET}/runs", job_service_account="detector-exp-coco@acme-ml.iam.gserviceaccount.com",
    repository_url="europe-west4-docker.pkg.dev/acme-ml/detector", tensorboard="", experiment="exp-coco",
    checkpoints_prefix=f"gs://{BUCKET}/checkpoints", dataflow_service_account=WORKER, dataflow_subnetwork=SUBNETWORK)


@pytest.fixture
def dataflow_api():
    service = FakeDataflow(run=False)  # records the requests; the job is created, never run
    yield service
    service.close()


def jobs() -> list:
    box = Box("raccoon", 1.0, 2.0, 30.0, 40.0, "labels.csv:2")
    return [(0, position, ImageJob(f"gs://{BUCKET}/images/{position}.jpg", f"images/{position}.jpg", (box,),
                                   f"labels.csv:{position + 2}", 1, 0, None, True, position + 1, 1000))
            for position in range(3)]


def test_the_job_request_carries_the_stacks_region_account_network_labels_and_image(dataflow_api, monkeypatch):
    from jobs.dataset.dataflow import submit

    plan = DataflowPlan.make(STACK, f"gs://{BUCKET}/data/coco", max_workers=7, job_name="exp-coco-prepare-test")
    with emulated_storage(monkeypatch) as (_, storage):
        result = submit(plan, jobs(), {"raccoon": 1}, [f"{plan.work_prefix}/shards/train-00000-of-00001.tfrecord"],
                        dataflow_endpoint=dataflow_api.endpoint, no_auth=True)
        staged = {blob.name: blob.download_as_bytes() for blob in storage.list_blobs(BUCKET)}
    assert result.job_id() == JOB_ID

    creates = [(path, body) for method, path, body in dataflow_api.requests if method == "POST"]
    assert len(creates) == 1, dataflow_api.requests
    path, job = creates[0]
    assert path.startswith("/v1b3/projects/acme-ml/locations/europe-west4/jobs")
    assert job["name"] == "exp-coco-prepare-test"
    assert job["labels"] == {"experiment": "exp-coco", "kind": "prepare", "run": "exp-coco-prepare-test"}
    environment = job["environment"]
    assert environment["serviceAccountEmail"] == WORKER
    # Beam adds a folder of the job's own (name.timestamp) under the temporary and staging locations
    assert environment["tempStoragePrefix"].startswith(f"storage.googleapis.com/{BUCKET}/dataflow/temp/")
    pool = environment["workerPools"][0]
    assert pool["subnetwork"] == SUBNETWORK
    assert pool["ipConfiguration"] == WorkerIPAddressConfiguration.WORKER_IP_PRIVATE.value  # the REST body's number
    assert all(package["location"].startswith(f"storage.googleapis.com/{BUCKET}/dataflow/staging/")
               for package in pool["packages"])
    assert pool["machineType"] == "n2-standard-4"
    assert pool["autoscalingSettings"]["maxNumWorkers"] == 7
    images = {image["containerImage"] for image in pool["sdkHarnessContainerImages"]}
    assert images == {plan.worker_image}
    assert plan.worker_image.startswith("europe-west4-docker.pkg.dev/acme-ml/detector/dataflow-worker:")
    options = environment["sdkPipelineOptions"]["options"]
    assert options["staging_location"].startswith(f"gs://{BUCKET}/dataflow/staging/")
    assert options["region"] == "europe-west4"
    assert options["service_account_email"] == WORKER
    assert options["use_public_ips"] is False
    assert options["sdk_location"] == "container"

    # the jobs went as a file under the temporary location; the graph Beam staged (its pipeline proto) and the
    # request do not hold them
    written = staged["dataflow/temp/exp-coco-prepare-test/jobs.jsonl"].decode()
    assert [parse_job(line) for line in written.splitlines()] == jobs()
    graphs = [data for name, data in staged.items()
              if name.startswith("dataflow/staging/") and name.endswith("/pipeline.pb")]
    assert len(graphs) == 1
    assert b"images/0.jpg" not in graphs[0] and "images/0.jpg" not in json.dumps(job)


def test_a_stack_without_the_dataflow_outputs_is_refused_before_anything_is_contacted():
    old = StackOutputs(**{**vars(STACK), "dataflow_service_account": "", "dataflow_subnetwork": ""})
    with pytest.raises(UsageError, match="pulumi up"):
        DataflowPlan.make(old, f"gs://{BUCKET}/data/coco")
    with pytest.raises(UsageError, match="gs://"):
        DataflowPlan.make(STACK, "/tmp/coco")


def test_two_runs_started_in_the_same_second_get_jobs_and_work_folders_of_their_own():
    at = datetime(2026, 12, 6, 8, 30, 0, tzinfo=UTC)
    first, second = (DataflowPlan.make(STACK, f"gs://{BUCKET}/data/coco", at=at) for _ in range(2))
    assert first.job_name.startswith("exp-coco-prepare-20261206-083000-")
    assert first.job_name != second.job_name and first.work_prefix != second.work_prefix
    long = StackOutputs(**{**vars(STACK), "experiment": "exp-" + "a-very-long-experiment-name" * 3})
    name = DataflowPlan.make(long, f"gs://{BUCKET}/data/coco", at=at).job_name
    assert len(name) <= 63 and name.startswith("exp-a-very-long") and "-prepare-20261206-083000-" in name


def test_the_workers_access_to_images_in_another_project_is_read_from_its_bucket_policy(monkeypatch):
    """The worker role reads every bucket of the stack's project; for a bucket of another project the confirmation
    warns, with the grant, unless its IAM policy gives the workers a role that reads objects."""
    plan = DataflowPlan.make(STACK, f"gs://{BUCKET}/data/coco")
    images, worker = "gs://partner-photos/2026", f"serviceAccount:{WORKER}"
    with emulated_storage(monkeypatch) as (proxy, storage):
        other = storage.create_bucket("partner-photos")
        assert workers_may_read(plan, f"gs://{BUCKET}/photos") is None  # their own bucket
        assert workers_may_read(plan, images) is None  # another bucket of the same project
        proxy.projects["partner-photos"] = "999999999999"
        warning = workers_may_read(plan, images)
        assert "not in the stack's project" in warning
        assert (f"gcloud storage buckets add-iam-policy-binding gs://partner-photos --member={worker} "
                "--role=roles/storage.objectViewer") in warning

        def grant(role: str) -> None:
            policy = other.get_iam_policy(requested_policy_version=3)
            policy.bindings.append({"role": role, "members": {worker}})
            other.set_iam_policy(policy)

        grant("roles/storage.objectCreator")  # writing is not reading
        assert "not in the stack's project" in workers_may_read(plan, images)
        grant("roles/storage.objectViewer")
        assert workers_may_read(plan, images) is None
        proxy.forbidden_policies.add("partner-photos")
        assert "could not be checked" in workers_may_read(plan, images)


def test_the_price_is_the_workers_by_the_hour_and_the_shuffle_of_the_images_bytes():
    plan = DataflowPlan.make(STACK, f"gs://{BUCKET}/data/coco", max_workers=10)
    # n2-standard-4: 4 x $0.056 + 16 x $0.003557 + 25 GB x $0.000054 = $0.282 an hour
    assert plan.price(2_000_000_000) == ("up to $2.82 an hour of workers (10 x $0.282) while the job runs, plus about "
                                         "$0.02 of Dataflow Shuffle (2.00 GB)")
    assert "Dataflow Shuffle at $0.011/GB" in plan.price()
    other = DataflowPlan.make(STACK, f"gs://{BUCKET}/data/coco", machine_type="c3-standard-8")
    assert other.price(10**9).startswith("workers' price unknown (c3-standard-8 is not priced here)")


def test_dry_run_shows_the_job_and_its_price(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    outputs = tmp_path / "exp-coco.json"
    outputs.write_text(json.dumps(STACK.to_outputs()))
    args = ["data", "prepare", "--input", str(tmp_path / "labels.csv"), "--out", f"gs://{BUCKET}/data/coco",
            "--engine", "dataflow", "--stack-outputs", str(outputs), "--max-workers", "3"]
    env = {"COLUMNS": "1000", "PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"}
    shown = subprocess.run([sys.executable, "-m", "jobs", *args, "--dry-run"], cwd=repo, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "up to $0.85 an hour of workers (3 x $0.282)" in shown.stdout and "DataflowTemplates" in shown.stdout
    request = json.loads(shown.stdout[shown.stdout.index("{"):])
    assert request["options"]["service_account_email"] == WORKER
    assert request["options"]["max_num_workers"] == 3
    assert request["options"]["use_public_ips"] is False
