"""Model commands: presets, train, evaluate, export, predict and the local demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.cli.app import app
from jobs.console import console, progress_bar, quiet_tensorflow, table


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
    data: Annotated[str, typer.Option(help="prepared data folder")],
    preset: Annotated[str, typer.Option(help="see `presets`")],
    model_dir: Annotated[str, typer.Option(help="checkpoints; training resumes from the latest one here")],
    steps: Annotated[int | None, typer.Option(min=1)] = None,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    init_checkpoint: Annotated[str | None, typer.Option(help="checkpoint to start from (default: scratch)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, gpu or tpu")] = "auto",
) -> None:
    """Train a RetinaNet from a preset on this machine (the local backend)."""
    quiet_tensorflow()
    from jobs.runtime import devices
    from jobs.runtime.experiment import make_spec
    from jobs.runtime.train import train as run_training

    spec = make_spec(preset, data, steps, batch_size, init_checkpoint, devices.precision_for(device))
    with progress_bar(f"training {spec.preset}") as update:
        result = run_training(spec, model_dir, device, lambda step, total, loss: update(step, total, loss=loss))
    console.print(f"model dir {result.model_dir}: step {result.final_step} (started at {result.start_step})")


@app.command()
def evaluate(
    model_dir: Annotated[str, typer.Option(help="a model dir written by `train`")],
    data: Annotated[str | None, typer.Option(help="prepared data folder (default: the training data)")] = None,
    continuous: Annotated[bool, typer.Option(help="follow new checkpoints until the last step")] = False,
) -> None:
    """COCO metrics of the latest checkpoint on the validation split."""
    quiet_tensorflow()
    from jobs.runtime import evaluate as evaluation

    if continuous:
        evaluation.evaluate_continuously(model_dir, data, on_result=_show_metrics)
        return
    with progress_bar("evaluating") as update:
        result = evaluation.evaluate_checkpoint(model_dir, data, progress=update)
    _show_metrics(result)


def _show_metrics(result) -> None:
    from jobs.metrics import COCO_KEYS

    metrics = result.metrics
    summary = [[key, metrics["summary"][key]] for key in COCO_KEYS]
    console.print(table(f"COCO, step {result.step}", ["metric", "value"], summary))
    per_class = [[name, v["AP"], v["AP50"], v["recall"]] for name, v in metrics["per_class"].items()]
    console.print(table("per class", ["class", "AP", "AP50", "recall"], per_class))
    console.print(f"written to {result.eval_dir}/metrics.json")


@app.command()
def export(
    model_dir: Annotated[str, typer.Option(help="a model dir written by `train`")],
    out: Annotated[str, typer.Option(help="export folder (replaced)")],
) -> None:
    """Export the latest checkpoint as a SavedModel (uint8 images in, normalized boxes out)."""
    quiet_tensorflow()
    from jobs.runtime.export import export_saved_model

    with console.status("exporting"):
        info = export_saved_model(model_dir, out)
    console.print(f"exported step {info['step']} of {info['preset']} to {out}")


@app.command()
def predict(
    model: Annotated[Path, typer.Option(help="an export folder")],
    images: Annotated[list[Path], typer.Argument(help="image files")],
    out: Annotated[Path | None, typer.Option(help="write annotated copies here")] = None,
    score_threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.3,
) -> None:
    """Detect objects in images; print a table and draw boxes on copies."""
    quiet_tensorflow()
    from jobs.runtime.predict import Predictor, draw

    predictor = Predictor(model)
    rows = []
    for path in images:
        found, image = predictor.predict(path, score_threshold)
        rows += [[path.name, d.label, d.score, f"{d.xmin:.0f},{d.ymin:.0f},{d.xmax:.0f},{d.ymax:.0f}"]
                 for d in found] or [[path.name, "-", None, "-"]]
        if out:
            out.mkdir(parents=True, exist_ok=True)
            draw(image, found).save(out / path.name)
    console.print(table("detections", ["image", "class", "score", "box (px)"], rows))
    if out:
        console.print(f"annotated images in {out}")


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
    _show_metrics(result.evaluation)
    rows = [[name, str(path)] for name, path in result.paths.items()]
    console.print(table("demo outputs", ["what", "where"], rows))
