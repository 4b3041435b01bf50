"""COCO box metrics with pycocotools, from ground truth and detections in COCO JSON form.

Handles the pycocotools traps: no detections at all (``loadRes`` rejects an empty list), annotation ids that
must start at 1 (an id of 0 reads as "unmatched"), integer image ids, missing ``iscrowd``/``area``, classes
without ground truth (their AP is undefined: reported as null, not 0 or -1), and its printing to stdout.
"""

from __future__ import annotations

import contextlib
import copy
import io
import numbers
from typing import Any, NotRequired, TypedDict

import numpy as np

from jobs.errors import DataError


class CocoImage(TypedDict):
    id: int
    file_name: str
    width: int
    height: int


class CocoAnnotation(TypedDict):
    id: NotRequired[int]  # renumbered 1..n by coco_ground_truth when missing, repeated or below 1
    image_id: int
    category_id: int
    bbox: list[float]  # x, y, width, height in pixels
    area: NotRequired[float]
    iscrowd: NotRequired[int]


class CocoCategory(TypedDict):
    id: int
    name: str
    supercategory: NotRequired[str]


class CocoGroundTruth(TypedDict):
    info: NotRequired[dict[str, str]]
    images: list[CocoImage]
    annotations: list[CocoAnnotation]
    categories: list[CocoCategory]


class Detection(TypedDict):
    image_id: int
    category_id: int
    bbox: list[float]  # x, y, width, height in pixels
    score: float


class ClassMetrics(TypedDict):
    AP: float | None  # None: the class has no ground truth, its AP is undefined
    AP50: float | None
    recall: float | None


class CocoMetrics(TypedDict):
    summary: dict[str, float]  # by COCO_KEYS
    per_class: dict[str, ClassMetrics]
    detections: int


# An evaluation's metrics.json: CocoMetrics annotated by the report's matching (P, R, "all", "threshold") and by
# the evaluator (model, step, split, baseline...), read back from files written by any version of this tool.
MetricsJson = dict[str, Any]

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10", "ARmax100", "ARs", "ARm", "ARl")


def coco_ground_truth(ground_truth: CocoGroundTruth) -> CocoGroundTruth:
    """A copy pycocotools scores correctly: annotation ids 1..n, ``iscrowd`` and ``area`` set, integer image ids."""
    ground_truth = copy.deepcopy(ground_truth)
    images = ground_truth["images"]
    bad = [image["id"] for image in images if not isinstance(image["id"], numbers.Integral)]
    if bad:
        raise DataError(f"COCO image ids must be integers, not {bad[:3]!r}: renumber the images")
    annotations = ground_truth["annotations"]
    ids = [a.get("id") for a in annotations]
    renumber = len(set(ids)) != len(ids) or any(not isinstance(i, numbers.Integral) or i < 1 for i in ids)
    for number, annotation in enumerate(annotations, start=1):
        if renumber:
            annotation["id"] = number
        annotation.setdefault("iscrowd", 0)
        annotation.setdefault("area", annotation["bbox"][2] * annotation["bbox"][3])
    ground_truth.setdefault("info", {})
    return ground_truth


def coco_metrics(ground_truth: CocoGroundTruth, detections: list[Detection]) -> CocoMetrics:
    """The 12 COCO numbers, and AP, AP50 and recall (at 100 detections) per class name."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    if not detections:
        with_gt = {a["category_id"] for a in ground_truth["annotations"]}
        per_class: dict[str, ClassMetrics] = {
            name: _class_entry(0.0, 0.0, 0.0) if cid in with_gt else _class_entry(None, None, None)
            for cid, name in names.items()}
        return {"summary": dict.fromkeys(COCO_KEYS, 0.0), "per_class": per_class, "detections": 0}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = coco_ground_truth(ground_truth)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(detections))
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    summary = {key: _clean(value) for key, value in zip(COCO_KEYS, evaluator.stats, strict=True)}
    precision = evaluator.eval["precision"]  # [iou, recall, class, area, max dets]
    recall = evaluator.eval["recall"]  # [iou, class, area, max dets]
    per_class = {}
    for k, cid in enumerate(evaluator.params.catIds):
        ap = _mean_valid(precision[:, :, k, 0, -1])
        ap50 = _mean_valid(precision[0, :, k, 0, -1])
        rec = _mean_valid(recall[:, k, 0, -1])
        per_class[names[cid]] = _class_entry(ap, ap50, rec)
    return {"summary": summary, "per_class": per_class, "detections": len(detections)}


def _class_entry(ap: float | None, ap50: float | None, recall: float | None) -> ClassMetrics:
    return {"AP": ap, "AP50": ap50, "recall": recall}


def _mean_valid(values: np.ndarray) -> float | None:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else None


def _clean(value: float) -> float:
    return max(0.0, float(value))  # pycocotools writes -1 where an area range has no ground truth
