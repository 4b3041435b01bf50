"""The cloud side of one experiment stack: Vertex AI, its bucket, the registry, the image builder.

``CloudSession.connect`` is the one place that builds the real clients; tests build a session whose clients
point at local servers. ``train`` and ``evaluate`` are what the CLI calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jobs.errors import DetectorError
from jobs.launch.backends import JobInfo, VertexBackend
from jobs.launch.builders import Builder, CloudBuilder, ImageRef, LocalDockerBuilder, ensure_image
from jobs.launch.launcher import (
    Plan,
    PreflightError,
    TrainOptions,
    dataset_summary,
    guard_live,
    launch,
    plan_evaluation,
    plan_training,
)
from jobs.launch.registry import Registry
from jobs.launch.runs import RunRecord, RunStore
from jobs.stack import StackOutputs

Confirm = Callable[[Plan], bool]


class Declined(DetectorError):
    """The user did not confirm the launch."""

    exit_code = 1


@dataclass
class CloudSession:
    stack: StackOutputs
    backend: VertexBackend
    store: RunStore
    storage: object  # google.cloud.storage.Client
    registry: Registry
    builder: Builder

    @classmethod
    def connect(cls, stack: StackOutputs, local_docker: bool = False) -> CloudSession:
        from google.cloud import storage

        client = storage.Client(project=stack.project)
        builder = LocalDockerBuilder() if local_docker else CloudBuilder(stack, storage_client=client)
        return cls(stack, VertexBackend(stack), RunStore(stack.runs_prefix, client), client, Registry(), builder)

    def image(self, name: str) -> ImageRef:
        return ensure_image(self.stack, name, self.builder, self.registry)

    def train(self, options: TrainOptions, confirm: Confirm) -> tuple[Plan, RunRecord, JobInfo, ImageRef]:
        plan = plan_training(self.stack, options)
        dataset = dataset_summary(self.storage, plan.data_uri)
        guard_live(self.backend, self.store.load(plan.run_id)[0], "train")
        if not confirm(plan):
            raise Declined("not launched")
        image = self.image(plan.spec.image)
        record, info = launch(plan, self.stack, self.backend, self.store, image, dataset)
        return plan, record, info, image

    def evaluate(self, run_id: str, accelerator: str, spot: bool, confirm: Confirm
                 ) -> tuple[Plan, RunRecord, JobInfo, ImageRef]:
        record, _ = self.store.load(run_id)
        if record is None:
            raise PreflightError(f"no run {run_id} in {self.stack.runs_prefix}: see `runs list`")
        plan = plan_evaluation(self.stack, record, accelerator, spot)
        guard_live(self.backend, record, "evaluate")
        if not confirm(plan):
            raise Declined("not launched")
        image = self.image(plan.spec.image)
        record, info = launch(plan, self.stack, self.backend, self.store, image, {})
        return plan, record, info, image

    def status(self, run_id: str) -> tuple[RunRecord, dict[str, JobInfo], dict | None]:
        """The run's jobs now, and its latest evaluation; the metrics are copied into run.json as they come."""
        record, generation = self.store.load(run_id)
        if record is None:
            raise PreflightError(f"no run {run_id} in {self.stack.runs_prefix}: see `runs list`")
        jobs = {kind: self.backend.get(name) for kind, name in record.jobs.items()}
        metrics = self._latest_metrics(record.config.get("model_dir", ""))
        if metrics and metrics.get("step") != record.metrics.get("step"):
            record.metrics = metrics
            self.store.save(record, generation)
        return record, jobs, metrics or record.metrics or None

    def _latest_metrics(self, model_dir: str) -> dict | None:
        import json

        from jobs.dataset.gcs import split_uri

        bucket, prefix = split_uri(model_dir)
        blob = self.storage.bucket(bucket).get_blob(f"{prefix}/eval/metrics.json") if bucket else None
        return json.loads(blob.download_as_text()) if blob else None

    def cancel(self, run_id: str) -> list[JobInfo]:
        record, _ = self.store.load(run_id)
        if record is None:
            raise PreflightError(f"no run {run_id} in {self.stack.runs_prefix}: see `runs list`")
        cancelled = []
        for name in record.jobs.values():
            info = self.backend.get(name)
            if info.live and info.state != "JOB_STATE_CANCELLING":
                self.backend.cancel(name)
                cancelled.append(self.backend.get(name))
        return cancelled
