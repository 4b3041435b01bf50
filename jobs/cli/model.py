"""Model commands: presets, train, evaluate, export, predict and the local demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from jobs.cli.app import app
from jobs.cli.cloud import StackFile, StackName, evaluate_on_vertex, show_metrics, train_on_vertex
from jobs.console import console, errors, progress_bar, quiet_tensorflow, table
from jobs.errors import DataError
from jobs.runtime.spec import PROGRESS_PREFIX


@app.command()
def presets() -> None:
    """List the registered model presets."""
    from jobs.presets import PRESETS

    rows = [[p.name, p.input_size, p.backbone.type, p.accelerator] for p in PRESETS.values()]
    console.print(table("presets", ["name", "px", "backbone", "accelerator"], rows))
    for p in PRESETS.values():
        console.print(f"[bold]{p.name}[/bold]: {p.description}. Cloud init: {p.cloud_checkpoint or 'from scratch'}",
                      highlight=False)


@app.command()
def train(
    preset: Annotated[str, typer.Option(help="see `presets`")],
    data: Annotated[str | None, typer.Option(help="prepared data: a folder (local) or gs:// / name (Vertex)")] = None,
    model_dir: Annotated[str | None, typer.Option(help="local: checkpoints; training resumes from here")] = None,
    steps: Annotated[int | None, typer.Option(min=1)] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="global batch (Vertex: preset batch x cores)")] = None,
    init_checkpoint: Annotated[str | None, typer.Option(help="start from this checkpoint or .tar.gz")] = None,
    device: Annotated[str, typer.Option(help="local backend: auto, cpu or gpu")] = "auto",
    seed: Annotated[int, typer.Option(help="weights, data order and augmentation (a resumed run keeps its own)")] = 0,
    stack: StackName = None,
    stack_outputs: StackFile = None,
    backend: Annotated[str | None, typer.Option(help="local or vertex (default: vertex with a stack)")] = None,
    accelerator: Annotated[str, typer.Option(help="Vertex: tpu-v2-8, tpu-v3-8, tpu-v5e-N, gpu-…, cpu")] = "tpu-v5e-4",
    spot: Annotated[bool, typer.Option(help="Vertex: Spot capacity (cheaper, can be preempted)")] = False,
    replicas: Annotated[int, typer.Option(min=1, help="Vertex GPU: workers (MultiWorkerMirroredStrategy)")] = 1,
    run_id: Annotated[str | None, typer.Option(help="Vertex: run name (default preset + time)")] = None,
    timeout_hours: Annotated[float, typer.Option(min=0.1)] = 24.0,
    dry_run: Annotated[bool, typer.Option(help="print the CustomJob request; contact nothing")] = False,
    yes: Annotated[bool, typer.Option(help="launch without asking")] = False,
    local_docker: Annotated[bool, typer.Option(help="build images with local Docker, not Cloud Build")] = False,
) -> None:
    """Train a RetinaNet from a preset: on this machine, or as a Vertex AI custom job of an experiment stack."""
    if (backend or ("vertex" if stack or stack_outputs else "local")) == "vertex":
        from jobs.launch.launcher import TrainOptions

        options = TrainOptions(preset, accelerator, replicas, spot, steps, batch_size, run_id, data,
                               init_checkpoint, timeout_hours, seed)
        train_on_vertex(stack, stack_outputs, options, dry_run, yes, local_docker)
        return
    if not data or not model_dir:
        raise typer.BadParameter("the local backend needs --data and --model-dir")
    from jobs.launch.backends import LocalBackend
    from jobs.launch.launcher import local_training
    from jobs.runtime.spec import preflight_resume

    preflight_resume(preset, data, model_dir, batch_size)  # a mismatch fails here, before TensorFlow loads
    spec = local_training(preset, data, model_dir, steps, batch_size, init_checkpoint, device, seed)
    with progress_bar(f"training {preset}") as update:
        def on_line(line: str) -> None:
            if line.startswith(PROGRESS_PREFIX):
                fields = dict(item.split("=", 1) for item in line.split()[1:])
                update(int(fields["step"]), int(fields["total"]), loss=float(fields["loss"]))
            elif line.strip():
                console.print(line, highlight=False, markup=False)

        info = LocalBackend(on_line).submit(spec, image_uri="", base_output_dir=model_dir)
    if not info.state.endswith("SUCCEEDED"):
        raise typer.Exit(max(info.exit_code or 1, 1))  # the trainer has printed why


@app.command()
def evaluate(
    model_dir: Annotated[str | None, typer.Option(help="a model dir written by `train`")] = None,
    data: Annotated[str | None, typer.Option(help="prepared data folder (default: the training data)")] = None,
    continuous: Annotated[bool, typer.Option(help="follow new checkpoints until the last step")] = False,
    model: Annotated[str | None, typer.Option(help="an export folder (SavedModel or TFLite) instead")] = None,
    split: Annotated[str, typer.Option(help="prepared split to evaluate on")] = "val",
    score_threshold: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="for P, R, the confusion matrix and the images (default: best F1)")] = None,
    stack: StackName = None,
    stack_outputs: StackFile = None,
    run: Annotated[str | None, typer.Option(help="Vertex: the run to evaluate continuously")] = None,
    accelerator: Annotated[str, typer.Option(help="Vertex: gpu-t4-1, gpu-l4-1, …")] = "gpu-t4-1",
    spot: Annotated[bool, typer.Option(help="Vertex: Spot capacity")] = False,
    dry_run: Annotated[bool, typer.Option(help="Vertex: print the CustomJob request only")] = False,
    yes: Annotated[bool, typer.Option(help="Vertex: launch without asking")] = False,
) -> None:
    """COCO metrics of the latest checkpoint on the validation split (or a GPU evaluation job for a Vertex run)."""
    if stack or stack_outputs:
        if not run:
            raise typer.BadParameter("--run is required with --stack")
        evaluate_on_vertex(stack, stack_outputs, run, accelerator, spot, dry_run, yes)
        return
    if bool(model_dir) == bool(model):
        raise typer.BadParameter("give --model-dir (a training run) or --model (an export), "
                                 "or --stack and --run for a Vertex job")
    if continuous and model:
        raise typer.BadParameter("--continuous follows a training run: use it with --model-dir")
    quiet_tensorflow()
    from jobs.runtime import evaluate as evaluation

    if continuous:
        evaluation.evaluate_continuously(model_dir, data,
                                         on_result=lambda r: show_metrics(r.metrics, f"{r.eval_dir}/report.html"))
        return
    with progress_bar("evaluating") as update:
        if model:
            result = evaluation.evaluate_export(model, data, split, update, score_threshold)
        else:
            result = evaluation.evaluate_checkpoint(model_dir, data, split, progress=update,
                                                    score_threshold=score_threshold)
    show_metrics(result.metrics, f"{result.eval_dir}/report.html")


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
    model: Annotated[Path, typer.Option(help="an export folder (any format)")],
    images: Annotated[list[Path], typer.Argument(help="image files, folders of images, video files")],
    out: Annotated[Path | None, typer.Option(
        help="annotated copies, detections.csv and .json go here (new, empty or earlier predictions: replaced)")]
    = None,
    score_threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.3,
    every: Annotated[float, typer.Option(min=0.01, help="seconds between the video frames sampled")] = 1.0,
) -> None:
    """Detect objects in images and videos; print a table, draw boxes on copies, write the detections."""
    quiet_tensorflow()
    from jobs.io import check_output_folder
    from jobs.runtime.predict import KIND, Predictor, predict_paths

    if out is not None:
        check_output_folder(out, KIND, [model, *images])  # before the model loads
    with console.status("detecting"):
        result = predict_paths(Predictor(model), images, out, score_threshold, every)
    found = result.detections
    shown = 50  # all of them are in detections.csv
    rows = [[Path(d.image).name + ("" if d.frame is None else f" #{d.frame}"), d.label, d.score,
             f"{d.xmin:.0f},{d.ymin:.0f},{d.xmax:.0f},{d.ymax:.0f}"] for d in found[:shown]]
    console.print(table("detections", ["image", "class", "score", "box (px)"], rows or [["-", "-", None, "-"]]))
    if len(found) > shown:
        console.print(f"… and {len(found) - shown} more")
    if out:
        console.print(f"annotated images, detections.csv and detections.json in {out}")
    for unreadable in result.unreadable:
        errors.print(f"[yellow]skipped[/yellow] {escape(str(unreadable))}", highlight=False)
    if result.unreadable:
        raise DataError(f"{len(result.unreadable)} of {result.files} files could not be read (listed above); "
                        "the others were predicted")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="everything goes here")] = Path("demo-output"),
    steps: Annotated[int, typer.Option(min=1)] = 600,
    images: Annotated[int, typer.Option(min=20, help="synthetic images to draw")] = 300,
) -> None:
    """Synthetic shapes -> prepare -> train -> evaluate -> export -> predict, all on this machine."""
    quiet_tensorflow()
    from jobs.demo import run_demo

    result = run_demo(out, steps, images, console=console)
    show_metrics(result.evaluation.metrics, f"{result.evaluation.eval_dir}/report.html")
    rows = [[name, str(path)] for name, path in result.paths.items()]
    console.print(table("demo outputs", ["what", "where"], rows))
