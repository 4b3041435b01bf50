"""Run records: a run's config, dataset hash, image digests, job names, times and latest metrics.

A Vertex AI run's record is ``runs/<run-id>/run.json`` in the experiment bucket (:class:`BucketRunStore`); a local
run's is ``run.json`` in its model dir, and its run id is that folder (:class:`ModelDirRunStore`). Writes are
conditional on the generation read (a new record only if none exists), so two launchers racing for the same run
cannot both win.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from jobs.errors import DetectorError, UsageError
from jobs.io import atomic_file
from jobs.metrics import MetricsJson
from jobs.runtime.spec import RUN_RECORD

if TYPE_CHECKING:
    from google.cloud.storage import Client


class RunConflict(DetectorError):
    """Another launcher changed the run record since it was read."""


class UnknownRun(UsageError):
    """No record of that run."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    run_id: str
    experiment: str  # the experiment stack, or "local"
    preset: str
    accelerator: str
    config: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)  # uri and content hash
    images: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {ref, digest}
    jobs: dict[str, str] = field(default_factory=dict)  # kind -> Vertex resource name, or local job name
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    metrics: MetricsJson = field(default_factory=dict)
    # kind -> {name, state, error, exit_code} of a local job that ended
    ended: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the run's model in the Vertex AI Model Registry (`models upload`): name, version, artifact_uri, image
    model: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        return cls(**json.loads(text))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


class RunStore(Protocol):
    where: str  # named in messages

    def load(self, run_id: str) -> tuple[RunRecord | None, int]:
        """The record and its generation (0 when there is none)."""
        ...

    def save(self, record: RunRecord, generation: int) -> int:
        """Write if the stored generation is still ``generation``; returns the new generation."""
        ...

    def list(self) -> list[RunRecord]: ...


def require(store: RunStore, run_id: str) -> tuple[RunRecord, int]:
    """The record of a run that must exist, and its generation."""
    record, generation = store.load(run_id)
    if record is None:
        raise UnknownRun(f"no run {run_id} in {store.where}: see `runs list`")
    return record, generation


def _conflict(record: RunRecord) -> RunConflict:
    return RunConflict(f"run {record.run_id} was changed by another launcher; look at it with "
                       f"`runs show {record.run_id}` and retry")


class BucketRunStore:
    """Run records under ``runs_prefix`` (``gs://bucket/runs``) with google-cloud-storage."""

    def __init__(self, runs_prefix: str, client: Client | None = None):
        from google.cloud.storage import Client

        from jobs.dataset.gcs import split_uri

        bucket, prefix = split_uri(runs_prefix)
        self.where = runs_prefix
        self.client = client or Client()
        self.bucket = self.client.bucket(bucket)
        self.prefix = prefix

    def load(self, run_id: str) -> tuple[RunRecord | None, int]:
        blob = self.bucket.get_blob(f"{self.prefix}/{run_id}/{RUN_RECORD}")
        if blob is None:
            return None, 0
        return RunRecord.from_json(blob.download_as_text()), int(blob.generation or 0)

    def save(self, record: RunRecord, generation: int) -> int:
        from google.api_core.exceptions import PreconditionFailed

        record.updated = now()
        blob = self.bucket.blob(f"{self.prefix}/{record.run_id}/{RUN_RECORD}")
        try:
            blob.upload_from_string(record.to_json(), content_type="application/json",
                                    if_generation_match=generation)
        except PreconditionFailed as err:
            raise _conflict(record) from err
        return int(blob.generation or generation + 1)

    def list(self) -> list[RunRecord]:
        records = [RunRecord.from_json(blob.download_as_text())
                   for blob in self.client.list_blobs(self.bucket, prefix=f"{self.prefix}/")
                   if blob.name.endswith(f"/{RUN_RECORD}")]
        return sorted(records, key=lambda r: r.created, reverse=True)


class ModelDirRunStore:
    """Local runs: ``<model dir>/run.json``, the run id being the model dir. The generation is a hash of the
    file's bytes; ``list`` finds the runs in ``root`` and in its sub-folders."""

    def __init__(self, root: Path = Path(".")):
        self.root = root
        self.where = "its model dir (a local run's id is its --model-dir)"

    def load(self, run_id: str) -> tuple[RunRecord | None, int]:
        text = self._read(Path(run_id) / RUN_RECORD)
        if text is None:
            return None, 0
        return self._record(text, run_id), _generation(text)

    def save(self, record: RunRecord, generation: int) -> int:
        path = Path(record.run_id) / RUN_RECORD
        current = self._read(path)
        if (0 if current is None else _generation(current)) != generation:
            raise _conflict(record)
        record.updated = now()
        text = record.to_json()
        with atomic_file(path, "w") as stream:
            stream.write(text)
        return _generation(text)

    def list(self) -> list[RunRecord]:
        paths = [self.root / RUN_RECORD, *sorted(self.root.glob(f"*/{RUN_RECORD}"))]
        records = [self._record(path.read_text(encoding="utf-8"), str(path.parent)) for path in paths
                   if path.is_file()]
        return sorted(records, key=lambda r: r.created, reverse=True)

    @staticmethod
    def _record(text: str, model_dir: str) -> RunRecord:
        """The record, named by the path it was found at (a model dir may have moved since it was written)."""
        record = RunRecord.from_json(text)
        record.run_id = model_dir
        return record

    @staticmethod
    def _read(path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None


def _generation(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big") or 1
