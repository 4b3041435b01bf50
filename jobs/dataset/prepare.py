"""``data prepare``: label file + images folder -> sharded TFRecords, label map, COCO ground truth, summary.

Nothing is written unless the data is usable, and then everything is written at once (see ``outputs.py``).
Every input row is either written or reported: ``rows in = rows written + rows reported`` is checked.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from jobs.dataset import label_map as label_maps
from jobs.dataset.annotations import Box, LabelledImage
from jobs.dataset.coco import GroundTruthImage, ground_truth
from jobs.dataset.findings import (
    EXIF_ORIENTATION,
    MISSING_IMAGE,
    NO_CLASSES,
    SIZE_MISMATCH,
    UNREADABLE_IMAGE,
    UNSAFE_PATH,
    Report,
    Severity,
)
from jobs.dataset.images import ImageInfo, ImageProblem, inspect
from jobs.dataset.outputs import staged_directory, write_json
from jobs.dataset.readers import read_labels
from jobs.dataset.split import split_images
from jobs.dataset.tfrecord import Bytes, Floats, Ints, encode_example, write_record
from jobs.dataset.validate import check_box, check_classes
from jobs.errors import DataError

SPLITS = ("train", "val")
DEFAULT_SHARD_BYTES = 150 * 1024 * 1024
PARALLEL_FROM = 64  # images; below this, worker start-up costs more than it saves

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class PrepareOptions:
    labels: Path
    images: Path
    out: Path
    fmt: str = "auto"
    val_fraction: float = 0.2
    seed: int = 0
    label_map: Path | None = None
    num_shards: int | None = None
    shard_bytes: int = DEFAULT_SHARD_BYTES
    workers: int | None = None


@dataclass
class PrepareResult:
    out: Path
    summary: dict
    report: Report
    unchanged: bool = False


@dataclass(frozen=True)
class RecordSpec:
    """Everything one Example needs, except the image bytes that the shard writer reads itself."""

    path: str
    filename: str
    source_id: int
    info: ImageInfo
    boxes: tuple[tuple[str, int, float, float, float, float], ...]  # (label, id, xmin, ymin, xmax, ymax) px


@dataclass
class _Image:
    labelled: LabelledImage
    info: ImageInfo
    boxes: list[Box] = field(default_factory=list)


def prepare(options: PrepareOptions, progress: Progress | None = None) -> PrepareResult:
    report = Report()
    fmt, labels = read_labels(options.labels, options.fmt, report)
    given_map = label_maps.load(options.label_map) if options.label_map else None
    fingerprint = _fingerprint(options, fmt, labels.images)
    previous = _previous_summary(options.out)
    if previous and previous.get("input_fingerprint") == fingerprint:
        return PrepareResult(options.out, previous, _previous_report(options.out), unchanged=True)

    usable, dropped_rows = _check_images(options.images, labels.images, report, options.workers, progress)
    dropped_rows += labels.rows_dropped
    for image in usable:
        for box in image.labelled.boxes:
            kept = check_box(box, image.info.width, image.info.height, report)
            if kept is None:
                dropped_rows += 1
            else:
                image.boxes.append(kept)
    all_boxes = [box for image in usable for box in image.boxes]
    if given_map is not None:
        check_classes(all_boxes, given_map, report)
    if not all_boxes and not report.fatal:
        report.add(NO_CLASSES, options.labels.name, "no usable box remains; see the findings above")
    if report.fatal:
        raise PrepareFailed(report)
    classes = given_map if given_map is not None else label_maps.build(box.label for box in all_boxes)

    rows_written = len(all_boxes)
    if labels.rows_in != rows_written + dropped_rows:
        raise AssertionError(f"row reconciliation failed: {labels.rows_in} in, {rows_written} written, "
                             f"{dropped_rows} reported")
    by_name = {image.labelled.filename: image for image in usable}
    kept_images = [LabelledImage(i.labelled.filename, i.boxes, i.labelled.locations) for i in usable]
    train, val = split_images(kept_images, options.val_fraction, options.seed)
    source_ids = {name: index for index, name in enumerate(sorted(by_name), start=1)}

    def specs(split: Sequence[LabelledImage]) -> list[RecordSpec]:
        return [RecordSpec(
            path=str(options.images / item.filename), filename=item.filename,
            source_id=source_ids[item.filename], info=by_name[item.filename].info,
            boxes=tuple((b.label, classes[b.label], b.xmin, b.ymin, b.xmax, b.ymax) for b in item.boxes),
        ) for item in split]

    split_specs = {"train": specs(train), "val": specs(val)}
    with staged_directory(options.out) as stage:
        written = _write_shards(stage, split_specs, options, progress)
        (stage / "label_map.pbtxt").write_text(label_maps.dumps(classes), encoding="utf-8")
        for split, records in split_specs.items():
            write_json(stage / f"{split}_coco.json", ground_truth(
                [GroundTruthImage(r.source_id, r.filename, r.info.width, r.info.height,
                                  [box[1:] for box in r.boxes]) for r in records], classes))
        summary = _summary(options, fmt, fingerprint, classes, split_specs, written, labels.rows_in,
                           rows_written, dropped_rows, report)
        write_json(stage / "report.json", {"rows": summary["rows"], "findings": report.to_json()})
        write_json(stage / "dataset.json", summary)
    return PrepareResult(options.out, summary, report)


class PrepareFailed(DataError):
    """The data has fatal errors; nothing was written."""

    SHOWN = 20

    def __init__(self, report: Report):
        self.report = report
        errors = [f for f in report.findings if f.rule.severity is Severity.ERROR]
        lines = [f"  {finding}" for finding in errors[:self.SHOWN]]
        if len(errors) > self.SHOWN:
            lines.append(f"  ... and {len(errors) - self.SHOWN} more errors")
        super().__init__("the data cannot be prepared; nothing was written:\n" + "\n".join(lines))


def _check_images(
    images_dir: Path, images: dict[str, LabelledImage], report: Report, workers: int | None,
    progress: Progress | None,
) -> tuple[list[_Image], int]:
    safe: list[LabelledImage] = []
    dropped_rows = 0
    for item in images.values():
        parts = PurePosixPath(item.filename.replace("\\", "/"))
        if parts.is_absolute() or ".." in parts.parts or Path(item.filename).is_absolute():
            report.add(UNSAFE_PATH, item.locations[0],
                       f"'{item.filename}' must be relative to the images folder, without '..'")
            dropped_rows += len(item.locations)
        else:
            safe.append(item)
    infos = _map(inspect_or_problem, [str(images_dir / item.filename) for item in safe], workers,
                 progress, "inspect")
    usable = []
    for item, info in zip(safe, infos, strict=True):
        rows = f"{len(item.locations)} row(s)"
        if isinstance(info, str):
            rule = MISSING_IMAGE if info == _MISSING else UNREADABLE_IMAGE
            message = (f"image '{item.filename}' not found in {images_dir} ({rows} dropped)"
                       if info == _MISSING else f"image '{item.filename}': {info} ({rows} dropped)")
            report.add(rule, item.locations[0], message)
            dropped_rows += len(item.locations)
            continue
        if item.stated_size and item.stated_size != (info.width, info.height):
            report.add(SIZE_MISMATCH, item.locations[0],
                       f"'{item.filename}' is {info.width}x{info.height}, the label file says "
                       f"{item.stated_size[0]}x{item.stated_size[1]}")
        if info.orientation != 1:
            report.add(EXIF_ORIENTATION, item.locations[0],
                       f"'{item.filename}' has EXIF orientation {info.orientation}; boxes are used as drawn on "
                       "the stored pixels")
        usable.append(_Image(item, info))
    return usable, dropped_rows


_MISSING = "missing"


def inspect_or_problem(path: str) -> ImageInfo | str:
    """Picklable worker: the header, or a short reason why the image cannot be used."""
    try:
        return inspect(Path(path))
    except FileNotFoundError:
        return _MISSING
    except ImageProblem as err:
        return str(err)


def _map(fn, items: list, workers: int | None, progress: Progress | None, stage: str) -> list:
    workers = workers or os.cpu_count() or 1
    results = []
    if workers == 1 or len(items) < PARALLEL_FROM:
        for index, item in enumerate(items, start=1):
            results.append(fn(item))
            if progress:
                progress(stage, index, len(items))
        return results
    chunk = max(1, len(items) // (workers * 8))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for index, result in enumerate(pool.map(fn, items, chunksize=chunk), start=1):
            results.append(result)
            if progress and (index % chunk == 0 or index == len(items)):
                progress(stage, index, len(items))
    return results


def _write_shards(
    stage: Path, split_specs: dict[str, list[RecordSpec]], options: PrepareOptions, progress: Progress | None
) -> dict[str, list[dict]]:
    tasks = []
    for split, records in split_specs.items():
        if not records:
            continue
        total = sum(r.info.size_bytes for r in records)
        count = options.num_shards or max(1, math.ceil(total / options.shard_bytes))
        count = min(count, len(records))
        for index in range(count):
            name = f"{split}-{index:05d}-of-{count:05d}.tfrecord"
            tasks.append((split, str(stage / name), records[index::count]))
    workers = min(options.workers or os.cpu_count() or 1, len(tasks)) or 1
    results = _map(write_shard, [(path, records) for _, path, records in tasks],
                   1 if sum(len(t[2]) for t in tasks) < PARALLEL_FROM else workers, None, "write")
    if progress:
        progress("write", len(tasks), len(tasks))
    written: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for (split, path, _), result in zip(tasks, results, strict=True):
        written[split].append({"file": Path(path).name} | result)
    return written


def write_shard(task: tuple[str, list[RecordSpec]]) -> dict:
    """Picklable worker: read each image's bytes and write one shard; returns its counts and digests."""
    path, records = task
    digest = hashlib.sha256()
    size = 0
    with open(path, "wb") as stream:
        for record in records:
            data = Path(record.path).read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            digest.update(f"{record.filename}\0{sha}\n".encode())
            example = encode_example(example_features(record, data, sha))
            write_record(stream, example)
            size += len(example)
    return {"records": len(records), "bytes": size, "content_sha256": digest.hexdigest()}


def example_features(record: RecordSpec, data: bytes, sha256: str) -> dict:
    """The TF Example keys that Model Garden's TfExampleDecoder and the OD API read."""
    width, height = record.info.width, record.info.height
    boxes = record.boxes
    return {
        "image/encoded": Bytes([data]),
        "image/format": Bytes([record.info.format]),
        "image/height": Ints([height]),
        "image/width": Ints([width]),
        "image/filename": Bytes([record.filename]),
        "image/source_id": Bytes([str(record.source_id)]),
        "image/key/sha256": Bytes([sha256]),
        "image/object/bbox/xmin": Floats([b[2] / width for b in boxes]),
        "image/object/bbox/xmax": Floats([b[4] / width for b in boxes]),
        "image/object/bbox/ymin": Floats([b[3] / height for b in boxes]),
        "image/object/bbox/ymax": Floats([b[5] / height for b in boxes]),
        "image/object/class/text": Bytes([b[0] for b in boxes]),
        "image/object/class/label": Ints([b[1] for b in boxes]),
        "image/object/area": Floats([(b[4] - b[2]) * (b[5] - b[3]) for b in boxes]),
        "image/object/is_crowd": Ints([0] * len(boxes)),
    }


def _fingerprint(options: PrepareOptions, fmt: str, images: dict[str, LabelledImage]) -> str:
    """Changes when the label file, an image file (name, size, mtime) or an option changes."""
    digest = hashlib.sha256(options.labels.read_bytes())
    if options.label_map:
        digest.update(options.label_map.read_bytes())
    digest.update(json.dumps([fmt, options.val_fraction, options.seed, options.num_shards,
                              options.shard_bytes]).encode())
    for name in sorted(images):
        try:
            stat = (options.images / name).stat()
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{name}\0missing\n".encode())
    return digest.hexdigest()


def _previous_summary(out: Path) -> dict | None:
    try:
        return json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _previous_report(out: Path) -> Report:
    from jobs.dataset.findings import Finding

    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return Report([Finding(f["code"], f["location"], f["message"]) for f in data["findings"]])


def _summary(
    options: PrepareOptions, fmt: str, fingerprint: str, classes: dict[str, int],
    split_specs: dict[str, list[RecordSpec]], written: dict[str, list[dict]], rows_in: int,
    rows_written: int, rows_reported: int, report: Report,
) -> dict:
    content = hashlib.sha256(label_maps.dumps(classes).encode())
    splits = {}
    for split, records in split_specs.items():
        per_class = Counter(box[0] for record in records for box in record.boxes)
        for shard in written[split]:
            content.update(shard["content_sha256"].encode())
        splits[split] = {
            "images": len(records),
            "boxes": sum(len(r.boxes) for r in records),
            "negatives": sum(1 for r in records if not r.boxes),
            "per_class": {name: per_class.get(name, 0) for name in classes},
            "shards": written[split],
            "pattern": f"{split}-*.tfrecord",
            "coco": f"{split}_coco.json",
        }
    all_records = [r for records in split_specs.values() for r in records]
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": str(options.labels),
        "images_dir": str(options.images),
        "format": fmt,
        "seed": options.seed,
        "val_fraction": options.val_fraction,
        "classes": [{"id": class_id, "name": name} for name, class_id in sorted(classes.items(),
                                                                                 key=lambda item: item[1])],
        "splits": splits,
        "max_boxes_per_image": max((len(r.boxes) for r in all_records), default=0),
        "rows": {"in": rows_in, "written": rows_written, "reported": rows_reported},
        "findings": dict(sorted(report.counts().items())),
        "input_fingerprint": fingerprint,
        "content_hash": content.hexdigest(),
    }
