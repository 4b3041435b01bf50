"""Batch predictions (``predict --batch``): a Vertex AI BatchPredictionJob of a run's registered model over a folder
of images in Cloud Storage, gathered into the ``detections.csv`` / ``.json`` that local ``predict`` writes.

Input: a "file-list", one gs:// image a line, written to ``gs://BUCKET/runs/RUN/batch/JOB/images.txt`` in one
object write, so images are never read or re-encoded on this machine. Sources (found with the search tool): "Get
batch predictions from a custom trained model" (https://cloud.google.com/vertex-ai/docs/predictions/get-batch-predictions)
lists the input formats of ``inputConfig.instancesFormat``; the ``Model.supportedInputStorageFormats`` reference
defines ``file-list`` as "each line of the file is the location of an instance to process". That Vertex AI sends
each listed file base64-encoded as ``{"b64": …}`` (the instance the serving signature takes, jobs/runtime/serving.py)
is the "File list" section of the same page as Google publishes it; the stored copies' excerpts reach only its JSON
Lines section, so the gathering below also accepts a line whose instance is the file's URI.

Output: JSON Lines files ``prediction.results-*`` under the job's ``outputInfo.gcsOutputDirectory``, one
``{"instance": …, "prediction": …}`` (or ``"error"``) a line ("PredictionResult: represents a line of JSONL in the
batch prediction output file", Vertex AI REST reference, found with the search tool). A line names its image by the
instance: a gs:// URI, or the ``{"b64": …}`` of the file, matched to its object by MD5.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobs.dataset.gcs import split_uri
from jobs.errors import DetectorError, UsageError
from jobs.launch.jobspec import RUN_ID, vertex_parent
from jobs.launch.models import vertex_endpoint
from jobs.launch.runs import RunStore, require
from jobs.report.drawing import Detection
from jobs.runtime.predict import IMAGE_SUFFIXES
from jobs.stack import StackOutputs

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud.aiplatform_v1 import types
    from google.cloud.storage import Client

BATCH = "batch"  # runs/RUN/batch/JOB/: a batch job's file list and outputs
FILE_LIST = "images.txt"
INSTANCES_FORMAT = "file-list"
PREDICTIONS_FORMAT = "jsonl"
RESULTS = "prediction.results-"  # the output files' names begin so
# A choice of this tool: batch jobs take the machine types of Vertex AI "Configure compute resources for
# prediction" (the same list as endpoints); --machine-type picks another.
DEFAULT_MACHINE = "n1-standard-4"
FIRST_POLL_S, MAX_POLL_S = 10.0, 60.0  # the wait between job reads doubles from the first to the most
DONE = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED",
        "JOB_STATE_PARTIALLY_SUCCEEDED"}
USABLE = {"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"}  # outputs worth gathering
PRICE = ("price unknown (no stored document gives Vertex AI's batch prediction price per node hour; see "
         "https://cloud.google.com/vertex-ai/pricing)")


class BatchPredictionError(DetectorError):
    """The batch job ended without predictions, or its outputs are not this tool's serving signature."""


@dataclass(frozen=True)
class BatchPlan:
    """What ``predict --batch`` starts: it needs the stack and the arguments, and contacts nothing."""

    stack: StackOutputs
    run_id: str
    images: str  # gs://BUCKET/folder/
    job_id: str  # names the folder runs/RUN/batch/JOB/
    machine_type: str = DEFAULT_MACHINE
    max_replicas: int = 1

    @property
    def folder(self) -> str:
        return self.stack.run_uri(self.run_id, BATCH, self.job_id)

    @property
    def file_list(self) -> str:
        return f"{self.folder}/{FILE_LIST}"

    def summary(self) -> str:
        return (f"batch-predict the images of {self.images} with run {self.run_id}'s registered model on "
                f"{self.machine_type}, 1 to {self.max_replicas} replica(s); file list and outputs in "
                f"{self.folder}/; {PRICE}")

    def job(self, model: str) -> types.BatchPredictionJob:
        from google.cloud.aiplatform_v1 import types

        return types.BatchPredictionJob(
            display_name=f"{self.stack.experiment}-{self.run_id}-{self.job_id}"[:128],
            model=model,
            input_config=types.BatchPredictionJob.InputConfig(
                instances_format=INSTANCES_FORMAT, gcs_source=types.GcsSource(uris=[self.file_list])),
            output_config=types.BatchPredictionJob.OutputConfig(
                predictions_format=PREDICTIONS_FORMAT,
                gcs_destination=types.GcsDestination(output_uri_prefix=self.folder)),
            dedicated_resources=types.BatchDedicatedResources(
                machine_spec=types.MachineSpec(machine_type=self.machine_type), starting_replica_count=1,
                max_replica_count=self.max_replicas),
            labels={key: value.lower()[:63] for key, value in
                    {"experiment": self.stack.experiment, "run": self.run_id, "kind": "batch-predict"}.items()},
        )

    def request(self) -> dict[str, Any]:
        """The ``CreateBatchPredictionJob`` request ``--dry-run`` shows (REST field names); the model is named as
        the run's record will give it."""
        from google.cloud.aiplatform_v1 import types

        model = f"(the model of {self.stack.run_uri(self.run_id, 'run.json')})"
        request = types.CreateBatchPredictionJobRequest(parent=vertex_parent(self.stack),
                                                        batch_prediction_job=self.job(model))
        body: dict[str, Any] = json.loads(types.CreateBatchPredictionJobRequest.to_json(
            request, use_integers_for_enums=False, always_print_fields_with_no_presence=False))
        return body


def plan_batch(stack: StackOutputs, run_id: str, images: str, machine_type: str = DEFAULT_MACHINE,
               max_replicas: int = 1, job_id: str | None = None) -> BatchPlan:
    if not RUN_ID.match(run_id):
        raise UsageError(f"--run {run_id}: not a run id of the stack (see `runs list`)")
    if not images.startswith("gs://") or not split_uri(images)[0]:
        raise UsageError(f"--images {images}: give a gs://BUCKET/folder/ of images")
    if max_replicas < 1:
        raise UsageError(f"--max-replicas {max_replicas}: at least 1")
    return BatchPlan(stack, run_id, images, job_id or datetime.now(UTC).strftime("%Y%m%d-%H%M%S"), machine_type,
                     max_replicas)


@dataclass(frozen=True)
class Image:
    uri: str
    md5: str  # base64 of the MD5 digest, as Cloud Storage gives it


@dataclass(frozen=True)
class Started:
    name: str  # projects/P/locations/R/batchPredictionJobs/ID
    model: str
    images: list[Image]


@dataclass(frozen=True)
class Gathered:
    detections: list[Detection]
    predicted: int  # images with a prediction
    errors: list[str] = field(default_factory=list)  # "image: message" of the lines with an error


class BatchJobs:
    """Batch prediction jobs of the stack's region, through google-cloud-aiplatform's JobServiceClient (REST)."""

    def __init__(self, stack: StackOutputs, api_endpoint: str | None = None,
                 credentials: Credentials | None = None):
        from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

        self.stack = stack
        self.client = JobServiceClient(credentials=credentials, transport="rest",
                                       client_options={"api_endpoint": api_endpoint or vertex_endpoint(stack)})

    def create(self, job: types.BatchPredictionJob) -> types.BatchPredictionJob:
        return self.client.create_batch_prediction_job(parent=vertex_parent(self.stack), batch_prediction_job=job)

    def get(self, name: str) -> types.BatchPredictionJob:
        return self.client.get_batch_prediction_job(name=name)


def list_images(storage: Client, folder: str) -> list[Image]:
    """The image objects under a gs:// folder (its subfolders too), by name."""
    bucket, prefix = split_uri(folder)
    prefix = f"{prefix}/" if prefix else ""
    return [Image(f"gs://{bucket}/{blob.name}", str(blob.md5_hash or ""))
            for blob in storage.list_blobs(bucket, prefix=prefix)
            if "." + blob.name.rpartition(".")[2].lower() in IMAGE_SUFFIXES]


def start_batch(plan: BatchPlan, store: RunStore, storage: Client, jobs: BatchJobs) -> Started:
    """The run's registered model, the folder's images as a file list (one object write), the job created."""
    record, _ = require(store, plan.run_id)
    if not record.model.get("name"):
        raise UsageError(f"run {plan.run_id} has no registered model: `models upload --run {plan.run_id}` first")
    version = record.model.get("version")
    model = f"{record.model['name']}@{version}" if version else record.model["name"]
    images = list_images(storage, plan.images)
    if not images:
        raise UsageError(f"no images in {plan.images} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    bucket, name = split_uri(plan.file_list)
    storage.bucket(bucket).blob(name).upload_from_string(
        "".join(f"{image.uri}\n" for image in images), content_type="text/plain", checksum="crc32c")
    created = jobs.create(plan.job(model))
    return Started(str(created.name), model, images)


def state_name(job: types.BatchPredictionJob) -> str:
    return str(job.state.name)


def progress(job: types.BatchPredictionJob, total: int) -> str:
    """One line: the state and the images done so far."""
    stats = job.completion_stats
    done = int(stats.successful_count) + int(stats.failed_count)
    failed = f", {stats.failed_count} failed" if stats.failed_count else ""
    return f"{state_name(job).removeprefix('JOB_STATE_').lower()}: {done} of {total} images{failed}"


def follow(jobs: BatchJobs, name: str, on_progress: Callable[[types.BatchPredictionJob], None],
           sleep: Callable[[float], None] = time.sleep, first_poll_s: float = FIRST_POLL_S,
           max_poll_s: float = MAX_POLL_S) -> types.BatchPredictionJob:
    """Read the job until it ends (waits doubling from ``first_poll_s`` to ``max_poll_s``); the job as it ended."""
    wait = first_poll_s
    while True:
        job = jobs.get(name)
        on_progress(job)
        if state_name(job) in DONE:
            return job
        sleep(wait)
        wait = min(wait * 2, max_poll_s)


def gather(storage: Client, job: types.BatchPredictionJob, images: list[Image],
           score_threshold: float = 0.3) -> Gathered:
    """The detections of the job's ``prediction.results-*`` files, boxes in the original images' pixels."""
    if state_name(job) not in USABLE:
        raise BatchPredictionError(f"batch job {job.name} ended {state_name(job)}: {job.error.message or 'no message'}"
                                   "; its logs are in the Cloud Console")
    directory = str(job.output_info.gcs_output_directory)
    bucket, prefix = split_uri(directory)
    by_md5 = {image.md5: image.uri for image in images if image.md5}
    detections: list[Detection] = []
    errors: list[str] = []
    predicted = 0
    blobs = sorted((b for b in storage.list_blobs(bucket, prefix=f"{prefix}/")
                    if b.name.rpartition("/")[2].startswith(RESULTS)), key=lambda b: b.name)
    if not blobs:
        raise BatchPredictionError(f"no {RESULTS}* files in {directory}")
    for blob in blobs:
        for line in blob.download_as_text().splitlines():
            if not line.strip():
                continue
            result = json.loads(line)
            image = _image(result.get("instance"), by_md5)
            if "prediction" not in result:
                errors.append(f"{image}: {result.get('error', {}).get('message', 'no prediction')}")
                continue
            predicted += 1
            detections += to_detections(result["prediction"], image, score_threshold)
    return Gathered(detections, predicted, errors)


def _image(instance: object, by_md5: dict[str, str]) -> str:
    """The gs:// URI of the image a result line is about."""
    if isinstance(instance, str):
        return instance
    if isinstance(instance, dict) and isinstance(instance.get("b64"), str):
        digest = base64.b64encode(hashlib.md5(base64.b64decode(instance["b64"])).digest()).decode("ascii")
        if digest in by_md5:
            return by_md5[digest]
    raise BatchPredictionError(f"a result line's instance is not one of the listed images: {str(instance)[:80]}")


def to_detections(prediction: dict[str, Any], image: str, score_threshold: float) -> list[Detection]:
    """One image's outputs of the serving signature as detections in its pixels (``detection_boxes_pixels``)."""
    try:
        count = int(prediction["num_detections"])
        rows = zip(prediction["detection_boxes_pixels"][:count], prediction["detection_scores"][:count],
                   prediction["detection_classes"][:count], prediction["detection_class_names"][:count], strict=True)
        return [Detection(image, name or f"class {int(c)}", int(c), float(s), float(b[1]), float(b[0]), float(b[3]),
                          float(b[2]))
                for b, s, c, name in rows if float(s) >= score_threshold]
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise BatchPredictionError(
            f"a prediction lacks the serving signature's outputs ({err}): batch-predict with a model registered "
            "by `models upload` from an `export --format saved_model`") from None
