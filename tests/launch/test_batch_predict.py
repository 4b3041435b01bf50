"""`predict --batch`: the real google-cloud-aiplatform client (REST) against the local prediction stand-in's batch
prediction jobs, and the real google-cloud-storage client against the storage emulator, which holds the images, the
file list and the outputs that the stand-in's job writes in Vertex AI's shape."""

from __future__ import annotations

import base64
import csv
import json
import os
import subprocess
import sys

import pytest
from google.auth.credentials import AnonymousCredentials
from launch_servers import BUCKET, TokenServer, experiment_outputs, free_port, service_account_key

from jobs.errors import UsageError
from jobs.launch.batch import BatchJobs, follow, gather, plan_batch, progress, start_batch
from jobs.launch.context import REPO_ROOT
from jobs.launch.runs import BucketRunStore, RunRecord
from jobs.runtime.predict import write_detections
from jobs.stack import StackOutputs

pytest_plugins = ["launch_servers"]

STACK = StackOutputs.from_outputs(experiment_outputs(), "test")
PARENT = "projects/acme-ml/locations/us-central1"
MODEL = f"{PARENT}/models/77"
PHOTOS = "acme-photos"
IMAGES = {"folder/a.jpg": b"\xff\xd8 first image", "folder/b.PNG": b"\x89PNG second image",
          "folder/more/c.jpeg": b"\xff\xd8 third image"}


def prediction(boxes: list[list[float]], scores: list[float]) -> dict:
    """An answer of the serving signature (jobs/runtime/serving.py) with ``boxes`` in pixels (ymin, xmin, ymax,
    xmax) on a 100 x 200 image, padded to 3 rows as the signature pads to its maximum."""
    count = len(boxes)
    pad = 3 - count
    return {"detection_boxes": [[v / 200 for v in b] for b in boxes] + [[0, 0, 0, 0]] * pad,
            "detection_boxes_pixels": boxes + [[0, 0, 0, 0]] * pad, "detection_scores": scores + [0.0] * pad,
            "detection_classes": [1] * count + [0] * pad, "detection_class_names": ["spaghetti"] * count + [""] * pad,
            "num_detections": count, "image_size": [100, 200]}


ANSWERS = {"folder/a.jpg": prediction([[10, 20, 30, 40], [1, 2, 3, 4]], [0.9, 0.1]),
           "folder/b.PNG": prediction([[50, 60, 70, 80.5]], [0.6])}  # c.jpeg: an error line


@pytest.fixture
def cloud(storage_emulator, prediction_server):
    """The experiment bucket with run `first` (its model registered), a bucket of photos and a stand-in whose batch
    jobs write their outputs as Vertex AI does: ``{"instance": …, "prediction": …}`` lines (the REST reference's
    "PredictionResult: represents a line of JSONL in the batch prediction output file") in ``prediction.results-*``
    files, the instance being the ``{"b64": …}`` Vertex AI sends for a file-list line."""
    storage_emulator.create_bucket(BUCKET)
    photos = storage_emulator.create_bucket(PHOTOS)
    for name, data in IMAGES.items():
        photos.blob(name).upload_from_string(data)
    photos.blob("folder/notes.txt").upload_from_string(b"not an image")
    store = BucketRunStore(STACK.runs_prefix, storage_emulator)
    store.save(RunRecord("first", STACK.experiment, "retinanet-tiny-128", "tpu-v5e-4",
                         model={"name": MODEL, "version": "2"}), 0)
    store.save(RunRecord("bare", STACK.experiment, "retinanet-tiny-128", "tpu-v5e-4"), 0)
    prediction_server.models[MODEL] = {"name": MODEL, "versionId": "2"}
    prediction_server.versions[MODEL] = [prediction_server.models[MODEL]]

    def write_outputs(job: dict) -> dict:
        listed = read(storage_emulator, job["inputConfig"]["gcsSource"]["uris"][0]).decode().splitlines()
        lines = []
        for uri in listed:
            name = uri.removeprefix(f"gs://{PHOTOS}/")
            instance = {"b64": base64.b64encode(IMAGES[name]).decode()}
            lines.append({"instance": instance, "prediction": ANSWERS[name]} if name in ANSWERS else
                         {"instance": instance, "error": {"status": "INVALID_ARGUMENT", "message": "bad image"}})
        directory = job["outputInfo"]["gcsOutputDirectory"]
        for index, part in enumerate((lines[:1], lines[1:])):
            write(storage_emulator, f"{directory}/prediction.results-{index:05d}-of-00002",
                  "".join(json.dumps(line) + "\n" for line in part))
        write(storage_emulator, f"{directory}/prediction.errors_stats-00000-of-00001", "{}\n")
        return {"successfulCount": str(len(ANSWERS)), "failedCount": str(len(lines) - len(ANSWERS))}

    prediction_server.batch_output = write_outputs
    return store, storage_emulator, BatchJobs(STACK, prediction_server.url, AnonymousCredentials())


def read(storage, uri: str) -> bytes:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return storage.bucket(bucket).blob(name).download_as_bytes()


def write(storage, uri: str, text: str) -> None:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    storage.bucket(bucket).blob(name).upload_from_string(text)


def test_a_batch_job_over_a_folder_gives_the_detections_local_predict_writes(cloud, prediction_server, tmp_path):
    store, storage, jobs = cloud
    plan = plan_batch(STACK, "first", f"gs://{PHOTOS}/folder/", "n1-standard-8", 3, job_id="j1")
    started = start_batch(plan, store, storage, jobs)

    uris = [f"gs://{PHOTOS}/{name}" for name in sorted(IMAGES)]
    folder = f"gs://{BUCKET}/runs/first/batch/j1"
    assert read(storage, f"{folder}/images.txt").decode() == "".join(f"{uri}\n" for uri in uris)
    (request,) = prediction_server.posted("/batchPredictionJobs")
    assert request["model"] == f"{MODEL}@2"
    assert request["inputConfig"] == {"instancesFormat": "file-list", "gcsSource": {"uris": [f"{folder}/images.txt"]}}
    assert request["outputConfig"] == {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": folder}}
    assert request["dedicatedResources"] == {"machineSpec": {"machineType": "n1-standard-8"},
                                             "startingReplicaCount": 1, "maxReplicaCount": 3}
    assert request["labels"] == {"experiment": "exp-prints", "run": "first", "kind": "batch-predict"}
    assert started.name.startswith(f"{PARENT}/batchPredictionJobs/") and started.model == f"{MODEL}@2"

    lines, waits = [], []
    ended = follow(jobs, started.name, lambda job: lines.append(progress(job, len(started.images))), waits.append)
    assert lines == ["running: 1 of 3 images", "succeeded: 3 of 3 images, 1 failed"]
    assert waits == [10.0]

    gathered = gather(storage, ended, started.images, score_threshold=0.3)
    assert gathered.predicted == 2
    assert gathered.errors == [f"gs://{PHOTOS}/folder/more/c.jpeg: bad image"]
    write_detections(gathered.detections, tmp_path)
    rows = list(csv.DictReader((tmp_path / "detections.csv").open()))
    assert [(r["image"], r["label"], r["class_id"], r["score"], r["xmin"], r["ymin"], r["xmax"], r["ymax"])
            for r in rows] == [(f"gs://{PHOTOS}/folder/a.jpg", "spaghetti", "1", "0.9", "20.0", "10.0", "40.0", "30.0"),
                               (f"gs://{PHOTOS}/folder/b.PNG", "spaghetti", "1", "0.6", "60.0", "50.0", "80.5", "70.0")]
    assert json.loads((tmp_path / "detections.json").read_text())[1] == {
        "image": f"gs://{PHOTOS}/folder/b.PNG", "label": "spaghetti", "class_id": 1, "score": 0.6, "xmin": 60.0,
        "ymin": 50.0, "xmax": 80.5, "ymax": 70.0, "frame": None}


def test_a_run_without_a_registered_model_is_refused_before_anything_is_written(cloud, prediction_server):
    store, storage, jobs = cloud
    with pytest.raises(UsageError, match="models upload --run bare"):
        start_batch(plan_batch(STACK, "bare", f"gs://{PHOTOS}/folder/", job_id="j1"), store, storage, jobs)
    assert not prediction_server.posted("/batchPredictionJobs")
    assert storage.bucket(BUCKET).get_blob("runs/bare/batch/j1/images.txt") is None


def test_an_empty_folder_and_a_local_folder_are_refused(cloud):
    store, storage, jobs = cloud
    with pytest.raises(UsageError, match="no images in"):
        start_batch(plan_batch(STACK, "first", f"gs://{PHOTOS}/elsewhere/"), store, storage, jobs)
    with pytest.raises(UsageError, match="gs://BUCKET/folder/"):
        plan_batch(STACK, "first", "photos/")


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobs", "predict", "--batch", *args], cwd=REPO_ROOT,
                          env=dict(os.environ, COLUMNS="200", **env), capture_output=True, text=True, timeout=300)


def test_the_cli_starts_follows_and_gathers(cloud, prediction_server, tmp_path):
    prediction_server.batch_states = ["JOB_STATE_SUCCEEDED"]  # no wait between reads in a subprocess
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(experiment_outputs()))
    token = TokenServer()
    try:
        done = cli(["--stack-outputs", str(outputs), "--run", "first", "--images", f"gs://{PHOTOS}/folder",
                    "--out", str(tmp_path / "out"), "--yes"],
                   {"DETECTOR_VERTEX_ENDPOINT": prediction_server.url,
                    "GOOGLE_APPLICATION_CREDENTIALS": service_account_key(
                        tmp_path / "key.json", "me@acme-ml.iam.gserviceaccount.com", f"{token.url}/token")})
    finally:
        token.close()
    assert done.returncode == 1, done.stdout + done.stderr  # one image has no prediction
    assert "price unknown" in done.stdout and "on 3 images" in done.stdout
    assert "succeeded: 3 of 3 images, 1 failed" in done.stdout
    assert "1 of 3 images have no prediction" in done.stderr + done.stdout
    rows = list(csv.DictReader((tmp_path / "out" / "detections.csv").open()))
    assert [r["image"].rpartition("/")[2] for r in rows] == ["a.jpg", "b.PNG"]


def test_dry_run_prints_the_request_and_contacts_nothing(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(experiment_outputs()))
    done = cli(["--stack-outputs", str(outputs), "--run", "first", "--images", f"gs://{PHOTOS}/folder/",
                "--max-replicas", "2", "--dry-run"],
               {"DETECTOR_VERTEX_ENDPOINT": closed, "STORAGE_EMULATOR_HOST": closed,
                "GOOGLE_APPLICATION_CREDENTIALS": service_account_key(
                    tmp_path / "key.json", "me@acme-ml.iam.gserviceaccount.com", f"{closed}/token")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "price unknown" in done.stdout
    request = json.loads(done.stdout[done.stdout.index("\n{") + 1:])
    job = request["batchPredictionJob"]
    assert request["parent"] == PARENT
    assert job["model"] == f"(the model of gs://{BUCKET}/runs/first/run.json)"
    assert job["inputConfig"]["instancesFormat"] == "file-list"
    assert job["inputConfig"]["gcsSource"]["uris"][0].startswith(f"gs://{BUCKET}/runs/first/batch/")
    assert job["outputConfig"]["predictionsFormat"] == "jsonl"
    assert job["dedicatedResources"] == {"machineSpec": {"machineType": "n1-standard-4"}, "startingReplicaCount": 1,
                                         "maxReplicaCount": 2}


def test_batch_options_are_refused_without_batch_and_the_other_way_round(tmp_path):
    done = subprocess.run([sys.executable, "-m", "jobs", "predict", "--model", str(tmp_path), "--run", "first",
                           "x.jpg"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "go with --batch" in done.stdout + done.stderr
    done = cli(["--endpoint", "55", "--run", "first", "--images", "gs://b/f/"], {})
    assert done.returncode != 0 and "--batch takes" in done.stdout + done.stderr
