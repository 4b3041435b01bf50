"""Box and class checks, each finding named by its rule (see ``findings.py``)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace

from jobs.dataset.annotations import Box
from jobs.dataset.findings import (
    BOX_CLIPPED,
    BOX_INVERTED,
    BOX_NOT_FINITE,
    BOX_OUTSIDE,
    BOX_ZERO_AREA,
    UNKNOWN_CLASS,
    Report,
)

CLIP_TOLERANCE = 0.02  # fraction of the image size a box may cross the border by and still be clipped


def check_box(box: Box, width: int, height: int, report: Report) -> Box | None:
    """The box to write (possibly clipped), or None when it is dropped (and reported)."""
    coords = (box.xmin, box.ymin, box.xmax, box.ymax)
    shown = f"({box.xmin:g}, {box.ymin:g}, {box.xmax:g}, {box.ymax:g})"
    if not all(math.isfinite(c) for c in coords):
        report.add(BOX_NOT_FINITE, box.location, f"box {shown} of '{box.label}' has a non-finite coordinate")
        return None
    if box.xmax < box.xmin or box.ymax < box.ymin:
        report.add(BOX_INVERTED, box.location, f"box {shown} of '{box.label}' is inverted (max < min)")
        return None
    if box.xmax == box.xmin or box.ymax == box.ymin:
        report.add(BOX_ZERO_AREA, box.location, f"box {shown} of '{box.label}' has zero area")
        return None
    tol_x, tol_y = CLIP_TOLERANCE * width, CLIP_TOLERANCE * height
    if box.xmin < -tol_x or box.ymin < -tol_y or box.xmax > width + tol_x or box.ymax > height + tol_y:
        report.add(BOX_OUTSIDE, box.location,
                   f"box {shown} of '{box.label}' lies outside the {width}x{height} image")
        return None
    clipped = replace(box, xmin=max(box.xmin, 0.0), ymin=max(box.ymin, 0.0),
                      xmax=min(box.xmax, float(width)), ymax=min(box.ymax, float(height)))
    if clipped != box:
        report.add(BOX_CLIPPED, box.location,
                   f"box {shown} of '{box.label}' clipped to the {width}x{height} image")
    return clipped


def check_classes(boxes: list[Box], label_map: dict[str, int], report: Report) -> None:
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
        report.add(UNKNOWN_CLASS, boxes[0].location.split(":")[0],
                   f"classes not in the label map ({', '.join(sorted(label_map))}): {where}")
