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
    LONG_CLASS_NAME,
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
MAX_CLASS_NAME = 200  # characters (LONG_CLASS_NAME)


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
    """Keep the first of boxes with the same class and coordinates, or the same class and IoU > 0.95.

    Each box is compared with the kept boxes of its class that can reach the threshold (``_KeptBoxes``), not with
    all of them: a million boxes in one image take seconds, not hours.
    """
    if len(boxes) < 2:
        return list(boxes)
    kept = _KeptBoxes()
    for box in boxes:
        same = kept.same(box)
        if same is not None:
            report.add(DUPLICATE_BOX, box.location, f"box of '{box.label}' repeats the one at {same.location}")
            continue
        close = kept.first_overlapping(box)
        if close is not None:
            report.add(OVERLAPPING_DUPLICATE, box.location,
                       f"box of '{box.label}' overlaps the one at {close.location} with IoU {_iou(close, box):.3f}")
            continue
        kept.add(box)
    return kept.boxes


_SEARCH_IOU = DUPLICATE_IOU - 0.01  # the grid's bounds use a lower IoU, so float rounding never hides a pair
_REACH = (1 - _SEARCH_IOU) / _SEARCH_IOU
_SIZE_CLASSES = 4  # per doubling of a side
_CELL = 1 / 8  # grid cell side along min + max, as a fraction of the narrowest side of its size class
_GRID_SIDES = (2.0 ** -1000, 2.0 ** 1000)  # the grid's arithmetic neither overflows nor loses the reach to rounding
_GRID_MIDDLE = 2.0 ** 30  # for sides in this range and |min + max| under this many sides


class _KeptBoxes:
    """The kept boxes by class and coordinates (exact repeats), and on a grid (near repeats).

    Two boxes with IoU > t have widths within a factor t of each other and |Δxmin| + |Δxmax| below (1 - t) / t ×
    the narrower width, so |Δ(xmin + xmax)| and |Δwidth| too; the same in y. Boxes are filed by class, size class
    of width and of height, and the cell of (xmin + xmax, ymin + ymax), cells sized to their size classes; a box is
    compared with the kept boxes of the 1 or 2 size classes per side and the few cells per axis within that reach
    only, and its IoU computed with those that are within reach. Kept boxes of a class overlap each other by
    IoU <= 0.95, so few share a cell: the work per box does not grow with the number of boxes.
    """

    def __init__(self) -> None:
        self.boxes: list[Box] = []  # in the order kept
        self._exact: dict[tuple[str, float, float, float, float], Box] = {}
        # (label, x size class, y size class, x cell, y cell) -> (index, xmin + xmax, width, ymin + ymax, height)
        self._grid: dict[tuple[str, int, int, int, int], list[tuple[int, float, float, float, float]]] = \
            defaultdict(list)
        self._off_grid: list[int] = []  # kept boxes too small, too large or too far out for the grid

    def same(self, box: Box) -> Box | None:
        return self._exact.get((box.label, box.xmin, box.ymin, box.xmax, box.ymax))

    def first_overlapping(self, box: Box) -> Box | None:
        """The earliest kept box of the class with IoU > 0.95: the one a scan of all kept boxes finds first."""
        width, height = box.xmax - box.xmin, box.ymax - box.ymin
        if not (0 < width < math.inf and 0 < height < math.inf):
            return None  # empty, inverted or not finite: its IoU is 0 or NaN with every box
        x_middle, y_middle = box.xmin + box.xmax, box.ymin + box.ymax
        if not (_on_grid(x_middle, width) and _on_grid(y_middle, height)):
            best = self._earliest(box, range(len(self.boxes)), len(self.boxes))
        else:
            best = self._earliest(box, self._off_grid, len(self.boxes))
            x_reach, y_reach = _REACH * width, _REACH * height
            y_near = _near_cells(y_middle, height)
            for x_size, x_cell in _near_cells(x_middle, width):
                for y_size, y_cell in y_near:
                    for index, x_mid, x_side, y_mid, y_side in self._grid.get((box.label, x_size, y_size, x_cell,
                                                                              y_cell), ()):
                        if index >= best:
                            break
                        if (abs(x_mid - x_middle) < x_reach and abs(x_side - width) < x_reach
                                and abs(y_mid - y_middle) < y_reach and abs(y_side - height) < y_reach
                                and _iou(self.boxes[index], box) > DUPLICATE_IOU):
                            best = index
                            break
        return self.boxes[best] if best < len(self.boxes) else None

    def add(self, box: Box) -> None:
        self._exact[(box.label, box.xmin, box.ymin, box.xmax, box.ymax)] = box
        width, height = box.xmax - box.xmin, box.ymax - box.ymin
        x_middle, y_middle = box.xmin + box.xmax, box.ymin + box.ymax
        if _on_grid(x_middle, width) and _on_grid(y_middle, height):
            x_size, y_size = _size_class(width), _size_class(height)
            key = (box.label, x_size, y_size, _cell(x_middle, x_size), _cell(y_middle, y_size))
            self._grid[key].append((len(self.boxes), x_middle, width, y_middle, height))
        elif 0 < width < math.inf and 0 < height < math.inf:
            self._off_grid.append(len(self.boxes))
        self.boxes.append(box)

    def _earliest(self, box: Box, indices: Iterable[int], best: int) -> int:
        """The first of ``indices`` (ascending) under ``best`` whose box has the class of ``box`` and IoU > 0.95
        with it, else ``best``."""
        for index in indices:
            if index >= best:
                break
            earlier = self.boxes[index]
            if earlier.label == box.label and _iou(earlier, box) > DUPLICATE_IOU:
                return index
        return best


def _on_grid(middle: float, side: float) -> bool:
    return _GRID_SIDES[0] < side < _GRID_SIDES[1] and abs(middle) < _GRID_MIDDLE * side


def _size_class(side: float) -> int:
    """Sides of one size class are within a factor 2^(1 / _SIZE_CLASSES) of each other."""
    return math.floor(math.log2(side) * _SIZE_CLASSES)


def _cell_side(size_class: int) -> float:
    side: float = _CELL * 2.0 ** (size_class / _SIZE_CLASSES)  # float ** float is typed Any (it may be complex)
    return side


def _cell(middle: float, size_class: int) -> int:
    """The grid cell of min + max of a box whose side is of ``size_class``."""
    return math.floor(middle / _cell_side(size_class))


def _near_cells(middle: float, side: float) -> list[tuple[int, int]]:
    """Where the kept boxes that can overlap a box by IoU > 0.95 are filed, along one axis (``middle`` is min +
    max): the size classes of sides within a factor ``_SEARCH_IOU`` of ``side``, and their cells within reach."""
    near = []
    for size_class in range(_size_class(side * _SEARCH_IOU), _size_class(side / _SEARCH_IOU) + 1):
        reach, cell = _REACH * side, _cell_side(size_class)
        near += [(size_class, number) for number in range(math.floor((middle - reach) / cell),
                                                          math.floor((middle + reach) / cell) + 1)]
    return near


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
            f"'{_cut(name)}' at {', '.join(places[:3])}{f' and {len(places) - 3} more' if len(places) > 3 else ''}"
            for name, places in sorted(unknown.items())
        )
        report.add(UNKNOWN_CLASS, source,
                   f"classes not in the label map ({', '.join(sorted(label_map))}): {where}; add them to the "
                   "label map or fix the labels")


def _cut(name: str) -> str:
    """The name, or its start and its length when it is too long to show."""
    return name if len(name) <= MAX_CLASS_NAME else f"{name[:40]}... ({len(name):,} characters)"


def check_class_names(boxes: Sequence[Box], source: str, report: Report) -> None:
    """Names too long to be names (where each first occurs), names that need escaping in label_map.pbtxt, names
    that differ only in letter case."""
    names = sorted({box.label for box in boxes})
    long = {name for name in names if len(name) > MAX_CLASS_NAME}
    for box in boxes if long else ():
        if box.label in long:
            long.remove(box.label)
            report.add(LONG_CLASS_NAME, box.location, f"a class name of {len(box.label):,} characters "
                                                      f"({box.label[:40]!r}...), over {MAX_CLASS_NAME}: a broken "
                                                      "field rather than a name; fix the labels")
    names = [name for name in names if len(name) <= MAX_CLASS_NAME]
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
