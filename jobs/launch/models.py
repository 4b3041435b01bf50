"""A run's export in the Vertex AI Model Registry (``models upload``), served by the project's serving image.

No prebuilt Vertex AI TensorFlow prediction container runs the project's TensorFlow (google-cloud-aiplatform
2.7.0's list ends at TensorFlow 2.15), so the model's container is ``images/serving``: ``serve`` under Vertex AI's
custom-container contract ("Custom container requirements for prediction",
https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements: the server listens on the port
of ``containerSpec.ports``, which Vertex AI passes as ``AIP_HTTP_PORT``, and answers ``predictRoute`` and
``healthRoute``; the ``ModelContainerSpec`` and ``Model`` REST references name the fields).

A local export is uploaded first, all or nothing, to ``gs://BUCKET/runs/RUN/exported/HASH/`` (``HASH``: of its
files, so the same export is stored once and a new one never overwrites what an earlier version serves). Each
upload of a run is a new version of the run's model (``parentModel``, recorded in ``runs/RUN/run.json``) and takes
the alias ``latest``; the model's labels name the experiment, the run, its preset and its dataset hash, and its
description holds the run's metrics.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.dataset.gcs import UploadFailed, split_uri, upload_file
from jobs.errors import DetectorError, UsageError
from jobs.launch.jobspec import RUN_ID, regional_endpoint, vertex_parent
from jobs.launch.runs import RunRecord, now, require
from jobs.runtime.serve import DEFAULT_NAME, DEFAULT_PORT, HEALTH_ROUTE
from jobs.stack import StackOutputs

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud.aiplatform_v1 import types

    from jobs.launch.session import CloudSession

SERVING_IMAGE = "serving"  # images/serving
EXPORTED = "exported"  # runs/RUN/exported/HASH/: the uploaded SavedModels of a run
VERSION_ALIASES = ("latest",)
PREDICT_ROUTE = f"/v1/models/{DEFAULT_NAME}:predict"  # what `serve` answers (and AIP_PREDICT_ROUTE besides)
SAVED_MODEL = "saved_model.pb"
UPLOAD_TIMEOUT_S = 1800
ENDPOINT_VARIABLE = "DETECTOR_VERTEX_ENDPOINT"  # http://127.0.0.1:PORT: the Vertex AI API elsewhere (tests)


class ModelUploadError(DetectorError):
    """The export could not be registered."""


@dataclass(frozen=True)
class UploadPlan:
    """What ``models upload`` registers: the plan needs the stack and the export, and contacts nothing."""

    stack: StackOutputs
    run_id: str
    export: str  # a local export folder, or gs://
    artifact_uri: str  # the SavedModel folder the model serves from (for a local export: where it will be)
    image_tag: str  # the serving image of the current source

    @property
    def image_ref(self) -> str:
        return self.stack.image(SERVING_IMAGE, self.image_tag)

    @property
    def local(self) -> Path | None:
        return None if self.export.startswith("gs://") else saved_model_dir(Path(self.export))

    def summary(self) -> str:
        source = (f"uploads {self.local} to {self.artifact_uri}, then " if self.local else "")
        return (f"run {self.run_id}: {source}registers {self.artifact_uri} as a new version (alias "
                f"{', '.join(VERSION_ALIASES)}) of the run's model, served by {self.image_ref}; the run's record "
                f"{self.stack.run_uri(self.run_id, 'run.json')} gives its metrics, dataset hash and model")

    def upload_request(self, record: RunRecord | None, image_ref: str | None = None,
                       artifact_uri: str | None = None) -> types.UploadModelRequest:
        """The ``UploadModel`` request; without the run's record (``--dry-run``), what it would give is left out.
        ``artifact_uri``: the SavedModel folder found in the bucket (a gs:// export may hold it in saved_model/)."""
        from google.cloud.aiplatform_v1 import types

        model = types.Model(
            display_name=f"{self.stack.experiment}-{self.run_id}"[:128],
            description=describe(self.run_id, self.stack.experiment, record),
            version_aliases=list(VERSION_ALIASES),
            version_description=f"export {self.export}",
            artifact_uri=artifact_uri or self.artifact_uri,
            container_spec=types.ModelContainerSpec(
                image_uri=image_ref or self.image_ref, predict_route=PREDICT_ROUTE, health_route=HEALTH_ROUTE,
                ports=[types.Port(container_port=DEFAULT_PORT)]),
            labels=labels(self.stack.experiment, self.run_id, record),
        )
        parent_model = record.model.get("name", "") if record else ""
        return types.UploadModelRequest(parent=vertex_parent(self.stack), parent_model=parent_model, model=model)

    def request(self) -> dict[str, Any]:
        """The request ``--dry-run`` shows, REST field names."""
        from google.cloud.aiplatform_v1 import types

        request = self.upload_request(None)
        body: dict[str, Any] = json.loads(types.UploadModelRequest.to_json(
            request, use_integers_for_enums=False, always_print_fields_with_no_presence=False))
        return body


@dataclass(frozen=True)
class Uploaded:
    name: str  # projects/P/locations/R/models/ID
    version_id: str
    artifact_uri: str
    image_ref: str
    built: bool  # the serving image was built for this upload


class ModelRegistry:
    """The Model Registry of the stack's region, through google-cloud-aiplatform's ModelServiceClient (REST)."""

    def __init__(self, stack: StackOutputs, api_endpoint: str | None = None, credentials: Credentials | None = None,
                 timeout_s: float = UPLOAD_TIMEOUT_S):
        from google.cloud.aiplatform_v1.services.model_service import ModelServiceClient

        self.client = ModelServiceClient(credentials=credentials, transport="rest",
                                         client_options={"api_endpoint": api_endpoint or vertex_endpoint(stack)})
        self.timeout_s = timeout_s

    def upload(self, request: types.UploadModelRequest) -> tuple[str, str]:
        """Register the model (a long-running operation, waited for); its name and version id."""
        operation = self.client.upload_model(request=request)
        response = operation.result(timeout=self.timeout_s)  # type: ignore[no-untyped-call]
        return str(response.model), str(response.model_version_id)


def vertex_endpoint(stack: StackOutputs) -> str:
    """The Vertex AI API of the stack's region, or ``$DETECTOR_VERTEX_ENDPOINT``."""
    return os.environ.get(ENDPOINT_VARIABLE) or regional_endpoint(stack)


def plan_upload(stack: StackOutputs, run_id: str, export: str) -> UploadPlan:
    from jobs.launch.context import build_context

    if not RUN_ID.match(run_id):
        raise UsageError(f"--run {run_id}: not a run id of the stack (see `runs list`)")
    if export.startswith("gs://"):
        artifact_uri = export.rstrip("/")
    else:
        folder = saved_model_dir(Path(export))
        artifact_uri = stack.run_uri(run_id, EXPORTED, content_hash(folder))
    return UploadPlan(stack, run_id, export, artifact_uri, build_context(SERVING_IMAGE).tag)


def upload_model(plan: UploadPlan, cloud: CloudSession, registry: ModelRegistry) -> Uploaded:
    """Upload the export (a local one), register it as a new version of the run's model, record it in the run."""
    record, _ = require(cloud.store, plan.run_id)
    image = cloud.image(SERVING_IMAGE)
    artifact_uri = stage_export(plan, cloud)
    name, version = registry.upload(plan.upload_request(record, image.ref, artifact_uri))
    record, generation = require(cloud.store, plan.run_id)  # read again: the upload took minutes
    record.model = {"name": name, "version": version, "artifact_uri": artifact_uri, "image": image.ref,
                    "uploaded": now()}
    record.images[SERVING_IMAGE] = {"ref": image.ref, "digest": image.digest}
    cloud.store.save(record, generation)
    return Uploaded(name, version, artifact_uri, image.ref, image.built)


def stage_export(plan: UploadPlan, cloud: CloudSession) -> str:
    """The SavedModel folder in the bucket: a local export uploaded there (every file, or none on a failure), a
    gs:// one checked. Returns the artifact URI."""
    bucket_name, prefix = split_uri(plan.artifact_uri)
    bucket = cloud.storage.bucket(bucket_name)
    local = plan.local
    if local is None:
        for folder in (prefix, f"{prefix}/saved_model"):
            if bucket.get_blob(f"{folder}/{SAVED_MODEL}".lstrip("/")) is not None:
                return f"gs://{bucket_name}/{folder}"
        raise UsageError(f"no SavedModel in {plan.export}: give an export folder of `export --format saved_model` "
                         "(local or in the bucket)")
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    names = [f"{prefix}/{relative}" for relative in files]
    existing = {blob.name for blob in cloud.storage.list_blobs(bucket_name, prefix=f"{prefix}/")}
    if set(names) <= existing:
        return plan.artifact_uri  # uploaded before: the folder is named by the content hash of these very files
    uploaded: list[str] = []
    try:
        for relative, name in zip(files, names, strict=True):
            upload_file(bucket, local / relative, name)
            uploaded.append(name)
    except (UploadFailed, OSError) as err:
        created = [name for name in uploaded if name not in existing]  # never what an earlier upload left there
        _remove(bucket, created)
        raise UploadFailed(f"uploading {local} to {plan.artifact_uri} failed ({err}); the {len(created)} files "
                           "already uploaded were removed and nothing was registered: rerun `models upload`") from None
    return plan.artifact_uri


def _remove(bucket: Any, names: list[str]) -> None:
    """Best effort: the caller is already reporting a failure."""
    from google.api_core.exceptions import GoogleAPIError
    from requests.exceptions import RequestException

    for name in names:
        with contextlib.suppress(GoogleAPIError, RequestException):
            bucket.blob(name).delete()


def saved_model_dir(export: Path) -> Path:
    """The SavedModel folder of an export folder (its ``saved_model/``), or the folder itself."""
    for folder in (export, export / "saved_model"):
        if (folder / SAVED_MODEL).is_file():
            return folder
    raise UsageError(f"no SavedModel in {export}: give a folder written by `export --format saved_model`")


def content_hash(folder: Path) -> str:
    """First 16 hex digits of a sha256 over the folder's file names and contents."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def labels(experiment: str, run_id: str, record: RunRecord | None) -> dict[str, str]:
    """Model labels (lowercase letters, digits, '-' and '_', at most 63 characters)."""
    found = {"experiment": experiment, "run": run_id}
    if record is not None:
        found["preset"] = record.preset
        dataset_hash = str(record.dataset.get("content_hash") or "")
        if dataset_hash:
            found["dataset"] = dataset_hash
    return {key: value.lower()[:63] for key, value in found.items()}


def describe(run_id: str, experiment: str, record: RunRecord | None) -> str:
    """The model's description: the run, its latest metrics and its dataset."""
    if record is None:
        return f"run {run_id} of {experiment}; its metrics and dataset hash are read from its run.json at upload"
    metrics = record.metrics
    summary = metrics.get("summary", {})
    scores = ", ".join(f"{key} {summary[key]:.3f}" for key in ("AP", "AP50", "AP75") if key in summary)
    where = " ".join(f"{key} {metrics[key]}" for key in ("split", "step") if key in metrics)
    evaluated = f"{scores} ({where})" if scores else "not evaluated yet"
    dataset = record.dataset
    return (f"run {run_id} of {experiment}, preset {record.preset}: {evaluated}; dataset "
            f"{dataset.get('uri', 'unknown')} content hash {dataset.get('content_hash') or 'unknown'}")
