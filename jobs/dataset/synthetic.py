"""A deterministic synthetic detection dataset drawn with Pillow (the demo's data, and test data)."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.ImageDraw import ImageDraw

SHAPES = ("circle", "square", "triangle")


@dataclass(frozen=True)
class SyntheticDataset:
    images_dir: Path
    labels_csv: Path  # VoTT CSV export format
    images: int
    boxes: int


def _draw_shape(draw: ImageDraw, shape: str, box: tuple[int, int, int, int], color: tuple[int, int, int]) -> None:
    xmin, ymin, xmax, ymax = box
    if shape == "circle":
        draw.ellipse(box, fill=color)
    elif shape == "square":
        draw.rectangle(box, fill=color)
    else:
        draw.polygon([((xmin + xmax) / 2, ymin), (xmax, ymax), (xmin, ymax)], fill=color)


def make_dataset(out: Path, count: int = 300, seed: int = 0, size: int = 128) -> SyntheticDataset:
    """``count`` JPEGs of ``size`` px with 1-3 shapes each, and their labels as a VoTT CSV export."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(seed)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        background = tuple(rng.randint(60, 200) for _ in range(3))
        image = Image.new("RGB", (size, size), background)
        draw = ImageDraw.Draw(image)
        for _ in range(6):  # clutter that is not an object
            x, y = rng.randrange(size), rng.randrange(size)
            draw.line((x, y, x + rng.randint(-30, 30), y + rng.randint(-30, 30)),
                      fill=tuple(rng.randint(0, 255) for _ in range(3)), width=2)
        placed: list[tuple[int, int, int, int]] = []
        for _ in range(rng.randint(1, 3)):
            side = rng.randint(size // 6, size // 3)
            for _attempt in range(20):
                x, y = rng.randint(0, size - side - 1), rng.randint(0, size - side - 1)
                box = (x, y, x + side, y + side)
                if all(box[2] < p[0] or box[0] > p[2] or box[3] < p[1] or box[1] > p[3] for p in placed):
                    break
            else:
                continue
            shape = rng.choice(SHAPES)
            color = {"circle": (220, 40, 40), "square": (40, 60, 220), "triangle": (30, 180, 60)}[shape]
            red, green, blue = (max(0, min(255, c + rng.randint(-30, 30))) for c in color)
            color = (red, green, blue)
            _draw_shape(draw, shape, box, color)
            placed.append(box)
            rows.append((f"img_{index:04d}.jpg", *box, shape))
        image = image.filter(ImageFilter.GaussianBlur(0.6))
        image.save(images_dir / f"img_{index:04d}.jpg", quality=90)
    labels_csv = out / "vott-export.csv"
    with labels_csv.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, quoting=csv.QUOTE_ALL)
        writer.writerow(["image", "xmin", "ymin", "xmax", "ymax", "label"])
        for name, xmin, ymin, xmax, ymax, label in rows:
            writer.writerow([name, float(xmin), float(ymin), float(xmax), float(ymax), label])
    return SyntheticDataset(images_dir, labels_csv, count, len(rows))
