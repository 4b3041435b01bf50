"""The local launcher: the job's entrypoint as a subprocess of this interpreter, followed in the foreground.

A run is its model dir: its record (``run.json``) and each job's output (``<kind>-job.log``) are kept there, so
``runs list|show|logs|cancel`` work for local runs as for Vertex AI ones. A model dir in ``gs://``, and an export
being evaluated, have no record: their job runs all the same.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jobs.launch.backends import JobInfo, LocalBackend, Watch
from jobs.launch.jobspec import JobSpec
from jobs.launch.launcher import (
    Confirm,
    Cost,
    EvalOptions,
    JobFailed,
    Launched,
    Plan,
    RunStatus,
    TrainOptions,
    all_runs,
    cancel_jobs,
    guard_live,
    job_name,
    record_end,
    refuse,
    run_status,
    start,
    vertex_only,
)
from jobs.launch.logs import file_logs
from jobs.launch.runs import ModelDirRunStore, RunRecord
from jobs.metrics import MetricsJson
from jobs.presets import get_preset
from jobs.runtime.spec import EVAL_DIR, TrainArgs, job_log, preflight_resume

VERTEX_ONLY = "Vertex AI options; give --stack to run on Vertex AI"


@dataclass(frozen=True)
class LocalPlan:
    run_id: str | None  # the model dir, where it is a local folder
    spec: JobSpec

    def summary(self) -> str:
        args = self.spec.args
        if isinstance(args, TrainArgs):
            return f"{self.spec.kind} {args.model_dir} on this machine (--device {args.device})"
        return f"{self.spec.kind} {args.model_dir or args.model} on this machine"

    def cost(self) -> Cost | None:
        return None

    def request(self) -> dict[str, Any]:
        return {"command": [sys.executable, *self.spec.command[1:]], "run": self.run_id}


class LocalLauncher:
    backend = "local"

    def __init__(self, root: Path = Path("."), backend: LocalBackend | None = None):
        self.store = ModelDirRunStore(root)
        self.jobs = backend or LocalBackend()

    def plan_training(self, options: TrainOptions) -> LocalPlan:
        refuse(self.backend, vertex_only(options), VERTEX_ONLY)
        args = options.args.check()
        get_preset(args.preset)
        return LocalPlan(_recorded(args.model_dir), JobSpec(args))

    def plan_evaluation(self, options: EvalOptions) -> LocalPlan:
        refuse(self.backend, vertex_only(options), VERTEX_ONLY)
        args = options.args.check()
        return LocalPlan(_recorded(args.model_dir), JobSpec(args))

    def launch(self, plan: Plan, confirm: Confirm | None = None, watch: Watch | None = None) -> Launched:
        """Run the job here until it ends; JobFailed unless it succeeds (nothing is charged: ``confirm`` is not
        asked)."""
        assert isinstance(plan, LocalPlan)  # a launcher launches the plans it made (launcher_for gives one)
        args, kind = plan.spec.args, plan.spec.kind
        if isinstance(args, TrainArgs):  # a resume with other settings fails here, before TensorFlow loads
            assert args.data and args.model_dir  # TrainArgs.check (plan_training) requires both
            preflight_resume(args.preset, args.data, args.model_dir, args.batch_size)
        record, generation = self.store.load(plan.run_id) if plan.run_id else (None, 0)
        guard_live(self.jobs, record, kind)
        if isinstance(args, TrainArgs) and plan.run_id:
            record = _train_record(record, plan.run_id, args)
        # a record's run id is plan.run_id: it was loaded or made for it
        if record is None:
            info = self.jobs.submit(plan.spec, "", "")
        else:
            info = start(self.jobs, self.store, plan, record, generation, "", record.run_id)
        try:
            info = self.jobs.follow(info.name, watch or Watch())
        except BaseException:
            if record is not None:
                record_end(self.store, record.run_id, kind, JobInfo(info.name, "JOB_STATE_CANCELLED",
                                                                    error="its launcher was interrupted"), None)
            raise
        if record is not None:
            record_end(self.store, record.run_id, kind, info,
                       _latest_metrics(_eval_dir_of(record.run_id)) if kind == "evaluate" else None)
        if not info.succeeded:
            raise JobFailed(kind, info)
        return Launched(plan, info)

    def status(self, run_id: str) -> RunStatus:
        return run_status(self.jobs, self.store, run_id, _model_dir, _eval_dir, _latest_metrics)

    def runs(self) -> list[RunStatus]:
        return all_runs(self.jobs, self.store, _model_dir, _eval_dir)

    def logs(self, run_id: str, kind: str, limit: int) -> Iterator[str]:
        job_name(self.store, run_id, kind)
        return file_logs(Path(run_id) / job_log(kind), limit)

    def cancel(self, run_id: str) -> list[JobInfo]:
        return cancel_jobs(self.jobs, self.store, run_id)


def _recorded(model_dir: str | None) -> str | None:
    """The run id of a job on a model dir: the folder, where it is local."""
    return model_dir if model_dir and "://" not in model_dir else None


def _train_record(record: RunRecord | None, model_dir: str, args: TrainArgs) -> RunRecord:
    """A new run's record, or a resumed one's with the settings of this launch."""
    record = record or RunRecord(model_dir, "local", args.preset, f"this machine ({args.device})")
    record.config = asdict(args)
    data = args.data
    assert data is not None  # TrainArgs.check (plan_training) requires it
    dataset = Path(data) / "dataset.json"
    if "://" not in data and dataset.is_file():
        summary = json.loads(dataset.read_text(encoding="utf-8"))
        record.dataset = {"uri": data, "content_hash": summary.get("content_hash"),
                          "classes": [c["name"] for c in summary.get("classes", [])]}
    else:
        record.dataset = {"uri": data}
    return record


def _model_dir(record: RunRecord) -> str:
    return record.run_id  # the folder it was found in now


def _eval_dir(record: RunRecord) -> str:
    return _eval_dir_of(record.run_id)


def _eval_dir_of(model_dir: str) -> str:
    """A local run's evaluations: ``<model dir>/eval`` (the evaluator's default)."""
    return str(Path(model_dir) / EVAL_DIR)


def _latest_metrics(eval_dir: str) -> MetricsJson | None:
    path = Path(eval_dir) / "metrics.json"
    if "://" in eval_dir or not path.is_file():
        return None
    metrics: MetricsJson = json.loads(path.read_text(encoding="utf-8"))
    return metrics
