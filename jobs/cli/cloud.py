"""Run and image commands (``runs list|show|logs|cancel`` for local and Vertex AI runs, ``images build``), and what
``train`` and ``evaluate`` share with them: a plan shown and launched, a local job followed, metrics on screen."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from jobs.cli.app import app
from jobs.console import console, errors, progress_bar, table

if TYPE_CHECKING:
    from jobs.launch.launcher import Confirm, Launcher, Plan
    from jobs.metrics import MetricsJson
    from jobs.runtime.spec import ProgressEvent

images_app = typer.Typer(help="Build the trainer and evaluator images (once per content hash).",
                         no_args_is_help=True)
runs_app = typer.Typer(help="Runs, local (a model dir) or of an experiment stack: state, metrics, logs.",
                       no_args_is_help=True)
app.add_typer(images_app, name="images")
app.add_typer(runs_app, name="runs")

StackName = Annotated[str | None, typer.Option("--stack", help="experiment stack (read with the Pulumi CLI)")]
StackFile = Annotated[Path | None, typer.Option("--stack-outputs", help="JSON of `pulumi stack output --json`")]
RunId = Annotated[str, typer.Argument(help="a run of the stack, or a local run's model dir")]


def launcher(stack: str | None, stack_outputs: Path | None, runs_dir: Path | None = None) -> Launcher:
    from jobs.launch.launcher import launcher_for

    return launcher_for(stack=stack, stack_outputs=stack_outputs, runs_dir=runs_dir)


def confirmer(yes: bool) -> Confirm:
    """Show the plan and its price, then ask (unless --yes); without a terminal, --yes is required."""

    def confirm(plan: Plan) -> bool:
        show_plan(plan)
        return agreed(yes, "launch")

    return confirm


def agreed(yes: bool, action: str) -> bool:
    """Whether to go on with something billable: --yes, or the user's answer; without a terminal, --yes is
    required."""
    if yes:
        return True
    if not sys.stdin.isatty():
        console.print(f"not a terminal: pass --yes to {action}")
        return False
    return typer.confirm(f"{action}?", default=False)


def show_plan(plan: Plan) -> None:
    cost = plan.cost()
    if cost is None:
        console.print(plan.summary(), highlight=False)
        return
    hourly = (f"price unknown (no price kept for: {', '.join(cost.unknown)}; the rest: ${cost.known_hourly:.2f}/h)"
              if cost.hourly is None else f"${cost.hourly:.2f}/h")
    ceiling = ("" if cost.ceiling is None
               else f", at most ${cost.ceiling:.0f} if it runs to its {cost.hours:g} h timeout")
    console.print(f"{plan.summary()}; {hourly}{ceiling}", highlight=False)
    console.print(f"  prices: {cost.source}", style="dim", highlight=False)


def run_job(launcher: Launcher, plan: Plan, dry_run: bool, yes: bool, description: str) -> None:
    """``--dry-run``: the plan and the exact request. Else launch it: a Vertex AI job is submitted and left
    running; a local one runs here, its output and progress on the terminal (its failure: JobFailed)."""
    from jobs.launch.backends import Watch

    if dry_run:
        show_plan(plan)
        console.print_json(json.dumps(plan.request()))
        return
    with TerminalWatch(description) as watch:
        launched = launcher.launch(plan, confirmer(yes), Watch(watch.event, watch.line, watch.error))
    if launched.image:
        console.print(f"{'built' if launched.image.built else 'reused'} image {launched.image.ref}")
    job = launched.job
    if job.live:
        console.print(f"submitted {job.name} ({job.state})")
        console.print(f"console: {job.console_url}")
        console.print(f"follow: python -m jobs runs show {plan.run_id}")


class TerminalWatch:
    """A local job on the terminal: its lines as they come (its stderr on stderr), a progress bar drawn from its
    progress events, and the metrics of each evaluation it writes."""

    def __init__(self, description: str):
        self.description = description
        self._bar = ExitStack()
        self._update: Callable[..., None] | None = None

    def __enter__(self) -> TerminalWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()

    def event(self, event: ProgressEvent) -> None:
        if event.stage == "evaluated":
            self._bar.close()
            self._update = None
            assert event.path is not None  # an "evaluated" event names the folder it wrote (jobs.runtime.evaluate)
            show_evaluation(event.path)
            return
        if self._update is None:
            self._update = self._bar.enter_context(progress_bar(self.description))
        self._update(event.done, event.total, **({} if event.loss is None else {"loss": event.loss}))

    def line(self, text: str) -> None:
        if text.strip():
            console.print(text, highlight=False, markup=False)

    def error(self, text: str) -> None:
        if text.strip():
            errors.print(text, highlight=False, markup=False)


def show_evaluation(eval_dir: str) -> None:
    """The metrics of the evaluation written to ``eval_dir`` (a folder here, or gs://)."""
    from jobs.dataset.gcs import read_text

    path = f"{eval_dir}/metrics.json"
    text = read_text(path) if eval_dir.startswith("gs://") else Path(path).read_text(encoding="utf-8")
    if text is not None:
        show_metrics(json.loads(text), f"{eval_dir}/report.html")


def show_metrics(metrics: MetricsJson, report: str) -> None:
    """An evaluation's per-class table, threshold, COCO numbers and comparison with the float checkpoint."""
    from jobs.metrics import COCO_KEYS
    from jobs.report import tables

    title = f"{tables.model_label(metrics)}, {metrics['split']} split"
    console.print(table(title, tables.CLASS_COLUMNS, tables.class_rows(metrics), tables.total_row(metrics)))
    console.print(tables.threshold_note(metrics), highlight=False)
    console.print("COCO: " + "  ".join(f"{key} {metrics['summary'][key]:.3f}" for key in COCO_KEYS),
                  highlight=False)
    comparison = tables.comparison_rows(metrics)
    if comparison:
        console.print(table("against the float checkpoint", tables.COMPARISON_COLUMNS, comparison))
    console.print(f"report: {report}", highlight=False)


@images_app.command("build")
def images_build(
    stack: StackName = None,
    stack_outputs: StackFile = None,
    local_docker: Annotated[bool, typer.Option(help="build with the local Docker engine, not Cloud Build")] = False,
    image: Annotated[list[str] | None, typer.Option(
        help="trainer, evaluator, dataflow-worker (data prepare --engine dataflow), serving (models upload); "
             "default trainer and evaluator")]
    = None,
) -> None:
    """Build and push the images whose content-hash tag is not in the registry yet."""
    from jobs.launch.session import CloudSession
    from jobs.stack import load_stack_outputs

    cloud = CloudSession.connect(load_stack_outputs(stack, stack_outputs), local_docker)
    rows = []
    for name in image or ["trainer", "evaluator"]:
        with console.status(f"{name}: checking the registry, building if needed"):
            ref = cloud.image(name)
        rows.append([name, ref.ref, "built" if ref.built else "already there", ref.digest])
    console.print(table("images", ["image", "reference", "action", "digest"], rows))


@runs_app.command("list")
def runs_list(stack: StackName = None, stack_outputs: StackFile = None,
              runs_dir: Annotated[Path | None, typer.Option(
                  help="local runs: the model dirs in this folder (default: the current folder)")] = None) -> None:
    """Every run with its training state and latest metrics: of the stack, or the local model dirs in a folder."""
    rows = []
    for run in launcher(stack, stack_outputs, runs_dir).runs():
        record, train = run.record, run.jobs.get("train")
        state = train.state.removeprefix("JOB_STATE_") if train else "-"
        rows.append([record.run_id, record.preset, record.accelerator, state, record.created,
                     record.metrics.get("summary", {}).get("AP")])
    console.print(table("runs", ["run", "preset", "accelerator", "train", "created", "AP"], rows))


@runs_app.command("show")
def runs_show(run_id: RunId, stack: StackName = None, stack_outputs: StackFile = None) -> None:
    """A run's record, its jobs' states (and console links), and its latest evaluation."""
    run = launcher(stack, stack_outputs).status(run_id)
    rows = [[kind, info.state.removeprefix("JOB_STATE_"), info.console_url or None, info.error or None]
            for kind, info in run.jobs.items()]
    console.print(table(f"run {run_id}", ["job", "state", "console", "error"], rows))
    if run.metrics:
        show_metrics(run.metrics, f"{run.eval_dir}/report.html")
    console.print_json(json.dumps({k: v for k, v in vars(run.record).items() if k != "metrics"}))


@runs_app.command("logs")
def runs_logs(run_id: RunId, stack: StackName = None, stack_outputs: StackFile = None,
              job: Annotated[str, typer.Option(help="train or evaluate")] = "train",
              limit: Annotated[int, typer.Option(min=1, help="the last N lines")] = 200) -> None:
    """The last log lines of one of the run's jobs (Cloud Logging, or the local job's log in its model dir)."""
    for line in launcher(stack, stack_outputs).logs(run_id, job, limit):
        console.print(line, highlight=False, markup=False)


@runs_app.command("cancel")
def runs_cancel(run_id: RunId, stack: StackName = None, stack_outputs: StackFile = None) -> None:
    """Cancel the run's live jobs."""
    cancelled = launcher(stack, stack_outputs).cancel(run_id)
    for info in cancelled:
        console.print(f"cancelling {info.name} ({info.state})")
    if not cancelled:
        console.print(f"run {run_id} has no live job")


@app.command("doctor")
def doctor(stack: StackName = None, stack_outputs: StackFile = None,
           accelerator: Annotated[str | None, typer.Option(
               help="the accelerator whose training image and quota to check (default: train's default)")] = None,
           ) -> None:
    """What a Vertex AI launch would fail on: credentials, stack outputs, APIs, permissions, images, data, quota.
    Each failed check (✗) comes with the command that fixes it; exits 1 when one fails."""
    from rich.table import Table

    from jobs.launch.doctor import Status, diagnose
    from jobs.launch.vertex import DEFAULT_TRAIN_ACCELERATOR
    from jobs.stack import load_stack_outputs

    source = f"--stack {stack}" if stack else f"--stack-outputs {stack_outputs}"
    with console.status("checking"):
        checks = diagnose(lambda: load_stack_outputs(stack, stack_outputs), source,
                          accelerator or DEFAULT_TRAIN_ACCELERATOR)
    view = Table(title="doctor", title_justify="left")
    for column in ("", "check", "result", "fix"):
        view.add_column(column, overflow="fold")
    colours = {Status.OK: "green", Status.FAILED: "red", Status.NOT_CHECKED: "yellow"}
    for check in checks:
        view.add_row(f"[{colours[check.status]}]{check.status.value}[/]", check.name, escape(check.detail),
                     escape(check.fix))
    console.print(view)
    if any(check.failed for check in checks):
        raise typer.Exit(1)
