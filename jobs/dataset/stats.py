"""``data stats``: PNG charts of a checked dataset (classes, boxes per image, box sizes) and a grid of samples.

Charts are drawn with Pillow (``charts.py``), the sample grid from downscaled decodes, into a folder that is new
(``prepare``'s stage, or ``data stats``'s own, swapped in whole).
"""

from __future__ import annotations

import io
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from jobs.dataset.annotations import Box
from jobs.dataset.charts import Chart, bin_counts
from jobs.dataset.images import pillow_unlimited
from jobs.dataset.pipeline import Checked, CheckedImage
from jobs.dataset.shards import read_object
from jobs.report import drawing

SAMPLES = 16
BOXES_COLOUR, IMAGES_COLOUR = "#4363d8", "#f58231"
TILE = 200


class Sample(NamedTuple):
    path: str
    width: int
    height: int
    boxes: tuple[Box, ...]


@dataclass(frozen=True)
class ChartData:
    """What the charts show."""

    classes: list[str]
    boxes_per_class: list[int]
    images_per_class: list[int]
    boxes_per_image: list[int]
    widths: list[float]  # box width / image width
    heights: list[float]
    aspects: list[float]  # log2(width / height)
    samples: list[Sample]


def chart_data(checked: Checked) -> ChartData:
    images = [image for items in checked.splits.values() for image in items]
    names = sorted(checked.classes, key=checked.classes.__getitem__)
    boxes = Counter(box.label for image in images for box in image.boxes)
    containing = Counter(label for image in images for label in {box.label for box in image.boxes})
    widths, heights, aspects = [], [], []
    for image in images:
        for box in image.boxes:
            width, height = box.xmax - box.xmin, box.ymax - box.ymin
            widths.append(width / image.info.width)
            heights.append(height / image.info.height)
            aspects.append(math.log2(width / height))
    samples = [Sample(i.path, i.info.width, i.info.height, i.boxes) for i in _pick(images)]
    return ChartData(names, [boxes[n] for n in names], [containing[n] for n in names],
                     [len(image.boxes) for image in images], widths, heights, aspects, samples)


def write_stats(folder: Path, data: ChartData) -> list[str]:
    """Write the charts and the sample grid into ``folder``, a new folder that replaces the output as a whole
    (``jobs.io.staged_dir``); returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"classes.png": _classes_chart, "boxes_per_image.png": _boxes_per_image_chart,
             "box_sizes.png": _box_sizes_chart, "samples.png": _samples}
    for name, draw in files.items():
        with (folder / name).open("wb") as stream:
            draw(stream, data)
    return list(files)


def _classes_chart(stream: BinaryIO, data: ChartData) -> None:
    names = data.classes
    left = round(max(map(Chart.measure, names), default=0)) + 20  # the widest class name, left of the bars
    chart = Chart(left + 680, 100 + 30 * len(names),
                  f"boxes and images per class ({data.boxes_per_image.count(0)} negative images)")
    top = max(data.boxes_per_class, default=0)
    panel = chart.panel((left, 40, left + 560, chart.image.height - 50), (0, max(1, top) * 1.05),
                        (len(names) - 0.5, -0.5), "count", row_names=names)
    panel.bars([row - 0.2 for row in range(len(names))], data.boxes_per_class, 0.4, BOXES_COLOUR)
    panel.bars([row + 0.2 for row in range(len(names))], data.images_per_class, 0.4, IMAGES_COLOUR)
    chart.legend((left + 575, 42), [("boxes", BOXES_COLOUR), ("images", IMAGES_COLOUR)])
    chart.save(stream)


def _boxes_per_image_chart(stream: BinaryIO, data: ChartData) -> None:
    counts = data.boxes_per_image
    top = max(counts, default=0)
    per_count = Counter(counts)
    chart = Chart(600, 350, f"boxes per image (max {top}, mean {sum(counts) / max(1, len(counts)):.2f})")
    panel = chart.panel((75, 40, 580, 295), (-0.7, top + 0.7), (0, max(1, max(per_count.values(), default=0)) * 1.05),
                        "boxes per image", "images", integer_x=True)
    panel.histogram([count - 0.5 for count in range(top + 2)], [per_count[count] for count in range(top + 1)],
                    "#3cb44b", fill=0.9)
    chart.save(stream)


def _box_sizes_chart(stream: BinaryIO, data: ChartData) -> None:
    chart = Chart(1200, 350, f"sizes of {len(data.widths)} boxes")
    for index, (values, label, colour) in enumerate(((data.widths, "box width / image width", "#4363d8"),
                                                    (data.heights, "box height / image height", "#e6194b"),
                                                    (data.aspects, "log2(width / height)", "#911eb4"))):
        edges, counts = bin_counts(values, 40)
        pad = (edges[-1] - edges[0]) * 0.05
        left = 75 + 395 * index
        panel = chart.panel((left, 40, left + 310, 295), (edges[0] - pad, edges[-1] + pad),
                            (0, max(1, max(counts)) * 1.05), label, "boxes")
        panel.histogram(edges, counts, colour)
    chart.save(stream)


def _pick(images: list[CheckedImage]) -> list[CheckedImage]:
    """Evenly spaced over the name order, images with boxes first."""
    ranked = sorted(images, key=lambda i: (not i.boxes, i.filename))
    step = max(1, len(ranked) // SAMPLES) if sum(1 for i in ranked if i.boxes) >= SAMPLES else 1
    return ranked[::step][:SAMPLES]


def _samples(stream: BinaryIO, data: ChartData) -> None:
    from PIL import Image

    picked = data.samples
    columns = max(1, math.ceil(math.sqrt(len(picked))))
    rows = max(1, math.ceil(len(picked) / columns))
    grid = Image.new("RGB", (columns * TILE, rows * TILE), (32, 32, 32))
    class_ids = {name: index + 1 for index, name in enumerate(data.classes)}  # label-map ids: the class colours
    for index, item in enumerate(picked):
        if item.path.startswith("gs://"):  # a sample of a dataset read in Cloud Storage: these few are downloaded
            if (content := read_object(item.path)) is None:
                continue  # read by the check a moment ago; left blank rather than failing the dataset
            image: str | io.BytesIO = io.BytesIO(content)
        else:
            image = item.path
        with pillow_unlimited(), Image.open(image) as source:  # within --max-pixels, checked
            source.draft("RGB", (TILE, TILE))
            source.seek(0)
            tile = source.convert("RGB")
        scale = min(TILE / item.width, TILE / item.height)
        tile = tile.resize((max(1, round(item.width * scale)), max(1, round(item.height * scale))))
        boxes = [drawing.Detection(item.path, box.label, class_ids[box.label], None, box.xmin * scale,
                                   box.ymin * scale, box.xmax * scale, box.ymax * scale) for box in item.boxes]
        grid.paste(drawing.draw(tile, boxes), ((index % columns) * TILE, (index // columns) * TILE))
    grid.save(stream, format="PNG", compress_level=1)
