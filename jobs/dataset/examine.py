"""The checks of one image and its boxes, run in worker processes: by the ``examine`` stage (``pipeline.py``) on the
header, by the ``write`` stage on the bytes it is about to write (so every image is read once)."""

from __future__ import annotations

from typing import NamedTuple

from jobs.dataset.annotations import Box
from jobs.dataset.findings import DEFAULT_MAX_PIXELS, SIZE_MISMATCH, UNREADABLE_IMAGE, Finding, Report
from jobs.dataset.images import ImageInfo, ImageProblem, inspect
from jobs.dataset.validate import check_box, check_box_count, drop_duplicates


class ImageJob(NamedTuple):
    """One image to check (and write): everything the worker needs, nothing it must look up."""

    path: str
    filename: str
    boxes: tuple[Box, ...]  # as labelled
    location: str  # the first row that names the image
    rows: int  # rows that name it (all dropped if the image is unusable)
    negative_rows: int  # of those, rows that list it without a box
    stated_size: tuple[int, int] | None
    decode: bool
    source_id: int = 0
    size_bytes: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS


# ImageResult as plain tuples: (ImageInfo fields or None, Box fields or None, findings, rows written, rows dropped)
PackedResult = tuple[tuple[object, ...] | None, tuple[tuple[object, ...], ...] | None, tuple[Finding, ...], int, int]


class ImageResult(NamedTuple):
    filename: str
    info: ImageInfo | None  # None: the image cannot be used
    boxes: tuple[Box, ...] = ()  # kept, in pixels
    findings: tuple[Finding, ...] = ()
    rows_written: int = 0
    rows_dropped: int = 0

    @property
    def kept(self) -> bool:
        return self.info is not None

    def packed(self, job: ImageJob) -> PackedResult:
        """Plain tuples for the trip back from a worker process (pickling named tuples costs about 20 us an image,
        plain ones 1 us); boxes that are the job's own, as they usually are, are left out."""
        boxes = None if self.boxes == job.boxes else tuple(tuple(box) for box in self.boxes)
        return tuple(self.info) if self.info else None, boxes, self.findings, self.rows_written, self.rows_dropped

    @classmethod
    def unpacked(cls, packed: PackedResult, job: ImageJob) -> ImageResult:
        info, boxes, findings, written, dropped = packed
        return cls(job.filename, ImageInfo._make(info) if info else None,
                   job.boxes if boxes is None else tuple(map(Box._make, boxes)), findings, written, dropped)


def examine(job: ImageJob, data: bytes | None = None) -> ImageResult:
    """Check the image (its bytes when given, else its file) and its boxes; never raises for bad data."""
    report = Report()
    try:
        info = inspect(job.path, job.decode, data, job.max_pixels)
    except (OSError, ImageProblem) as err:
        rule = err.rule if isinstance(err, ImageProblem) else UNREADABLE_IMAGE
        reason = str(err) if isinstance(err, ImageProblem) else (
            "vanished while being checked" if isinstance(err, FileNotFoundError) else f"cannot be read: {err.strerror}")
        report.add(rule, job.location, f"image '{job.filename}': {reason} ({job.rows} row(s) dropped)")
        return ImageResult(job.filename, None, findings=tuple(report.findings), rows_dropped=job.rows)
    if job.stated_size and job.stated_size != (info.width, info.height):
        report.add(SIZE_MISMATCH, job.location, f"'{job.filename}' is {info.width}x{info.height}, the label file "
                                                f"says {job.stated_size[0]}x{job.stated_size[1]}")
    for rule, note in info.notes():
        report.add(rule, job.location, f"'{job.filename}': {note}")
    boxes = [b for b in (check_box(box, info.width, info.height, report) for box in job.boxes) if b]
    boxes = drop_duplicates(boxes, report)
    dropped = len(job.boxes) - len(boxes)
    if job.boxes and not boxes:  # no box left: not a known negative either
        return ImageResult(job.filename, None, findings=tuple(report.findings), rows_dropped=dropped)
    check_box_count(job.filename, job.location, len(boxes), report)
    written = len(boxes) if boxes else job.negative_rows
    return ImageResult(job.filename, info, tuple(boxes), tuple(report.findings), written, dropped)


def examine_all(jobs: list[ImageJob], chunk: tuple[int, int]) -> list[PackedResult]:
    """Worker of the ``examine`` stage: header checks of ``jobs[start:stop]``, packed (``ImageResult.unpacked``)."""
    start, stop = chunk
    return [examine(job).packed(job) for job in jobs[start:stop]]

