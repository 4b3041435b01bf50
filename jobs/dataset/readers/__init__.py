"""Label readers, registered by format name and recognised by their header, file type or folder layout.

A reader turns a label file (or folder) into :class:`Labels` and reports every row it cannot use; it never opens
images. Importing this package registers every format.
"""

from __future__ import annotations

import csv
from pathlib import Path

from jobs.dataset.annotations import Labels
from jobs.dataset.findings import Report
from jobs.dataset.readers import coco_json, csv_formats, vertex, voc, yolo  # noqa: F401  (registers the formats)
from jobs.dataset.readers.base import READERS, Reader, first_line, register_reader
from jobs.errors import UsageError

__all__ = ["READERS", "Reader", "detect_format", "read_labels", "register_reader"]


def _known() -> str:
    return "; ".join(f"{r.name}: {r.detection}" for r in READERS.values())


def _sniffed(reader: Reader, path: Path) -> bool:
    """Whether ``reader`` recognises ``path``; a sniffer that cannot parse what it reads does not."""
    try:
        return reader.sniff(path)
    except (csv.Error, ValueError):
        return False


def detect_format(path: Path) -> str:
    """The one registered format that recognises ``path``; UsageError when none or several do.

    A ``.json`` file is JSON (COCO): the CSV sniffers never see it, whatever its first line holds."""
    if not path.exists():
        raise UsageError(f"{path} does not exist; --input takes a label file or a dataset folder")
    if not (path.is_file() or path.is_dir()):
        raise UsageError(f"{path} is not a regular file (a FIFO, socket or device); pass a label file")
    if path.suffix.lower() == ".json" and path.is_file():
        return coco_json.FORMAT
    matches = [reader.name for reader in READERS.values() if _sniffed(reader, path)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"{path} matches several formats ({', '.join(matches)}); pass --format")
    if path.is_file() and path.suffix.lower() in {".csv", ".txt", ""}:
        raise UsageError(f"{path}:1: the header {first_line(path).strip()!r} matches no known format; pass --format "
                         f"(known: {_known()})")
    raise UsageError(f"{path} matches no known format; pass --format (known: {_known()})")


def read_labels(path: Path, fmt: str, report: Report) -> tuple[str, Labels]:
    """Read labels in the given format (or the detected one for 'auto')."""
    if fmt == "auto":
        fmt = detect_format(path)
    reader = READERS.get(fmt)
    if reader is None:
        raise UsageError(f"unknown format {fmt!r}; choose one of: auto, {', '.join(READERS)}")
    if not path.exists():
        raise UsageError(f"{path} does not exist; --input takes a label file or a dataset folder")
    return fmt, reader.read(path, report)
