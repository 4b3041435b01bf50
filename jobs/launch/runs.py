"""Run records: one ``runs/<run-id>/run.json`` per run in the experiment bucket.

It holds the run's config, dataset hash, image digests, job resource names, times and final metrics. Writes
are conditional on the generation read (a new record only if none exists), so two launchers racing for the
same run id cannot both win.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from jobs.errors import DetectorError


class RunConflict(DetectorError):
    """Another launcher changed the run record since it was read."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    run_id: str
    experiment: str
    preset: str
    accelerator: str
    config: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)  # uri and content hash
    images: dict = field(default_factory=dict)  # name -> {ref, digest}
    jobs: dict = field(default_factory=dict)  # kind -> Vertex resource name (or local pid)
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    metrics: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        return cls(**json.loads(text))


class RunStore:
    """Run records under ``runs_prefix`` (``gs://bucket/runs``) with google-cloud-storage."""

    def __init__(self, runs_prefix: str, client=None):
        from google.cloud import storage

        from jobs.dataset.gcs import split_uri

        bucket, prefix = split_uri(runs_prefix)
        self.client = client or storage.Client()
        self.bucket = self.client.bucket(bucket)
        self.prefix = prefix

    def _blob(self, run_id: str):
        return self.bucket.blob(f"{self.prefix}/{run_id}/run.json")

    def load(self, run_id: str) -> tuple[RunRecord | None, int]:
        """The record and its generation (0 when there is none)."""
        blob = self.bucket.get_blob(f"{self.prefix}/{run_id}/run.json")
        if blob is None:
            return None, 0
        return RunRecord.from_json(blob.download_as_text()), int(blob.generation or 0)

    def save(self, record: RunRecord, generation: int) -> int:
        """Write if the stored generation is still ``generation``; returns the new generation."""
        from google.api_core.exceptions import PreconditionFailed

        record.updated = now()
        blob = self._blob(record.run_id)
        try:
            blob.upload_from_string(json.dumps(asdict(record), indent=2), content_type="application/json",
                                    if_generation_match=generation)
        except PreconditionFailed as err:
            raise RunConflict(f"run {record.run_id} was changed by another launcher; look at it with "
                              f"`runs show {record.run_id}` and retry") from err
        return int(blob.generation or generation + 1)

    def list(self) -> list[RunRecord]:
        records = []
        for blob in self.client.list_blobs(self.bucket, prefix=f"{self.prefix}/"):
            if blob.name.endswith("/run.json"):
                records.append(RunRecord.from_json(blob.download_as_text()))
        return sorted(records, key=lambda r: r.created, reverse=True)
