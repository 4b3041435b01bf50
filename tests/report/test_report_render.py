"""The report's files from COCO data alone, no model: PNGs decode, report.html shows every section in Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from coco_cases import synthetic_case
from report_checks import PICTURES, SECTIONS, assert_pictures_decode, assert_report_in_chromium

from jobs.console import console
from jobs.metrics import coco_metrics
from jobs.report.gallery import worst_image_ids
from jobs.report.matching import Analysis, analyze
from jobs.report.render import render_report
from jobs.report.tables import TOTAL

pytest_plugins = ["evaluation_fixtures"]

ODD_NAME = "bad <print> & co"  # escaped in the page, a class without ground truth


def evaluation(ground_truth: dict, detections: list[dict]) -> tuple[Analysis, dict]:
    """The analysis and the metrics (as in metrics.json) of an int8 export at step 12."""
    analysis = analyze(ground_truth, detections)
    metrics = {**analysis.annotate(coco_metrics(ground_truth, detections)), "step": 12, "split": "val",
               "data": "data/", "model": {"format": "tflite-int8", "path": "exported/"},
               "baseline": {"model": "checkpoint, step 12", "AP": 0.5, "AP50": 0.7, "source": "eval/metrics-12.json"}}
    return analysis, metrics


def write_report(folder: Path, ground_truth: dict, detections: list[dict]) -> Path:
    analysis, metrics = evaluation(ground_truth, detections)
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


def test_a_class_called_all_is_one_row_and_the_total_another(tmp_path):
    """The total row is labelled and styled apart from the classes, in the page and on the terminal."""
    ground_truth, detections = synthetic_case(9)
    ground_truth["categories"][0]["name"] = "all"
    _, metrics = evaluation(ground_truth, detections)
    assert set(metrics["per_class"]) == {"all", "class2", "class3"}  # the classes under their own key
    assert metrics["all"]["instances"] == sum(v["instances"] for v in metrics["per_class"].values())

    page = (write_report(tmp_path, ground_truth, detections) / "report.html").read_text(encoding="utf-8")
    table = page.split('<section id="classes">')[1].split("</section>")[0]
    rows = re.findall(r"<tr( class=\"total\")?><td>([^<]*)</td>", table)
    assert rows == [(' class="total"', "(all classes)"), ("", "all"), ("", "class2"), ("", "class3")]
    assert "tr.total td {" in page

    from jobs.cli.cloud import show_metrics

    with console.capture() as captured:
        show_metrics(metrics, "eval/report.html")
    lines = captured.get().splitlines()
    first_cells = [line.split("│")[1].strip() for line in lines if line.count("│") == 8]  # the per-class table
    assert first_cells == [TOTAL, "all", "class2", "class3"]
    total = next(number for number, line in enumerate(lines) if f"│ {TOTAL}" in line)
    assert lines[total + 1].startswith("├"), "the total row is ruled off from the classes"
