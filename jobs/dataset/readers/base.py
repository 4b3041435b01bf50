"""The reader registry and what readers share: text decoding, number parsing, fatal input errors."""

from __future__ import annotations

import math
import os
import reprlib
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from jobs.dataset.annotations import Labels
from jobs.dataset.findings import NOT_UTF8, Report, Rule
from jobs.errors import DataError, UsageError

FIRST_LINE_BYTES = 64 * 1024  # of a file read to recognise its format
SHOWN = reprlib.Repr()  # Python 3.11 takes no keywords here
SHOWN.maxstring = SHOWN.maxother = 80
ReadFn = Callable[[Path, Report], Labels]
SniffFn = Callable[[Path], bool]


@dataclass(frozen=True)
class Reader:
    name: str
    description: str  # what the format is
    detection: str  # how auto-detection recognises it
    sniff: SniffFn
    read: ReadFn


READERS: dict[str, Reader] = {}


def register_reader(name: str, description: str, detection: str, sniff: SniffFn) -> Callable[[ReadFn], ReadFn]:
    def wrap(fn: ReadFn) -> ReadFn:
        READERS[name] = Reader(name, description, detection, sniff, fn)
        return fn

    return wrap


def fatal(report: Report, rule: Rule, location: str, message: str) -> DataError:
    """Record a finding that stops the run, and the error to raise for it."""
    report.add(rule, location, message)
    return DataError(f"{location}: {message}")


def display_name(path: Path) -> str:
    """The name findings use for a label file or dataset folder (``.`` stays ``.``)."""
    return path.name or str(path)


def open_regular(path: Path) -> BinaryIO:
    """The file opened for reading; a FIFO, socket or device is refused before it can block a read."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not wait for a writer
    except OSError as err:
        raise UsageError(f"cannot read label file {path}: {err.strerror}") from err
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise UsageError(f"{path} is not a regular file (a FIFO, socket, device or folder); pass a label file")
    return os.fdopen(handle, "rb")


def read_text(path: Path, report: Report, location: str | None = None) -> str:
    """UTF-8 text (a BOM from Excel is accepted); anything else is a fatal NOT_UTF8 finding."""
    try:
        with open_regular(path) as stream:
            return stream.read().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise fatal(report, NOT_UTF8, location or path.name,
                    f"byte {err.start} is not UTF-8 text; save the file as UTF-8") from err
    except OSError as err:
        raise UsageError(f"cannot read label file {path}: {err.strerror}") from err


def first_line(path: Path, limit: int = FIRST_LINE_BYTES) -> str:
    """The first line, or its first ``limit`` bytes: enough to recognise a header, never the whole of a one-line
    file."""
    try:
        with open_regular(path) as stream:
            lines = stream.readline(limit).decode("utf-8-sig", errors="replace").splitlines()
    except OSError as err:
        raise UsageError(f"cannot read label file {path}: {err.strerror}") from err
    return lines[0] if lines else ""


def shown(value: object) -> str:
    """``repr(value)`` cut short: a message about a hostile value (a megabyte string, deep nesting) stays a line."""
    return SHOWN.repr(value)


def number(value: object, key: str) -> float:
    """A float from a CSV field or JSON value; ValueError says which field and why."""
    if type(value) in (str, int, float):  # not bool
        try:
            return float(value)  # type: ignore[arg-type]
        except ValueError:
            pass
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{key} is empty")
    raise ValueError(f"{key}={value!r} is not a number")


def positive_int(value: object, key: str) -> int:
    result = number(value, key)
    if not (math.isfinite(result) and result == int(result) > 0):
        raise ValueError(f"{key}={value!r} is not a positive integer")
    return int(result)
