"""Data commands: ``data prepare`` (label file + images -> TFRecords, label map, COCO ground truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.cli.app import data_app
from jobs.console import console, errors, progress_bar, table

FORMATS = "auto, vott-csv, datitran-csv"


@data_app.command("prepare")
def data_prepare(
    labels: Annotated[Path, typer.Option("--input", help="label file (VoTT CSV, datitran CSV)")],
    images: Annotated[Path, typer.Option("--images", help="folder the label file's image names are relative to")],
    out: Annotated[Path, typer.Option("--out", help="output folder (replaced as a whole on success)")],
    fmt: Annotated[str, typer.Option("--format", help=f"one of {FORMATS}")] = "auto",
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.2,
    seed: int = 0,
    label_map: Annotated[Path | None, typer.Option(help="fix class ids; classes not in it are errors")] = None,
    num_shards: Annotated[int | None, typer.Option(min=1, help="per split (default: ~150 MB each)")] = None,
) -> None:
    """Validate labels and images, split by image, write TFRecords, label map and COCO ground truth."""
    from jobs.dataset.prepare import PrepareOptions, prepare

    options = PrepareOptions(labels, images, out, fmt, val_fraction, seed, label_map, num_shards)
    with progress_bar("preparing") as update:
        result = prepare(options, lambda stage, done, total: update(done, total, stage=stage))
    _show_prepare(result)


def _show_prepare(result) -> None:
    summary = result.summary
    for finding in result.report.findings[:20]:
        errors.print(f"[yellow]{finding}[/yellow]", markup=True, highlight=False)
    if len(result.report.findings) > 20:
        errors.print(f"... and {len(result.report.findings) - 20} more in {result.out / 'report.json'}")
    names = [c["name"] for c in summary["classes"]]
    rows = [[name] + [summary["splits"][s]["per_class"].get(name, 0) for s in ("train", "val")] for name in names]
    rows.append(["images"] + [summary["splits"][s]["images"] for s in ("train", "val")])
    console.print(table(f"{summary['format']} -> {result.out}", ["class", "train boxes", "val boxes"], rows))
    counts = summary["rows"]
    state = "unchanged, nothing rewritten" if result.unchanged else "written"
    console.print(f"rows in {counts['in']} = written {counts['written']} + reported {counts['reported']}; "
                  f"output {state}")
