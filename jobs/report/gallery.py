"""The images with the most errors, each as a pair: ground truth (green) | predictions at the threshold."""

from __future__ import annotations

import io
from collections import defaultdict

import numpy as np

from jobs.metrics import CocoAnnotation, CocoGroundTruth
from jobs.metrics import Detection as CocoDetection
from jobs.report.drawing import GROUND_TRUTH, Detection, draw
from jobs.report.matching import Analysis

GRID_IMAGES = 12
PANEL = 256  # longest side of each drawn image, in pixels
PAIRS_PER_ROW = 2
CAPTION = 20
GAP = 8


def worst_image_ids(analysis: Analysis, count: int = GRID_IMAGES) -> list[int]:
    return [entry.image_id for entry in analysis.images[:count]]


def worst_images_png(analysis: Analysis, ground_truth: CocoGroundTruth, detections: list[CocoDetection],
                     images: dict[int, np.ndarray]) -> bytes:
    """A grid of the images in ``images`` (RGB arrays by image id), most errors first."""
    from PIL import Image, ImageDraw

    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    files = {entry["id"]: entry.get("file_name", str(entry["id"])) for entry in ground_truth["images"]}
    truth: defaultdict[int, list[CocoAnnotation]] = defaultdict(list)
    found: defaultdict[int, list[CocoDetection]] = defaultdict(list)
    for annotation in ground_truth["annotations"]:
        truth[annotation["image_id"]].append(annotation)
    for detection in detections:
        if detection["score"] >= analysis.threshold and detection["category_id"] in names:
            found[detection["image_id"]].append(detection)
    entries = [entry for entry in analysis.images if entry.image_id in images]
    rows = max(1, -(-len(entries) // PAIRS_PER_ROW))
    pair_width = 2 * PANEL + GAP
    grid = Image.new("RGB", (PAIRS_PER_ROW * pair_width + (PAIRS_PER_ROW - 1) * 3 * GAP,
                             rows * (PANEL + CAPTION + 2 * GAP)), "white")
    pen = ImageDraw.Draw(grid)
    if not entries:
        pen.text((GAP, GAP), "no validation images", fill="black")
    for position, entry in enumerate(entries):
        image = Image.fromarray(images[entry.image_id])
        scale = PANEL / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
        left = (position % PAIRS_PER_ROW) * (pair_width + 3 * GAP)
        top = (position // PAIRS_PER_ROW) * (PANEL + CAPTION + 2 * GAP)
        pen.text((left, top + 4), f"{files[entry.image_id]}: {entry.missed} missed, {entry.false} false",
                 fill="black")
        boxes = [_box(a["bbox"], names, a["category_id"], None, scale) for a in truth[entry.image_id]]
        grid.paste(draw(image, boxes, GROUND_TRUTH), (left, top + CAPTION))
        boxes = [_box(d["bbox"], names, d["category_id"], d["score"], scale) for d in found[entry.image_id]]
        grid.paste(draw(image, boxes), (left + PANEL + GAP, top + CAPTION))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()


def _box(xywh: list[float], names: dict[int, str], class_id: int, score: float | None, scale: float) -> Detection:
    x, y, width, height = (value * scale for value in xywh)
    return Detection("", names.get(class_id, str(class_id)), class_id, score, x, y, x + width, y + height)
