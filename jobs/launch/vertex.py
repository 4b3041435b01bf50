"""The Vertex AI launcher: custom jobs of an experiment stack, their images, run records in its bucket.

Planning needs nothing but the stack outputs (``--dry-run`` contacts nothing: an evaluation's plan names the run
record that its launch will read). Before submitting, the checks catch what Vertex AI would reject late:
accelerator not offered in the stack's region, a batch that does not split over the cores and replicas, data,
image or the evaluated run missing, and a run id that already has a live job.

A run keeps its checkpoints under the stack's ``checkpoints/RUN`` (which the bucket expires) and everything else
under ``runs/RUN/``: its record, and its evaluations in ``runs/RUN/eval``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobs.dataset.gcs import split_uri
from jobs.errors import UsageError
from jobs.launch.accelerators import AVAILABILITY_AS_OF, PRICES_AS_OF, Accelerator, get_accelerator
from jobs.launch.backends import JobInfo, Watch
from jobs.launch.jobspec import RUN_ID, JobSpec, custom_job, image_for, vertex_parent
from jobs.launch.launcher import (
    Confirm,
    Cost,
    Declined,
    EvalOptions,
    Launched,
    Plan,
    PreflightError,
    RunStatus,
    TrainOptions,
    all_runs,
    cancel_jobs,
    changed,
    guard_live,
    job_name,
    refuse,
    run_status,
    start,
)
from jobs.launch.logs import job_logs
from jobs.launch.runs import RunRecord, require
from jobs.launch.session import CloudSession
from jobs.metrics import MetricsJson
from jobs.presets import get_preset
from jobs.runtime.spec import EVAL_DIR, RUN_RECORD, EvalArgs
from jobs.stack import StackOutputs

if TYPE_CHECKING:
    from google.cloud.storage import Client

DEFAULT_TRAIN_ACCELERATOR = "tpu-v5e-4"
DEFAULT_EVAL_ACCELERATOR = "gpu-t4-1"
DEFAULT_TIMEOUT_HOURS = 24.0


@dataclass(frozen=True)
class VertexPlan:
    run_id: str
    spec: JobSpec
    stack: StackOutputs
    data_uri: str | None  # None: an evaluation of the data the run trained on (its experiment.json says which)
    model_dir: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def accelerator(self) -> Accelerator:
        assert self.spec.accelerator is not None  # every Vertex AI job has one
        return self.spec.accelerator

    @property
    def base_output_dir(self) -> str:
        return self.stack.run_uri(self.run_id)

    def summary(self) -> str:
        where = ""
        if isinstance(self.spec.args, EvalArgs):
            where = (f", following {self.model_dir} into {self.spec.args.eval_dir} (the launch first reads "
                     f"{self.stack.run_uri(self.run_id, RUN_RECORD)})")
        return (f"run {self.run_id}: {self.spec.kind} on {self.accelerator.name} x{self.spec.replicas}"
                f"{' (Spot)' if self.spec.spot else ''}{where}")

    def cost(self) -> Cost:
        price = self.accelerator.hourly(self.spec.spot, self.spec.replicas)
        hours = self.spec.timeout_s / 3600
        return Cost(price.total, None if price.total is None else price.total * hours, hours, PRICES_AS_OF,
                    price.unknown, price.known)

    def request(self) -> dict[str, Any]:
        """The ``CreateCustomJob`` request, REST field and enum names, with the tag of the current source."""
        from google.cloud.aiplatform_v1 import types

        from jobs.launch.context import build_context

        image = self.stack.image(self.spec.image, build_context(self.spec.image).tag)
        job = custom_job(self.spec, self.stack, image, self.base_output_dir)
        body = json.loads(types.CustomJob.to_json(job, use_integers_for_enums=False,
                                                  always_print_fields_with_no_presence=False))
        return {"parent": vertex_parent(self.stack), "customJob": body}


class VertexLauncher:
    """Clients are connected on first use (``session``, or ``CloudSession.connect``): planning a training
    contacts nothing."""

    backend = "vertex"

    def __init__(self, stack: StackOutputs, session: CloudSession | None = None, local_docker: bool = False):
        self.stack = stack
        self._session = session
        self._local_docker = local_docker

    @property
    def cloud(self) -> CloudSession:
        if self._session is None:
            self._session = CloudSession.connect(self.stack, self._local_docker)
        return self._session

    def plan_training(self, options: TrainOptions) -> VertexPlan:
        refuse(self.backend, changed(options.args, ("model_dir", "device")),
               "the checkpoints go to the stack's bucket and the device follows --accelerator")
        stack, args = self.stack, options.args
        preset = get_preset(args.preset)
        accelerator = get_accelerator(options.accelerator or DEFAULT_TRAIN_ACCELERATOR)
        replicas = options.replicas or 1
        timeout_hours = options.timeout_hours or DEFAULT_TIMEOUT_HOURS
        run_id = options.run_id or default_run_id(preset.name)
        if not RUN_ID.match(run_id):
            raise UsageError(f"run id {run_id!r}: use lowercase letters, digits and '-', starting with a letter, "
                             "at most 50 characters")
        batch = args.batch_size or preset.batch_size * accelerator.cores * replicas
        check_placement(accelerator, stack.region, replicas, batch)
        steps = args.steps or preset.steps
        data_uri = resolve_data(stack, args.data)
        model_dir = stack.checkpoint_uri(run_id)
        init = args.init_checkpoint if args.init_checkpoint is not None else preset.cloud_checkpoint
        job = replace(args, preset=preset.name, data=data_uri, model_dir=model_dir, steps=steps, batch_size=batch,
                      init_checkpoint=init or None, device=accelerator.device).check()
        labels = {"experiment": stack.experiment, "run": run_id, "preset": preset.name, "kind": "train"}
        spec = JobSpec(job, image_for("train", accelerator), accelerator, replicas, options.spot,
                       int(timeout_hours * 3600), labels, f"{stack.experiment}-{run_id}-train")
        config = {"preset": preset.name, "accelerator": accelerator.name, "replicas": replicas,
                  "spot": options.spot, "steps": steps, "batch_size": batch, "init_checkpoint": init,
                  "timeout_hours": timeout_hours, "seed": args.seed, "model_dir": model_dir}
        return VertexPlan(run_id, spec, stack, data_uri, model_dir, config)

    def plan_evaluation(self, options: EvalOptions) -> VertexPlan:
        """A GPU job that follows the run's checkpoints and writes its evaluations to the run's results
        (``runs/RUN/eval``, kept when the checkpoints expire). Planned from the stack outputs alone: the launch
        checks the run's record."""
        refuse(self.backend, changed(options.args, ("model_dir", "model", "eval_dir")),
               "a Vertex AI evaluation follows a run of the stack into its results: give --run")
        if not options.run:
            raise UsageError("--run: which run of the stack to evaluate (see `runs list`)")
        run_id = options.run
        if not RUN_ID.match(run_id):
            raise UsageError(f"--run {run_id}: not a run id of the stack (see `runs list`)")
        accelerator = get_accelerator(options.accelerator or DEFAULT_EVAL_ACCELERATOR)
        check_placement(accelerator, self.stack.region, 1, accelerator.cores)
        model_dir = self.stack.checkpoint_uri(run_id)  # where plan_training puts every run's checkpoints
        data_uri = resolve_data(self.stack, options.args.data) if options.args.data else None
        eval_dir = self.stack.run_uri(run_id, EVAL_DIR)
        # The evaluator waits for the run and for each checkpoint as long as its training job may run, so a Spot
        # gap does not end it before the last checkpoint: the default timeout here, the run's own once its record
        # is read at launch (planning contacts nothing); a --timeout given wins.
        timeout_s = int(DEFAULT_TIMEOUT_HOURS * 3600)
        given = changed(options.args, ("timeout",))
        wait = options.args.timeout if given else float(timeout_s)
        job = replace(options.args, model_dir=model_dir, data=data_uri, continuous=True, eval_dir=eval_dir,
                      timeout=wait).check()
        labels = {"experiment": self.stack.experiment, "run": run_id, "kind": "evaluate"}
        spec = JobSpec(job, image_for("evaluate", accelerator), accelerator, 1, options.spot,
                       timeout_s, labels, f"{self.stack.experiment}-{run_id}-evaluate")
        return VertexPlan(run_id, spec, self.stack, data_uri, model_dir,
                          {"accelerator": accelerator.name, "spot": options.spot, "eval_dir": eval_dir,
                           "follows_training_timeout": not given})

    def launch(self, plan: Plan, confirm: Confirm | None = None, watch: Watch | None = None) -> Launched:
        """Submit the planned job once per run id, recorded in ``runs/<run-id>/run.json``. (``watch`` sees nothing:
        the job runs remotely; follow it with ``status`` and ``logs``.)"""
        assert isinstance(plan, VertexPlan)  # a launcher launches the plans it made (launcher_for gives one)
        cloud, kind, data_uri = self.cloud, plan.spec.kind, plan.data_uri
        if kind == "evaluate":  # the run exists, its checkpoints where this stack puts them
            followed, _ = require(cloud.store, plan.run_id)
            check_followed(followed, plan)
            data_uri = data_uri or followed.dataset.get("uri")
            plan = following_training_timeout(plan, followed)
        if cloud.preflight is not None:  # credentials, launch permissions, image, data (jobs.launch.doctor)
            cloud.preflight(plan.spec.image, data_uri)
        dataset: dict[str, Any] = {}
        if kind == "train":
            assert plan.data_uri is not None  # plan_training resolves the data; only an evaluation may have none
            dataset = dataset_summary(cloud.storage, plan.data_uri)
        guard_live(cloud.backend, cloud.store.load(plan.run_id)[0], kind)
        if confirm is not None and not confirm(plan):
            raise Declined("not launched")
        image = cloud.image(plan.spec.image)  # may take minutes: the record is read again after
        if kind == "train":
            found, generation = cloud.store.load(plan.run_id)
            guard_live(cloud.backend, found, kind)
            record = found or RunRecord(plan.run_id, self.stack.experiment, plan.config["preset"],
                                        plan.accelerator.name)
            record.config = plan.config
            record.dataset = {"uri": plan.data_uri, "content_hash": dataset.get("content_hash"),
                              "classes": [c["name"] for c in dataset.get("classes", [])]}
        else:
            record, generation = require(cloud.store, plan.run_id)
            guard_live(cloud.backend, record, kind)
        record.images[image.name] = {"ref": image.ref, "digest": image.digest}
        info = start(cloud.backend, cloud.store, plan, record, generation, image.ref, plan.base_output_dir)
        return Launched(plan, info, image)

    def status(self, run_id: str) -> RunStatus:
        return run_status(self.cloud.backend, self.cloud.store, run_id, _model_dir, self._eval_dir,
                          self._latest_metrics)

    def runs(self) -> list[RunStatus]:
        return all_runs(self.cloud.backend, self.cloud.store, _model_dir, self._eval_dir)

    def logs(self, run_id: str, kind: str, limit: int) -> Iterator[str]:
        return job_logs(self.stack, job_id(job_name(self.cloud.store, run_id, kind)), limit)

    def cancel(self, run_id: str) -> list[JobInfo]:
        return cancel_jobs(self.cloud.backend, self.cloud.store, run_id)

    def _eval_dir(self, record: RunRecord) -> str:
        """A run's evaluations: ``runs/RUN/eval``, beside its record (its checkpoints expire, these stay)."""
        return self.stack.run_uri(record.run_id, EVAL_DIR)

    def _latest_metrics(self, eval_dir: str) -> MetricsJson | None:
        bucket, prefix = split_uri(eval_dir)
        blob = self.cloud.storage.bucket(bucket).get_blob(f"{prefix}/metrics.json") if bucket else None
        if not blob:
            return None
        metrics: MetricsJson = json.loads(blob.download_as_text())
        return metrics


def _model_dir(record: RunRecord) -> str:
    model_dir: str = record.config.get("model_dir", "")
    return model_dir


def default_run_id(preset: str, at: datetime | None = None) -> str:
    stamp = (at or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{preset.removeprefix('retinanet-')}-{stamp}"


def resolve_data(stack: StackOutputs, data: str | None) -> str:
    if data is None:
        return stack.data_uri()
    return data.rstrip("/") if data.startswith("gs://") else stack.data_uri(data.strip("/"))


def following_training_timeout(plan: VertexPlan, record: RunRecord) -> VertexPlan:
    """An evaluation plan whose wait and job timeout are the followed run's training timeout, unless --timeout
    was given."""
    hours = record.config.get("timeout_hours")
    if not plan.config.get("follows_training_timeout") or not isinstance(hours, (int, float)):
        return plan
    evaluator = plan.spec.args
    assert isinstance(evaluator, EvalArgs)  # an evaluation plan runs the evaluator
    timeout_s = int(hours * 3600)
    args = replace(evaluator, timeout=float(timeout_s))
    return replace(plan, spec=replace(plan.spec, args=args, timeout_s=timeout_s))


def check_followed(record: RunRecord, plan: VertexPlan) -> None:
    """An evaluation follows the checkpoints where the run's training put them."""
    recorded = record.config.get("model_dir")
    if recorded != plan.model_dir:
        raise PreflightError(f"run {plan.run_id} keeps its checkpoints in {recorded or 'no recorded model dir'}, "
                             f"not in {plan.model_dir} where this stack puts a run's: evaluate it with the stack "
                             "it was trained with")


def check_placement(accelerator: Accelerator, region: str, replicas: int, batch_size: int) -> None:
    if region not in accelerator.regions:
        raise PreflightError(f"{accelerator.name} is not offered for Vertex AI training in {region} (table of "
                             f"{AVAILABILITY_AS_OF}); it is in: {', '.join(sorted(accelerator.regions))}. Use an "
                             "experiment stack in one of those regions (`pulumi config set gcp:region …`).")
    if not 1 <= replicas <= accelerator.max_replicas:
        raise PreflightError(f"{accelerator.name} takes 1 to {accelerator.max_replicas} replica(s), not {replicas}"
                             + (" (Vertex TPU jobs have exactly one worker)" if accelerator.device == "tpu" else ""))
    shards = accelerator.cores * replicas
    if batch_size % shards:
        raise PreflightError(f"batch size {batch_size} does not split over the {shards} cores/replicas of "
                             f"{accelerator.name} x{replicas}; use a multiple of {shards}")


def dataset_summary(storage_client: Client, data_uri: str) -> dict[str, Any]:
    """``dataset.json`` of the prepared data in the bucket; a PreflightError when it is not there."""
    bucket, prefix = split_uri(data_uri)
    blob = storage_client.bucket(bucket).get_blob(f"{prefix}/dataset.json".lstrip("/"))
    if blob is None:
        raise PreflightError(f"no prepared data at {data_uri} (dataset.json missing): run "
                             f"`python -m jobs data prepare … --out {data_uri}` first")
    summary: dict[str, Any] = json.loads(blob.download_as_text())
    return summary


def job_id(name: str) -> str:
    match = re.search(r"customJobs/(\d+)$", name)
    return match.group(1) if match else name
