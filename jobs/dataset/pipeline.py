"""The stages of ``data check``, ``data stats`` and ``data prepare``, each a function of what the stages before it
returned, changing none of it:

``load`` reads the labels and finds (and stats) every image file; ``plan`` fixes the class ids, the split and one
job per image from the labels alone, before any image is opened; then ``examine`` checks every image's header in
worker processes (``check``), or ``write`` writes the shards, checking each image in the pass that writes it
(``prepare``: every image is read once); ``finish`` merges the per-image results into a usable dataset. Every input
row is either kept or reported: ``rows in = rows written + rows reported`` is verified.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR, S_ISFIFO, S_ISREG, S_ISSOCK
from typing import NamedTuple, TypedDict

from jobs.dataset import label_map as label_maps
from jobs.dataset.annotations import Box, LabelledImage, Labels
from jobs.dataset.examine import ImageJob, ImageResult, examine_all
from jobs.dataset.findings import DEFAULT_MAX_PIXELS, NEGATIVE_CONFLICT, NO_CLASSES, NOT_A_FILE, Report, Severity
from jobs.dataset.images import ImageInfo
from jobs.dataset.locate import FolderTree, Located, ObjectTree, Tree, locate
from jobs.dataset.parallel import PARALLEL_FROM, Progress, parallel_map
from jobs.dataset.readers import read_labels
from jobs.dataset.readers.base import display_name
from jobs.dataset.shards import Written, write_shards
from jobs.dataset.split import split_images
from jobs.dataset.validate import check_class_names, check_classes, check_split_classes
from jobs.errors import DataError, UsageError

VERIFY_MODES = ("header", "full")
ENGINES = ("local", "beam")  # what writes the shards: worker processes here, or Apache Beam's DirectRunner
CHUNK = 128  # images per task of the header-only check
SAMPLE_SIZE = 64  # the default verification decodes about this many images, evenly spread in name order
MAX_VAL_FRACTION = 0.9
CHECKS_VERSION = 3  # part of the input fingerprint: a rerun after the checks changed is not "unchanged"


@dataclass(frozen=True)
class CheckOptions:
    """What to read and how to check it: the options of ``data check``, and of ``data prepare`` before its output."""

    labels: Path
    images: Path | str | None = None  # a folder or gs://bucket/prefix; None: where the format keeps them
    fmt: str = "auto"
    val_fraction: float = 0.2
    seed: int = 0
    label_map: Path | None = None
    unlabeled_as_negatives: bool = False
    verify: str = "header"  # or "full": decode every image
    strict: bool = False  # every finding is fatal
    workers: int | None = None
    download_to: Path | None = None  # download the gs:// images the labels name into this folder, use it as images
    max_pixels: int = DEFAULT_MAX_PIXELS  # images declaring more are dropped (TOO_MANY_PIXELS)
    follow_symlinks: bool = False  # use links that lead out of the images folder (else SYMLINK_OUTSIDE)

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction <= MAX_VAL_FRACTION:  # also false for NaN
            raise UsageError(f"--val-fraction must be between 0 and {MAX_VAL_FRACTION}, not {self.val_fraction}")
        if self.max_pixels < 1:
            raise UsageError(f"--max-pixels must be at least 1, not {self.max_pixels}")
        if self.verify not in VERIFY_MODES:
            raise UsageError(f"--verify must be one of {', '.join(VERIFY_MODES)}, not {self.verify!r}")


class CheckedImage(NamedTuple):
    filename: str
    path: str
    info: ImageInfo
    boxes: tuple[Box, ...]  # in pixels, checked
    source_id: int


@dataclass(frozen=True)
class Loaded:
    """The labels read and their image files found (and stat'ed), before any image is opened."""

    options: CheckOptions
    fmt: str
    labels: Labels
    images_dir: Path | str  # a folder, or gs://bucket[/prefix]
    located: Located
    label_map: dict[str, int] | None
    report: Report  # the findings of reading and locating
    paths: dict[str, str]  # filename -> path
    sizes: dict[str, tuple[int, int]]  # filename -> (bytes, mtime ns), or (bytes, generation) of an object

    def fingerprint(self, extra: Sequence[object] = ()) -> str:
        """Changes when a label file, an image file (name, size, mtime), an option or the checks change."""
        digest = hashlib.sha256()
        for source in sorted(self.labels.sources):
            digest.update(f"{source}\0".encode())
            digest.update(source.read_bytes())
        if self.options.label_map:
            digest.update(self.options.label_map.read_bytes())
        o = self.options
        digest.update(json.dumps([CHECKS_VERSION, self.fmt, str(self.images_dir), o.val_fraction, o.seed,
                                  o.unlabeled_as_negatives, o.verify, o.strict, o.max_pixels, o.follow_symlinks,
                                  *extra], default=str).encode())
        for name in sorted(self.sizes):
            digest.update(f"{name}\0{self.sizes[name][0]}\0{self.sizes[name][1]}\n".encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class Plan:
    """Class ids and the split, decided from the labels before any image is opened (so ``prepare`` reads each
    image once, checking and writing it in the same pass)."""

    classes: dict[str, int]
    splits: dict[str, list[ImageJob]]
    rows_dropped: int  # so far: by the reader, by locating files, by conflicts
    report: Report  # the findings of planning (those of loading stay in ``Loaded``)


class VerifyCounts(TypedDict):
    mode: str  # --verify
    images: int  # headers checked
    sample_every: int
    decoded: int


@dataclass
class Checked:
    """A usable dataset: kept images by split with their checked boxes, the class ids and every finding."""

    fmt: str
    images_dir: Path | str
    classes: dict[str, int]
    splits: dict[str, list[CheckedImage]]
    report: Report
    rows: dict[str, int]  # in, written, reported
    verify: VerifyCounts


class CheckFailed(DataError):
    """The data has fatal errors (or, with --strict, any finding)."""

    SHOWN = 20
    WHAT = "the data cannot be used"

    def __init__(self, report: Report, strict: bool = False):
        self.report = report
        shown = report.findings if strict else [f for f in report.findings if f.rule.severity is Severity.ERROR]
        lines = [f"  {finding}" for finding in shown[:self.SHOWN]]
        if len(shown) > self.SHOWN:
            lines.append(f"  ... and {len(shown) - self.SHOWN} more")
        why = " (--strict: every finding is an error)" if strict else ""
        super().__init__(f"{self.WHAT}{why}:\n" + "\n".join(lines))


def load(options: CheckOptions, progress: Progress | None = None) -> Loaded:
    """Read the labels and find every image file (or Cloud Storage object: listed, never downloaded, unless
    ``download_to``); reader errors raise CheckFailed with their finding."""
    report = Report()
    try:
        fmt, labels = read_labels(options.labels, options.fmt, report)
    except DataError:
        raise CheckFailed(report) from None
    given_map = label_maps.load(options.label_map) if options.label_map else None
    images_dir: Path | str | None = options.images or _beside_labels(labels.images_dir)
    if options.download_to:
        images_dir = _download(options.download_to, options, labels, progress)
    tree: Tree
    if images_dir is None or isinstance(images_dir, str):
        from jobs.dataset.gcs_images import list_images

        tree = list_images(images_dir, labels, options.labels.name)
        images_dir = tree.uri
    else:
        if not images_dir.is_dir():
            raise UsageError(f"the images folder {images_dir} does not exist")
        tree = FolderTree(images_dir)
    found = locate(tree, labels, report, options.unlabeled_as_negatives, options.follow_symlinks)
    folder = str(images_dir).rstrip("/")
    paths = {image.filename: f"{folder}/{image.filename}" for image in found.images}  # names are relative
    if isinstance(tree, ObjectTree):
        sizes, refused_rows = {image.filename: tree.objects[image.filename] for image in found.images}, 0
    else:
        sizes, refused_rows = _file_sizes(found.images, paths, report)
    located = Located([image for image in found.images if image.filename in sizes],
                      found.dropped_rows + refused_rows)
    paths = {name: path for name, path in paths.items() if name in sizes}
    return Loaded(options, fmt, labels, images_dir, located, given_map, report, paths, sizes)


def _beside_labels(folder: Path | None) -> Path | str | None:
    """Where the format keeps its images; for labels mirrored from Cloud Storage, the bucket's folder they stand
    for (``gcs_labels``), where the images are read."""
    if folder is None:
        return None
    from jobs.dataset.gcs_labels import remote_folder

    return remote_folder(folder) or folder


def _file_sizes(images: list[LabelledImage], paths: dict[str, str],
                report: Report) -> tuple[dict[str, tuple[int, int]], int]:
    """(bytes, mtime ns) of each image file, and the rows of those left out. What is not a regular file (a FIFO, a
    device) is reported and left out here, from the one ``stat`` each file gets, before anything could open it
    and wait."""
    sizes, refused_rows = {}, 0
    for image in images:
        try:
            status = os.stat(paths[image.filename])
        except OSError:
            sizes[image.filename] = (0, 0)  # examining it will say what is wrong
            continue
        if not S_ISREG(status.st_mode):
            rows = len(image.locations)
            report.add(NOT_A_FILE, image.locations[0], f"'{image.filename}' is {_file_kind(status.st_mode)}, not a "
                                                       f"regular file; not read ({rows} row(s) dropped)")
            refused_rows += rows
            continue
        sizes[image.filename] = (status.st_size, status.st_mtime_ns)
    return sizes, refused_rows


def _file_kind(mode: int) -> str:
    if S_ISDIR(mode):
        return "a folder"
    if S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    return "a socket" if S_ISSOCK(mode) else "a device or other special file"


def _download(folder: Path, options: CheckOptions, labels: Labels, progress: Progress | None) -> Path:
    from jobs.dataset.gcs_images import download_images

    if options.images:
        raise UsageError("--images and --download-to exclude each other: the download folder is the images folder")
    uris = sorted({image.uri for image in labels.images.values() if image.uri})
    if not uris:
        raise UsageError(f"--download-to is for labels that name gs:// images; {options.labels.name} names none")
    folder.mkdir(parents=True, exist_ok=True)
    download_images(uris, folder, progress)
    return folder


def plan(loaded: Loaded) -> Plan:
    """Drop the rows that list an image with boxes as a negative too, check the class names, fix class ids, the
    split and each image's job; CheckFailed on a fatal finding so far."""
    options, report = loaded.options, Report()
    dropped = loaded.labels.rows_dropped + loaded.located.dropped_rows
    images = sorted(loaded.located.images, key=lambda i: i.filename)
    every = sample_every(len(images))
    jobs = {}
    for index, image in enumerate(images):
        locations, negative_rows = image.locations, len(image.negative_rows)
        if image.boxes and image.negative_rows:
            for location in image.negative_rows:
                report.add(NEGATIVE_CONFLICT, location, f"'{image.filename}' is listed without a label here and "
                                                        f"with boxes at {image.boxes[0].location}")
            conflicts = set(image.negative_rows)
            locations = [place for place in image.locations if place not in conflicts]
            dropped += negative_rows
            negative_rows = 0
        jobs[image.filename] = ImageJob(
            loaded.paths[image.filename], image.filename, tuple(image.boxes), locations[0], len(locations),
            negative_rows, image.stated_size, options.verify == "full" or index % every == 0, index + 1,
            loaded.sizes[image.filename][0], options.max_pixels)
    boxes = [box for image in images for box in image.boxes]
    source = display_name(options.labels)
    if loaded.label_map is not None:
        check_classes(boxes, loaded.label_map, source, report)
    check_class_names(boxes, source, report)
    if not boxes and not loaded.report.fatal and not report.fatal:
        report.add(NO_CLASSES, source, "no usable box remains; see the findings above")
    if loaded.report.fatal or report.fatal:
        raise CheckFailed(Report(loaded.report.findings + report.findings))
    classes = loaded.label_map if loaded.label_map is not None else label_maps.build(box.label for box in boxes)
    val, test = loaded.labels.split_fractions or (options.val_fraction, 0.0)
    splits = split_images(images, val, options.seed, test)
    return Plan(classes, {split: [jobs[i.filename] for i in items] for split, items in splits.items()}, dropped,
                report)


def sample_every(images: int) -> int:
    """Decode every n-th image by default: all of a small dataset, about SAMPLE_SIZE of a large one."""
    return max(1, images // SAMPLE_SIZE)


def examine(planned: Plan, workers: int | None, progress: Progress | None = None) -> list[ImageResult]:
    """Check every image of the plan, reading its header (and end marker; decoding a sample or, with --verify
    full, all), in worker processes; writes nothing."""
    jobs = [job for items in planned.splits.values() for job in items]
    chunks = [(start, start + CHUNK) for start in range(0, len(jobs), CHUNK)]
    packed = parallel_map(examine_all, jobs, chunks, workers, progress and _per_image(progress, len(jobs)),
                          "inspect", parallel=len(jobs) >= PARALLEL_FROM)
    return [ImageResult.unpacked(result, job)
            for (start, stop), chunk in zip(chunks, packed, strict=True)
            for result, job in zip(chunk, jobs[start:stop], strict=True)]


def _per_image(progress: Progress, total: int) -> Progress:
    return lambda stage, done, chunks: progress(stage, min(total, done * CHUNK), total)


def write(folder: Path, planned: Plan, num_shards: int | None, shard_bytes: int, workers: int | None,
          progress: Progress | None = None, engine: str = "local") -> Written:
    """Write the plan's images into TFRecord shards in ``folder``, examining each in the pass that writes it (the
    unusable ones are left out): ``shards.py`` in worker processes (``local``), or the same as an Apache Beam
    pipeline on Beam's DirectRunner (``beam``: ``beam.py``). Its ``results`` go to ``finish``."""
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "beam":
        from jobs.dataset import beam

        return beam.write_shards(folder, planned.splits, planned.classes, num_shards, shard_bytes, workers, progress)
    return write_shards(folder, planned.splits, planned.classes, num_shards, shard_bytes, workers, progress)


def finish(loaded: Loaded, planned: Plan, results: list[ImageResult]) -> Checked:
    """Merge the per-image results; CheckFailed when nothing usable remains (or, with --strict, any finding)."""
    options = loaded.options
    report = Report(loaded.report.findings + planned.report.findings)
    dropped, written = planned.rows_dropped, 0
    by_name = {}
    for result in sorted(results, key=lambda r: r.filename):
        report.findings.extend(result.findings)
        dropped += result.rows_dropped
        written += result.rows_written
        by_name[result.filename] = result
    splits = {split: [CheckedImage(job.filename, job.path, r.info, r.boxes, job.source_id)
                      for job in jobs if (r := by_name[job.filename]).info is not None]
              for split, jobs in planned.splits.items()}
    source = display_name(options.labels)
    if not any(image.boxes for images in splits.values() for image in images):
        report.add(NO_CLASSES, source, "no usable box remains; see the findings above")
        report.sort()
        raise CheckFailed(report)
    per_split = {name: Counter(b.label for image in items for b in image.boxes) for name, items in splits.items()}
    check_split_classes(per_split, {name: len(items) for name, items in splits.items()}, planned.classes, source,
                        report)
    report.sort()
    if options.strict and report.findings:
        raise CheckFailed(report, strict=True)
    rows_in = loaded.labels.rows_in
    if rows_in != written + dropped:
        raise AssertionError(f"row reconciliation failed: {rows_in} in, {written} written, {dropped} reported")
    verify: VerifyCounts = {"mode": options.verify, "images": len(results), "sample_every": sample_every(len(results)),
              "decoded": sum(1 for r in results if r.info is not None and r.info.decoded)}
    return Checked(loaded.fmt, loaded.images_dir, planned.classes, splits, report,
                   {"in": rows_in, "written": written, "reported": dropped}, verify)
