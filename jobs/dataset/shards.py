"""TFRecord shards of ``tf.train.Example``: sized by bytes, written by worker processes, image bytes passed through."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from jobs.dataset.images import ImageInfo, record_bytes
from jobs.dataset.parallel import PARALLEL_FROM, Progress, parallel_map
from jobs.dataset.tfrecord import Bytes, Floats, Ints, encode_example, write_record

DEFAULT_SHARD_BYTES = 150 * 1024 * 1024


@dataclass(frozen=True)
class RecordSpec:
    """Everything one Example needs, except the image bytes that the shard writer reads itself."""

    path: str
    filename: str
    source_id: int
    info: ImageInfo
    boxes: tuple[tuple[str, int, float, float, float, float], ...]  # (label, id, xmin, ymin, xmax, ymax) px


def write_shards(folder: Path, splits: dict[str, list[RecordSpec]], num_shards: int | None, shard_bytes: int,
                 workers: int | None, progress: Progress | None,
                 alongside: Callable[[], None] | None = None) -> dict[str, list[dict]]:
    """Write ``<split>-0000i-of-0000N.tfrecord`` files; returns each split's shards with counts and digests.

    ``alongside`` runs in this process while the workers write (after they have started).
    """
    tasks = []
    for split, records in splits.items():
        if not records:
            continue
        total = sum(r.info.size_bytes for r in records)
        count = min(num_shards or max(1, math.ceil(total / shard_bytes)), len(records))
        for index in range(count):
            tasks.append((split, str(folder / f"{split}-{index:05d}-of-{count:05d}.tfrecord"), records[index::count]))
    results = parallel_map(write_shard, [(path, records) for _, path, records in tasks], workers, None, "write",
                           chunk=1, parallel=sum(len(t[2]) for t in tasks) >= PARALLEL_FROM, alongside=alongside)
    if progress:
        progress("write", len(tasks), len(tasks))
    written: dict[str, list[dict]] = {split: [] for split in splits}
    for (split, path, _), result in zip(tasks, results, strict=True):
        written[split].append({"file": Path(path).name} | result)
    return written


def write_shard(task: tuple[str, Sequence[RecordSpec]]) -> dict:
    """Picklable worker: read each image's bytes and write one shard; returns its counts and digests."""
    path, records = task
    digest = hashlib.sha256()
    size = 0
    with open(path, "wb") as stream:
        for record in records:
            data = record_bytes(Path(record.path), record.info)
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
        "image/format": Bytes([record.info.record_format]),
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
