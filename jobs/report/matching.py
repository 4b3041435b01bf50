"""Detections matched to ground truth at IoU 0.5, greedily by score within each image (as COCO matches).

One matching gives precision and recall at a score threshold, the precision-recall curves, the confusion matrix
and the images with the most errors. Input is COCO JSON (boxes ``[x, y, width, height]`` in pixels).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from jobs.metrics import CocoAnnotation, CocoGroundTruth, CocoMetrics, Detection, MetricsJson

IOU_THRESHOLD = 0.5
DEFAULT_SCORE_THRESHOLD = 0.3  # when the F1-best threshold is undefined (no detections or no ground truth)


@dataclass(frozen=True)
class Curve:
    """Precision and recall of one class's detections taken in score order."""

    scores: np.ndarray  # descending
    precision: np.ndarray
    recall: np.ndarray


@dataclass(frozen=True)
class ImageErrors:
    image_id: int
    missed: int  # ground truth boxes no detection of their class found at the threshold
    false: int  # detections at the threshold that match no ground truth box of their class

    @property
    def errors(self) -> int:
        return self.missed + self.false


class ClassCounts(TypedDict):
    images: int
    instances: int
    P: float | None  # None: no detections and no ground truth (or, for the mean, no class with ground truth)
    R: float | None  # None: no ground truth


@dataclass(frozen=True)
class Analysis:
    threshold: float
    rule: str  # how the threshold was chosen
    names: tuple[str, ...]  # in category id order
    per_class: dict[str, ClassCounts]
    overall: ClassCounts  # P and R: means over the classes with ground truth
    curves: dict[str, Curve]  # classes with ground truth
    confusion: np.ndarray  # rows: true class then background; columns: predicted class then background
    images: tuple[ImageErrors, ...]  # most errors first

    def annotate(self, metrics: CocoMetrics) -> MetricsJson:
        """``metrics`` with P, R, images and instances per class, their totals (``all``, beside ``per_class``,
        so a class may be called 'all') and the threshold."""
        per_class = {name: {**metrics["per_class"].get(name, {}), **self.per_class[name]} for name in self.names}
        summary = metrics["summary"]
        return {**metrics, "per_class": per_class,
                "all": {**self.overall, "AP50": summary["AP50"], "AP": summary["AP"]},
                "threshold": {"score": self.threshold, "iou": IOU_THRESHOLD, "rule": self.rule}}


@dataclass
class _Image:
    truth_boxes: np.ndarray  # (g, 4) xmin, ymin, xmax, ymax
    truth_classes: np.ndarray  # (g,) class index
    boxes: np.ndarray  # (d, 4) in descending score order
    classes: np.ndarray
    scores: np.ndarray
    match: np.ndarray  # (d,) index of the ground truth box of the same class it matched, or -1


def analyze(ground_truth: CocoGroundTruth, detections: list[Detection], score_threshold: float | None = None
            ) -> Analysis:
    """Match once; report at ``score_threshold``, or at the score that maximizes F1 over all classes."""
    categories = sorted(ground_truth["categories"], key=lambda c: c["id"])
    index = {c["id"]: k for k, c in enumerate(categories)}
    names = tuple(c["name"] for c in categories)
    images = _match_all(ground_truth, detections, index)
    if score_threshold is None:
        threshold, rule = _best_f1_threshold(images.values())
    else:
        threshold, rule = float(score_threshold), "given"
    per_class = _per_class(images.values(), names, threshold)
    with_truth = [entry for entry in per_class.values() if entry["instances"]]
    overall: ClassCounts = {"images": len(images), "instances": sum(e["instances"] for e in per_class.values()),
               "P": _mean([e["P"] for e in with_truth]), "R": _mean([e["R"] for e in with_truth])}
    errors = [ImageErrors(image_id, *_errors(image, threshold)) for image_id, image in images.items()]
    errors.sort(key=lambda e: (-e.errors, -e.missed, e.image_id))
    return Analysis(threshold, rule, names, per_class, overall, _curves(images.values(), names),
                    _confusion(images.values(), len(names), threshold), tuple(errors))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (n, 4) with every box in ``b`` (m, 4), corners xmin, ymin, xmax, ymax."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _corners(xywh: list[list[float]]) -> np.ndarray:
    boxes = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def _match_all(ground_truth: CocoGroundTruth, detections: list[Detection], index: dict[int, int]
               ) -> dict[int, _Image]:
    truth: defaultdict[int, list[CocoAnnotation]] = defaultdict(list)
    crowds: defaultdict[int, list[CocoAnnotation]] = defaultdict(list)
    found: defaultdict[int, list[Detection]] = defaultdict(list)
    for annotation in ground_truth["annotations"]:
        if annotation["category_id"] in index:
            (crowds if annotation.get("iscrowd") else truth)[annotation["image_id"]].append(annotation)
    for detection in detections:
        if detection["category_id"] in index:
            found[detection["image_id"]].append(detection)
    images = {}
    for entry in ground_truth["images"]:
        gt, dt = truth[entry["id"]], sorted(found[entry["id"]], key=lambda d: -d["score"])
        image = _Image(_corners([a["bbox"] for a in gt]), np.array([index[a["category_id"]] for a in gt], int),
                       _corners([d["bbox"] for d in dt]), np.array([index[d["category_id"]] for d in dt], int),
                       np.array([d["score"] for d in dt], float), np.full(len(dt), -1))
        _match(image)
        crowd = crowds[entry["id"]]
        if crowd:
            image = _ignore_on_crowds(image, _corners([a["bbox"] for a in crowd]),
                                      np.array([index[a["category_id"]] for a in crowd], int))
        images[entry["id"]] = image
    return images


def _ignore_on_crowds(image: _Image, boxes: np.ndarray, classes: np.ndarray) -> _Image:
    """Without the unmatched detections that lie mostly (≥ 0.5 of their area) on a crowd region of their class:
    COCO neither rewards nor penalizes them."""
    top_left = np.maximum(image.boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = np.minimum(image.boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area = np.prod(image.boxes[:, 2:] - image.boxes[:, :2], axis=1)
    covered = inter / np.where(area > 0, area, 1)[:, None]
    on_crowd = np.any((covered >= IOU_THRESHOLD) & (image.classes[:, None] == classes[None, :]), axis=1)
    keep = ~on_crowd | (image.match >= 0)
    return _Image(image.truth_boxes, image.truth_classes, image.boxes[keep], image.classes[keep],
                  image.scores[keep], image.match[keep])


def _match(image: _Image) -> None:
    """Each detection, best score first, takes the free same-class ground truth box it overlaps most (IoU ≥ 0.5)."""
    if not len(image.boxes) or not len(image.truth_boxes):
        return
    ious = iou_matrix(image.boxes, image.truth_boxes)
    free = np.ones(len(image.truth_boxes), bool)
    for d, cls in enumerate(image.classes):
        candidates = np.where(free & (image.truth_classes == cls), ious[d], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= IOU_THRESHOLD:
            image.match[d] = best
            free[best] = False


def _best_f1_threshold(images: Iterable[_Image]) -> tuple[float, str]:
    scores = np.concatenate([image.scores for image in images] or [np.zeros(0)])
    hits = np.concatenate([image.match >= 0 for image in images] or [np.zeros(0, bool)])
    truth = sum(len(image.truth_boxes) for image in images)
    if not scores.size or not truth:
        return DEFAULT_SCORE_THRESHOLD, "default (no detections or no ground truth)"
    order = np.argsort(-scores, kind="stable")
    true_positives = np.cumsum(hits[order])
    f1 = 2 * true_positives / (np.arange(1, scores.size + 1) + truth)
    return float(scores[order][int(np.argmax(f1))]), "max F1"


def _per_class(images: Iterable[_Image], names: tuple[str, ...], threshold: float) -> dict[str, ClassCounts]:
    stats = {name: {"images": 0, "instances": 0, "predicted": 0, "correct": 0} for name in names}
    for image in images:
        for k in np.unique(image.truth_classes):
            stats[names[k]]["images"] += 1
        for k in image.truth_classes:
            stats[names[k]]["instances"] += 1
        kept = image.scores >= threshold
        for k, hit in zip(image.classes[kept], image.match[kept] >= 0, strict=True):
            stats[names[k]]["predicted"] += 1
            stats[names[k]]["correct"] += int(hit)
    per_class: dict[str, ClassCounts] = {}
    for name, s in stats.items():
        precision = s["correct"] / s["predicted"] if s["predicted"] else (0.0 if s["instances"] else None)
        recall = s["correct"] / s["instances"] if s["instances"] else None
        per_class[name] = {"images": s["images"], "instances": s["instances"], "P": precision, "R": recall}
    return per_class


def _curves(images: Iterable[_Image], names: tuple[str, ...]) -> dict[str, Curve]:
    images = list(images)
    curves = {}
    for k, name in enumerate(names):
        truth = sum(int(np.sum(image.truth_classes == k)) for image in images)
        if not truth:
            continue
        scores = np.concatenate([image.scores[image.classes == k] for image in images] or [np.zeros(0)])
        hits = np.concatenate([image.match[image.classes == k] >= 0 for image in images] or [np.zeros(0, bool)])
        order = np.argsort(-scores, kind="stable")
        true_positives = np.cumsum(hits[order])
        curves[name] = Curve(scores[order], true_positives / np.arange(1, scores.size + 1), true_positives / truth)
    return curves


def _confusion(images: Iterable[_Image], classes: int, threshold: float) -> np.ndarray:
    """Same-class matches first; a detection left over that overlaps a free box of another class is a confusion."""
    matrix = np.zeros((classes + 1, classes + 1), dtype=np.int64)
    background = classes
    for image in images:
        kept = np.flatnonzero(image.scores >= threshold)
        free = np.ones(len(image.truth_boxes), bool)
        for d in kept[image.match[kept] >= 0]:
            matrix[image.truth_classes[image.match[d]], image.classes[d]] += 1
            free[image.match[d]] = False
        leftover = kept[image.match[kept] < 0]
        ious = iou_matrix(image.boxes[leftover], image.truth_boxes) if len(image.truth_boxes) else None
        for row, d in enumerate(leftover):
            candidates = np.where(free, ious[row], -1.0) if ious is not None else np.zeros(0)
            best = int(np.argmax(candidates)) if candidates.size else -1
            if best >= 0 and candidates[best] >= IOU_THRESHOLD:
                matrix[image.truth_classes[best], image.classes[d]] += 1
                free[best] = False
            else:
                matrix[background, image.classes[d]] += 1
        for g in np.flatnonzero(free):
            matrix[image.truth_classes[g], background] += 1
    return matrix


def _errors(image: _Image, threshold: float) -> tuple[int, int]:
    kept = image.scores >= threshold
    found = int(np.sum(image.match[kept] >= 0))
    return len(image.truth_boxes) - found, int(np.sum(kept)) - found


def _mean(values: list[float | None]) -> float | None:
    valid = [v for v in values if v is not None]
    return float(np.mean(valid)) if valid else None
