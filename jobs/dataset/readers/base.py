"""The reader registry and what readers share: text decoding, number parsing, fatal input errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jobs.dataset.annotations import Labels
from jobs.dataset.findings import NOT_UTF8, Report, Rule
from jobs.errors import DataError, UsageError

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


def read_text(path: Path, report: Report, location: str | None = None) -> str:
    """UTF-8 text (a BOM from Excel is accepted); anything else is a fatal NOT_UTF8 finding."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise fatal(report, NOT_UTF8, location or path.name,
                    f"byte {err.start} is not UTF-8 text; save the file as UTF-8") from err
    except OSError as err:
        raise UsageError(f"cannot read label file {path}: {err.strerror}") from err


def first_line(path: Path) -> str:
    try:
        with path.open(encoding="utf-8-sig", errors="replace") as stream:
            return stream.readline()
    except OSError as err:
        raise UsageError(f"cannot read label file {path}: {err.strerror}") from err


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
