"""Box, class and split checks, each finding named by its rule (see ``findings.py``)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

from jobs.dataset.annotations import Box
from jobs.dataset.findings import (
    BOX_CLIPPED,
    BOX_INVERTED,
    BOX_NOT_FINITE,
    BOX_OUTSIDE,
    BOX_TOO_SMALL,
    BOX_ZERO_AREA,
    CLASS_MISSING_FROM_SPLIT,
    CLASS_TOO_RARE,
    DUPLICATE_BOX,
    ESCAPED_CLASS_NAME,
    OVERLAPPING_DUPLICATE,
    SIMILAR_CLASS_NAMES,
    TOO_MANY_BOXES,
    UNKNOWN_CLASS,
    Report,
)

CLIP_TOLERANCE = 0.02  # fraction of the image size a box may cross the border by and still be clipped
ROUNDING_PX = 0.01  # crossing the border by less is float rounding (normalized formats): clipped without a finding
MIN_BOX_PIXELS = 2.0
MIN_BOX_FRACTION = 1 / 256  # of the longer image side: under 1 px at the smallest preset input (256)
DUPLICATE_IOU = 0.95
MODEL_GARDEN_MAX_INSTANCES = 100  # Model Garden's default max_num_instances
MIN_TRAIN_BOXES = 10


def _what(box: Box) -> str:
    normalized = " normalized" if box.normalized else ""
    return f"box ({box.xmin:g}, {box.ymin:g}, {box.xmax:g}, {box.ymax:g}){normalized} of '{box.label}'"


def check_box(box: Box, width: int, height: int, report: Report) -> Box | None:
    """The box in pixels to write (possibly clipped), or None when it is dropped (and reported)."""
    if (not box.normalized and 0 <= box.xmin < box.xmax <= width and 0 <= box.ymin < box.ymax <= height
            and min(box.xmax - box.xmin, box.ymax - box.ymin) >= _min_side(width, height)):
        return box  # the usual case, decided in one expression: inside the image and large enough
    if box.normalized:
        xmin, ymin, xmax, ymax = box.xmin * width, box.ymin * height, box.xmax * width, box.ymax * height
    else:
        xmin, ymin, xmax, ymax = box.xmin, box.ymin, box.xmax, box.ymax
    if not (math.isfinite(xmin) and math.isfinite(ymin) and math.isfinite(xmax) and math.isfinite(ymax)):
        report.add(BOX_NOT_FINITE, box.location, f"{_what(box)} has a non-finite coordinate")
        return None
    if xmax < xmin or ymax < ymin:
        report.add(BOX_INVERTED, box.location, f"{_what(box)} is inverted (max < min)")
        return None
    if xmax == xmin or ymax == ymin:
        report.add(BOX_ZERO_AREA, box.location, f"{_what(box)} has zero area")
        return None
    tol_x, tol_y = CLIP_TOLERANCE * width, CLIP_TOLERANCE * height
    if xmin < -tol_x or ymin < -tol_y or xmax > width + tol_x or ymax > height + tol_y:
        hint = "; coordinates in this format are fractions of the image size" if box.normalized else ""
        report.add(BOX_OUTSIDE, box.location, f"{_what(box)} lies outside the {width}x{height} image{hint}")
        return None
    if xmin < 0 or ymin < 0 or xmax > width or ymax > height:
        if max(-xmin, -ymin, xmax - width, ymax - height) > ROUNDING_PX:
            report.add(BOX_CLIPPED, box.location, f"{_what(box)} clipped to the {width}x{height} image")
        xmin, ymin, xmax, ymax = max(xmin, 0.0), max(ymin, 0.0), min(xmax, float(width)), min(ymax, float(height))
    if min(xmax - xmin, ymax - ymin) < _min_side(width, height):
        report.add(BOX_TOO_SMALL, box.location, f"{_what(box)} is {xmax - xmin:.3g}x{ymax - ymin:.3g} px in a "
                                                f"{width}x{height} image: too small to train")
        return None
    return Box(box.label, xmin, ymin, xmax, ymax, box.location, crowd=box.crowd)


def _min_side(width: int, height: int) -> float:
    """The shortest box side that can train (BOX_TOO_SMALL below it)."""
    return max(MIN_BOX_PIXELS, MIN_BOX_FRACTION * max(width, height))


def _iou(a: Box, b: Box) -> float:
    w = min(a.xmax, b.xmax) - max(a.xmin, b.xmin)
    h = min(a.ymax, b.ymax) - max(a.ymin, b.ymin)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a.xmax - a.xmin) * (a.ymax - a.ymin) + (b.xmax - b.xmin) * (b.ymax - b.ymin) - inter)


def drop_duplicates(boxes: Sequence[Box], report: Report) -> list[Box]:
    """Keep the first of boxes with the same class and coordinates, or the same class and IoU > 0.95."""
    if len(boxes) < 2:
        return list(boxes)
    kept: list[Box] = []
    by_label: dict[str, list[Box]] = defaultdict(list)
    for box in boxes:
        earlier = by_label[box.label]
        same = next((k for k in earlier if (k.xmin, k.ymin, k.xmax, k.ymax) == (box.xmin, box.ymin, box.xmax,
                                                                                 box.ymax)), None)
        if same is not None:
            report.add(DUPLICATE_BOX, box.location, f"box of '{box.label}' repeats the one at {same.location}")
            continue
        close = next((k for k in earlier if _iou(k, box) > DUPLICATE_IOU), None)
        if close is not None:
            report.add(OVERLAPPING_DUPLICATE, box.location,
                       f"box of '{box.label}' overlaps the one at {close.location} with IoU {_iou(close, box):.3f}")
            continue
        earlier.append(box)
        kept.append(box)
    return kept


def check_box_count(filename: str, location: str, count: int, report: Report) -> None:
    if count > MODEL_GARDEN_MAX_INSTANCES:
        report.add(TOO_MANY_BOXES, location,
                   f"'{filename}' has {count} boxes; Model Garden keeps {MODEL_GARDEN_MAX_INSTANCES} by default and "
                   "drops the rest silently: `train` raises max_num_instances to the dataset's maximum, other "
                   "trainers need it set by hand")


def check_classes(boxes: list[Box], label_map: dict[str, int], source: str, report: Report) -> None:
    """One finding for all classes missing from a given label map, with where each occurs."""
    unknown: dict[str, list[str]] = defaultdict(list)
    for box in boxes:
        if box.label not in label_map:
            unknown[box.label].append(box.location)
    if unknown:
        where = "; ".join(
            f"'{name}' at {', '.join(places[:3])}{f' and {len(places) - 3} more' if len(places) > 3 else ''}"
            for name, places in sorted(unknown.items())
        )
        report.add(UNKNOWN_CLASS, source,
                   f"classes not in the label map ({', '.join(sorted(label_map))}): {where}; add them to the "
                   "label map or fix the labels")


def check_class_names(names: Iterable[str], source: str, report: Report) -> None:
    """Names that need escaping in label_map.pbtxt, and names that differ only in letter case."""
    names = sorted(set(names))
    for name in names:
        if any(c in name for c in "\"\\") or any(ord(c) < 32 or ord(c) == 127 for c in name):
            report.add(ESCAPED_CLASS_NAME, source, f"class {name!r} is written escaped in label_map.pbtxt")
    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        groups[name.casefold()].append(name)
    for group in groups.values():
        if len(group) > 1:
            report.add(SIMILAR_CLASS_NAMES, source,
                       f"classes {', '.join(map(repr, group))} differ only in letter case: they are "
                       f"{len(group)} classes; rename if they are one")


def check_split_classes(per_split: Mapping[str, Counter[str]], images: Mapping[str, int], classes: Iterable[str],
                        source: str, report: Report) -> None:
    """Classes that train cannot learn or val cannot evaluate."""
    for name in sorted(classes):
        train, val = per_split["train"].get(name, 0), per_split["val"].get(name, 0)
        if train == 0:
            report.add(CLASS_MISSING_FROM_SPLIT, source,
                       f"class '{name}' has no box in train ({val} in val): the model cannot learn it")
        elif val == 0 and images.get("val"):
            report.add(CLASS_MISSING_FROM_SPLIT, source,
                       f"class '{name}' has no box in val ({train} in train): it cannot be evaluated")
        if 0 < train < MIN_TRAIN_BOXES:
            report.add(CLASS_TOO_RARE, source,
                       f"class '{name}' has {train} boxes in train; label at least {MIN_TRAIN_BOXES}, "
                       "better hundreds")
