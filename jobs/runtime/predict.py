"""Run an exported model on images: detections as data, and annotated copies of the images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs.dataset import label_map as label_maps
from jobs.runtime.inference import SavedModelDetector

PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40))


@dataclass(frozen=True)
class Detection:
    image: str
    label: str
    class_id: int
    score: float
    xmin: float
    ymin: float
    xmax: float
    ymax: float  # pixels of the image as stored


class Predictor:
    def __init__(self, model: Path):
        self.detector = SavedModelDetector(str(model))
        self.classes = {class_id: name for name, class_id in label_maps.load(model / "label_map.pbtxt").items()}

    def predict(self, path: Path, score_threshold: float = 0.3) -> tuple[list[Detection], object]:
        from PIL import Image

        with Image.open(path) as opened:
            image = opened.convert("RGB")
        found = self.detector(np.asarray(image))
        width, height = image.size
        detections = [
            Detection(str(path), self.classes.get(int(c), f"class {int(c)}"), int(c), float(s),
                      float(b[1]) * width, float(b[0]) * height, float(b[3]) * width, float(b[2]) * height)
            for b, s, c in zip(found.boxes, found.scores, found.classes, strict=True) if s >= score_threshold
        ]
        return detections, image


def draw(image, detections: list[Detection]):
    """A copy of the image with each box, its class and its score."""
    from PIL import ImageDraw, ImageFont

    canvas = image.copy()
    pen = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(10, canvas.height // 40))
    width = max(1, round(min(canvas.size) / 200))
    for item in detections:
        color = PALETTE[item.class_id % len(PALETTE)]
        pen.rectangle((item.xmin, item.ymin, item.xmax, item.ymax), outline=color, width=width)
        text = f"{item.label} {item.score:.2f}"
        left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
        label_w, label_h = right - left + 4, bottom - top + 4
        x = min(max(0.0, item.xmin), max(0.0, canvas.width - label_w))  # keep the label inside the image
        y = item.ymin - label_h if item.ymin >= label_h else item.ymin
        pen.rectangle((x, y, x + label_w, y + label_h), fill=color)
        pen.text((x + 2 - left, y + 2 - top), text, fill=(255, 255, 255), font=font)
    return canvas
