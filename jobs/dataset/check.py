"""``data check``: read the labels, find and inspect every image, check boxes, classes and the split.

The same checks run inside ``prepare`` and ``stats``. Every input row is either kept or reported:
``rows in = rows written + rows reported`` is verified.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jobs.dataset import label_map as label_maps
from jobs.dataset.annotations import Box, LabelledImage, Labels
from jobs.dataset.findings import (
    NEGATIVE_CONFLICT,
    NO_CLASSES,
    RULES,
    SIZE_MISMATCH,
    UNREADABLE_IMAGE,
    Report,
    Severity,
)
from jobs.dataset.images import ImageInfo, ImageProblem, inspect
from jobs.dataset.locate import Located, locate
from jobs.dataset.parallel import Progress, parallel_map
from jobs.dataset.readers import read_labels
from jobs.dataset.readers.base import display_name
from jobs.dataset.split import split_images
from jobs.dataset.validate import (
    check_box,
    check_box_count,
    check_class_names,
    check_classes,
    check_split_classes,
    drop_duplicates,
)
from jobs.errors import DataError, UsageError

VERIFY_MODES = ("header", "full")
SAMPLE_EVERY = 50  # the default verification decodes every 50th image (in name order), the first included
CHECKS_VERSION = 2  # part of the input fingerprint: a rerun after the checks changed is not "unchanged"


@dataclass(frozen=True)
class CheckOptions:
    labels: Path
    images: Path | None = None  # None: where the format keeps them (YOLO, VOC, COCO)
    fmt: str = "auto"
    val_fraction: float = 0.2
    seed: int = 0
    label_map: Path | None = None
    unlabeled_as_negatives: bool = False
    verify: str = "header"  # or "full": decode every image
    strict: bool = False  # every finding is fatal
    workers: int | None = None


@dataclass(frozen=True)
class CheckedImage:
    filename: str
    path: str
    info: ImageInfo
    boxes: tuple[Box, ...]  # in pixels, checked


@dataclass
class Loaded:
    """The labels read and their image files found, before any image is opened."""

    options: CheckOptions
    fmt: str
    labels: Labels
    images_dir: Path
    located: Located
    label_map: dict[str, int] | None
    report: Report

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
                                  o.unlabeled_as_negatives, o.verify, o.strict, *extra], default=str).encode())
        for image in sorted(self.located.images, key=lambda i: i.filename):
            stat = os.stat(os.path.join(self.images_dir, image.filename))
            digest.update(f"{image.filename}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()


@dataclass
class Checked:
    """A usable dataset: kept images by split with their checked boxes, the class ids and every finding."""

    fmt: str
    images_dir: Path
    classes: dict[str, int]
    splits: dict[str, list[CheckedImage]]
    report: Report
    rows: dict[str, int]  # in, written, reported
    verify: dict = field(default_factory=dict)  # mode, images, decoded


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


def load(options: CheckOptions) -> Loaded:
    """Read the labels and find every image file; reader errors raise CheckFailed with their finding."""
    if options.verify not in VERIFY_MODES:
        raise UsageError(f"--verify must be one of {', '.join(VERIFY_MODES)}, not {options.verify!r}")
    report = Report()
    try:
        fmt, labels = read_labels(options.labels, options.fmt, report)
    except CheckFailed:
        raise
    except DataError:
        raise CheckFailed(report) from None
    given_map = label_maps.load(options.label_map) if options.label_map else None
    images_dir = options.images or labels.images_dir
    if images_dir is None:
        remote = next((i.uri for i in labels.images.values() if i.uri), None)
        hint = (f" The labels name gs:// images ({remote}): copy them, e.g. gsutil -m cp -r "
                f"gs://{remote[5:].partition('/')[0]}/... DIR, and pass DIR." if remote else "")
        raise UsageError(f"pass --images DIR, the folder the image names in {options.labels.name} are "
                         f"relative to.{hint}")
    if not images_dir.is_dir():
        raise UsageError(f"the images folder {images_dir} does not exist")
    located = locate(images_dir, labels, report, options.unlabeled_as_negatives)
    return Loaded(options, fmt, labels, images_dir, located, given_map, report)


def check(options: CheckOptions, progress: Progress | None = None) -> Checked:
    return validate(load(options), progress)


def inspect_or_problem(task: tuple[str, bool]) -> ImageInfo | tuple[str, str]:
    """Picklable worker: the image's header facts, or (rule code, reason) when it cannot be used."""
    path, decode = task
    try:
        return inspect(Path(path), decode)
    except FileNotFoundError:
        return UNREADABLE_IMAGE.code, "vanished while being checked"
    except ImageProblem as err:
        return err.rule.code, str(err)


def validate(loaded: Loaded, progress: Progress | None = None) -> Checked:
    """Open every image, check every box, class and the split; CheckFailed when the data cannot be used."""
    options, report = loaded.options, loaded.report
    dropped = loaded.labels.rows_dropped + loaded.located.dropped_rows
    images = sorted(loaded.located.images, key=lambda i: i.filename)
    for image in images:
        if image.boxes and image.negative_rows:
            for location in image.negative_rows:
                report.add(NEGATIVE_CONFLICT, location, f"'{image.filename}' is listed without a label here and "
                                                        f"with boxes at {image.boxes[0].location}")
            dropped += len(image.negative_rows)
            image.locations = [place for place in image.locations if place not in image.negative_rows]
            image.negative_rows = []
    full = options.verify == "full"
    folder = str(loaded.images_dir)
    paths = [os.path.join(folder, image.filename) for image in images]
    tasks = [(path, full or index % SAMPLE_EVERY == 0) for index, path in enumerate(paths)]
    infos = parallel_map(inspect_or_problem, tasks, options.workers, progress, "inspect")
    kept: list[CheckedImage] = []
    written = 0
    split_of: dict[str, str | None] = {}
    for image, path, info in zip(images, paths, infos, strict=True):
        where = image.locations[0]
        if isinstance(info, tuple):
            code, reason = info
            report.add(RULES[code], where,
                       f"image '{image.filename}': {reason} ({len(image.locations)} row(s) dropped)")
            dropped += len(image.locations)
            continue
        if image.stated_size and image.stated_size != (info.width, info.height):
            report.add(SIZE_MISMATCH, where, f"'{image.filename}' is {info.width}x{info.height}, the label file "
                                             f"says {image.stated_size[0]}x{image.stated_size[1]}")
        for rule, note in info.notes():
            report.add(rule, where, f"'{image.filename}': {note}")
        boxes = [b for b in (check_box(box, info.width, info.height, report) for box in image.boxes) if b]
        boxes = drop_duplicates(boxes, report)
        dropped += len(image.boxes) - len(boxes)
        if image.boxes and not boxes:
            continue  # no box left: not a known negative either
        check_box_count(image.filename, where, len(boxes), report)
        written += len(boxes) if boxes else len(image.negative_rows)
        kept.append(CheckedImage(image.filename, path, info, tuple(boxes)))
        split_of[image.filename] = image.split
    all_boxes = [box for image in kept for box in image.boxes]
    source = display_name(options.labels)
    if loaded.label_map is not None:
        check_classes(all_boxes, loaded.label_map, source, report)
    check_class_names({box.label for box in all_boxes}, source, report)
    if not all_boxes and not report.fatal:
        report.add(NO_CLASSES, source, "no usable box remains; see the findings above")
    if report.fatal:
        raise CheckFailed(report)
    classes = loaded.label_map if loaded.label_map is not None else label_maps.build(b.label for b in all_boxes)
    splits = _split(kept, split_of, loaded.labels, options)
    per_split = {name: Counter(b.label for image in items for b in image.boxes) for name, items in splits.items()}
    check_split_classes(per_split, {name: len(items) for name, items in splits.items()},
                        sorted({b.label for b in all_boxes}), source, report)
    if options.strict and report.findings:
        raise CheckFailed(report, strict=True)
    rows_in = loaded.labels.rows_in
    if rows_in != written + dropped:
        raise AssertionError(f"row reconciliation failed: {rows_in} in, {written} written, {dropped} reported")
    verify = {"mode": options.verify, "images": len(images), "decoded": sum(1 for i in infos if
                                                                            isinstance(i, ImageInfo) and i.decoded)}
    return Checked(loaded.fmt, loaded.images_dir, classes, splits, report,
                   {"in": rows_in, "written": written, "reported": dropped}, verify)


def _split(kept: list[CheckedImage], split_of: dict[str, str | None], labels: Labels,
           options: CheckOptions) -> dict[str, list[CheckedImage]]:
    val, test = labels.split_fractions or (options.val_fraction, 0.0)
    by_name = {image.filename: image for image in kept}
    proxies = [LabelledImage(i.filename, list(i.boxes), split=split_of[i.filename]) for i in kept]
    return {name: [by_name[p.filename] for p in items]
            for name, items in split_images(proxies, val, options.seed, test).items()}
