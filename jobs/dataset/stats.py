"""``data stats``: PNG charts of a checked dataset (classes, boxes per image, box sizes) and a grid of samples.

Charts use matplotlib's Agg canvas without pyplot (no global state, imported only here); the sample grid is drawn
with Pillow from downscaled decodes. Each file is written under a temporary name, then renamed. ``prepare`` draws
them with a ``ChartDrawer`` started as soon as the labels are read, so importing matplotlib costs no time.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from jobs.dataset.annotations import Box
from jobs.dataset.check import Checked, CheckedImage

SAMPLES = 16
TILE = 200
COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#008080",
           "#9a6324", "#800000", "#808000", "#000075", "#fabebe", "#ffe119", "#aaffc3")


class ChartDrawer:
    """Draws the charts of ``prepare``: in a process of its own once ``start()``ed, which imports matplotlib (half a
    second) while the caller goes on with one core; here, when it was not started."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ChartDrawer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def start(self) -> None:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, initializer=_import_matplotlib)
            self._pool.submit(int)  # starts the process

    def draw(self, folder: Path, data: ChartData) -> Callable[[], list[str]]:
        """Start ``write_stats(folder, data)``; the function returned completes it and gives the file names. Started,
        the process draws the charts and the function draws the sample grid meanwhile."""
        if self._pool is None:
            names = write_stats(folder, data)
            return lambda: names
        charts = self._pool.submit(write_charts, folder, data)

        def complete() -> list[str]:
            samples = write_samples(folder, data)
            return charts.result() + samples

        return complete


def _import_matplotlib() -> None:
    import matplotlib.figure  # noqa: F401


class Sample(NamedTuple):
    path: str
    width: int
    height: int
    boxes: tuple[Box, ...]


@dataclass(frozen=True)
class ChartData:
    """What the charts show, small enough to hand to another process."""

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
    names = sorted(checked.classes, key=checked.classes.get)
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
    """Write the charts and the sample grid into ``folder``; returns the file names."""
    return write_charts(folder, data) + write_samples(folder, data)


def write_charts(folder: Path, data: ChartData) -> list[str]:
    """The matplotlib charts."""
    return _write_files(folder, data, {"classes.png": _classes_chart, "boxes_per_image.png": _boxes_per_image_chart,
                                       "box_sizes.png": _box_sizes_chart})


def write_samples(folder: Path, data: ChartData) -> list[str]:
    """The grid of sample images (Pillow only)."""
    return _write_files(folder, data, {"samples.png": _samples})


def _write_files(folder: Path, data: ChartData, files: dict[str, Callable[[io.BufferedWriter, ChartData], None]]
                 ) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, draw in files.items():
        _atomic(folder / name, lambda stream, draw=draw: draw(stream, data))
    return list(files)


def _atomic(path: Path, draw: Callable[[io.BufferedWriter], None]) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            draw(stream)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _figure(width: float, height: float, columns: int = 1, left: float = 0.7, right: float = 0.2):
    """A figure without pyplot; margins in inches (constrained layout would cost more than the drawing)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    figure.subplots_adjust(left=left / width, right=1 - right / width, bottom=0.55 / height, top=1 - 0.4 / height,
                           wspace=0.3)
    return figure, figure.subplots(1, columns, squeeze=False)[0]


def _classes_chart(stream, data: ChartData) -> None:
    names = data.classes
    figure, (axes,) = _figure(8, 1.3 + 0.3 * len(names), left=0.3 + 0.07 * max(map(len, names), default=1),
                              right=1.3)
    rows = range(len(names))
    axes.barh([r + 0.2 for r in rows], data.boxes_per_class, height=0.4, label="boxes", color="#4363d8")
    axes.barh([r - 0.2 for r in rows], data.images_per_class, height=0.4, label="images", color="#f58231")
    axes.set_yticks(list(rows), names)
    axes.invert_yaxis()
    axes.set_xlabel("count")
    axes.set_title(f"boxes and images per class ({data.boxes_per_image.count(0)} negative images)")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.savefig(stream, format="png", pil_kwargs={"compress_level": 1})


def _boxes_per_image_chart(stream, data: ChartData) -> None:
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    counts = data.boxes_per_image
    figure, (axes,) = _figure(6, 3.5)
    top = max(counts, default=0)
    axes.hist(np.asarray(counts), bins=range(0, top + 2), align="left", color="#3cb44b", rwidth=0.9)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("boxes per image")
    axes.set_ylabel("images")
    axes.set_title(f"boxes per image (max {top}, mean {sum(counts) / max(1, len(counts)):.2f})")
    figure.savefig(stream, format="png", pil_kwargs={"compress_level": 1})


def _box_sizes_chart(stream, data: ChartData) -> None:
    figure, axes = _figure(12, 3.5, columns=3)
    import numpy as np

    for ax, values, label, colour in ((axes[0], data.widths, "box width / image width", "#4363d8"),
                                      (axes[1], data.heights, "box height / image height", "#e6194b"),
                                      (axes[2], data.aspects, "log2(width / height)", "#911eb4")):
        ax.hist(np.asarray(values), bins=40, color=colour, histtype="stepfilled")  # a list is read item by item
        ax.set_xlabel(label)
        ax.set_ylabel("boxes")
    figure.suptitle(f"sizes of {len(data.widths)} boxes")
    figure.savefig(stream, format="png", pil_kwargs={"compress_level": 1})


def _pick(images: list[CheckedImage]) -> list[CheckedImage]:
    """Evenly spaced over the name order, images with boxes first."""
    ranked = sorted(images, key=lambda i: (not i.boxes, i.filename))
    step = max(1, len(ranked) // SAMPLES) if sum(1 for i in ranked if i.boxes) >= SAMPLES else 1
    return ranked[::step][:SAMPLES]


def _samples(stream, data: ChartData) -> None:
    from PIL import Image, ImageDraw

    picked = data.samples
    columns = max(1, math.ceil(math.sqrt(len(picked))))
    rows = max(1, math.ceil(len(picked) / columns))
    grid = Image.new("RGB", (columns * TILE, rows * TILE), (32, 32, 32))
    colour = {name: COLOURS[index % len(COLOURS)] for index, name in enumerate(data.classes)}
    for index, item in enumerate(picked):
        with Image.open(item.path) as source:
            source.draft("RGB", (TILE, TILE))
            source.seek(0)
            tile = source.convert("RGB")
        scale = min(TILE / item.width, TILE / item.height)
        tile = tile.resize((max(1, round(item.width * scale)), max(1, round(item.height * scale))))
        draw = ImageDraw.Draw(tile)
        for box in item.boxes:
            shape = [box.xmin * scale, box.ymin * scale, box.xmax * scale, box.ymax * scale]
            draw.rectangle(shape, outline=colour[box.label], width=2)
            corner = (shape[0] + 2, shape[1] + 1)
            draw.rectangle(draw.textbbox(corner, box.label), fill=colour[box.label])
            draw.text(corner, box.label, fill="white")
        grid.paste(tile, ((index % columns) * TILE, (index // columns) * TILE))
    grid.save(stream, format="PNG", compress_level=1)
