"""Vertex AI (AutoML) image object detection CSV: no header, normalized coordinates, its own split column.

Each row is ``[ML_USE,]GCS_PATH[,LABEL,X_MIN,Y_MIN,,,X_MAX,Y_MAX,,]`` (or the box as all four vertices). ML_USE is
TRAIN, VALIDATION, TEST or UNASSIGNED (the default); unassigned images are split 80/10/10 like Vertex does. A row
with a path and no label lists a negative image. A ``gs://bucket/a/b.jpg`` path names ``a/b.jpg`` below the
images folder (falling back to ``b.jpg``, see ``locate.py``), which ``--download-to`` can fill from GCS
(``gcs_images.py``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from jobs.dataset.annotations import Box, Labels
from jobs.dataset.findings import BAD_FIELD, EMPTY_INPUT, SPLIT_CONFLICT, Report
from jobs.dataset.readers.base import fatal, first_line, number, register_reader
from jobs.dataset.readers.csv_formats import csv_records, csv_text

ML_USE = {"TRAIN": "train", "VALIDATION": "val", "TEST": "test", "UNASSIGNED": None}
UNASSIGNED_FRACTIONS = (0.1, 0.1)  # (val, test), as Vertex AI splits UNASSIGNED images
BOX_HELP = "expected X_MIN,Y_MIN,,,X_MAX,Y_MAX,, or four vertices, as fractions of the image size"


def _looks_like_vertex(path: Path) -> bool:
    if not path.is_file():
        return False
    fields = [f.strip() for f in next(csv.reader([first_line(path)]), [])]
    if fields and fields[0].upper() in ML_USE:
        fields = fields[1:]
    return bool(fields) and fields[0].startswith("gs://")


def object_path(uri: str) -> str:
    """``gs://bucket/a/b.jpg`` -> ``a/b.jpg``."""
    return uri.removeprefix("gs://").partition("/")[2]


def _filename(path: str) -> str:
    return object_path(path) if path.startswith("gs://") else path


def _box(values: list[str]) -> tuple[float, float, float, float]:
    values = values + [""] * (8 - len(values))
    if len(values) > 8 or any(v.strip() for v in values[8:]):
        raise ValueError(f"too many fields; {BOX_HELP}")
    present = [bool(v.strip()) for v in values]
    if present == [True, True, False, False, True, True, False, False]:
        return (number(values[0], "X_MIN"), number(values[1], "Y_MIN"), number(values[4], "X_MAX"),
                number(values[5], "Y_MAX"))
    if all(present):
        xs = [number(v, "X") for v in values[0::2]]
        ys = [number(v, "Y") for v in values[1::2]]
        return min(xs), min(ys), max(xs), max(ys)
    raise ValueError(BOX_HELP)


@register_reader(
    "vertex-csv", "Vertex AI / AutoML object detection CSV: no header, normalized, ML_USE split column",
    "a CSV without header whose rows start with TRAIN/VALIDATION/TEST/UNASSIGNED and a gs:// path",
    _looks_like_vertex,
)
def read_vertex_csv(path: Path, report: Report) -> Labels:
    labels = Labels(sources=[path], split_fractions=UNASSIGNED_FRACTIONS)
    for line, row in csv_records(path, csv_text(path, report), report, labels):
        location = f"{path.name}:{line}"
        fields = [f.strip() for f in row]
        if not any(fields):
            continue
        split = None
        if fields[0].upper() in ML_USE:
            split = ML_USE[fields[0].upper()]
            fields = fields[1:]
        try:
            if not fields or not fields[0]:
                raise ValueError("GCS_PATH is empty")
            label = fields[1] if len(fields) > 1 else ""
            coordinates = fields[2:]
            box = _box(coordinates) if label else None
            if not label and any(coordinates):
                raise ValueError("LABEL is empty but a box is given")
        except ValueError as err:
            report.add(BAD_FIELD, location, str(err))
            labels.drop_row(_filename(fields[0]) if fields else None)
            continue
        uri = fields[0] if fields[0].startswith("gs://") else None
        filename = _filename(fields[0])
        if box is None:
            image = labels.add_negative(filename, location)
        else:
            image = labels.add_box(filename, Box(label, *box, location, normalized=True))
        image.uri = uri
        if split and image.split and split != image.split:
            report.add(SPLIT_CONFLICT, location, f"'{fields[0]}' is {image.split} in an earlier row and "
                                                 f"{split} here; it stays in {image.split}")
        image.split = image.split or split
    if labels.rows_in == 0:
        raise fatal(report, EMPTY_INPUT, path.name, "the file has no rows")
    return labels
