"""The local demo: every stage of the real path on a synthetic dataset, training and evaluating through the local
launcher as ``train`` and ``evaluate`` do."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from jobs.console import progress_bar
from jobs.dataset.pipeline import CheckOptions
from jobs.dataset.prepare import PrepareOptions, prepare
from jobs.dataset.synthetic import make_dataset
from jobs.io import check_output_folder, write_marker
from jobs.launch.backends import Watch
from jobs.launch.launcher import EvalOptions, Launcher, Plan, TrainOptions, launcher_for
from jobs.metrics import MetricsJson
from jobs.runtime.spec import EvalArgs, ProgressEvent, TrainArgs

DEMO_PRESET = "retinanet-tiny-128"
KIND = "demo"  # the kind of output folder (jobs.io)


@dataclass(frozen=True)
class DemoResult:
    metrics: MetricsJson
    paths: dict[str, Path]
    seconds: float


def run_demo(out: Path, steps: int = 600, images: int = 300, console: Console | None = None) -> DemoResult:
    from jobs.runtime.export import export_saved_model
    from jobs.runtime.predict import Predictor, draw

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
    data, model_dir = str(paths["prepared data"]), str(paths["model dir (TensorBoard)"])
    launcher = launcher_for()  # this machine: the trainer and the evaluator run as subprocesses, as in a job
    console.print(f"[bold]1/6[/bold] drawing {images} synthetic images")
    synthetic = make_dataset(out / "synthetic", images)
    console.print("[bold]2/6[/bold] data prepare")
    prepare(PrepareOptions(CheckOptions(synthetic.labels_csv, synthetic.images_dir), paths["prepared data"]))
    console.print(f"[bold]3/6[/bold] train {DEMO_PRESET} for {steps} steps")
    _run(launcher, launcher.plan_training(TrainOptions(TrainArgs(DEMO_PRESET, data, model_dir, steps))), "training",
         console)
    console.print("[bold]4/6[/bold] evaluate")
    _run(launcher, launcher.plan_evaluation(EvalOptions(EvalArgs(model_dir))), "evaluating", console)
    console.print("[bold]5/6[/bold] export")
    export_saved_model(model_dir, str(paths["exported model"]))
    console.print("[bold]6/6[/bold] predict on 4 validation images")
    predictor = Predictor(paths["exported model"])
    paths["predictions"].mkdir(parents=True, exist_ok=True)
    val = json.loads((paths["prepared data"] / "val_coco.json").read_text())["images"][:4]
    for entry in val:
        found, image = predictor.predict(synthetic.images_dir / entry["file_name"])
        draw(image, found).save(paths["predictions"] / entry["file_name"])
    metrics = json.loads(paths["metrics"].read_text(encoding="utf-8"))
    return DemoResult(metrics, paths, time.perf_counter() - start)


def _run(launcher: Launcher, plan: Plan, description: str, console: Console) -> None:
    """The job with a progress bar; its other lines shown dimmed."""
    with progress_bar(description) as update:
        def event(progress: ProgressEvent) -> None:
            if progress.stage != "evaluated":
                update(progress.done, progress.total, **({} if progress.loss is None else {"loss": progress.loss}))

        def line(text: str) -> None:
            if text.strip():
                console.print(text, style="dim", highlight=False, markup=False)

        launcher.launch(plan, watch=Watch(event, line))
