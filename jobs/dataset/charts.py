"""Histograms and bar charts drawn with Pillow: the few plain charts ``data stats`` draws, without importing
matplotlib (0.8 CPU-seconds here, ten times what drawing them takes).

A ``Chart`` is a white canvas with a title; ``panel`` draws the axes of one plot area (frame, grid, ticks at round
numbers, labels) and returns the ``Panel`` that maps data to pixels for ``histogram`` and ``bars``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import BinaryIO

from PIL import Image, ImageDraw, ImageFont

INK, GRID, BACKGROUND = "#262626", "#e3e3e3", "white"
TEXT_SIZE, TITLE_SIZE = 13, 15
TICK = 4  # px
STEPS = (1, 2, 2.5, 5, 10)  # tick steps, times a power of ten


def ticks(low: float, high: float, count: int = 6, integer: bool = False) -> list[float]:
    """Round values from ``low`` to ``high`` (about ``count``, steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in STEPS if m * power >= raw * (1 - 1e-9))
    if integer:
        step = max(1.0, math.ceil(step))
    first = math.ceil(low / step - 1e-9)
    return [index * step for index in range(first, math.floor(high / step + 1e-9) + 1)]


def tick_label(value: float) -> str:
    """A tick value as people write it: 0.25, 3, 12000."""
    return f"{round(value, 9):g}" if abs(value) < 1e6 else f"{value:.3g}"


def bin_counts(values: Sequence[float], bins: int) -> tuple[list[float], list[int]]:
    """Equal-width bins over the values' range (one unit wide around a single value): edges and counts."""
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if low == high:
        low, high = low - 0.5, high + 0.5
    scale = bins / (high - low)
    hits = Counter([int((value - low) * scale) for value in values])
    counts = [hits[index] for index in range(bins)]
    counts[-1] += hits[bins]  # the maximum itself
    return [low + index / scale for index in range(bins + 1)], counts


@dataclass(frozen=True)
class Panel:
    """A plot area: its pixel box and the data ranges it shows."""

    draw: ImageDraw.ImageDraw
    box: tuple[int, int, int, int]  # left, top, right, bottom
    x: tuple[float, float]
    y: tuple[float, float]

    def px(self, x: float) -> float:
        left, _, right, _ = self.box
        return left + (x - self.x[0]) / (self.x[1] - self.x[0]) * (right - left)

    def py(self, y: float) -> float:
        _, top, _, bottom = self.box
        return bottom - (y - self.y[0]) / (self.y[1] - self.y[0]) * (bottom - top)

    def histogram(self, edges: Sequence[float], counts: Sequence[int], colour: str, fill: float = 1.0) -> None:
        """Bars from the x axis, each ``fill`` of its bin wide."""
        for low, high, count in zip(edges[:-1], edges[1:], counts, strict=True):
            if count:
                margin = (high - low) * (1 - fill) / 2
                self._rectangle(low + margin, 0, high - margin, count, colour)

    def bars(self, rows: Sequence[float], values: Sequence[int], thickness: float, colour: str) -> None:
        """Horizontal bars from x = 0, centred on ``rows``."""
        for row, value in zip(rows, values, strict=True):
            if value:
                self._rectangle(0, row - thickness / 2, value, row + thickness / 2, colour)

    def _rectangle(self, x0: float, y0: float, x1: float, y1: float, colour: str) -> None:
        left, right = sorted((self.px(x0), self.px(x1)))
        top, bottom = sorted((self.py(y1), self.py(y0)))
        self.draw.rectangle((round(left), round(top), max(round(left), round(right) - 1), round(bottom)), fill=colour)


class Chart:
    """A canvas of ``width`` x ``height`` pixels with a title at the top."""

    def __init__(self, width: int, height: int, title: str):
        self.image = Image.new("RGB", (width, height), BACKGROUND)
        self.draw = ImageDraw.Draw(self.image)
        self.font = _font(TEXT_SIZE)
        self.draw.text((width / 2, 12), title, fill=INK, font=_font(TITLE_SIZE), anchor="ma")

    @staticmethod
    def measure(text: str) -> float:
        """The width of ``text`` in pixels, in the charts' font."""
        return _font(TEXT_SIZE).getlength(text)

    def panel(self, box: tuple[int, int, int, int], x: tuple[float, float], y: tuple[float, float], xlabel: str,
              ylabel: str = "", integer_x: bool = False, row_names: Sequence[str] = ()) -> Panel:
        """Axes over ``box``: vertical grid lines at the x ticks; y ticks at round numbers, or ``row_names`` at
        rows 0, 1, ... (top down, for horizontal bars)."""
        left, top, right, bottom = box
        panel = Panel(self.draw, box, x, y)
        draw, font = self.draw, self.font
        for value in ticks(*x, integer=integer_x):
            column = round(panel.px(value))
            draw.line((column, top, column, bottom), fill=GRID)
            draw.line((column, bottom, column, bottom + TICK), fill=INK)
            draw.text((column, bottom + TICK + 2), tick_label(value), fill=INK, font=font, anchor="ma")
        y_ticks = [(float(row), name) for row, name in enumerate(row_names)] if row_names else [
            (value, tick_label(value)) for value in ticks(*y)]
        for value, label in y_ticks:
            row = round(panel.py(value))
            if not row_names:
                draw.line((left, row, right, row), fill=GRID)
            draw.line((left - TICK, row, left, row), fill=INK)
            draw.text((left - TICK - 3, row), label, fill=INK, font=font, anchor="rm")
        draw.rectangle(box, outline=INK)
        draw.text(((left + right) / 2, bottom + TICK + 20), xlabel, fill=INK, font=font, anchor="ma")
        if ylabel:
            self._vertical_text(ylabel, left - TICK - 8 - max(self.measure(label) for _, label in y_ticks),
                                (top + bottom) / 2)
        return panel

    def legend(self, corner: tuple[int, int], entries: Sequence[tuple[str, str]]) -> None:
        """A swatch and a name per (name, colour) entry, from the top-left ``corner``."""
        x, y = corner
        for index, (name, colour) in enumerate(entries):
            row = y + 20 * index
            self.draw.rectangle((x, row, x + 14, row + 10), fill=colour)
            self.draw.text((x + 20, row + 5), name, fill=INK, font=self.font, anchor="lm")

    def save(self, stream: BinaryIO) -> None:
        self.image.save(stream, format="PNG", compress_level=1)

    def _vertical_text(self, text: str, right: float, middle: float) -> None:
        width = math.ceil(self.measure(text))
        label = Image.new("RGB", (width + 4, TEXT_SIZE + 6), BACKGROUND)
        ImageDraw.Draw(label).text((2, 1), text, fill=INK, font=self.font)
        label = label.transpose(Image.Transpose.ROTATE_90)
        self.image.paste(label, (round(right - label.width), round(middle - label.height / 2)))


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font (Aileron) at ``size`` pixels."""
    return ImageFont.load_default(size)
