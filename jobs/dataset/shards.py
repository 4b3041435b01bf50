"""TFRecord shards of ``tf.train.Example`` (the ``write`` stage of ``pipeline.py``): sized by bytes, each written by a
worker process that reads every image once, examines it (``examine.py``) and writes it if it is usable, its bytes
passed through unchanged."""

from __future__ import annotations

import hashlib
import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from jobs.dataset.examine import ImageJob, ImageResult, PackedResult, examine
from jobs.dataset.images import record_bytes
from jobs.dataset.parallel import PARALLEL_FROM, Progress, parallel_map
from jobs.dataset.records import RecordEncoder
from jobs.dataset.tfrecord import write_record
from jobs.errors import UsageError

if TYPE_CHECKING:
    from google.cloud.storage import Client  # untyped (no py.typed): a name for the reader, Any to mypy

DEFAULT_SHARD_BYTES = 150 * 1024 * 1024
MIN_ROUNDED_BYTES = 100 * 1024 * 1024
BATCH_IMAGES = 64  # images a worker reads, examines, then writes at a time (see write_shard)
BATCH_BYTES = 16 * 1024 * 1024  # or fewer, to hold at most this many bytes of them


ShardEntry = dict[str, str | int]  # file, records, bytes, content_sha256


class Written(NamedTuple):
    shards: dict[str, list[ShardEntry]]  # per split
    results: list[ImageResult]  # of every image, written or not
    records: list[str]  # per record: "split\0name\0length\0crc32c", whatever shard it is in


def write_shards(folder: Path, splits: dict[str, list[ImageJob]], classes: dict[str, int], num_shards: int | None,
                 shard_bytes: int, workers: int | None, progress: Progress | None) -> Written:
    """Write ``<split>-0000i-of-0000N.tfrecord`` files (round-robin, ``shard_tasks``) in worker processes."""
    tasks = shard_tasks(str(folder), splits, num_shards, shard_bytes, workers)
    images = sum(len(jobs) for jobs in splits.values())
    jobs_of = [task.jobs(splits) for task in tasks]  # what each worker takes from ``splits``
    done = 0

    def shard_written(stage: str, shards: int, total: int) -> None:
        nonlocal done
        done += len(jobs_of[shards - 1])
        if progress:
            progress(stage, done, images)

    outcomes = parallel_map(write_shard, (splits, classes), tasks, workers, shard_written, "write",
                            parallel=images >= PARALLEL_FROM)
    return collect(splits, tasks, outcomes)


def shard_tasks(folder: str, splits: dict[str, list[ImageJob]], num_shards: int | None, shard_bytes: int,
                workers: int | None) -> list[ShardTask]:
    """The shards of every split, ``<split>-0000i-of-0000N.tfrecord`` in ``folder`` (a path or a URI).

    Without ``num_shards``, a split gets one shard per ``shard_bytes``, rounded up to a multiple of the workers (so
    that they finish together) while shards stay above MIN_ROUNDED_BYTES.
    """
    workers = workers or os.cpu_count() or 1
    folder = folder.rstrip("/")
    tasks: list[ShardTask] = []
    for split, jobs in splits.items():
        if not jobs:
            continue
        total = sum(j.size_bytes for j in jobs)
        count = num_shards or math.ceil(total / shard_bytes)
        if not num_shards and count > 1 and total / (math.ceil(count / workers) * workers) >= MIN_ROUNDED_BYTES:
            count = math.ceil(count / workers) * workers
        count = max(1, min(count, len(jobs)))
        tasks += [ShardTask(split, f"{folder}/{split}-{index:05d}-of-{count:05d}.tfrecord", index, count)
                  for index in range(count)]
    return tasks


def collect(splits: dict[str, list[ImageJob]], tasks: list[ShardTask],
            outcomes: list[tuple[ShardEntry, list[PackedResult], list[str]]]) -> Written:
    """What every shard's writer returned (``write_shard``), in task order, as one ``Written``."""
    written = Written({split: [] for split in splits}, [], [])
    for task, (shard, results, records) in zip(tasks, outcomes, strict=True):
        written.shards[task.split].append({"file": task.path.rpartition("/")[2], **shard})
        written.results.extend(map(ImageResult.unpacked, results, task.jobs(splits)))
        written.records.extend(f"{task.split}\0{record}" for record in records)
    return written


class ShardDigest:
    """A shard's record count, bytes and content digest, and each record's digest line (name, length and the CRC32C
    the framing computes anyway), as the records are written."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.size = 0
        self.records: list[str] = []

    def add(self, filename: str, length: int, crc: int) -> None:
        self.records.append(f"{filename}\0{length}\0{crc:08x}")
        self._digest.update(self.records[-1].encode() + b"\n")
        self.size += length

    def entry(self) -> ShardEntry:
        return {"records": len(self.records), "bytes": self.size, "content_sha256": self._digest.hexdigest()}


@dataclass(frozen=True)
class ShardTask:
    """Shard ``index`` of ``count`` of a split: its every ``count``-th image, from the ``index``-th."""

    split: str
    path: str
    index: int
    count: int

    def jobs(self, splits: dict[str, list[ImageJob]]) -> list[ImageJob]:
        return splits[self.split][self.index::self.count]


def write_shard(shared: tuple[dict[str, list[ImageJob]], dict[str, int]],
                task: ShardTask) -> tuple[ShardEntry, list[PackedResult], list[str]]:
    """Worker: read, examine and write each image of one shard; returns the shard's counts and digest, each image's
    result (packed: ``ImageResult.unpacked``) and each record's digest line (name, length and the CRC32C the
    framing computes anyway).

    Images go in batches, each step taken over the whole batch before the next (read, examine, then encode and
    write): the interpreter's code and data stay in the CPU caches instead of being pushed out by every image's
    bytes on their way through (a tenth less CPU)."""
    splits, classes = shared
    path = task.path
    shard = ShardDigest()
    results: list[PackedResult] = []
    encoder = RecordEncoder(classes)
    with open(path, "wb", buffering=0) as stream:
        for batch in _batches(task.jobs(splits)):
            datas = [read_image(job.path) for job in batch]
            examined = [examine(job, data) for job, data in zip(batch, datas, strict=True)]
            results += [result.packed(job) for job, result in zip(batch, examined, strict=True)]
            for job, data, result in zip(batch, datas, examined, strict=True):
                info = result.info
                if info is None or data is None:  # not kept
                    continue
                pieces = encoder.encode(record_bytes(data, info), info.record_format, info.width, info.height,
                                        job.filename, job.source_id, result.boxes)
                try:
                    length, crc = write_record(stream.fileno(), pieces)
                except OSError as err:  # disk full, say: name the file
                    raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from None
                shard.add(job.filename, length, crc)
    return shard.entry(), results, shard.records


def _batches(jobs: list[ImageJob]) -> Iterator[list[ImageJob]]:
    """Consecutive jobs, at most BATCH_IMAGES and (unless one image is larger) BATCH_BYTES of files at a time."""
    batch: list[ImageJob] = []
    held = 0
    for job in jobs:
        if batch and (len(batch) == BATCH_IMAGES or held + job.size_bytes > BATCH_BYTES):
            yield batch
            batch, held = [], 0
        batch.append(job)
        held += job.size_bytes
    if batch:
        yield batch


def read_image(path: str) -> bytes | None:
    """The whole file in one read (an exact-size buffer), or None; examine() then reports why. Opened without
    waiting and read only if it is a regular file: a FIFO put in place after the check cannot block. A ``gs://``
    path is read from Cloud Storage (``read_object``): what Dataflow's workers and the local engines read alike."""
    if path.startswith("gs://"):
        return read_object(path)
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        status = os.fstat(handle)
        if not stat.S_ISREG(status.st_mode):
            return None
        size = status.st_size
        data = os.read(handle, size)
        return data if len(data) == size else None
    except OSError:
        return None
    finally:
        os.close(handle)


_storage: dict[str | None, Client] = {}  # a Cloud Storage client per process and endpoint, made on first use


def read_object(uri: str) -> bytes | None:
    """A ``gs://`` object's bytes (checked by CRC32C on the way), or None when it cannot be read: examine() then
    reports the image as unreadable, as for a local file. A denied read is no finding about the image but a
    missing permission, the same for every image: UsageError, which ends the run (a Dataflow job: it fails)."""
    from google.api_core.exceptions import Forbidden, GoogleAPIError, Unauthorized
    from google.resumable_media.common import DataCorruption
    from requests.exceptions import RequestException

    from jobs.dataset.gcs import client, split_uri

    endpoint = os.environ.get("STORAGE_EMULATOR_HOST")  # a client is bound to its endpoint (tests: an emulator's)
    if endpoint not in _storage:
        _storage[endpoint] = client()
    bucket, name = split_uri(uri)
    try:
        data: bytes = _storage[endpoint].bucket(bucket).blob(name).download_as_bytes(checksum="crc32c")
    except (Forbidden, Unauthorized) as err:
        # Cloud Storage "IAM permissions for XML methods" (storage/docs/access-control/iam-xml): GET object needs
        # storage.objects.get
        raise UsageError(f"no access to read {uri} ({err.message}): the reader needs storage.objects.get on "
                         f"gs://{bucket} (roles/storage.objectViewer); with --engine dataflow, the stack's Dataflow "
                         "worker account is the reader") from None
    except (GoogleAPIError, DataCorruption, RequestException):
        return None
    return data
