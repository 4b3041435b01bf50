"""Labelled boxes drawn on images, for every picture that shows boxes: predictions in their class colour with the
score, ground truth in green (evaluation), a dataset's boxes in their class colour (``data stats`` samples)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

# No green in the palette: green is the ground truth.
PALETTE = ((230, 25, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230),
           (128, 0, 0), (0, 0, 128), (170, 110, 40), (128, 128, 128))
GROUND_TRUTH = (0, 200, 0)


@dataclass(frozen=True)
class Detection:
    image: str
    label: str
    class_id: int
    score: float | None  # None for a ground-truth box
    xmin: float
    ymin: float
    xmax: float
    ymax: float  # pixels of the image as stored
    frame: int | None = None  # the frame index when the image is a video frame


def class_color(class_id: int) -> tuple[int, int, int]:
    return PALETTE[class_id % len(PALETTE)]


def draw(image: Image, detections: list[Detection], color: tuple[int, int, int] | None = None) -> Image:
    """A copy of the image with each box, its class and its score (``color`` overrides the class colours)."""
    from PIL import ImageDraw, ImageFont

    canvas = image.copy()
    pen = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(10, canvas.height // 40))
    width = max(1, round(min(canvas.size) / 200))
    for item in detections:
        fill = color or class_color(item.class_id)
        pen.rectangle((item.xmin, item.ymin, item.xmax, item.ymax), outline=fill, width=width)
        text = item.label if item.score is None else f"{item.label} {item.score:.2f}"
        left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
        label_w, label_h = right - left + 4, bottom - top + 4
        x = min(max(0.0, item.xmin), max(0.0, canvas.width - label_w))  # keep the label inside the image
        y = item.ymin - label_h if item.ymin >= label_h else item.ymin
        pen.rectangle((x, y, x + label_w, y + label_h), fill=fill)
        pen.text((x + 2 - left, y + 2 - top), text, fill=(255, 255, 255), font=font)
    return canvas
