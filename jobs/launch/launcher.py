"""Launching jobs: one :class:`Launcher` interface, on this machine or on Vertex AI, chosen by ``launcher_for``.

A launcher plans a job from what the user asked (``plan_training``, ``plan_evaluation``; ``plan.request()`` is
exactly what would be started), launches it once its checks pass (the run record is claimed first, then the job
started and recorded), and reports on runs: their jobs' states and latest metrics, their logs, cancelling them.
A flag that the chosen backend cannot honour is refused (exit 2) with the flag and the backend named.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from jobs.errors import DetectorError, UsageError
from jobs.launch.backends import Backend, JobInfo, Watch
from jobs.launch.builders import ImageRef
from jobs.launch.jobspec import JobSpec
from jobs.launch.runs import RunRecord, RunStore, require
from jobs.metrics import MetricsJson
from jobs.runtime.spec import EvalArgs, TrainArgs, flag

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class PreflightError(DetectorError):
    """The job would fail or be rejected; nothing was submitted."""


class DuplicateRun(DetectorError):
    """The run already has a live job of that kind; a second one is not started."""


class Declined(DetectorError):
    """The user did not confirm the launch."""


class UnsupportedFlag(UsageError):
    """A flag that the chosen backend cannot honour."""


class JobFailed(DetectorError):
    """A job run on this machine did not succeed; its output, shown as it ran, says why. The exit code is the
    job's (2: it refused its arguments)."""

    def __init__(self, kind: str, info: JobInfo):
        super().__init__(f"the {kind} job {info.state.removeprefix('JOB_STATE_').lower()} ({info.error}); "
                         "its output above says why")
        self.exit_code = info.exit_code if info.exit_code and info.exit_code > 0 else 1


@dataclass(frozen=True)
class TrainOptions:
    """What ``train`` was asked for: the trainer's arguments, and (every other field) how to run it on Vertex AI."""

    args: TrainArgs
    accelerator: str | None = None  # default: vertex.DEFAULT_TRAIN_ACCELERATOR
    replicas: int | None = None  # default 1
    spot: bool = False
    run_id: str | None = None  # default: the preset and the time
    timeout_hours: float | None = None  # default: vertex.DEFAULT_TIMEOUT_HOURS
    yes: bool = False  # launch without asking


@dataclass(frozen=True)
class EvalOptions:
    """What ``evaluate`` was asked for: the evaluator's arguments, and (every other field) the Vertex AI job."""

    args: EvalArgs
    run: str | None = None  # the run to follow
    accelerator: str | None = None  # default: vertex.DEFAULT_EVAL_ACCELERATOR
    spot: bool = False
    yes: bool = False


@dataclass(frozen=True)
class Cost:
    hourly: float | None  # the whole bill per hour; None where the price of a part is unknown
    ceiling: float | None  # if the job ran until its timeout
    hours: float
    source: str
    unknown: tuple[str, ...] = ()  # the parts of the bill with no price kept
    known_hourly: float = 0.0  # what the parts with a price add up to, per hour


class Plan(Protocol):
    """A job ready to launch; planning has no side effects."""

    @property
    def run_id(self) -> str | None:
        """None: the job belongs to no recorded run (an export evaluated on this machine)."""
        ...

    @property
    def spec(self) -> JobSpec: ...

    def summary(self) -> str: ...

    def cost(self) -> Cost | None:
        """What the job would cost at most; None on this machine."""
        ...

    def request(self) -> dict[str, Any]:
        """Exactly what would be started (the CustomJob request, or the command line): ``--dry-run``."""
        ...


Confirm = Callable[[Plan], bool]  # asked once the checks pass, before a billable job is started


@dataclass(frozen=True)
class Launched:
    plan: Plan
    job: JobInfo  # live for a Vertex AI job; succeeded for a local one, which ran in the foreground
    image: ImageRef | None = None  # the image a Vertex AI job runs


@dataclass(frozen=True)
class RunStatus:
    record: RunRecord
    jobs: dict[str, JobInfo]  # kind -> its job now
    metrics: MetricsJson | None  # the latest evaluation
    model_dir: str  # its checkpoints
    eval_dir: str  # its evaluations: metrics.json, report.html, … (<model dir>/eval here, runs/RUN/eval on Vertex)


class Launcher(Protocol):
    backend: str  # "local" or "vertex", named in messages

    def plan_training(self, options: TrainOptions) -> Plan: ...

    def plan_evaluation(self, options: EvalOptions) -> Plan: ...

    def launch(self, plan: Plan, confirm: Confirm | None = None, watch: Watch | None = None) -> Launched:
        """Check, then start the job once per run. ``plan`` is one this launcher planned. ``confirm`` is asked
        before a billable job (None: start without asking); ``watch`` sees a local job's output as it runs
        (JobFailed if it does not succeed)."""
        ...

    def status(self, run_id: str) -> RunStatus: ...

    def runs(self) -> list[RunStatus]: ...

    def logs(self, run_id: str, kind: str, limit: int) -> Iterator[str]: ...

    def cancel(self, run_id: str) -> list[JobInfo]:
        """Stop the run's live jobs; their states once asked."""
        ...


def launcher_for(backend: str | None = None, stack: str | None = None, stack_outputs: Path | None = None,
                 local_docker: bool = False, runs_dir: Path | None = None) -> Launcher:
    """The one place that chooses: Vertex AI for an experiment stack (``--stack``, ``--stack-outputs``), else this
    machine; ``backend`` forces one. Nothing is contacted here."""
    chosen = backend or ("vertex" if stack or stack_outputs else "local")
    if chosen == "local":
        from jobs.launch.local import LocalLauncher

        refuse("local", given({"stack": stack, "stack_outputs": stack_outputs, "local_docker": local_docker}),
               "an experiment stack and its images are for Vertex AI jobs")
        return LocalLauncher(runs_dir or Path("."))
    if chosen == "vertex":
        from jobs.launch.vertex import VertexLauncher
        from jobs.stack import load_stack_outputs

        refuse("vertex", given({"runs_dir": runs_dir}), "it lists local runs; the stack's bucket holds these")
        return VertexLauncher(load_stack_outputs(stack, stack_outputs), local_docker=local_docker)
    raise UsageError(f"--backend {backend}: choose local or vertex")


def given(values: dict[str, object]) -> list[str]:
    """The flags of the values that were given (not None, not False)."""
    return [flag(name) for name, value in values.items() if value is not None and value is not False]


def changed(options: DataclassInstance, names: tuple[str, ...] | None = None) -> list[str]:
    """The flags of a dataclass's fields (all, or ``names``) that differ from their defaults."""
    return [flag(item.name) for item in fields(options) if (names is None or item.name in names)
            and getattr(options, item.name) != item.default]


def refuse(backend: str, flags: list[str], reason: str) -> None:
    """A UsageError (exit 2) naming the flags that ``backend`` cannot honour, if any were given."""
    if flags:
        them = "it" if len(flags) == 1 else "them"
        raise UnsupportedFlag(f"{', '.join(flags)}: the {backend} backend cannot honour {them} ({reason}); "
                              f"remove {them}")


def vertex_only(options: TrainOptions | EvalOptions) -> list[str]:
    """The Vertex AI fields of the options that were given (every field but the job's arguments)."""
    return changed(options, tuple(item.name for item in fields(options) if item.name != "args"))


def job_state(backend: Backend, record: RunRecord, kind: str) -> JobInfo:
    """The run's ``kind`` job now: how it ended where its launcher recorded that (a local job), else asked."""
    name = record.jobs[kind]
    ended = record.ended.get(kind)
    if ended and ended["name"] == name:
        return JobInfo(**ended)
    return backend.get(name)


def guard_live(backend: Backend, record: RunRecord | None, kind: str) -> None:
    if record is None or kind not in record.jobs:
        return
    info = job_state(backend, record, kind)
    if info.live:
        raise DuplicateRun(f"run {record.run_id} already has a live {kind} job {info.name} ({info.state}); "
                           f"follow it with `runs show {record.run_id}`, or cancel it with `runs cancel "
                           f"{record.run_id}` before launching again")


def start(backend: Backend, store: RunStore, plan: Plan, record: RunRecord, generation: int, image_uri: str,
          base_output_dir: str) -> JobInfo:
    """Claim the run (its record saved before anything starts), start the job, record its name."""
    generation = store.save(record, generation)
    info = backend.submit(plan.spec, image_uri, base_output_dir)
    record.jobs[plan.spec.kind] = info.name
    record.ended.pop(plan.spec.kind, None)
    store.save(record, generation)
    return info


def record_end(store: RunStore, run_id: str, kind: str, info: JobInfo, metrics: MetricsJson | None) -> None:
    """Note how a local job ended (and an evaluation's metrics), on the record as it is now: ``runs show`` may
    have written it meanwhile."""
    record, generation = require(store, run_id)
    record.ended[kind] = asdict(info)
    if metrics:
        record.metrics = metrics
    store.save(record, generation)


DirOf = Callable[[RunRecord], str]  # where a run's checkpoints, or its evaluations, are
MetricsIn = Callable[[str], MetricsJson | None]  # the latest evaluation in an eval dir (its metrics.json)


def run_status(backend: Backend, store: RunStore, run_id: str, model_dir_of: DirOf, eval_dir_of: DirOf,
               latest: MetricsIn) -> RunStatus:
    """The run's jobs now and its latest evaluation, copied into the record as it comes."""
    record, generation = require(store, run_id)
    jobs = {kind: job_state(backend, record, kind) for kind in record.jobs}
    eval_dir = eval_dir_of(record)
    metrics = latest(eval_dir)
    if metrics and metrics.get("step") != record.metrics.get("step"):
        record.metrics = metrics
        store.save(record, generation)
    return RunStatus(record, jobs, metrics or record.metrics or None, model_dir_of(record), eval_dir)


def all_runs(backend: Backend, store: RunStore, model_dir_of: DirOf, eval_dir_of: DirOf) -> list[RunStatus]:
    """Every run with its jobs now and the metrics its record holds."""
    return [RunStatus(record, {kind: job_state(backend, record, kind) for kind in record.jobs},
                      record.metrics or None, model_dir_of(record), eval_dir_of(record)) for record in store.list()]


def job_name(store: RunStore, run_id: str, kind: str) -> str:
    record, _ = require(store, run_id)
    if kind not in record.jobs:
        raise UsageError(f"run {run_id} has no {kind} job (it has: {', '.join(record.jobs) or 'none'})")
    return record.jobs[kind]


def cancel_jobs(backend: Backend, store: RunStore, run_id: str) -> list[JobInfo]:
    record, _ = require(store, run_id)
    cancelled = []
    for kind in record.jobs:
        info = job_state(backend, record, kind)
        if info.live and info.state != "JOB_STATE_CANCELLING":
            cancelled.append(backend.cancel(info.name))
    return cancelled
