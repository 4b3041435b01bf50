"""Model commands: presets, train, evaluate, export, predict and the local demo."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from jobs.cli.app import app
from jobs.cli.cloud import StackFile, StackName, agreed, run_job, show_metrics
from jobs.console import console, errors, quiet_tensorflow, table
from jobs.errors import DataError, UsageError
from jobs.runtime.spec import EvalArgs, TrainArgs

if TYPE_CHECKING:
    from jobs.report.drawing import Detection


@app.command()
def presets() -> None:
    """List the registered model presets."""
    from jobs.presets import PRESETS

    rows = [[p.name, p.input_size, p.backbone.type, p.accelerator] for p in PRESETS.values()]
    console.print(table("presets", ["name", "px", "backbone", "accelerator"], rows))
    for p in PRESETS.values():
        console.print(f"[bold]{p.name}[/bold]: {p.description}. Starts from: {p.cloud_checkpoint or 'scratch'}",
                      highlight=False)


@app.command()
def train(
    preset: Annotated[str, typer.Option(help=TrainArgs.describe("preset"))],
    data: Annotated[str | None, typer.Option(help="prepared data: a folder (local) or gs:// / name (Vertex)")] = None,
    model_dir: Annotated[str | None, typer.Option(help="local: checkpoints; training resumes from here")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help=TrainArgs.describe("steps"))] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="global batch (Vertex: preset batch x cores)")] = None,
    init_checkpoint: Annotated[str | None, typer.Option(help=TrainArgs.describe("init_checkpoint"))] = None,
    device: Annotated[str, typer.Option(help="local: " + TrainArgs.describe("device"))] = "auto",
    seed: Annotated[int, typer.Option(help=TrainArgs.describe("seed") + " (a resumed run keeps its own)")] = 0,
    stack: StackName = None,
    stack_outputs: StackFile = None,
    backend: Annotated[str | None, typer.Option(help="local or vertex (default: vertex with a stack)")] = None,
    accelerator: Annotated[str | None, typer.Option(
        help="Vertex: tpu-v2-8, tpu-v3-8, tpu-v5e-N, gpu-…, cpu (default tpu-v5e-4)")] = None,
    spot: Annotated[bool, typer.Option(help="Vertex: Spot capacity (cheaper, can be preempted)")] = False,
    replicas: Annotated[int | None, typer.Option(
        min=1, help="Vertex GPU: workers (MultiWorkerMirroredStrategy; default 1)")] = None,
    run_id: Annotated[str | None, typer.Option(help="Vertex: run name (default preset + time)")] = None,
    timeout_hours: Annotated[float | None, typer.Option(min=0.1, help="Vertex: job timeout (default 24)")] = None,
    dry_run: Annotated[bool, typer.Option(help="print the job request (Vertex: the CustomJob); start nothing")]
    = False,
    yes: Annotated[bool, typer.Option(help="Vertex: launch without asking")] = False,
    local_docker: Annotated[bool, typer.Option(help="Vertex: build images with local Docker, not Cloud Build")]
    = False,
) -> None:
    """Train a RetinaNet from a preset: on this machine, or as a Vertex AI custom job of an experiment stack."""
    from jobs.launch.launcher import TrainOptions, launcher_for

    launcher = launcher_for(backend, stack, stack_outputs, local_docker)
    options = TrainOptions(TrainArgs(preset, data, model_dir, steps, batch_size, init_checkpoint, seed, device),
                           accelerator, replicas, spot, run_id, timeout_hours, yes)
    run_job(launcher, launcher.plan_training(options), dry_run, yes, f"training {preset}")


@app.command()
def evaluate(
    model_dir: Annotated[str | None, typer.Option(help=EvalArgs.describe("model_dir"))] = None,
    data: Annotated[str | None, typer.Option(help=EvalArgs.describe("data"))] = None,
    continuous: Annotated[bool, typer.Option(help=EvalArgs.describe("continuous"))] = False,
    model: Annotated[str | None, typer.Option(help=EvalArgs.describe("model"))] = None,
    split: Annotated[str, typer.Option(help=EvalArgs.describe("split"))] = "val",
    score_threshold: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="for P, R, the confusion matrix and the images (default: best F1)")] = None,
    stack: StackName = None,
    stack_outputs: StackFile = None,
    backend: Annotated[str | None, typer.Option(help="local or vertex (default: vertex with a stack)")] = None,
    run: Annotated[str | None, typer.Option(help="Vertex: the run to evaluate continuously")] = None,
    accelerator: Annotated[str | None, typer.Option(help="Vertex: gpu-t4-1 (default), gpu-l4-1, …")] = None,
    spot: Annotated[bool, typer.Option(help="Vertex: Spot capacity")] = False,
    dry_run: Annotated[bool, typer.Option(help="print the job request (Vertex: the CustomJob); start nothing")]
    = False,
    yes: Annotated[bool, typer.Option(help="Vertex: launch without asking")] = False,
) -> None:
    """COCO metrics of the latest checkpoint on the validation split (or a GPU evaluation job for a Vertex run)."""
    from jobs.launch.launcher import EvalOptions, launcher_for

    launcher = launcher_for(backend, stack, stack_outputs)
    options = EvalOptions(EvalArgs(model_dir, model, data, split, score_threshold, continuous), run, accelerator,
                          spot, yes)
    run_job(launcher, launcher.plan_evaluation(options), dry_run, yes, "evaluating")


@app.command()
def export(
    model_dir: Annotated[str, typer.Option(help="a model dir written by `train`")],
    out: Annotated[str, typer.Option(help="export folder (new, empty or an earlier export: replaced as a whole)")],
    model_format: Annotated[str, typer.Option(
        "--format", help="saved_model (uint8 images of any size), tflite or tflite-int8 (preprocessed input)",
    )] = "saved_model",
) -> None:
    """Export the latest checkpoint as a SavedModel or a TFLite model (float or int8), with model.json."""
    quiet_tensorflow()
    from jobs.runtime.export import export_model

    with console.status(f"exporting {model_format}"):
        info = export_model(model_dir, out, model_format)
    console.print(f"exported step {info['step']} of {info['preset']} as {model_format} to {out}")


@app.command()
def predict(
    images: Annotated[list[Path] | None, typer.Argument(
        help="image files, folders of images, video files (with --model or --endpoint)")] = None,
    model: Annotated[Path | None, typer.Option(help="an export folder (any format)")] = None,
    endpoint: Annotated[str | None, typer.Option(
        help="a Vertex AI endpoint instead of --model (with --stack): its id, resource name or display name")]
    = None,
    preset: Annotated[str | None, typer.Option(
        help="with --endpoint: images are shrunk to this preset's input size (default: the deployed models' "
             "preset label)")] = None,
    stack: StackName = None,
    stack_outputs: StackFile = None,
    out: Annotated[Path | None, typer.Option(
        help="annotated copies, detections.csv and .json go here (new, empty or earlier predictions: replaced)")]
    = None,
    score_threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="detections below it are dropped")] = 0.3,
    every: Annotated[float, typer.Option(min=0.01, help="seconds between the video frames sampled")] = 1.0,
    batch: Annotated[bool, typer.Option(
        "--batch", help="a Vertex AI batch prediction job of the run's registered model over --images (with --stack "
                        "and --run); --out gets detections.csv and .json")] = False,
    run: Annotated[str | None, typer.Option(help="with --batch: the run whose model (`models upload`) predicts")]
    = None,
    images_uri: Annotated[str | None, typer.Option(
        "--images", help="with --batch: a gs://BUCKET/folder/ of images (its subfolders too)")] = None,
    machine_type: Annotated[str, typer.Option(help="with --batch: the prediction machine type")] = "n1-standard-4",
    max_replicas: Annotated[int, typer.Option(min=1, help="with --batch: most machines at once")] = 1,
    dry_run: Annotated[bool, typer.Option(help="with --batch: print the job request and contact nothing")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="with --batch: start without asking")] = False,
) -> None:
    """Detect objects in images and videos with an export or a Vertex AI endpoint; print a table, draw boxes on
    copies, write the detections. With --batch: a Vertex AI batch prediction job over a gs:// folder."""
    from jobs.io import check_output_folder
    from jobs.runtime.predict import KIND, Detector, predict_paths

    if batch:
        if model or endpoint or preset or images:
            raise UsageError("--batch takes --images gs://BUCKET/folder/ and --run, not --model, --endpoint, "
                             "--preset or image files")
        if not run or not images_uri:
            raise UsageError("--batch needs --run RUN (its registered model) and --images gs://BUCKET/folder/")
        _predict_batch(stack, stack_outputs, run, images_uri, out, score_threshold, machine_type, max_replicas,
                       dry_run, yes)
        return
    if run or images_uri or dry_run or yes:
        raise UsageError("--run, --images, --dry-run and --yes go with --batch")
    if (model is None) == (endpoint is None):
        raise UsageError("give one of --model EXPORT (this machine) or --endpoint ID (Vertex AI, with --stack)")
    if model is not None and (preset or stack or stack_outputs):
        raise UsageError("--preset, --stack and --stack-outputs go with --endpoint, not with --model")
    if not images:
        raise UsageError("give image files, folders of images or video files to predict on")
    if out is not None:
        check_output_folder(out, KIND, [model, *images])  # before the model loads
    predictor: Detector
    if model is not None:
        quiet_tensorflow()
        from jobs.runtime.predict import Predictor

        predictor = Predictor(model)
    else:
        from jobs.launch.predictions import EndpointPredictor
        from jobs.stack import load_stack_outputs

        predictor = EndpointPredictor(load_stack_outputs(stack, stack_outputs), str(endpoint), preset)
        console.print(f"endpoint {predictor.endpoint}: images shrunk to fit {predictor.input_size} px", highlight=False)
    with console.status("detecting"):
        result = predict_paths(predictor, images, out, score_threshold, every)
    _show_detections(result.detections)
    if out:
        console.print(f"annotated images, detections.csv and detections.json in {out}")
    for unreadable in result.unreadable:
        errors.print(f"[yellow]skipped[/yellow] {escape(str(unreadable))}", highlight=False)
    if result.unreadable:
        raise DataError(f"{len(result.unreadable)} of {result.files} files could not be read (listed above); "
                        "the others were predicted")


def _show_detections(found: list[Detection]) -> None:
    shown = 50  # all of them are in detections.csv
    rows = [[Path(d.image).name + ("" if d.frame is None else f" #{d.frame}"), d.label, d.score,
             f"{d.xmin:.0f},{d.ymin:.0f},{d.xmax:.0f},{d.ymax:.0f}"] for d in found[:shown]]
    console.print(table("detections", ["image", "class", "score", "box (px)"], rows or [["-", "-", None, "-"]]))
    if len(found) > shown:
        console.print(f"… and {len(found) - shown} more")


def _predict_batch(stack: str | None, stack_outputs: Path | None, run: str, images: str, out: Path | None,
                   score_threshold: float, machine_type: str, max_replicas: int, dry_run: bool, yes: bool) -> None:
    """``predict --batch``: plan, (ask,) start, follow, gather (jobs.launch.batch)."""
    import json

    from jobs.io import check_output_folder, staged_dir
    from jobs.launch.batch import BatchJobs, follow, gather, plan_batch, progress, start_batch
    from jobs.runtime.predict import KIND, write_detections
    from jobs.stack import load_stack_outputs

    outputs = load_stack_outputs(stack, stack_outputs)
    plan = plan_batch(outputs, run, images, machine_type, max_replicas)
    console.print(plan.summary(), highlight=False)
    if dry_run:
        console.print_json(json.dumps(plan.request()))
        return
    if out is not None:
        check_output_folder(out, KIND)
    if not agreed(yes, "start the batch job"):
        raise typer.Exit(1)
    from google.cloud.storage import Client

    from jobs.launch.runs import BucketRunStore

    storage = Client(project=outputs.project)
    jobs = BatchJobs(outputs)
    started = start_batch(plan, BucketRunStore(outputs.runs_prefix, storage), storage, jobs)
    console.print(f"started {started.name} ({started.model}) on {len(started.images)} images", highlight=False)
    with console.status("batch job") as status:
        ended = follow(jobs, started.name,
                       lambda job: status.update(f"batch job {progress(job, len(started.images))}"))
    console.print(f"batch job {progress(ended, len(started.images))}", highlight=False)
    gathered = gather(storage, ended, started.images, score_threshold)
    _show_detections(gathered.detections)
    if out is not None:
        with staged_dir(out, KIND) as stage:
            write_detections(gathered.detections, stage)
        console.print(f"detections.csv and detections.json of {gathered.predicted} images in {out}", highlight=False)
    for error in gathered.errors:
        errors.print(f"[yellow]no prediction[/yellow] {escape(error)}", highlight=False)
    if gathered.errors:
        raise DataError(f"{len(gathered.errors)} of {len(started.images)} images have no prediction (listed above)")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="everything goes here")] = Path("demo-output"),
    steps: Annotated[int, typer.Option(min=1, help="training steps")] = 600,
    images: Annotated[int, typer.Option(min=20, help="synthetic images to draw")] = 300,
) -> None:
    """Synthetic shapes -> prepare -> train -> evaluate -> export -> predict, all on this machine."""
    quiet_tensorflow()
    from jobs.demo import run_demo

    result = run_demo(out, steps, images, console=console)
    show_metrics(result.metrics, str(result.paths["evaluation report"]))
    rows = [[name, str(path)] for name, path in result.paths.items()]
    console.print(table("demo outputs", ["what", "where"], rows))
