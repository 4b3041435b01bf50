"""Matching at IoU 0.5 on a case small enough to count by hand: P, R, the confusion matrix, the worst images."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.report.matching import analyze, iou_matrix

CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 3, "name": "triangle"}]
# Image 10: a circle A and a square B. Image 20: a circle C. No triangle anywhere.
GROUND_TRUTH = {
    "images": [{"id": 10, "width": 100, "height": 100}, {"id": 20, "width": 100, "height": 100}],
    "annotations": [
        {"id": 1, "image_id": 10, "category_id": 1, "bbox": [0, 0, 10, 10]},
        {"id": 2, "image_id": 10, "category_id": 2, "bbox": [20, 20, 10, 10]},
        {"id": 3, "image_id": 20, "category_id": 1, "bbox": [0, 0, 10, 10]},
    ],
    "categories": CATEGORIES,
}
DETECTIONS = [
    {"image_id": 10, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},  # finds A
    {"image_id": 10, "category_id": 2, "bbox": [1, 0, 10, 10], "score": 0.8},  # on A, already found: false
    {"image_id": 10, "category_id": 1, "bbox": [20, 21, 10, 10], "score": 0.7},  # B seen as a circle
    {"image_id": 10, "category_id": 3, "bbox": [60, 60, 10, 10], "score": 0.2},  # below the threshold
]


def test_precision_recall_and_counts_at_a_given_threshold():
    analysis = analyze(GROUND_TRUTH, DETECTIONS, score_threshold=0.5)
    assert (analysis.threshold, analysis.rule) == (0.5, "given")
    assert analysis.per_class == {
        "circle": {"images": 2, "instances": 2, "P": 0.5, "R": 0.5},
        "square": {"images": 1, "instances": 1, "P": 0.0, "R": 0.0},
        "triangle": {"images": 0, "instances": 0, "P": None, "R": None},
    }
    assert analysis.overall == {"images": 2, "instances": 3, "P": 0.25, "R": 0.25}


def test_confusion_matrix_has_a_background_row_and_column():
    matrix = analyze(GROUND_TRUTH, DETECTIONS, score_threshold=0.5).confusion
    expected = np.zeros((4, 4), int)
    expected[0, 0] = 1  # A found as a circle
    expected[0, 3] = 1  # C missed
    expected[1, 0] = 1  # B predicted as a circle
    expected[3, 1] = 1  # the square on A matches nothing left
    np.testing.assert_array_equal(matrix, expected)


def test_images_are_ranked_by_errors():
    images = analyze(GROUND_TRUTH, DETECTIONS, score_threshold=0.5).images
    assert [(e.image_id, e.missed, e.false) for e in images] == [(10, 1, 2), (20, 1, 0)]


def test_default_threshold_maximizes_f1_and_curves_follow_the_scores():
    analysis = analyze(GROUND_TRUTH, DETECTIONS)
    assert (analysis.threshold, analysis.rule) == (0.9, "max F1")  # 1 of 3 found with 1 detection: F1 0.5
    circle = analysis.curves["circle"]
    np.testing.assert_allclose(circle.scores, [0.9, 0.7])
    np.testing.assert_allclose(circle.precision, [1.0, 0.5])
    np.testing.assert_allclose(circle.recall, [0.5, 0.5])
    assert "triangle" not in analysis.curves  # no ground truth: no curve


def test_no_detections_falls_back_to_the_default_threshold():
    analysis = analyze(GROUND_TRUTH, [])
    assert analysis.rule.startswith("default")
    assert analysis.per_class["circle"] == {"images": 2, "instances": 2, "P": 0.0, "R": 0.0}
    assert analysis.confusion[:, 3].tolist() == [2, 1, 0, 0]


def test_annotate_adds_the_table_columns_to_the_metrics():
    metrics = {"summary": {"AP": 0.4, "AP50": 0.6}, "per_class": {"circle": {"AP": 0.5, "AP50": 0.7}}}
    annotated = analyze(GROUND_TRUTH, DETECTIONS, 0.5).annotate(metrics)
    assert annotated["all"] == {"images": 2, "instances": 3, "P": 0.25, "R": 0.25, "AP50": 0.6, "AP": 0.4}
    assert annotated["per_class"]["circle"] == {"AP": 0.5, "AP50": 0.7, "images": 2, "instances": 2, "P": 0.5,
                                                "R": 0.5}
    assert annotated["threshold"] == {"score": 0.5, "iou": 0.5, "rule": "given"}


@pytest.mark.parametrize(("a", "b", "iou"), [([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
                                             ([0, 0, 10, 10], [5, 0, 15, 10], 1 / 3),
                                             ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
                                             ([0, 0, 0, 0], [0, 0, 0, 0], 0.0)])
def test_iou(a, b, iou):
    assert iou_matrix(np.array([a], float), np.array([b], float))[0, 0] == pytest.approx(iou)


def test_detections_on_a_crowd_region_of_their_class_are_neither_right_nor_wrong():
    crowd = {"id": 4, "image_id": 20, "category_id": 2, "bbox": [40, 40, 40, 40], "iscrowd": 1}
    truth = {**GROUND_TRUTH, "annotations": [*GROUND_TRUTH["annotations"], crowd]}
    on_crowd = [{"image_id": 20, "category_id": 2, "bbox": [50, 50, 10, 10], "score": 0.9},  # inside: ignored
                {"image_id": 20, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.9}]  # other class: false
    before = analyze(GROUND_TRUTH, DETECTIONS + on_crowd, score_threshold=0.5)
    after = analyze(truth, DETECTIONS + on_crowd, score_threshold=0.5)
    assert after.per_class["square"] == {"images": 1, "instances": 1, "P": 0.0, "R": 0.0}  # only the false one on A
    assert after.per_class["circle"] == before.per_class["circle"]
    assert after.confusion[-1, 1] == before.confusion[-1, 1] - 1  # one square fewer predicted on background
    assert after.overall["instances"] == 3
