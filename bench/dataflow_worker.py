"""Per-worker throughput of the Dataflow worker step, images read from local disk vs from a local GCS emulator, and
the projection to a Dataflow job that it gives.

    .venv/bin/python bench/dataflow_worker.py [--images 2000] [--repeat 3] [--workers 10 100]

The worker step is ``jobs.dataset.beam.ExamineAndEncode.process`` (read with ``shards.read_image``, examine, encode the
record), called here directly in this one process, without a Beam runner, on the jobs that ``data prepare`` plans for
the raccoon images copied until there are ``--images`` of them (its default checks: every header, about 64 images
decoded; a small set is decoded whole, so ``--images 200`` is slower per image). The same jobs are run twice per round,
taking turns: with local paths (the page cache warm), and with ``gs://`` paths served by gcp-storage-emulator
(google-cloud-storage, CRC32C checked, as on Dataflow). The emulator is a Python HTTP server started in this process, on
this machine: its threads share this process's interpreter and this machine's cores with the worker, so its figure is a
pessimistic stand-in for Cloud Storage, not a measurement of it. Both runs must produce the same records.

The projection assumes what Dataflow runs on an ``n2-standard-4`` worker (``jobs/dataset/dataflow.py``'s default):
one Python SDK process per vCPU, each as fast as this process, 4 vCPUs and 16 GB a worker, perfect scaling, worker
start-up, the shuffle and the shard writes left out. Images of 100 KB: the time per image is the larger of the
measured per-image and per-byte times. No price: the stored Dataflow pricing page has no figures.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from prepare import RACCOON, build  # bench/prepare.py: the raccoon images copied under new names, and their CSV

from jobs.dataset import shards
from jobs.dataset.beam import ExamineAndEncode, Job
from jobs.dataset.pipeline import CheckOptions, load, plan

BUCKET = "bench"
MACHINE_TYPE, VCPUS, MEMORY_GB = "n2-standard-4", 4, 16  # Compute Engine's n2-standard-4
PROJECTED_IMAGES = (1_000_000, 10_000_000)
PROJECTED_IMAGE_BYTES = 100_000
EMULATOR_NOTE = ("gcp-storage-emulator: a Python server in this process on this machine, a pessimistic stand-in "
                 "for Cloud Storage, not a measurement of it")


def planned_jobs(labels: Path, images: Path) -> tuple[dict[str, int], list[Job]]:
    """The class ids and every image's job, as ``data prepare`` plans them."""
    planned = plan(load(CheckOptions(labels, images)))
    jobs = [job for split in planned.splits.values() for job in split]
    return planned.classes, [(0, position, job) for position, job in enumerate(jobs)]


def run_worker(classes: dict[str, int], jobs: list[Job]) -> tuple[float, list[bytes | None]]:
    """Seconds to run the worker step on every job, one after the other, and the records it made."""
    step = ExamineAndEncode(classes)
    step.setup()
    start = time.perf_counter()
    records = [encoded[3] for job in jobs for _, encoded in step.process(job)]
    return time.perf_counter() - start, records


def start_emulator() -> object:
    """gcp-storage-emulator in memory with the bucket BUCKET, and google-cloud-storage pointed at it."""
    from gcp_storage_emulator.server import create_server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    return server


def upload(jobs: list[Job]) -> list[Job]:
    """Every job's image uploaded to the emulator; the jobs with its ``gs://`` path."""
    from google.cloud.storage import Client

    bucket = Client().bucket(BUCKET)
    remote = []
    for shard, position, job in jobs:
        bucket.blob(job.filename).upload_from_string(Path(job.path).read_bytes())
        remote.append((shard, position, job._replace(path=f"gs://{BUCKET}/{job.filename}")))
    return remote


def duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def project(rates: dict[str, tuple[float, float]], workers: list[int]) -> None:
    """Time and worker-hours of a Dataflow job from the measured (images/s, bytes/s) of one process."""
    seconds_per_image = {name: max(1 / per_image, PROJECTED_IMAGE_BYTES / per_byte)
                         for name, (per_image, per_byte) in rates.items()}
    print(f"\nprojection: Dataflow, {MACHINE_TYPE} workers ({VCPUS} vCPUs, {MEMORY_GB} GB), one Python SDK process "
          f"per vCPU at this process's rate, {PROJECTED_IMAGE_BYTES // 1000} KB images, perfect scaling; worker "
          "start-up, shuffle and shard writes left out")
    for name, per_image in seconds_per_image.items():
        print(f"  from the {name} rate: {VCPUS / per_image:,.0f} images/s a worker")
    print(f"{'images':>12}{'workers':>9}" + "".join(f"{'time (' + name + ')':>22}" for name in seconds_per_image)
          + "".join(f"{'worker-h (' + name + ')':>22}" for name in seconds_per_image))
    for count in PROJECTED_IMAGES:
        for pool in workers:
            busy = {name: count * per_image / VCPUS for name, per_image in seconds_per_image.items()}
            print(f"{count:>12,}{pool:>9}" + "".join(f"{duration(s / pool):>22}" for s in busy.values())
                  + "".join(f"{s / 3600:>22.2f}" for s in busy.values()))
    print(f"vCPU-hours = {VCPUS} x worker-hours, memory GB-hours = {MEMORY_GB} x worker-hours; price: multiply by "
          "the current Dataflow pricing page's batch vCPU and memory rates (cloud.google.com/dataflow/pricing; the "
          "stored copy has no figures), plus Persistent Disk and Dataflow Shuffle (every record's bytes pass the "
          "group by shard)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="about this many (whole copies of the raccoon set)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds: each source is read once per round")
    parser.add_argument("--workers", type=int, nargs="+", default=[10, 100], help="Dataflow workers to project to")
    args = parser.parse_args()
    if not (RACCOON / "images").is_dir():
        sys.exit(f"the raccoon dataset is not at {RACCOON}")
    copies = max(1, math.ceil(args.images / len(list((RACCOON / "images").iterdir()))))
    work = Path(tempfile.mkdtemp(prefix="bench-dataflow-worker-"))
    emulator = start_emulator()
    try:
        images, labels, _ = build(work, copies)
        classes, local = planned_jobs(labels, images)
        size = sum(Path(job.path).stat().st_size for _, _, job in local)
        remote = upload(local)
        print(f"{len(local)} images, {size / 1e6:.0f} MB ({size / len(local) / 1e3:.0f} KB each on average); "
              f"the worker step in one process, no Beam runner; {os.cpu_count()} cores here")
        print(f"gs:// images from {EMULATOR_NOTE}")
        sources = {"disk": local, "emulator": remote}
        rounds = []
        for number in range(1, args.repeat + 1):
            timings = {}
            for name, jobs in sources.items():
                if name == "disk":
                    for _, _, job in jobs:  # a warm page cache, as for every round
                        Path(job.path).read_bytes()
                seconds, records = run_worker(classes, jobs)
                timings[name] = (seconds, records)
            if timings["disk"][1] != timings["emulator"][1]:
                sys.exit("the records from disk and from the emulator differ")
            rounds.append({name: seconds for name, (seconds, _) in timings.items()})
            print(f"round {number}: " + ", ".join(f"{name} {s:.2f} s" for name, s in rounds[-1].items()), flush=True)
        best = {name: min(r[name] for r in rounds) for name in sources}
        print(f"{'source (fastest run)':<22}{'s':>8}{'images/s':>10}{'MB/s':>8}")
        for name, seconds in best.items():
            print(f"{name:<22}{seconds:>8.2f}{len(local) / seconds:>10.0f}{size / seconds / 1e6:>8.1f}")
        median = statistics.median(r["disk"] / r["emulator"] for r in rounds)
        print(f"emulator / disk throughput: {best['disk'] / best['emulator']:.2f}x (fastest runs), "
              f"{median:.2f}x (median of rounds)")
        project({name: (len(local) / s, size / s) for name, s in best.items()}, args.workers)
    finally:
        emulator.stop()  # type: ignore[attr-defined]
        shards._storage = None
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
