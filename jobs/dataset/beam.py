"""``data prepare --engine beam``: the ``write`` stage of ``pipeline.py`` as an Apache Beam pipeline, run by Beam's
DirectRunner in worker processes on this machine.

The driver has planned (``pipeline.load`` and ``plan``: labels are small) and fixes the shards as the local engine does
(``shards.shard_tasks``). The pipeline reads, examines and encodes each image (``shards.read_image``,
``examine.examine``, ``records.RecordEncoder``: the local engine's checks and bytes), groups the records by shard and
writes each shard in plan order (``tfrecord.frame``), so that a shard holds the records the local engine's would, in
the same order. Each shard's writer leaves what ``pipeline.finish`` needs (every image's result, each record's digest
line) as JSON in a folder of its own; the driver reads it back into a ``shards.Written``. Counters in the ``detector``
namespace (images read, findings) let a driver follow a job that runs elsewhere (``dataflow.follow``). The workers
import this module: nothing here imports TensorFlow or the CLI.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import PCollection

from jobs.dataset.annotations import Box
from jobs.dataset.examine import ImageJob, PackedResult, examine
from jobs.dataset.findings import Finding
from jobs.dataset.images import record_bytes
from jobs.dataset.parallel import Progress
from jobs.dataset.records import RecordEncoder
from jobs.dataset.shards import ShardDigest, ShardEntry, ShardTask, Written, collect, read_image, shard_tasks
from jobs.dataset.tfrecord import frame

STAGE = "write"  # the progress stage, as the local engine's
Job = tuple[int, int, ImageJob]  # shard, position in the shard, the image's job
Encoded = tuple[int, str, PackedResult, bytes | None]  # position, filename, result, the record (None: not kept)
Outcome = tuple[ShardEntry, list[PackedResult], list[str]]  # as ``shards.write_shard`` returns
COUNTERS = "detector"  # the namespace of the pipeline's counters
IMAGES, FINDINGS = "images", "findings"  # images read and examined; findings about them


class ExamineAndEncode(beam.DoFn):
    """Read one image, examine it and encode its record if it is kept; keyed by its shard."""

    def __init__(self, classes: dict[str, int]):
        self._classes = classes
        self._encoder: RecordEncoder | None = None
        self._images = Metrics.counter(COUNTERS, IMAGES)
        self._findings = Metrics.counter(COUNTERS, FINDINGS)

    def setup(self) -> None:
        self._encoder = RecordEncoder(self._classes)

    def process(self, element: Job) -> Iterator[tuple[int, Encoded]]:
        shard, position, job = element
        data = read_image(job.path)
        result = examine(job, data)
        record = None
        if result.info is not None and data is not None and self._encoder is not None:
            info = result.info
            record = b"".join(self._encoder.encode(record_bytes(data, info), info.record_format, info.width,
                                                   info.height, job.filename, job.source_id, result.boxes))
        self._images.inc()  # type: ignore[no-untyped-call]
        self._findings.inc(len(result.findings))  # type: ignore[no-untyped-call]
        yield shard, (position, job.filename, result.packed(job), record)


class WriteShard(beam.DoFn):
    """Write one shard's records in plan order, then its outcome (``Outcome``, as JSON) into ``outcomes``."""

    def __init__(self, paths: list[str], outcomes: str):
        self._paths = paths
        self._outcomes = outcomes

    def process(self, element: tuple[int, Iterable[Encoded]]) -> Iterator[int]:
        shard, encoded = element
        digest = ShardDigest()
        results: list[PackedResult] = []
        with FileSystems.create(self._paths[shard], compression_type=CompressionTypes.UNCOMPRESSED) as stream:
            for _, filename, packed, record in sorted(encoded, key=lambda item: item[0]):
                results.append(packed)
                if record is None:
                    continue
                framed, length, crc = frame([record])
                for piece in framed:
                    stream.write(piece)
                digest.add(filename, length, crc)
        outcome: Outcome = (digest.entry(), results, digest.records)
        with FileSystems.create(outcome_path(self._outcomes, shard),
                                compression_type=CompressionTypes.UNCOMPRESSED) as stream:
            stream.write(json.dumps(outcome, separators=(",", ":")).encode())
        yield shard


def outcome_path(folder: str, shard: int) -> str:
    return f"{folder.rstrip('/')}/shard-{shard:05d}.json"


def direct_options(workers: int | None) -> PipelineOptions:
    """Beam's DirectRunner in ``workers`` processes (default: one per core)."""
    return PipelineOptions(flags=[], runner="DirectRunner", direct_num_workers=workers or os.cpu_count() or 1,
                           direct_running_mode="multi_processing")


def build(jobs: PCollection[Job], classes: dict[str, int], paths: list[str], outcomes: str) -> None:
    """The pipeline after its source: every job examined and encoded, grouped by shard, each shard written (Beam's
    transforms are untyped)."""
    _ = (jobs
         | "examine and encode" >> beam.ParDo(ExamineAndEncode(classes))  # type: ignore[no-untyped-call]
         | "group by shard" >> beam.GroupByKey()  # type: ignore[no-untyped-call]
         | "write shards" >> beam.ParDo(WriteShard(paths, outcomes)))  # type: ignore[no-untyped-call]


def read_jobs(pipeline: beam.Pipeline, uri: str) -> PCollection[Job]:
    """The jobs from a JSONL file (``job_line``): a large input stays out of the job's graph, which Dataflow limits
    in size, and the runner splits the file between its workers."""
    jobs: PCollection[Job] = (pipeline
                              | "read jobs" >> beam.io.ReadFromText(uri, validate=False)
                              | "parse jobs" >> beam.Map(parse_job))  # type: ignore[no-untyped-call]
    return jobs


def job_line(job: Job) -> str:
    """One job as a JSON line (``parse_job`` inverted)."""
    shard, position, image = job
    fields = [[list(box) for box in image.boxes] if name == "boxes" else value
              for name, value in zip(ImageJob._fields, image, strict=True)]
    return json.dumps([shard, position, fields], separators=(",", ":"))


def parse_job(line: str) -> Job:
    shard, position, fields = json.loads(line)
    values = dict(zip(ImageJob._fields, fields, strict=True))
    size = values["stated_size"]
    values["stated_size"] = (size[0], size[1]) if size is not None else None
    values["boxes"] = tuple(Box(*box) for box in values["boxes"])
    return shard, position, ImageJob(**values)


def plan_jobs(tasks: list[ShardTask], splits: dict[str, list[ImageJob]]) -> list[Job]:
    """Every image's job with its shard and its place in the shard, in plan order."""
    return [(shard, position, job) for shard, task in enumerate(tasks)
            for position, job in enumerate(task.jobs(splits))]


def write_shards(folder: Path, splits: dict[str, list[ImageJob]], classes: dict[str, int], num_shards: int | None,
                 shard_bytes: int, workers: int | None, progress: Progress | None) -> Written:
    """``shards.write_shards`` as a Beam pipeline on the DirectRunner: the same shards, records and results."""
    tasks = shard_tasks(str(folder), splits, num_shards, shard_bytes, workers)
    jobs = plan_jobs(tasks, splits)
    if progress:
        progress(STAGE, 0, len(jobs))
    with tempfile.TemporaryDirectory(prefix="detector-beam-") as outcomes, quiet_beam():
        with beam.Pipeline(options=direct_options(workers)) as pipeline:
            source = pipeline | "jobs" >> beam.Create(jobs)  # type: ignore[no-untyped-call]
            build(source, classes, [task.path for task in tasks], outcomes)
        written = collect(splits, tasks, [read_outcome(outcomes, shard) for shard in range(len(tasks))])
    if progress:
        progress(STAGE, len(jobs), len(jobs))
    return written


@contextmanager
def quiet_beam() -> Iterator[None]:
    """Beam's own warnings (its workers' start-up notes) left out; errors still show."""
    logger = logging.getLogger("apache_beam")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_outcome(folder: str, shard: int) -> Outcome:
    with FileSystems.open(outcome_path(folder, shard), compression_type=CompressionTypes.UNCOMPRESSED) as stream:
        return parse_outcome(stream.read())


def parse_outcome(data: bytes) -> Outcome:
    """A shard's outcome from its JSON: data, never code (no pickle), though it comes from a bucket."""
    entry, results, records = json.loads(data)
    packed: list[PackedResult] = [(None if info is None else tuple(info),
                                   None if boxes is None else tuple(tuple(box) for box in boxes),
                                   tuple(Finding(*finding) for finding in findings), written, dropped)
                                  for info, boxes, findings, written, dropped in results]
    return entry, packed, records
