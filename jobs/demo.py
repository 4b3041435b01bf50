"""The local demo: every stage of the real path on a synthetic dataset, with the same code as the jobs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from jobs.console import progress_bar
from jobs.dataset.prepare import PrepareOptions, prepare
from jobs.dataset.synthetic import make_dataset
from jobs.io import check_output_folder, write_marker

DEMO_PRESET = "retinanet-tiny-128"
KIND = "demo"  # the kind of output folder (jobs.io)


@dataclass(frozen=True)
class DemoResult:
    evaluation: object  # jobs.runtime.evaluate.EvalResult
    paths: dict[str, Path]
    seconds: float


def run_demo(out: Path, steps: int = 600, images: int = 300, console: Console | None = None) -> DemoResult:
    from jobs.runtime import evaluate
    from jobs.runtime.experiment import make_spec
    from jobs.runtime.export import export_saved_model
    from jobs.runtime.predict import Predictor, draw
    from jobs.runtime.train import train

    console = console or Console()
    start = time.perf_counter()
    out = check_output_folder(out, KIND)  # a workspace of its own: never a folder the user keeps other files in
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, KIND)
    paths = {
        "synthetic images": out / "synthetic" / "images", "labels (VoTT CSV)": out / "synthetic" / "vott-export.csv",
        "prepared data": out / "data", "model dir (TensorBoard)": out / "model",
        "metrics": out / "model" / "eval" / "metrics.json",
        "evaluation report": out / "model" / "eval" / "report.html", "exported model": out / "exported",
        "predictions": out / "predictions",
    }
    console.print(f"[bold]1/6[/bold] drawing {images} synthetic images")
    synthetic = make_dataset(out / "synthetic", images)
    console.print("[bold]2/6[/bold] data prepare")
    prepare(PrepareOptions(synthetic.labels_csv, synthetic.images_dir, paths["prepared data"]))
    console.print(f"[bold]3/6[/bold] train {DEMO_PRESET} for {steps} steps")
    spec = make_spec(DEMO_PRESET, str(paths["prepared data"]), steps, None, None)
    with progress_bar("training") as update:
        train(spec, str(paths["model dir (TensorBoard)"]), "auto",
              lambda step, total, loss: update(step, total, loss=loss))
    console.print("[bold]4/6[/bold] evaluate")
    with progress_bar("evaluating") as update:
        result = evaluate.evaluate_checkpoint(str(paths["model dir (TensorBoard)"]), progress=update)
    console.print("[bold]5/6[/bold] export")
    export_saved_model(str(paths["model dir (TensorBoard)"]), str(paths["exported model"]))
    console.print("[bold]6/6[/bold] predict on 4 validation images")
    predictor = Predictor(paths["exported model"])
    paths["predictions"].mkdir(parents=True, exist_ok=True)
    val = json.loads((paths["prepared data"] / "val_coco.json").read_text())["images"][:4]
    for entry in val:
        found, image = predictor.predict(synthetic.images_dir / entry["file_name"])
        draw(image, found).save(paths["predictions"] / entry["file_name"])
    return DemoResult(result, paths, time.perf_counter() - start)
