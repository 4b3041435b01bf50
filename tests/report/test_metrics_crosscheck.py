"""``jobs.metrics`` (pycocotools) against an independent implementation, faster-coco-eval, on the traps."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from coco_cases import synthetic_case
from faster_coco_eval import COCO, COCOeval_faster

from jobs.errors import DataError
from jobs.metrics import COCO_KEYS, coco_ground_truth, coco_metrics

TOLERANCE = 1e-4


def faster_coco_eval(ground_truth: dict, detections: list[dict]) -> tuple[dict, dict]:
    """The 12 numbers (pycocotools' -1 for an empty area range read as 0) and AP/AP50 per category id."""
    gt = COCO(copy.deepcopy(ground_truth))
    evaluator = COCOeval_faster(gt, gt.loadRes(copy.deepcopy(detections)), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    summary = {key: max(0.0, float(value)) for key, value in zip(COCO_KEYS, evaluator.stats, strict=True)}
    precision = evaluator.eval["precision"]  # [iou, recall, class, area, max dets]
    per_class = {category: (mean_valid(precision[:, :, k, 0, -1]), mean_valid(precision[0, :, k, 0, -1]))
                 for k, category in enumerate(evaluator.params.catIds)}
    return summary, per_class


def mean_valid(values: np.ndarray) -> float | None:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def assert_agree(ground_truth: dict, detections: list[dict]) -> dict:
    ours = coco_metrics(ground_truth, detections)
    summary, per_class = faster_coco_eval(coco_ground_truth(ground_truth), detections)
    for key in COCO_KEYS:
        assert ours["summary"][key] == pytest.approx(summary[key], abs=TOLERANCE), key
    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    for category, (ap, ap50) in per_class.items():
        entry = ours["per_class"][names[category]]
        for value, theirs in ((entry["AP"], ap), (entry["AP50"], ap50)):
            assert (value is None) == (theirs is None) and (value is None or abs(value - theirs) <= TOLERANCE)
    return ours


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_cases_agree(seed):
    assert_agree(*synthetic_case(seed))


def test_no_detections_at_all():
    ground_truth, _ = synthetic_case(3)
    ours = assert_agree(ground_truth, [])
    assert ours["summary"] == dict.fromkeys(COCO_KEYS, 0.0)


def test_a_class_without_ground_truth_has_no_ap_and_does_not_count():
    ground_truth, detections = synthetic_case(4)
    ground_truth["categories"].append({"id": 9, "name": "never"})
    detections.append({"image_id": ground_truth["images"][0]["id"], "category_id": 9, "bbox": [5, 5, 50, 50],
                       "score": 0.99})
    ours = assert_agree(ground_truth, detections)
    assert ours["per_class"]["never"] == {"AP": None, "AP50": None, "recall": None}


def test_annotation_ids_from_zero_are_renumbered():
    """pycocotools (and faster-coco-eval) read a match with annotation id 0 as no match."""
    ground_truth = {"images": [{"id": 7, "width": 100, "height": 100}],
                    "annotations": [{"id": 0, "image_id": 7, "category_id": 1, "bbox": [10, 10, 30, 30]}],
                    "categories": [{"id": 1, "name": "a"}]}
    perfect = [{"image_id": 7, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9}]
    fixed = coco_ground_truth(ground_truth)
    assert [a["id"] for a in fixed["annotations"]] == [1]
    assert fixed["annotations"][0]["iscrowd"] == 0 and fixed["annotations"][0]["area"] == 900
    with pytest.warns(UserWarning, match="annotation id 0"):
        assert faster_coco_eval(ground_truth, perfect)[0]["AP50"] == 0.0  # the trap, untreated
    assert assert_agree(ground_truth, perfect)["summary"]["AP50"] == pytest.approx(1.0)


def test_image_ids_must_be_integers():
    ground_truth, _ = synthetic_case(5, images=2)
    ground_truth["images"][0]["id"] = "a.jpg"
    with pytest.raises(DataError, match="integers"):
        coco_ground_truth(ground_truth)


def test_per_class_ap_is_the_mean_of_the_summary():
    ground_truth, detections = synthetic_case(6)
    ours = coco_metrics(ground_truth, detections)
    aps = [v["AP"] for v in ours["per_class"].values() if v["AP"] is not None]
    assert ours["summary"]["AP"] == pytest.approx(float(np.mean(aps)), abs=TOLERANCE)
