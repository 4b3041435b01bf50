"""Box sets for the duplicate-box check, and the check as it was: every box compared with every kept box.

``pairwise_drop_duplicates`` is ``jobs.dataset.validate.drop_duplicates`` before it searched a grid (quadratic:
10,000 boxes in 39 s), kept verbatim as the reference the grid search must agree with, finding for finding.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence

from jobs.dataset.annotations import Box
from jobs.dataset.findings import DUPLICATE_BOX, OVERLAPPING_DUPLICATE, Report
from jobs.dataset.validate import DUPLICATE_IOU


def _iou(a: Box, b: Box) -> float:
    w = min(a.xmax, b.xmax) - max(a.xmin, b.xmin)
    h = min(a.ymax, b.ymax) - max(a.ymin, b.ymin)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a.xmax - a.xmin) * (a.ymax - a.ymin) + (b.xmax - b.xmin) * (b.ymax - b.ymin) - inter)


def pairwise_drop_duplicates(boxes: Sequence[Box], report: Report) -> list[Box]:
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


def _boxes(corners: list[tuple[str, float, float, float, float]]) -> list[Box]:
    return [Box(label, *box, f"labels.csv:{row}") for row, (label, *box) in enumerate(corners, start=2)]


def _copy_of(rng: random.Random, box: Box, jitter: float) -> tuple[str, float, float, float, float]:
    """The box moved and resized by up to ``jitter`` of its sides: IoU from about 1 - 4 × jitter to 1."""
    w, h = box.xmax - box.xmin, box.ymax - box.ymin
    return (box.label, box.xmin + rng.uniform(-jitter, jitter) * w, box.ymin + rng.uniform(-jitter, jitter) * h,
            box.xmax + rng.uniform(-jitter, jitter) * w, box.ymax + rng.uniform(-jitter, jitter) * h)


def random_boxes(count: int, seed: int, image: float = 2000.0, labels: str = "abc", repeats: float = 0.05,
                 copies: float = 0.2) -> list[Box]:
    """Boxes of 2 to 100 px anywhere in an ``image`` × ``image`` picture; a share ``repeats`` repeat an earlier
    box exactly, a share ``copies`` copy one with its corners moved by up to 3 % of its sides (IoU around 0.95)."""
    rng = random.Random(seed)
    corners: list[tuple[str, float, float, float, float]] = []
    boxes: list[Box] = []
    for _ in range(count):
        draw = rng.random()
        if boxes and draw < repeats:
            corners.append(tuple(rng.choice(boxes)[:5]))
        elif boxes and draw < repeats + copies:
            corners.append(_copy_of(rng, rng.choice(boxes), 0.03))
        else:
            w, h = rng.uniform(2, 100), rng.uniform(2, 100)
            x, y = rng.uniform(0, image - w), rng.uniform(0, image - h)
            corners.append((rng.choice(labels), x, y, x + w, y + h))
        boxes.append(Box(*corners[-1], ""))
    return _boxes(corners)


def identical_boxes(count: int) -> list[Box]:
    """One box again and again, also under other classes, and boxes 1e-9 px away from it."""
    corners = [(label, 10.0, 20.0, 110.0, 70.0) for label in "aab" for _ in range(count // 3)]
    corners += [("a", 10.0 + 1e-9 * k, 20.0, 110.0, 70.0) for k in range(count // 4)]
    random.Random(0).shuffle(corners)
    return _boxes(corners)


def nested_boxes(count: int, seed: int, spread: float = 0.0) -> list[Box]:
    """Chains of 50 boxes, each inside the one before with its sides shorter by 0 to 4 % (IoU with the previous
    ones from 0.92 to 1), shrinking towards a corner or towards the centre; the chains start anywhere in a
    ``spread`` × ``spread`` square (0: all at one corner, the densest)."""
    rng = random.Random(seed)
    corners = []
    for start in range(0, count, 50):
        xmin, ymin = 500.0 + rng.uniform(0, spread), 400.0 + rng.uniform(0, spread)
        xmax, ymax = xmin + rng.uniform(50, 1000), ymin + rng.uniform(50, 1000)
        for _ in range(min(50, count - start)):
            corners.append((rng.choice("ab"), xmin, ymin, xmax, ymax))
            shrink_x, shrink_y = rng.uniform(0, 0.04) * (xmax - xmin), rng.uniform(0, 0.04) * (ymax - ymin)
            if rng.random() < 0.5:
                xmax, ymax = xmax - shrink_x, ymax - shrink_y
            else:
                xmin, xmax = xmin + shrink_x / 2, xmax - shrink_x / 2
                ymin, ymax = ymin + shrink_y / 2, ymax - shrink_y / 2
    if seed % 2:
        corners.reverse()  # growing boxes
    return _boxes(corners)


def straddling_boxes(seed: int) -> list[Box]:
    """Sides on and just off powers of two (where the grid's size levels change) and xmin + xmax on and just off
    multiples of a cell, each with copies 0 to 3 % away that straddle the edges."""
    rng = random.Random(seed)
    corners = []
    for level in range(1, 11):
        top = 2.0 ** level
        for side in (top, top * (1 - 1e-12), top * 0.94, top * 0.95, top * 0.53, top / 2, top / 2 * (1 + 1e-12)):
            cell = top / 16
            for k in range(3):
                middle = rng.randrange(1, 200) * cell + (0.0, 1e-9, -1e-9)[k]
                box = Box(rng.choice("ab"), (middle - side) / 2, middle / 4, (middle + side) / 2, middle / 4 + side, "")
                corners.append(tuple(box[:5]))
                corners += [_copy_of(rng, box, rng.choice((0.003, 0.01, 0.03))) for _ in range(4)]
    rng.shuffle(corners)
    return _boxes(corners)


def threshold_boxes() -> list[Box]:
    """Pairs with IoU just over, at and just under 0.95: widths in the ratio 0.95 × (1 ± 1e-12) sharing xmin, and
    shifts of (1 - 0.95) / (1 + 0.95) of the side."""
    corners = []
    for k, side in enumerate((3.0, 10.0, 97.0, 1000.0, 4096.0)):
        base = (f"t{k}", 100.0, 100.0, 100.0 + side, 100.0 + side)
        corners.append(base)
        for factor in (1 - 1e-12, 1.0, 1 + 1e-12, 1.01, 0.99):
            corners.append((f"t{k}", 100.0, 100.0, 100.0 + side * DUPLICATE_IOU * factor, 100.0 + side))
            shift = side * (1 - DUPLICATE_IOU) / (1 + DUPLICATE_IOU) * factor
            corners.append((f"t{k}", 100.0 + shift, 100.0, 100.0 + side + shift, 100.0 + side))
    return _boxes(corners)


def lattice_boxes(per_side: int, step: float, side: float = 100.0) -> list[Box]:
    """Boxes of one size on a square lattice ``step`` px apart: IoU with the next box (side - step) / (side + step),
    all above or all below 0.95; the densest set of kept boxes (at steps just over 2.56 % of the side)."""
    return _boxes([("a", i * step, j * step, i * step + side, j * step + side)
                   for i in range(per_side) for j in range(per_side)])


def degenerate_boxes() -> list[Box]:
    """Boxes the pipeline drops before this check (empty, inverted, not finite), and boxes beyond the grid's range
    (sides under 2^-1000, coordinates 2^40 sides away from 0), each twice and nearly twice."""
    nan, inf = math.nan, math.inf
    corners = [("a", 0.0, 0.0, 0.0, 10.0), ("a", 5.0, 5.0, 1.0, 10.0), ("a", nan, 0.0, 10.0, 10.0),
               ("a", 0.0, 0.0, inf, 10.0), ("a", -inf, 0.0, 10.0, 10.0), ("a", 0.0, 0.0, 10.0, nan),
               ("a", 1e-305, 0.0, 2e-305, 1e5), ("a", 1e-305, 0.0, 2.01e-305, 1e5),
               ("a", 2.0 ** 41, 0.0, 2.0 ** 41 + 2, 2.0), ("a", 2.0 ** 41, 0.0, 2.0 ** 41 + 2.02, 2.0),
               ("a", -1e300, 0.0, 1e300, 10.0), ("a", -1e300, 0.0, 1.01e300, 10.0)]
    corners += corners + [(label, 0.0, 0.0, 10.0, 10.0) for label in ("a", "b")] + [("a", 0.0, 0.0, 10.1, 10.0)]
    return _boxes(corners)
