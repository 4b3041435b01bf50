"""Label-file readers, registered by format name and recognised by their header.

A reader turns one label file into :class:`Labels` and reports every row it cannot use; it never opens images.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jobs.dataset.annotations import Box, Labels
from jobs.dataset.findings import BAD_FIELD, BAD_HEADER, EMPTY_INPUT, NOT_UTF8, Report
from jobs.errors import DataError, UsageError

ReadFn = Callable[[Path, Report], Labels]


@dataclass(frozen=True)
class Reader:
    name: str
    description: str
    header: tuple[str, ...]
    read: ReadFn


READERS: dict[str, Reader] = {}


def register_reader(name: str, description: str, header: tuple[str, ...]) -> Callable[[ReadFn], ReadFn]:
    def wrap(fn: ReadFn) -> ReadFn:
        READERS[name] = Reader(name, description, header, fn)
        return fn

    return wrap


def _read_text(path: Path, report: Report) -> str:
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a BOM from Excel is accepted
    except UnicodeDecodeError as err:
        report.add(NOT_UTF8, path.name, f"byte {err.start} is not UTF-8; save the file as UTF-8")
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}); save the file as UTF-8") from err
    except OSError as err:
        raise UsageError(f"cannot read label file {path}: {err.strerror}") from err
    return text


def _csv_rows(path: Path, header: tuple[str, ...], report: Report) -> tuple[csv.DictReader, str]:
    text = _read_text(path, report)
    if not text.strip():
        report.add(EMPTY_INPUT, path.name, "the file is empty")
        raise DataError(f"{path}: the file is empty")
    rows = csv.DictReader(io.StringIO(text, newline=""))
    found = tuple(name.strip() for name in rows.fieldnames or ())
    missing = [name for name in header if name not in found]
    if missing:
        message = f"missing column(s) {', '.join(missing)}; expected header {','.join(header)}"
        report.add(BAD_HEADER, f"{path.name}:1", message)
        raise DataError(f"{path}:1: {message}")
    rows.fieldnames = list(found)
    return rows, path.name


def _number(row: dict, key: str) -> float:
    value = row.get(key)
    if value is None or not str(value).strip():
        raise ValueError(f"{key} is empty")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{key}={value!r} is not a number") from None


def _read_box_rows(
    path: Path, report: Report, header: tuple[str, ...], file_key: str, label_key: str, sized: bool
) -> Labels:
    rows, name = _csv_rows(path, header, report)
    labels = Labels()
    for row in rows:
        labels.rows_in += 1
        location = f"{name}:{rows.line_num}"
        filename = (row.get(file_key) or "").strip()
        label = (row.get(label_key) or "").strip()
        try:
            if not filename:
                raise ValueError(f"{file_key} is empty")
            if not label:
                raise ValueError(f"{label_key} is empty")
            xmin, ymin, xmax, ymax = (_number(row, key) for key in ("xmin", "ymin", "xmax", "ymax"))
            size = None
            if sized:
                width, height = _number(row, "width"), _number(row, "height")
                if not (math.isfinite(width) and math.isfinite(height) and width == int(width) > 0
                        and height == int(height) > 0):
                    raise ValueError(f"width/height {row['width']}x{row['height']} is not a positive integer")
                size = (int(width), int(height))
        except ValueError as err:
            report.add(BAD_FIELD, location, str(err))
            labels.rows_dropped += 1
            continue
        image = labels.image(filename, location)
        if size is not None:
            image.stated_size = size
        image.boxes.append(Box(label, xmin, ymin, xmax, ymax, location))
    if labels.rows_in == 0:
        report.add(EMPTY_INPUT, f"{name}:2", "the file has a header but no rows")
        raise DataError(f"{path}: the file has a header but no rows")
    return labels


@register_reader(
    "vott-csv", "VoTT CSV export: one row per tag, pixel coordinates",
    ("image", "xmin", "ymin", "xmax", "ymax", "label"),
)
def read_vott_csv(path: Path, report: Report) -> Labels:
    return _read_box_rows(path, report, READERS["vott-csv"].header, "image", "label", sized=False)


@register_reader(
    "datitran-csv", "CSV of datitran/raccoon_dataset (generate_tfrecord.py): pixel coordinates",
    ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"),
)
def read_datitran_csv(path: Path, report: Report) -> Labels:
    return _read_box_rows(path, report, READERS["datitran-csv"].header, "filename", "class", sized=True)


def detect_format(path: Path) -> str:
    """The registered format whose header the file's first line carries."""
    try:
        with path.open(encoding="utf-8-sig", errors="replace") as stream:
            first = stream.readline()
    except OSError as err:
        raise UsageError(f"cannot read label file {path}: {err.strerror}") from err
    columns = {name.strip() for name in next(csv.reader([first]), [])}
    matches = [reader.name for reader in READERS.values() if set(reader.header) <= columns]
    if len(matches) != 1:
        known = "; ".join(f"{r.name}: {','.join(r.header)}" for r in READERS.values())
        what = "matches several formats" if matches else "matches no known format"
        raise UsageError(f"{path}:1: the header {first.strip()!r} {what}; pass --format (known: {known})")
    return matches[0]


def read_labels(path: Path, fmt: str, report: Report) -> tuple[str, Labels]:
    """Read a label file in the given format (or the detected one for 'auto')."""
    if fmt == "auto":
        fmt = detect_format(path)
    reader = READERS.get(fmt)
    if reader is None:
        raise UsageError(f"unknown format {fmt!r}; choose one of: auto, {', '.join(READERS)}")
    return fmt, reader.read(path, report)
