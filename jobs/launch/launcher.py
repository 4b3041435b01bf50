"""Plan, check and launch training and evaluation runs of an experiment stack.

Planning needs nothing but the stack outputs (``--dry-run`` contacts nothing). Before submitting, the checks
catch what Vertex AI would reject late: accelerator not offered in the stack's region, a batch that does not
split over the cores and replicas, data or image missing, and a run id that already has a live job.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from jobs.dataset.gcs import split_uri
from jobs.errors import DetectorError, UsageError
from jobs.launch.accelerators import AVAILABILITY_AS_OF, PRICES_AS_OF, Accelerator, get_accelerator
from jobs.launch.backends import Backend, JobInfo
from jobs.launch.builders import ImageRef
from jobs.launch.jobspec import RUN_ID, JobSpec, image_for
from jobs.launch.runs import RunRecord, RunStore
from jobs.presets import get_preset
from jobs.stack import StackOutputs


class PreflightError(DetectorError):
    """The job would fail or be rejected; nothing was submitted."""


class DuplicateRun(DetectorError):
    """The run id already has a live job; a second one is not started."""


@dataclass(frozen=True)
class TrainOptions:
    preset: str
    accelerator: str
    replicas: int = 1
    spot: bool = False
    steps: int | None = None
    batch_size: int | None = None
    run_id: str | None = None
    data: str | None = None  # gs:// URI, or a folder name under the stack's data prefix
    init_checkpoint: str | None = None  # default: the preset's Model Garden checkpoint
    timeout_hours: float = 24.0
    seed: int = 0


@dataclass(frozen=True)
class Plan:
    run_id: str
    spec: JobSpec
    data_uri: str
    model_dir: str
    base_output_dir: str
    config: dict = field(default_factory=dict)

    def cost(self) -> Cost:
        hourly = self.spec.accelerator.hourly(self.spec.spot, self.spec.replicas)
        hours = self.spec.timeout_s / 3600
        return Cost(hourly, None if hourly is None else hourly * hours, hours)


@dataclass(frozen=True)
class Cost:
    hourly: float | None
    ceiling: float | None  # if the job ran until its timeout
    hours: float
    source: str = PRICES_AS_OF


def default_run_id(preset: str, at: datetime | None = None) -> str:
    stamp = (at or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{preset.removeprefix('retinanet-')}-{stamp}"


def resolve_data(stack: StackOutputs, data: str | None) -> str:
    if data is None:
        return stack.data_uri()
    return data.rstrip("/") if data.startswith("gs://") else stack.data_uri(data.strip("/"))


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


def plan_training(stack: StackOutputs, options: TrainOptions) -> Plan:
    preset = get_preset(options.preset)
    accelerator = get_accelerator(options.accelerator)
    run_id = options.run_id or default_run_id(preset.name)
    if not RUN_ID.match(run_id):
        raise UsageError(f"run id {run_id!r}: use lowercase letters, digits and '-', starting with a letter, "
                         "at most 50 characters")
    batch = options.batch_size or preset.batch_size * accelerator.cores * options.replicas
    check_placement(accelerator, stack.region, options.replicas, batch)
    steps = options.steps or preset.steps
    data_uri = resolve_data(stack, options.data)
    model_dir = stack.checkpoint_uri(run_id)
    init = options.init_checkpoint if options.init_checkpoint is not None else preset.cloud_checkpoint
    args = ["--data", data_uri, "--preset", preset.name, "--model-dir", model_dir, "--steps", str(steps),
            "--batch-size", str(batch), "--device", accelerator.device, "--seed", str(options.seed)]
    if init:
        args += ["--init-checkpoint", init]
    labels = {"experiment": stack.experiment, "run": run_id, "preset": preset.name, "kind": "train"}
    spec = JobSpec("train", image_for("train", accelerator), tuple(args), accelerator, options.replicas, options.spot,
                   int(options.timeout_hours * 3600), labels, f"{stack.experiment}-{run_id}-train")
    config = {"preset": preset.name, "accelerator": accelerator.name, "replicas": options.replicas,
              "spot": options.spot, "steps": steps, "batch_size": batch, "init_checkpoint": init,
              "timeout_hours": options.timeout_hours, "seed": options.seed, "model_dir": model_dir}
    return Plan(run_id, spec, data_uri, model_dir, stack.run_uri(run_id), config)


def local_training(preset: str, data: str, model_dir: str, steps: int | None, batch_size: int | None,
                   init_checkpoint: str | None, device: str, seed: int = 0) -> JobSpec:
    """The trainer entrypoint's job on this machine: the same arguments a Vertex job gets."""
    args = ["--data", data, "--preset", get_preset(preset).name, "--model-dir", model_dir, "--device", device,
            "--seed", str(seed)]
    for flag, value in (("--steps", steps), ("--batch-size", batch_size), ("--init-checkpoint", init_checkpoint)):
        if value is not None:
            args += [flag, str(value)]
    return JobSpec("train", "trainer", tuple(args), get_accelerator("cpu"), display_name=f"local-{preset}")


def plan_evaluation(stack: StackOutputs, record: RunRecord, accelerator_name: str, spot: bool = False,
                    timeout_hours: float = 24.0) -> Plan:
    accelerator = get_accelerator(accelerator_name)
    check_placement(accelerator, stack.region, 1, accelerator.cores)
    model_dir = record.config["model_dir"]
    data_uri = record.dataset["uri"]
    args = ("--model-dir", model_dir, "--data", data_uri, "--continuous")
    labels = {"experiment": stack.experiment, "run": record.run_id, "preset": record.preset, "kind": "evaluate"}
    spec = JobSpec("evaluate", image_for("evaluate", accelerator), args, accelerator, 1, spot,
                   int(timeout_hours * 3600), labels, f"{stack.experiment}-{record.run_id}-evaluate")
    return Plan(record.run_id, spec, data_uri, model_dir, stack.run_uri(record.run_id),
                {"accelerator": accelerator.name, "spot": spot})


def dataset_summary(storage_client, data_uri: str) -> dict:
    """``dataset.json`` of the prepared data in the bucket; a PreflightError when it is not there."""
    bucket, prefix = split_uri(data_uri)
    blob = storage_client.bucket(bucket).get_blob(f"{prefix}/dataset.json".lstrip("/"))
    if blob is None:
        raise PreflightError(f"no prepared data at {data_uri} (dataset.json missing): run "
                             f"`python -m jobs data prepare … --out {data_uri}` first")
    return json.loads(blob.download_as_text())


def guard_live(backend: Backend, record: RunRecord | None, kind: str) -> None:
    if record is None or kind not in record.jobs:
        return
    info = backend.get(record.jobs[kind])
    if info.live:
        raise DuplicateRun(f"run {record.run_id} already has a live {kind} job {info.name} ({info.state}); "
                           f"follow it with `runs show {record.run_id}`, or cancel it with `runs cancel "
                           f"{record.run_id}` before launching again")


def launch(plan: Plan, stack: StackOutputs, backend: Backend, store: RunStore, image: ImageRef,
           dataset: dict) -> tuple[RunRecord, JobInfo]:
    """Submit the planned job once per run id, and record it in ``runs/<run-id>/run.json``."""
    record, generation = store.load(plan.run_id)
    guard_live(backend, record, plan.spec.kind)
    if record is None:
        if plan.spec.kind != "train":
            raise PreflightError(f"no run {plan.run_id} in {stack.runs_prefix}: see `runs list`")
        record = RunRecord(plan.run_id, stack.experiment, plan.config["preset"], plan.spec.accelerator.name)
    if plan.spec.kind == "train":
        record.config = plan.config
        record.dataset = {"uri": plan.data_uri, "content_hash": dataset.get("content_hash"),
                          "classes": [c["name"] for c in dataset.get("classes", [])]}
    record.images[image.name] = {"ref": image.ref, "digest": image.digest}
    generation = store.save(record, generation)  # claims the run id before anything is submitted
    info = backend.submit(plan.spec, image.ref, plan.base_output_dir)
    record.jobs[plan.spec.kind] = info.name
    store.save(record, generation)
    return record, info


def job_id(name: str) -> str:
    match = re.search(r"customJobs/(\d+)$", name)
    return match.group(1) if match else name
