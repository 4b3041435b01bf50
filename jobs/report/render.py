"""Every file of an evaluation report, as bytes by file name (the caller writes them, locally or to gs://)."""

from __future__ import annotations

import numpy as np

from jobs.metrics import CocoGroundTruth, Detection, MetricsJson
from jobs.report.gallery import worst_images_png
from jobs.report.matching import Analysis
from jobs.report.page import report_html
from jobs.report.plots import ap_bars_png, confusion_png, pr_curves_png


def render_report(metrics: MetricsJson, analysis: Analysis, ground_truth: CocoGroundTruth, detections: list[Detection],
                  images: dict[int, np.ndarray], config: dict[str, object]) -> dict[str, bytes]:
    """The PNGs and ``report.html``; ``metrics`` already annotated by ``analysis``, ``images`` the worst ones."""
    pictures = {
        "pr_curves.png": pr_curves_png(analysis, metrics),
        "confusion_matrix.png": confusion_png(analysis),
        "ap_per_class.png": ap_bars_png(metrics),
        "worst_images.png": worst_images_png(analysis, ground_truth, detections, images),
    }
    return {**pictures, "report.html": report_html(metrics, pictures, config).encode("utf-8")}
