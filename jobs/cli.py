"""The ``detector`` command line (``python -m jobs``). Each command parses flags and calls one library function.

Nothing heavy is imported at module level: ``--help`` and the data commands never load TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.console import console, errors, progress_bar, quiet_tensorflow, table
from jobs.errors import DetectorError

app = typer.Typer(help="Labelled images to a trained, evaluated and exported object detector.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Import, check and convert labelled data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

FORMATS = "auto, vott-csv, datitran-csv"


@data_app.command("prepare")
def data_prepare(
    labels: Annotated[Path, typer.Option("--input", help="label file (VoTT CSV, datitran CSV)")],
    images: Annotated[Path, typer.Option("--images", help="folder the label file's image names are relative to")],
    out: Annotated[Path, typer.Option("--out", help="output folder (replaced as a whole on success)")],
    fmt: Annotated[str, typer.Option("--format", help=f"one of {FORMATS}")] = "auto",
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.2,
    seed: int = 0,
    label_map: Annotated[Path | None, typer.Option(help="fix class ids; classes not in it are errors")] = None,
    num_shards: Annotated[int | None, typer.Option(min=1, help="per split (default: ~150 MB each)")] = None,
) -> None:
    """Validate labels and images, split by image, write TFRecords, label map and COCO ground truth."""
    from jobs.dataset.prepare import PrepareOptions, prepare

    options = PrepareOptions(labels, images, out, fmt, val_fraction, seed, label_map, num_shards)
    with progress_bar("preparing") as update:
        result = prepare(options, lambda stage, done, total: update(done, total, stage=stage))
    _show_prepare(result)


def _show_prepare(result) -> None:
    summary = result.summary
    for finding in result.report.findings[:20]:
        errors.print(f"[yellow]{finding}[/yellow]", markup=True, highlight=False)
    if len(result.report.findings) > 20:
        errors.print(f"... and {len(result.report.findings) - 20} more in {result.out / 'report.json'}")
    names = [c["name"] for c in summary["classes"]]
    rows = [[name] + [summary["splits"][s]["per_class"].get(name, 0) for s in ("train", "val")] for name in names]
    rows.append(["images"] + [summary["splits"][s]["images"] for s in ("train", "val")])
    console.print(table(f"{summary['format']} -> {result.out}", ["class", "train boxes", "val boxes"], rows))
    counts = summary["rows"]
    state = "unchanged, nothing rewritten" if result.unchanged else "written"
    console.print(f"rows in {counts['in']} = written {counts['written']} + reported {counts['reported']}; "
                  f"output {state}")


@app.command()
def presets() -> None:
    """List the registered model presets."""
    from jobs.presets import PRESETS

    rows = [[p.name, p.input_size, p.backbone.type, p.accelerator, p.cloud_checkpoint or "from scratch",
             p.description] for p in PRESETS.values()]
    console.print(table("presets", ["name", "px", "backbone", "accelerator", "checkpoint (cloud)", "what"], rows))


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


def main() -> None:
    try:
        app()
    except DetectorError as err:
        errors.print(f"[red]error:[/red] {err}", highlight=False)
        raise SystemExit(err.exit_code) from None
    except FileNotFoundError as err:
        errors.print(f"[red]error:[/red] {err}", highlight=False)
        raise SystemExit(1) from None
