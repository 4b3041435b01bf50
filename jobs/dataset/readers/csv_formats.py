"""CSV exports with a header row: VoTT and the datitran/raccoon_dataset CSV (pixel coordinates)."""

from __future__ import annotations

import csv
import io
import math
import operator
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from jobs.dataset.annotations import Box, Labels
from jobs.dataset.findings import BAD_FIELD, BAD_HEADER, EMPTY_INPUT, MALFORMED_FILE, UNCLOSED_QUOTE, Report
from jobs.dataset.readers.base import fatal, first_line, number, read_text, register_reader

VOTT_HEADER = ("image", "xmin", "ymin", "xmax", "ymax", "label")
DATITRAN_HEADER = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")


def header_columns(path: Path) -> set[str]:
    return {name.strip() for name in next(csv.reader([first_line(path)]), [])}


def _has_header(header: tuple[str, ...]) -> Callable[[Path], bool]:
    return lambda path: path.is_file() and set(header) <= header_columns(path)


def csv_text(path: Path, report: Report) -> str:
    """The file's text, with the fatal findings every CSV format shares (empty, NUL bytes)."""
    text = read_text(path, report)
    if not text.strip():
        raise fatal(report, EMPTY_INPUT, path.name, "the file is empty")
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise fatal(report, MALFORMED_FILE, f"{path.name}:{line}",
                    "the file holds NUL bytes: it is binary, not a CSV export")
    return text


def csv_records(path: Path, text: str, report: Report, labels: Labels) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each record that is one line (blank lines are skipped).

    A record over several physical lines (a quoted field with line breaks: nearly always a quote left open, which
    swallows every line after it) is reported, and each of its lines counted as a dropped row: rows in are counted
    from the file's lines, so no quoting can hide one.
    """
    rows = csv.reader(io.StringIO(text, newline=""))
    first = 1
    try:
        for row in rows:
            last = rows.line_num
            if last > first:
                report.add(UNCLOSED_QUOTE, f"{path.name}:{first}",
                           f"the row runs over lines {first} to {last}: a quoted field holds line breaks (a quote "
                           f"left open?); its {last - first + 1} lines are not used")
                labels.drop_row(rows=last - first + 1)
            elif row:
                yield first, row
            first = last + 1
    except csv.Error as err:
        raise fatal(report, MALFORMED_FILE, f"{path.name}:{first}",
                    f"not valid CSV in the row from line {first} to {rows.line_num}: {err}") from err


def _read_box_rows(path: Path, report: Report, header: tuple[str, ...], file_key: str, label_key: str,
                   sized: bool) -> Labels:
    labels = Labels(sources=[path])
    records = csv_records(path, csv_text(path, report), report, labels)
    _, names = next(records, (1, []))
    if labels.rows_in:  # lines before the header were reported: it ran over several lines
        raise fatal(report, BAD_HEADER, f"{path.name}:1", "the header row runs over several lines")
    columns = {name.strip(): index for index, name in enumerate(names)}
    missing = [name for name in header if name not in columns]
    if missing:
        raise fatal(report, BAD_HEADER, f"{path.name}:1",
                    f"missing column(s) {', '.join(missing)}; expected header {','.join(header)}")
    keys = [file_key, label_key, "xmin", "ymin", "xmax", "ymax", *(("width", "height") if sized else ())]
    indices = [columns[key] for key in keys]
    pick, needed = operator.itemgetter(*indices), max(indices) + 1
    name = path.name
    for line, row in records:
        location = f"{name}:{line}"
        values = pick(row) if len(row) >= needed else [row[i] if i < len(row) else "" for i in indices]
        filename, label = values[0].strip(), values[1].strip()
        try:
            if not filename:
                raise ValueError(f"{file_key} is empty")
            if not label:
                raise ValueError(f"{label_key} is empty")
            xmin, ymin, xmax, ymax = _coordinates(values, keys)
            size = _stated_size(values[6], values[7]) if sized else None
        except ValueError as err:
            report.add(BAD_FIELD, location, str(err))
            labels.drop_row(filename)
            continue
        image = labels.add_box(filename, Box(label, xmin, ymin, xmax, ymax, location))
        if size is not None:
            image.stated_size = size
    if labels.rows_in == 0:
        raise fatal(report, EMPTY_INPUT, f"{path.name}:2", "the file has a header but no rows")
    return labels


def _coordinates(values: Sequence[str], keys: list[str]) -> tuple[float, float, float, float]:
    try:  # the common case, a quarter of the time that ``number`` takes
        return float(values[2]), float(values[3]), float(values[4]), float(values[5])
    except ValueError:
        xmin, ymin, xmax, ymax = map(number, values[2:6], keys[2:6])  # raises, naming the field
        return xmin, ymin, xmax, ymax


def _stated_size(width_text: str, height_text: str) -> tuple[int, int]:
    if width_text.isdecimal() and height_text.isdecimal() and int(width_text) and int(height_text):
        return int(width_text), int(height_text)
    width, height = number(width_text, "width"), number(height_text, "height")
    if not (math.isfinite(width) and math.isfinite(height) and width == int(width) > 0
            and height == int(height) > 0):
        raise ValueError(f"width/height {width_text}x{height_text} is not a positive integer")
    return int(width), int(height)


@register_reader(
    "vott-csv", "VoTT CSV export: one row per tag, pixel coordinates",
    f"a CSV whose header has {','.join(VOTT_HEADER)}", _has_header(VOTT_HEADER),
)
def read_vott_csv(path: Path, report: Report) -> Labels:
    return _read_box_rows(path, report, VOTT_HEADER, "image", "label", sized=False)


@register_reader(
    "datitran-csv", "CSV of datitran/raccoon_dataset (generate_tfrecord.py): pixel coordinates",
    f"a CSV whose header has {','.join(DATITRAN_HEADER)}", _has_header(DATITRAN_HEADER),
)
def read_datitran_csv(path: Path, report: Report) -> Labels:
    return _read_box_rows(path, report, DATITRAN_HEADER, "filename", "class", sized=True)
