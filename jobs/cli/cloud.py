"""Cloud commands: ``images build`` and ``runs list|show|logs|cancel``, and the Vertex side of train/evaluate."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from jobs.cli.app import app
from jobs.console import console, table

images_app = typer.Typer(help="Build the trainer and evaluator images (once per content hash).",
                         no_args_is_help=True)
runs_app = typer.Typer(help="Runs of an experiment stack: state, console link, metrics, logs.",
                       no_args_is_help=True)
app.add_typer(images_app, name="images")
app.add_typer(runs_app, name="runs")

StackName = Annotated[str | None, typer.Option("--stack", help="experiment stack (read with the Pulumi CLI)")]
StackFile = Annotated[Path | None, typer.Option("--stack-outputs", help="JSON of `pulumi stack output --json`")]


def load_stack(stack: str | None, stack_outputs: Path | None):
    from jobs.stack import load_stack_outputs

    return load_stack_outputs(stack, stack_outputs)


def session(stack: str | None, stack_outputs: Path | None, local_docker: bool = False):
    from jobs.launch.session import CloudSession

    return CloudSession.connect(load_stack(stack, stack_outputs), local_docker)


def confirmer(yes: bool):
    """Show the plan and its price, then ask (unless --yes); without a terminal, --yes is required."""

    def confirm(plan) -> bool:
        show_plan(plan)
        if yes:
            return True
        if not sys.stdin.isatty():
            console.print("not a terminal: pass --yes to launch")
            return False
        return typer.confirm("launch?", default=False)

    return confirm


def show_plan(plan) -> None:
    cost = plan.cost()
    spec = plan.spec
    hourly = "unknown (no price kept)" if cost.hourly is None else f"${cost.hourly:.2f}/h"
    ceiling = ("" if cost.ceiling is None
               else f", at most ${cost.ceiling:.0f} if it runs to its {cost.hours:g} h timeout")
    console.print(f"run [bold]{plan.run_id}[/bold]: {spec.kind} on {spec.accelerator.name} x{spec.replicas}"
                  f"{' (Spot)' if spec.spot else ''}; {hourly}{ceiling}", highlight=False)
    console.print(f"  prices: {cost.source}", style="dim", highlight=False)


def request_json(plan, stack) -> str:
    from google.cloud.aiplatform_v1 import types

    from jobs.launch.context import build_context
    from jobs.launch.jobspec import custom_job

    image = stack.image(plan.spec.image, build_context(plan.spec.image).tag)
    job = custom_job(plan.spec, stack, image, plan.base_output_dir)
    body = json.loads(types.CustomJob.to_json(job, use_integers_for_enums=False,
                                              always_print_fields_with_no_presence=False))
    return json.dumps({"parent": f"projects/{stack.project}/locations/{stack.region}", "customJob": body}, indent=2)


def train_on_vertex(stack: str | None, stack_outputs: Path | None, options, dry_run: bool, yes: bool,
                    local_docker: bool) -> None:
    from jobs.launch.launcher import plan_training

    if dry_run:
        outputs = load_stack(stack, stack_outputs)
        plan = plan_training(outputs, options)
        show_plan(plan)
        console.print_json(request_json(plan, outputs))
        return
    plan, record, info, image = session(stack, stack_outputs, local_docker).train(options, confirmer(yes))
    _show_launch(plan, info, image)


def evaluate_on_vertex(stack: str | None, stack_outputs: Path | None, run_id: str, accelerator: str, spot: bool,
                       dry_run: bool, yes: bool) -> None:
    if dry_run:
        from jobs.launch.launcher import plan_evaluation

        cloud = session(stack, stack_outputs)
        record, _ = cloud.store.load(run_id)
        if record is None:
            raise typer.BadParameter(f"no run {run_id}")
        plan = plan_evaluation(cloud.stack, record, accelerator, spot)
        show_plan(plan)
        console.print_json(request_json(plan, cloud.stack))
        return
    plan, record, info, image = session(stack, stack_outputs).evaluate(run_id, accelerator, spot, confirmer(yes))
    _show_launch(plan, info, image)


def _show_launch(plan, info, image) -> None:
    console.print(f"{'built' if image.built else 'reused'} image {image.ref}")
    console.print(f"submitted {info.name} ({info.state})")
    console.print(f"console: {info.console_url}")
    console.print(f"follow: python -m jobs runs show {plan.run_id}")


def show_metrics(metrics: dict, report: str) -> None:
    """An evaluation's per-class table, threshold, COCO numbers and comparison with the float checkpoint."""
    from jobs.metrics import COCO_KEYS
    from jobs.report import tables

    title = f"{tables.model_label(metrics)}, {metrics['split']} split"
    console.print(table(title, tables.CLASS_COLUMNS, tables.class_rows(metrics), total=tables.total_row(metrics)))
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
    image: Annotated[list[str] | None, typer.Option(help="trainer and/or evaluator (default both)")] = None,
) -> None:
    """Build and push the images whose content-hash tag is not in the registry yet."""
    cloud = session(stack, stack_outputs, local_docker)
    rows = []
    for name in image or ["trainer", "evaluator"]:
        with console.status(f"{name}: checking the registry, building if needed"):
            ref = cloud.image(name)
        rows.append([name, ref.ref, "built" if ref.built else "already there", ref.digest])
    console.print(table("images", ["image", "reference", "action", "digest"], rows))


@runs_app.command("list")
def runs_list(stack: StackName = None, stack_outputs: StackFile = None) -> None:
    """Every run of the experiment with its training state and latest metrics."""
    cloud = session(stack, stack_outputs)
    rows = []
    for record in cloud.store.list():
        state = cloud.backend.get(record.jobs["train"]).state.removeprefix("JOB_STATE_") if "train" in record.jobs \
            else "-"
        ap = record.metrics.get("summary", {}).get("AP")
        rows.append([record.run_id, record.preset, record.accelerator, state, record.created, ap])
    console.print(table(f"runs of {cloud.stack.experiment}", ["run", "preset", "accelerator", "train", "created",
                                                              "AP"], rows))


@runs_app.command("show")
def runs_show(run_id: str, stack: StackName = None, stack_outputs: StackFile = None) -> None:
    """A run's record, its jobs' states and console links, and its latest evaluation."""
    record, jobs, metrics = session(stack, stack_outputs).status(run_id)
    rows = [[kind, info.state.removeprefix("JOB_STATE_"), info.console_url, info.error] for kind, info in jobs.items()]
    console.print(table(f"run {run_id}", ["job", "state", "console", "error"], rows))
    if metrics:
        console.print(table("latest evaluation", ["metric", "value"],
                            [["step", metrics.get("step")]] + [[k, v] for k, v in metrics["summary"].items()]))
    console.print_json(json.dumps({k: v for k, v in vars(record).items() if k != "metrics"}))


@runs_app.command("logs")
def runs_logs(run_id: str, stack: StackName = None, stack_outputs: StackFile = None,
              job: Annotated[str, typer.Option(help="train or evaluate")] = "train",
              limit: Annotated[int, typer.Option(min=1)] = 200) -> None:
    """The last log lines of one of the run's jobs, from Cloud Logging."""
    from jobs.launch.launcher import job_id
    from jobs.launch.logs import job_logs

    cloud = session(stack, stack_outputs)
    record, _ = cloud.store.load(run_id)
    if record is None or job not in record.jobs:
        raise typer.BadParameter(f"run {run_id} has no {job} job")
    for line in job_logs(cloud.stack, job_id(record.jobs[job]), limit):
        console.print(line, highlight=False, markup=False)


@runs_app.command("cancel")
def runs_cancel(run_id: str, stack: StackName = None, stack_outputs: StackFile = None) -> None:
    """Cancel the run's live jobs."""
    cancelled = session(stack, stack_outputs).cancel(run_id)
    for info in cancelled:
        console.print(f"cancelling {info.name} ({info.state})")
    if not cancelled:
        console.print(f"run {run_id} has no live job")
