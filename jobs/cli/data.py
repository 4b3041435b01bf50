"""Data commands: ``prepare`` (labels + images -> TFRecords), ``check`` (report only), ``stats`` (charts), ``rules``.

Exit codes: 0 the data is usable (warnings allowed), 1 fatal data errors (with ``--strict``: any finding),
2 bad usage.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.markup import escape

from jobs.cli.app import data_app
from jobs.cli.cloud import agreed
from jobs.console import console, errors, progress_bar, table
from jobs.dataset.findings import DEFAULT_MAX_PIXELS, RULES
from jobs.errors import UsageError

if TYPE_CHECKING:
    from jobs.dataset.findings import Report
    from jobs.dataset.pipeline import Checked, CheckFailed, VerifyCounts
    from jobs.dataset.prepare import DatasetSummary, OnDataflow

FORMATS = ("vott-csv", "datitran-csv", "vertex-csv", "voc-xml", "coco-json", "yolo")  # jobs.dataset.readers
SHOWN = 20
REPORT_KIND = "check-report"  # data check --report: a file that a later --report may replace

Input = Annotated[str, typer.Option(
    "--input", help="label file or dataset folder: VoTT/datitran/Vertex AI CSV, VOC XML folder, COCO JSON, "
                    "YOLO data YAML or folder; or gs://BUCKET/FILE, gs://BUCKET/PREFIX/ (the label files are "
                    "mirrored locally, the images read where they are)")]
Images = Annotated[str | None, typer.Option(
    "--images", help="folder (or gs://BUCKET/PREFIX: read there, not downloaded) the image names are relative to "
                     "(default: where the format keeps them; the gs:// URIs of Vertex AI CSV labels)")]
Format = Annotated[str, typer.Option("--format", help=f"auto (detected), or one of {', '.join(FORMATS)}")]
ValFraction = Annotated[float, typer.Option(min=0.0, max=0.9, help="for images the format assigns no split")]
Seed = Annotated[int, typer.Option(help="the train/val split of images the format assigns none")]
LabelMap = Annotated[Path | None, typer.Option(help="fix class ids; classes not in it are errors")]
Unlabeled = Annotated[bool, typer.Option(
    "--unlabeled-as-negatives", help="keep images of the images folder that no label names, as negatives")]
Verify = Annotated[str, typer.Option(
    "--verify", help="header: check every header and end marker, decode an even sample of about 64 images; "
                     "full: decode every image")]
Strict = Annotated[bool, typer.Option("--strict", help="every finding (warnings too) is an error")]
Workers = Annotated[int | None, typer.Option(min=1, help="processes reading images (default: all cores)")]
DownloadTo = Annotated[Path | None, typer.Option(
    "--download-to", help="download the gs:// images the labels name (Vertex AI CSV) into this folder and use it as "
                          "the images folder; images already there are not downloaded again")]
MaxPixels = Annotated[int, typer.Option(
    "--max-pixels", min=1, help="images whose header declares more pixels are dropped (I014), before any decode")]
FollowSymlinks = Annotated[bool, typer.Option(
    "--follow-symlinks", help="use images behind symbolic links that lead out of the images folder (else I016)")]


def _images(value: str | None) -> Path | str | None:
    """--images: a folder, or a gs:// location kept as the URI it is."""
    return value if value is None or value.startswith("gs://") else Path(value)


def _local(value: str | None) -> Path | None:
    """--input or --images as a path this command must not write into (a gs:// location cannot be one)."""
    location = _images(value)
    return location if isinstance(location, Path) else None


def _labels(value: str) -> Path:
    """--input: a local label file or folder, or a gs:// one, mirrored into the local cache first."""
    if not value.startswith("gs://"):
        return Path(value)
    from jobs.dataset.gcs_labels import fetch_labels

    return fetch_labels(value)


@data_app.command("prepare")
def data_prepare(
    labels: Input,
    out: Annotated[str, typer.Option("--out", help="output folder (new, empty or an earlier dataset: replaced as a "
                                                   "whole on success) or gs://bucket/prefix")],
    images: Images = None,
    fmt: Format = "auto",
    val_fraction: ValFraction = 0.2,
    seed: Seed = 0,
    label_map: LabelMap = None,
    num_shards: Annotated[int | None, typer.Option(min=1, help="per split (default: ~150 MB each)")] = None,
    unlabeled_as_negatives: Unlabeled = False,
    verify: Verify = "header",
    strict: Strict = False,
    stats: Annotated[bool, typer.Option("--stats/--no-stats", help="write charts into stats/")] = True,
    workers: Workers = None,
    download_to: DownloadTo = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    follow_symlinks: FollowSymlinks = False,
    engine: Annotated[str, typer.Option(
        "--engine", help="what reads, checks and writes the images: local (worker processes on this machine), "
                         "beam (the same as an Apache Beam pipeline on Beam's DirectRunner, multi-process on this "
                         "machine; both write the same records) or dataflow (the Beam pipeline as a Dataflow job of "
                         "--stack, reading gs:// images where they are, writing a gs:// --out)")] = "local",
    stack: Annotated[str | None, typer.Option(
        "--stack", help="--engine dataflow: the experiment stack the job runs in (read with the Pulumi CLI)")] = None,
    stack_outputs: Annotated[Path | None, typer.Option(
        "--stack-outputs", help="--engine dataflow: JSON of `pulumi stack output --json`, instead of --stack")]
    = None,
    max_workers: Annotated[int, typer.Option(
        "--max-workers", min=1, help="--engine dataflow: the most workers Dataflow may scale the job to")] = 10,
    machine_type: Annotated[str, typer.Option(
        "--machine-type", help="--engine dataflow: the Compute Engine machine type of the workers")]
    = "n2-standard-4",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="--engine dataflow: show the job, its price and its pipeline options; submit nothing")]
    = False,
    yes: Annotated[bool, typer.Option(
        "--yes", help="--engine dataflow: submit without asking (required without a terminal)")] = False,
) -> None:
    """Validate labels and images, split by image, write TFRecords, label map, COCO ground truth and charts."""
    from jobs.dataset.pipeline import CheckOptions
    from jobs.dataset.prepare import PrepareFailed, PrepareOptions, is_gcs, prepare

    dataflow = None
    if engine == "dataflow":
        dataflow = _on_dataflow(out, stack, stack_outputs, max_workers, machine_type, dry_run, yes)
        if dataflow is None:
            return
        engine = "local"  # what PrepareOptions validates; the Dataflow job writes instead
    elif stack or stack_outputs or dry_run or yes:
        raise UsageError("--stack, --stack-outputs, --dry-run and --yes are options of --engine dataflow")
    given = CheckOptions(_labels(labels), _images(images), fmt=fmt, val_fraction=val_fraction, seed=seed,
                         label_map=label_map, unlabeled_as_negatives=unlabeled_as_negatives, verify=verify,
                         strict=strict, workers=workers, download_to=download_to, max_pixels=max_pixels,
                         follow_symlinks=follow_symlinks)
    options = PrepareOptions(given, out if is_gcs(out) else Path(out), num_shards=num_shards, stats=stats,
                             engine=engine, dataflow=dataflow)
    try:
        with progress_bar("preparing") as update:
            result = prepare(options, lambda stage, done, total: update(done, total, stage=stage))
    except PrepareFailed as failure:
        _fail(failure)
    summary = result.summary
    for path in result.removed:
        console.print(f"removed {path}: left by a run that died")
    for damage in result.repaired:
        console.print(f"rewriting the output: {damage}")
    _show_findings(result.report, f"{str(result.out).rstrip('/')}/report.json")
    _show_counts(result.report)
    _show_splits(summary, f"{summary['format']} -> {result.out}")
    _show_rows(summary["rows"], summary.get("verify"))
    state = "unchanged, nothing rewritten" if result.unchanged else "written"
    console.print(f"output {state}: {result.out}")


def _on_dataflow(out: str, stack: str | None, stack_outputs: Path | None, max_workers: int, machine_type: str,
                 dry_run: bool, yes: bool) -> OnDataflow | None:
    """The Dataflow job of the stack; --dry-run shows it with its price and options and submits nothing (None)."""
    import json

    from jobs.dataset.dataflow import PRICES_SOURCE, DataflowPlan
    from jobs.dataset.prepare import OnDataflow
    from jobs.stack import load_stack_outputs

    plan = DataflowPlan.make(load_stack_outputs(stack, stack_outputs), out, max_workers, machine_type)

    def show(detail: str = "", size: int | None = None) -> None:
        console.print(f"{plan.summary()}{detail}", highlight=False)
        console.print(f"  price: {plan.price(size)}", highlight=False)
        console.print(f"  prices: {PRICES_SOURCE}", style="dim", highlight=False)

    if dry_run:
        show()
        console.print_json(json.dumps(plan.request()))
        return None

    def confirm(images: int, size: int, warning: str | None) -> bool:
        show(f", {images:,} images ({size / 1e9:.2f} GB)", size)
        if warning:
            console.print(f"warning: {warning}", style="yellow", highlight=False)
        return agreed(yes, "submit the Dataflow job")

    def cancel() -> bool:
        if not sys.stdin.isatty():
            return True  # interrupted without a terminal to ask: stop paying for it
        return typer.confirm(f"\ncancel Dataflow job {plan.job_name}?", default=True)

    return OnDataflow(plan, confirm, cancel)


@data_app.command("check")
def data_check(
    labels: Input,
    images: Images = None,
    fmt: Format = "auto",
    val_fraction: ValFraction = 0.2,
    seed: Seed = 0,
    label_map: LabelMap = None,
    unlabeled_as_negatives: Unlabeled = False,
    verify: Verify = "header",
    strict: Strict = False,
    report: Annotated[Path | None, typer.Option("--report", help="also write every finding to this JSON file")]
    = None,
    workers: Workers = None,
    download_to: DownloadTo = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    follow_symlinks: FollowSymlinks = False,
) -> None:
    """Run every check of `prepare` and report; writes nothing but --report."""
    from jobs.dataset.check import check
    from jobs.dataset.pipeline import CheckFailed, CheckOptions

    if report is not None:
        from jobs.io import check_output_file

        check_output_file(report, REPORT_KIND, [_local(labels), _local(images), label_map, download_to], "--report")
    options = CheckOptions(_labels(labels), _images(images), fmt=fmt, val_fraction=val_fraction, seed=seed,
                           label_map=label_map, unlabeled_as_negatives=unlabeled_as_negatives, verify=verify,
                           strict=strict, workers=workers, download_to=download_to, max_pixels=max_pixels,
                           follow_symlinks=follow_symlinks)
    try:
        with progress_bar("checking") as update:
            checked = check(options, lambda stage, done, total: update(done, total, stage=stage))
    except CheckFailed as failure:
        _write_report(report, None, failure.report)
        _fail(failure)
    _show_findings(checked.report, str(report) if report else None)
    _show_counts(checked.report)
    _show_splits(_split_counts(checked), f"{checked.fmt}: {labels}")
    _show_rows(checked.rows, checked.verify)
    _write_report(report, checked.rows, checked.report)
    console.print("usable" + (" (with warnings)" if checked.report.findings else ""))


@data_app.command("stats")
def data_stats(
    labels: Input,
    out: Annotated[Path, typer.Option("--out", help="folder for the PNG files (new, empty or earlier charts: "
                                                    "replaced as a whole)")],
    images: Images = None,
    fmt: Format = "auto",
    val_fraction: ValFraction = 0.2,
    seed: Seed = 0,
    label_map: LabelMap = None,
    unlabeled_as_negatives: Unlabeled = False,
    workers: Workers = None,
    download_to: DownloadTo = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    follow_symlinks: FollowSymlinks = False,
) -> None:
    """Charts of classes, boxes per image, box sizes and a grid of samples with their boxes."""
    from jobs.dataset.check import check
    from jobs.dataset.pipeline import CheckFailed, CheckOptions
    from jobs.dataset.stats import chart_data, write_stats
    from jobs.io import staged_dir

    options = CheckOptions(_labels(labels), _images(images), fmt=fmt, val_fraction=val_fraction, seed=seed,
                           label_map=label_map, unlabeled_as_negatives=unlabeled_as_negatives, workers=workers,
                           download_to=download_to, max_pixels=max_pixels, follow_symlinks=follow_symlinks)
    try:
        with progress_bar("checking") as update:
            checked = check(options, lambda stage, done, total: update(done, total, stage=stage))
    except CheckFailed as failure:
        _fail(failure)
    with staged_dir(out, "stats", [_local(labels), _local(images), label_map, download_to]) as stage:
        names = write_stats(stage, chart_data(checked))
    for name in names:
        console.print(str(out / name))


@data_app.command("rules")
def data_rules() -> None:
    """Every validation rule: stable code, severity, what is done, and why."""
    from rich.table import Table

    view = Table(title="validation rules (--strict: every finding is fatal)", title_justify="left")
    for column in ("code", "name", "severity", "action", "doc"):
        view.add_column(column, no_wrap=column != "doc")
    for rule in RULES.values():
        view.add_row(rule.code, rule.name, rule.severity.value, rule.action.value, escape(rule.doc))
    console.print(view)


def _fail(failure: CheckFailed) -> NoReturn:
    """The counts table, then the error; class names and paths are shown literally (no rich markup)."""
    _show_counts(failure.report)
    errors.print(f"[red]error:[/red] {escape(str(failure))}", highlight=False)
    raise typer.Exit(failure.exit_code)


def _show_findings(report: Report, where: str | None) -> None:
    for finding in report.findings[:SHOWN]:
        errors.print(f"[yellow]{escape(str(finding))}[/yellow]", markup=True, highlight=False)
    if len(report.findings) > SHOWN:
        rest = f" in {where}" if where else "; --report FILE lists them all"
        errors.print(f"... and {len(report.findings) - SHOWN} more{rest}")


def _show_counts(report: Report) -> None:
    if report.findings:
        console.print(table("findings by rule", ["code", "rule", "severity", "action", "count"],
                            [[code, RULES[code].name, RULES[code].severity.value, RULES[code].action.value, count]
                             for code, count in sorted(report.counts().items())]))


def _split_counts(checked: Checked) -> DatasetSummary:
    """The classes and splits of a dataset.json, for a dataset that was checked but not written."""
    names = sorted(checked.classes, key=checked.classes.__getitem__)
    splits: dict[str, dict[str, dict[str, int] | int]] = {}
    for split, images in checked.splits.items():
        if images or split != "test":
            counts = {name: 0 for name in names}
            for image in images:
                for box in image.boxes:
                    counts[box.label] += 1
            splits[split] = {"per_class": counts, "images": len(images)}
    return {"classes": [{"name": n} for n in names], "splits": splits}


def _show_splits(summary: DatasetSummary, title: str) -> None:
    splits = list(summary["splits"])
    rows = [[escape(c["name"])] + [summary["splits"][s]["per_class"].get(c["name"], 0) for s in splits]
            for c in summary["classes"]]
    rows.append(["images"] + [summary["splits"][s]["images"] for s in splits])
    console.print(table(title, ["class"] + [f"{s} boxes" for s in splits], rows))


def _show_rows(rows: dict[str, int], verify: VerifyCounts | None) -> None:
    console.print(f"rows in {rows['in']} = written {rows['written']} + reported {rows['reported']}")
    if verify:
        if verify["mode"] == "full" or verify["sample_every"] == 1:
            how = "every image decoded"
        else:
            how = (f"{verify['decoded']} decoded (every {verify['sample_every']}th, and any without an end marker "
                   "or not JPEG/PNG); --verify full decodes all")
        console.print(f"verify {verify['mode']}: headers of {verify['images']} images checked, {how}")


def _write_report(path: Path | None, rows: dict[str, int] | None, report: Report) -> None:
    if path is not None:
        from jobs.io import write_json_atomic

        write_json_atomic(path, {"tool": "detector", "kind": REPORT_KIND, "rows": rows,
                                 "counts": dict(sorted(report.counts().items())), "findings": report.to_json()})

