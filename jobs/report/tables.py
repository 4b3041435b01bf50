"""Rows of the tables shown on screen and in ``report.html``, read from an evaluation's ``metrics.json``."""

from __future__ import annotations

from jobs.metrics import MetricsJson

CLASS_COLUMNS = ["class", "images", "instances", "P", "R", "AP50", "AP"]
COMPARISON_COLUMNS = ["model", "AP50", "AP", "ΔAP50", "ΔAP"]


Cell = str | int | float | None
Row = list[Cell]

TOTAL = "(all classes)"  # the total row's label; the row is styled apart too, so no class name passes for it


def total_row(metrics: MetricsJson) -> Row:
    """The row above the classes of Ultralytics' validation table: all classes together (``metrics["all"]``)."""
    overall = metrics["all"]
    return [TOTAL, overall["images"], overall["instances"], overall["P"], overall["R"], overall["AP50"],
            overall["AP"]]


def class_rows(metrics: MetricsJson) -> list[Row]:
    """One row per class (``metrics["per_class"]``), under ``total_row``."""
    return [[name, v["images"], v["instances"], v["P"], v["R"], v["AP50"], v["AP"]]
            for name, v in metrics["per_class"].items()]


def threshold_note(metrics: MetricsJson) -> str:
    threshold = metrics["threshold"]
    return (f"P and R at score ≥ {threshold['score']:.2f} ({threshold['rule']}) and IoU {threshold['iou']}; "
            "AP50 and AP (IoU 0.50:0.95) from COCO")


def model_label(metrics: MetricsJson) -> str:
    model = metrics.get("model", {})
    return f"{model.get('format', 'checkpoint')}, step {metrics['step']}"


def comparison_rows(metrics: MetricsJson) -> list[Row]:
    """This model against the float checkpoint it was exported from; empty when that is unknown."""
    baseline = metrics.get("baseline")
    if not baseline:
        return []
    summary = metrics["summary"]
    return [[baseline["model"], baseline["AP50"], baseline["AP"], None, None],
            [model_label(metrics), summary["AP50"], summary["AP"], f"{summary['AP50'] - baseline['AP50']:+.3f}",
             f"{summary['AP'] - baseline['AP']:+.3f}"]]
