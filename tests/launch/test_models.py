"""`models upload` through the real google-cloud-aiplatform (REST) and -storage clients, against a local Model
Registry stand-in and the storage emulator; the serving image built by the local Cloud Build stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.devtools import cloudbuild_v1
from launch_servers import BUCKET, experiment_outputs, free_port

from jobs.dataset.gcs import UploadFailed
from jobs.launch.backends import VertexBackend
from jobs.launch.builders import CloudBuilder
from jobs.launch.context import REPO_ROOT, build_context
from jobs.launch.models import ModelRegistry, content_hash, plan_upload, upload_model
from jobs.launch.registry import Registry
from jobs.launch.runs import BucketRunStore, RunRecord, UnknownRun
from jobs.launch.session import CloudSession
from jobs.stack import StackOutputs

pytest_plugins = ["launch_servers"]

STACK = StackOutputs.from_outputs(experiment_outputs(), "test")
SERVING_REF = f"us-central1-docker.pkg.dev/acme-ml/detector/serving:{build_context('serving').tag}"
METRICS = {"split": "val", "step": 200, "summary": {"AP": 0.459, "AP50": 0.87, "AP75": 0.41}}


@pytest.fixture
def cloud(storage_emulator, vertex_server, registry_server, build_server, prediction_server):
    """A session and a Model Registry whose clients talk to the local servers, with run `first` recorded."""
    bucket = storage_emulator.create_bucket(BUCKET)
    store = BucketRunStore(STACK.runs_prefix, storage_emulator)
    record = RunRecord("first", STACK.experiment, "retinanet-mobilenet-256", "tpu-v5e-4", metrics=METRICS,
                       dataset={"uri": f"gs://{BUCKET}/data", "content_hash": "C0FFEE42"})
    store.save(record, 0)
    build_client = cloudbuild_v1.CloudBuildClient(credentials=AnonymousCredentials(), transport="rest",
                                                  client_options={"api_endpoint": build_server.url})
    session = CloudSession(
        STACK, VertexBackend(STACK, api_endpoint=vertex_server.url, credentials=AnonymousCredentials()), store,
        storage_emulator, Registry(token=lambda: "test-token", base_url=registry_server.url),
        CloudBuilder(STACK, build_client=build_client, storage_client=storage_emulator, sleep=lambda s: None))
    registry = ModelRegistry(STACK, api_endpoint=prediction_server.url, credentials=AnonymousCredentials())
    return session, registry, bucket


@pytest.fixture
def export(tmp_path):
    """An export folder as `export --format saved_model` lays it out (the bytes do not matter here)."""
    folder = tmp_path / "exported"
    (folder / "saved_model" / "variables").mkdir(parents=True)
    (folder / "saved_model" / "saved_model.pb").write_bytes(b"graph" * 100)
    (folder / "saved_model" / "variables" / "variables.index").write_bytes(b"index")
    (folder / "saved_model" / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(4096))
    (folder / "model.json").write_text("{}")
    return folder


def stored(bucket, prefix: str) -> dict[str, bytes]:
    return {blob.name.removeprefix(prefix): blob.download_as_bytes()
            for blob in bucket.client.list_blobs(bucket, prefix=prefix)}


def test_a_local_export_is_uploaded_then_registered_with_the_serving_container(cloud, export, prediction_server,
                                                                               build_server):
    session, registry, bucket = cloud
    plan = plan_upload(STACK, "first", str(export))
    uploaded = upload_model(plan, session, registry)

    artifact = f"gs://{BUCKET}/runs/first/exported/{content_hash(export / 'saved_model')}"
    assert uploaded.artifact_uri == artifact
    local = {p.relative_to(export / "saved_model").as_posix(): p.read_bytes()
             for p in (export / "saved_model").rglob("*") if p.is_file()}
    assert stored(bucket, artifact.removeprefix(f"gs://{BUCKET}/") + "/") == local
    (build,) = build_server.builds.values()  # the serving image of this source, built once
    assert build["images"] == [SERVING_REF] and uploaded.built

    (request,) = prediction_server.posted("/models:upload")
    assert "parentModel" not in request  # the run's first model
    model = request["model"]
    assert model["containerSpec"] == {"imageUri": SERVING_REF, "predictRoute": "/v1/models/detector:predict",
                                      "healthRoute": "/healthz", "ports": [{"containerPort": 8080}]}
    assert model["artifactUri"] == artifact
    assert model["labels"] == {"experiment": "exp-prints", "run": "first", "preset": "retinanet-mobilenet-256",
                               "dataset": "c0ffee42"}
    assert model["versionAliases"] == ["latest"]
    assert "AP 0.459, AP50 0.870, AP75 0.410 (split val step 200)" in model["description"]
    assert "content hash C0FFEE42" in model["description"]

    record, _ = session.store.load("first")
    assert record.model["name"] == uploaded.name and record.model["version"] == "1"
    assert record.model["artifact_uri"] == artifact and record.images["serving"]["ref"] == SERVING_REF


def test_each_upload_of_a_run_is_a_new_version_of_its_model(cloud, export, prediction_server):
    session, registry, _ = cloud
    first = upload_model(plan_upload(STACK, "first", str(export)), session, registry)
    (export / "saved_model" / "saved_model.pb").write_bytes(b"retrained")
    prediction_server.polls = 1  # the operation is not done at once: the client waits for it
    second = upload_model(plan_upload(STACK, "first", str(export)), session, registry)

    assert second.name == first.name and (first.version_id, second.version_id) == ("1", "2")
    assert prediction_server.posted("/models:upload")[1]["parentModel"] == first.name
    assert second.artifact_uri != first.artifact_uri  # version 1 keeps serving its own files
    versions = prediction_server.versions[first.name]
    assert [v["versionAliases"] for v in versions] == [["default"], ["latest"]]
    assert session.store.load("first")[0].model["version"] == "2"


def test_an_export_already_in_the_bucket_is_registered_where_it_is(cloud, prediction_server):
    session, registry, bucket = cloud
    bucket.blob("elsewhere/exported/saved_model/saved_model.pb").upload_from_string(b"graph")
    uploaded = upload_model(plan_upload(STACK, "first", f"gs://{BUCKET}/elsewhere/exported/"), session, registry)
    assert uploaded.artifact_uri == f"gs://{BUCKET}/elsewhere/exported/saved_model"
    assert prediction_server.posted("/models:upload")[0]["model"]["artifactUri"] == uploaded.artifact_uri
    with pytest.raises(Exception, match="no SavedModel in gs://"):
        upload_model(plan_upload(STACK, "first", f"gs://{BUCKET}/nothing"), session, registry)


def test_a_failed_upload_leaves_no_file_and_registers_nothing(cloud, export, prediction_server):
    session, registry, bucket = cloud
    late = export / "saved_model" / "zz-late"
    late.write_bytes(b"weights")
    plan = plan_upload(STACK, "first", str(export))
    late.unlink()
    late.symlink_to("/proc/self/mem")  # the last file turns unreadable (EIO) while the others upload
    with pytest.raises(UploadFailed, match="the 3 files already uploaded were removed"):
        upload_model(plan, session, registry)
    assert stored(bucket, "runs/first/exported/") == {}
    assert prediction_server.posted("/models:upload") == []
    assert session.store.load("first")[0].model == {}


def test_the_same_export_again_reuses_its_files_and_never_removes_them(cloud, export, prediction_server):
    session, registry, bucket = cloud
    first = upload_model(plan_upload(STACK, "first", str(export)), session, registry)
    before = stored(bucket, "runs/first/exported/")
    plan = plan_upload(STACK, "first", str(export))  # the same files: the same folder
    weights = next(p for p in (export / "saved_model").rglob("*") if p.is_file() and p.name != "saved_model.pb")
    weights.unlink()
    weights.symlink_to("/proc/self/mem")  # unreadable now: an upload of it would fail
    second = upload_model(plan, session, registry)
    assert second.artifact_uri == first.artifact_uri and second.version_id == "2"
    assert stored(bucket, "runs/first/exported/") == before  # version 1's files, untouched


def test_an_unknown_run_uploads_nothing(cloud, export, prediction_server):
    session, registry, bucket = cloud
    with pytest.raises(UnknownRun):
        upload_model(plan_upload(STACK, "second", str(export)), session, registry)
    assert stored(bucket, "runs/second/") == {} and prediction_server.requests == []


def test_dry_run_prints_the_request_and_contacts_nothing(tmp_path, export):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(experiment_outputs()))
    closed = f"http://127.0.0.1:{free_port()}"  # any network use would fail
    env = dict(os.environ, HTTPS_PROXY=closed, HTTP_PROXY=closed, STORAGE_EMULATOR_HOST=closed,
               DETECTOR_VERTEX_ENDPOINT=closed, COLUMNS="400")
    done = subprocess.run([sys.executable, "-m", "jobs", "models", "upload", "--stack-outputs", str(outputs),
                           "--run", "first", "--export", str(export), "--dry-run"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout[done.stdout.index("{"):])
    assert body["parent"] == "projects/acme-ml/locations/us-central1"
    assert body["model"]["containerSpec"]["imageUri"] == SERVING_REF
    assert body["model"]["artifactUri"] == (f"gs://{BUCKET}/runs/first/exported/"
                                            f"{content_hash(export / 'saved_model')}")
    assert body["model"]["labels"] == {"experiment": "exp-prints", "run": "first"}
    assert "runs/first/run.json" in done.stdout  # what the upload will read


def test_an_export_without_a_saved_model_is_refused_before_anything(tmp_path):
    from jobs.errors import UsageError

    with pytest.raises(UsageError, match="no SavedModel"):
        plan_upload(STACK, "first", str(tmp_path))
