"""The report's files from COCO data alone, no model: PNGs decode, report.html shows every section in Chromium."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from coco_cases import synthetic_case
from report_checks import PICTURES, SECTIONS, assert_pictures_decode, assert_report_in_chromium

from jobs.metrics import coco_metrics
from jobs.report.gallery import worst_image_ids
from jobs.report.matching import analyze
from jobs.report.render import render_report

pytest_plugins = ["evaluation_fixtures"]

ODD_NAME = "bad <print> & co"  # escaped in the page, a class without ground truth


def write_report(folder: Path, ground_truth: dict, detections: list[dict]) -> Path:
    analysis = analyze(ground_truth, detections)
    metrics = {**analysis.annotate(coco_metrics(ground_truth, detections)), "step": 12, "split": "val",
               "data": "data/", "model": {"format": "tflite-int8", "path": "exported/"},
               "baseline": {"model": "checkpoint, step 12", "AP": 0.5, "AP50": 0.7, "source": "eval/metrics-12.json"}}
    rng = np.random.default_rng(0)
    images = {image_id: rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
              for image_id in worst_image_ids(analysis)}
    files = render_report(metrics, analysis, ground_truth, detections, images,
                          {"experiment.json": {"preset": "retinanet-tiny-128", "steps": 12}})
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    ground_truth, detections = synthetic_case(7)
    ground_truth["categories"].append({"id": 4, "name": ODD_NAME})
    return write_report(tmp_path_factory.mktemp("report"), ground_truth, detections)


def test_report_files_are_the_pictures_and_the_page(report):
    assert sorted(p.name for p in report.iterdir()) == sorted([*PICTURES, "report.html"])
    assert_pictures_decode(report)


def test_page_is_self_contained_and_escaped(report):
    page = (report / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "http" not in page
    assert page.count("data:image/png;base64,") == len(PICTURES)
    assert "bad &lt;print&gt; &amp; co" in page and ODD_NAME not in page
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    assert "Against the float model" in page and "<td>checkpoint, step 12</td><td>0.700</td>" in page


def test_report_loads_in_chromium(report, browser):
    page = assert_report_in_chromium(report / "report.html", browser)
    assert page["title"] == "Evaluation: tflite-int8, step 12, val split"


def test_a_model_that_finds_nothing_still_gets_a_report(tmp_path):
    ground_truth, _ = synthetic_case(8)
    folder = write_report(tmp_path, ground_truth, [])
    assert_pictures_decode(folder)
    assert "default (no detections or no ground truth)" in (folder / "report.html").read_text(encoding="utf-8")
