"""The evaluation's charts as PNG bytes: precision-recall curves, the confusion matrix and AP per class.

Matplotlib is imported lazily and drawn on its Agg canvas (a ``Figure`` without pyplot: no GUI, no global state).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from jobs.metrics import MetricsJson
from jobs.report.matching import IOU_THRESHOLD, Analysis

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_LEGEND = 15  # more classes than this: the curves are drawn without a legend


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _threshold_text(analysis: Analysis) -> str:
    return f"score ≥ {analysis.threshold:.2f} ({analysis.rule})"


def pr_curves_png(analysis: Analysis, metrics: MetricsJson) -> bytes:
    """Each class's precision (its envelope, as AP integrates it) against recall; the dot is the threshold."""
    figure = _figure(6.4, 4.8)
    axes = figure.subplots()
    for name, curve in analysis.curves.items():
        envelope = np.maximum.accumulate(curve.precision[::-1])[::-1]
        recall = np.concatenate([[0.0], curve.recall])
        precision = np.concatenate([[envelope[0] if envelope.size else 0.0], envelope])
        ap50 = metrics["per_class"][name]["AP50"]
        line, = axes.step(recall, precision, where="post", label=f"{name}  AP50 {ap50 or 0:.3f}")
        kept = int(np.sum(curve.scores >= analysis.threshold))
        if kept:
            axes.plot(curve.recall[kept - 1], curve.precision[kept - 1], "o", color=line.get_color())
    if not analysis.curves:
        axes.text(0.5, 0.5, "no ground truth", ha="center", va="center")
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
             title=f"Precision-recall per class at IoU {IOU_THRESHOLD}\n(dots: {_threshold_text(analysis)})")
    axes.grid(alpha=0.3)
    if 0 < len(analysis.curves) <= MAX_LEGEND:
        axes.legend(loc="lower left", fontsize="small")
    return _png(figure)


def confusion_png(analysis: Analysis) -> bytes:
    labels = [*analysis.names, "background"]
    side = max(4.5, 0.55 * len(labels) + 2.5)
    figure = _figure(side + 1, side)
    axes = figure.subplots()
    matrix = analysis.confusion
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8, label="boxes")
    if len(labels) <= 30:
        limit = matrix.max() / 2 if matrix.size else 0
        for (row, column), count in np.ndenumerate(matrix):
            axes.text(column, row, str(count), ha="center", va="center", fontsize="small",
                      color="white" if count > limit else "black")
    ticks = np.arange(len(labels))
    axes.set_xticks(ticks, labels, rotation=45, ha="right")
    axes.set_yticks(ticks, labels)
    axes.set(xlabel="predicted (background: missed)", ylabel="true (background: false detection)",
             title=f"Confusion matrix at IoU ≥ {IOU_THRESHOLD}, {_threshold_text(analysis)}\n"
                   "same-class matches first, then other-class overlaps\n(greedy by score within each image)")
    axes.title.set_fontsize("medium")
    return _png(figure)


def ap_bars_png(metrics: MetricsJson) -> bytes:
    names = list(metrics["per_class"])
    figure = _figure(6.4, max(2.5, 0.4 * len(names) + 1.5))
    axes = figure.subplots()
    positions = np.arange(len(names))
    for offset, key in ((-0.2, "AP50"), (0.2, "AP")):
        values = [metrics["per_class"][name][key] or 0.0 for name in names]
        bars = axes.barh(positions + offset, values, height=0.4, label=key)
        axes.bar_label(bars, fmt="%.3f", padding=2, fontsize="small")
    labels = [name if metrics["per_class"][name]["AP"] is not None else f"{name} (no ground truth)"
              for name in names]
    axes.set_yticks(positions, labels)
    axes.invert_yaxis()
    axes.set(xlim=(0, 1.12), xlabel="COCO average precision", title="AP per class (AP: IoU 0.50:0.95)")
    axes.legend(loc="lower right", fontsize="small")
    return _png(figure)
