"""``data prepare``: labels + images -> sharded TFRecords, label map, COCO ground truth, stats, summary.

The stages are ``pipeline.py``'s: load -> plan -> write (the shards, each image checked as it is written) ->
finish; then the label map, the COCO ground truth and the charts follow from the checked data. Nothing is
written unless the data is usable, and then everything is written at once: into a temporary folder that replaces
the output folder (``jobs.io``: only an empty folder or an earlier dataset is ever replaced), or, for a ``gs://``
output, uploaded with ``dataset.json`` last (``gcs.py``). A rerun with unchanged inputs and options rewrites
nothing, unless a file of the output is missing or damaged.

With ``--engine dataflow`` the ``write`` stage is a Dataflow job (``dataflow.py``) whose workers read the images in
Cloud Storage and write the shards under the job's work prefix; this machine plans, checks the outcome, writes the
small files and publishes: the shards are copied within Cloud Storage, ``dataset.json`` last, as for any gs://
output. A job that fails or is cancelled publishes nothing and leaves the previous output as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.dataset import label_map as label_maps
from jobs.dataset.coco import ground_truth
from jobs.dataset.findings import Report
from jobs.dataset.parallel import Progress, gc_paused
from jobs.dataset.pipeline import (
    ENGINES,
    Checked,
    CheckedImage,
    CheckFailed,
    CheckOptions,
    Loaded,
    Plan,
    finish,
    load,
    plan,
    write,
)
from jobs.dataset.shards import DEFAULT_SHARD_BYTES, ShardEntry, Written
from jobs.dataset.stats import chart_data, write_stats
from jobs.errors import DetectorError, UsageError
from jobs.io import OUTPUT_MARKER, TEMPORARY, OutputClaim, claim_output, remove_stale, write_json, write_marker

SUMMARY = "dataset.json"  # written last: its presence marks a complete dataset
REPORT = "report.json"
KIND = "dataset"  # the kind of output folder (jobs.io)
GCS_STAGE = "detector-prepare"  # local staging folders of gs:// outputs, in the system's temporary folder

if TYPE_CHECKING:
    from jobs.dataset.dataflow import DataflowPlan, Finished

# dataset.json as written by _summary and read back from outputs of any version of this tool: JSON whose keys
# (created, labels, format, classes, splits, rows, findings, verify, files...) are checked where they are read.
DatasetSummary = dict[str, Any]


@dataclass(frozen=True)
class OnDataflow:
    """``--engine dataflow``: the job, and the user's say before it is submitted (the images, their bytes and a
    warning when the workers may not be able to read them; the caller shows the price) and on Ctrl-C while it runs
    (True: cancel it)."""

    plan: DataflowPlan
    confirm: Callable[[int, int, str | None], bool] = lambda images, size, warning: True
    cancel: Callable[[], bool] = lambda: True
    poll_s: float = 10.0
    overrides: dict[str, Any] = field(default_factory=dict)  # further pipeline options (tests: a local endpoint)


class Declined(DetectorError):
    """The user did not confirm the Dataflow job."""


@dataclass(frozen=True)
class PrepareOptions:
    """What to read and how to check it (validated when made), then what to write and where."""

    check: CheckOptions
    out: Path | str  # a folder, or gs://bucket/prefix
    num_shards: int | None = None  # per split (default: one per ``shard_bytes``)
    shard_bytes: int = DEFAULT_SHARD_BYTES
    stats: bool = True  # the charts in stats/
    engine: str = "local"  # pipeline.ENGINES: the same output whichever writes it (not part of the fingerprint)
    dataflow: OnDataflow | None = None  # a Dataflow job writes the shards instead (``engine`` is then unused)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.dataflow is not None and not is_gcs(self.out):
            raise UsageError(f"a Dataflow job writes to Cloud Storage: --out gs://BUCKET/PREFIX, not {self.out}")

    def fingerprint(self, loaded: Loaded) -> str:
        """The inputs' fingerprint (``Loaded.fingerprint``) with the options of the output."""
        return loaded.fingerprint([self.num_shards, self.shard_bytes, self.stats])


@dataclass
class PrepareResult:
    out: Path | str
    summary: DatasetSummary
    report: Report
    unchanged: bool = False
    removed: list[Path] = field(default_factory=list)  # temporary folders of runs that died, removed
    repaired: list[str] = field(default_factory=list)  # why an output with unchanged inputs was rewritten


class PrepareFailed(CheckFailed):
    """The data has fatal errors; nothing was written."""

    WHAT = "the data cannot be prepared; nothing was written"


def is_gcs(out: Path | str) -> bool:
    return str(out).startswith("gs://")


def prepare(options: PrepareOptions, progress: Progress | None = None) -> PrepareResult:
    with gc_paused():
        return _prepare(options, progress)


def _prepare(options: PrepareOptions, progress: Progress | None) -> PrepareResult:
    given = options.check
    inputs = [path if isinstance(path, Path) else None
              for path in (given.labels, given.images, given.label_map, given.download_to)]
    try:
        if is_gcs(options.out):
            return _prepare_gcs(options, progress, inputs)
        with claim_output(options.out, KIND, inputs) as claim:
            return _prepare_into(claim, options, progress)
    except CheckFailed as err:
        raise PrepareFailed(err.report, given.strict) from None


def _prepare_into(claim: OutputClaim, options: PrepareOptions, progress: Progress | None) -> PrepareResult:
    """A local output folder, locked by this run: rewritten unless inputs and output are as the last run left them."""
    previous = _previous(claim.out)
    loaded = load(options.check, progress)
    if isinstance(loaded.images_dir, Path):
        claim.refuse_inputs([loaded.images_dir])
    fingerprint = options.fingerprint(loaded)
    damage: list[str] = []
    if previous and previous[0].get("input_fingerprint") == fingerprint:
        damage = damaged_files(claim.out, previous[0], full=options.check.verify == "full")
        if not damage:
            return PrepareResult(claim.out, previous[0], previous[1], unchanged=True, removed=claim.removed)
    planned = plan(loaded)
    with claim.staged() as stage:
        written = write(stage, planned, options.num_shards, options.shard_bytes, options.check.workers, progress,
                        options.engine)
        summary, checked = _write_dataset(stage, loaded, planned, options, fingerprint, written)
    return PrepareResult(claim.out, summary, checked.report, removed=claim.removed, repaired=damage)


def _prepare_gcs(options: PrepareOptions, progress: Progress | None, inputs: list[Path | None]) -> PrepareResult:
    """A gs:// output: staged in a local temporary folder, then uploaded with dataset.json last."""
    from jobs.dataset.gcs import check_prefix, upload_dataset

    check_prefix(str(options.out), KIND)
    removed = remove_stale(Path(tempfile.gettempdir()), GCS_STAGE)
    previous = _previous(options.out)
    loaded = load(options.check, progress)
    fingerprint = options.fingerprint(loaded)
    if previous and previous[0].get("input_fingerprint") == fingerprint:
        return PrepareResult(options.out, previous[0], previous[1], unchanged=True, removed=removed)
    planned = plan(loaded)
    with tempfile.TemporaryDirectory(prefix=f"{GCS_STAGE}{TEMPORARY}{os.getpid()}-") as stage:
        write_marker(Path(stage), KIND)
        if options.dataflow:
            summary, checked = _on_dataflow(options.dataflow, Path(stage), loaded, planned, options, fingerprint,
                                            progress)
        else:
            written = write(Path(stage), planned, options.num_shards, options.shard_bytes, options.check.workers,
                            progress, options.engine)
            summary, checked = _write_dataset(Path(stage), loaded, planned, options, fingerprint, written)
            upload_dataset(Path(stage), str(options.out), SUMMARY, progress)
    return PrepareResult(options.out, summary, checked.report, removed=removed)


def _on_dataflow(run: OnDataflow, stage: Path, loaded: Loaded, planned: Plan, options: PrepareOptions,
                 fingerprint: str, progress: Progress | None) -> tuple[DatasetSummary, Checked]:
    """The shards written by a Dataflow job, the rest here; published with the shards copied in Cloud Storage."""
    from jobs.dataset.dataflow import run_job, workers_may_read
    from jobs.dataset.gcs import upload_dataset

    if not isinstance(loaded.images_dir, str):
        raise UsageError(f"Dataflow's workers read the images in Cloud Storage, and {loaded.images_dir} is a folder "
                         "here: copy it (gcloud storage cp -r DIR gs://BUCKET/PREFIX) and pass --images "
                         "gs://BUCKET/PREFIX, or use --engine local or beam")
    jobs = [job for items in planned.splits.values() for job in items]
    if not run.confirm(len(jobs), sum(job.size_bytes for job in jobs), workers_may_read(run.plan, loaded.images_dir)):
        raise Declined("not submitted")
    with run_job(run.plan, planned, options.num_shards, options.shard_bytes, progress, run.cancel, run.poll_s,
                 **run.overrides) as finished:
        summary, checked = _write_dataset(stage, loaded, planned, options, fingerprint, finished.written, finished)
        upload_dataset(stage, str(options.out), SUMMARY, progress,
                       copies={name: uri for name, (uri, _) in finished.shards.items()})
    return summary, checked


def damaged_files(out: Path, summary: DatasetSummary, full: bool = False) -> list[str]:
    """The files that ``summary`` lists which are missing, of another size or (``full``) of other content."""
    damage = []
    for name, expected in summary.get("files", {}).items():
        path = out / name
        try:
            size = path.stat().st_size
        except OSError:
            damage.append(f"{name} is missing")
            continue
        if size != expected["bytes"]:
            damage.append(f"{name} is {size} bytes, {expected['bytes']} were written")
        elif full and _sha256(path) != expected["sha256"]:
            damage.append(f"{name} differs from what was written (SHA-256)")
    return damage


def _sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _write_dataset(stage: Path, loaded: Loaded, planned: Plan, options: PrepareOptions, fingerprint: str,
                   written: Written, remote: Finished | None = None) -> tuple[DatasetSummary, Checked]:
    """After the shards (in ``stage``, or ``remote``ly in Cloud Storage): if the data is usable, everything else."""
    checked = finish(loaded, planned, written.results)
    _write_ground_truth(stage, checked.classes,
                        {split: checked.splits[split] for split in _present(checked, written.shards)})
    stats = _write_stats(stage, checked) if options.stats else []
    summary = _summary(options, checked, fingerprint, written, stats)
    write_json(stage / REPORT, {"rows": summary["rows"], "counts": summary["findings"],
                                "findings": checked.report.to_json()})
    summary["files"] = _manifest(stage, hashes=options.check.verify == "full")
    if remote is not None:
        summary["files"] |= {name: {"bytes": size} for name, (_, size) in remote.shards.items()}
        summary["files"] = dict(sorted(summary["files"].items()))
    write_json(stage / SUMMARY, summary)
    return summary, checked


def _manifest(stage: Path, hashes: bool) -> dict[str, dict[str, int | str]]:
    """Every file written so far, with its size (and SHA-256): a rerun checks them before saying "unchanged"."""
    files = {}
    for path in sorted(stage.rglob("*")):
        if path.is_file() and path.name != OUTPUT_MARKER:
            files[path.relative_to(stage).as_posix()] = {"bytes": path.stat().st_size} | (
                {"sha256": _sha256(path)} if hashes else {})
    return files


def _write_ground_truth(stage: Path, classes: dict[str, int], splits: dict[str, list[CheckedImage]]) -> None:
    """The label map and the COCO ground truth of each split."""
    (stage / "label_map.pbtxt").write_text(label_maps.dumps(classes), encoding="utf-8")
    for split, images in splits.items():
        write_json(stage / f"{split}_coco.json", ground_truth(images, classes), indent=None)


def _write_stats(stage: Path, checked: Checked) -> list[str]:
    """The charts and the sample grid; their paths in the output."""
    return [f"stats/{name}" for name in write_stats(stage / "stats", chart_data(checked))]


def _present(checked: Checked, written: dict[str, list[ShardEntry]]) -> list[str]:
    """train and val always; test when the format assigned images to it."""
    return [split for split, images in checked.splits.items() if split != "test" or images or written.get(split)]


def _previous(out: Path | str) -> tuple[DatasetSummary, Report] | None:
    """The summary and report of the output already there, if it is complete."""
    try:
        if is_gcs(out):
            from jobs.dataset.gcs import read_text

            summary, report = (read_text(f"{str(out).rstrip('/')}/{name}") for name in (SUMMARY, REPORT))
        else:
            summary, report = ((Path(out) / name).read_text(encoding="utf-8") for name in (SUMMARY, REPORT))
        if summary is None or report is None:
            return None
        return json.loads(summary), Report.from_json(json.loads(report)["findings"])
    except (OSError, ValueError, KeyError):
        return None


def _summary(options: PrepareOptions, checked: Checked, fingerprint: str, written: Written,
             stats: list[str]) -> DatasetSummary:
    classes = checked.classes
    content = hashlib.sha256(label_maps.dumps(classes).encode())  # independent of how records are sharded
    for record in sorted(written.records):
        content.update(record.encode() + b"\n")
    splits = {}
    for split in _present(checked, written.shards):
        images = checked.splits[split]
        per_class = Counter(box.label for image in images for box in image.boxes)
        splits[split] = {
            "images": len(images),
            "boxes": sum(len(i.boxes) for i in images),
            "negatives": sum(1 for i in images if not i.boxes),
            "per_class": {name: per_class.get(name, 0) for name in classes},
            "shards": written.shards.get(split, []),
            "pattern": f"{split}-*.tfrecord",
            "coco": f"{split}_coco.json",
        }
    all_images = [image for images in checked.splits.values() for image in images]
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": str(options.check.labels),
        "images_dir": str(checked.images_dir),
        "format": checked.fmt,
        "seed": options.check.seed,
        "val_fraction": options.check.val_fraction,
        "classes": [{"id": class_id, "name": name}
                    for name, class_id in sorted(classes.items(), key=lambda item: item[1])],
        "splits": splits,
        "max_boxes_per_image": max((len(i.boxes) for i in all_images), default=0),
        "rows": checked.rows,
        "findings": dict(sorted(checked.report.counts().items())),
        "verify": checked.verify,
        "stats": stats,
        "input_fingerprint": fingerprint,
        "content_hash": content.hexdigest(),
    }
