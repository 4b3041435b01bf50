"""The duplicate-box check on one image with many boxes: the grid search against the pairwise check it replaced.

Goal: 1,000,000 boxes in one image checked in <= 30 s with <= 1.5 GB peak memory. Baseline in the same run: the
pairwise check (each box against every kept box of its class, as ``drop_duplicates`` was; kept in
tests/dataset/box_sets.py) on ``--baseline`` boxes, as many as it finishes in reasonable time, then the grid on the
same boxes (the same kept boxes and findings asserted) and on ``--boxes`` boxes. Each large run is a child process
that prints its own peak RSS (ru_maxrss) and its RSS before the check (the boxes themselves, as the pipeline holds
them anyway). Boxes: 2 to 100 px anywhere in a square image of 40 px × sqrt(count) (one density at every count),
5 % repeating an earlier box exactly, 20 % copying one with its corners moved by up to 3 % (IoU around 0.95).
``--adversarial`` adds, at ``--boxes``: one box repeated, lattices of kept and of dropped boxes, chains of nested
boxes.
Run: .venv/bin/python bench/duplicate_boxes.py [--baseline 10000] [--boxes 1000000] [--adversarial]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "dataset"))

from box_sets import (  # noqa: E402
    identical_boxes,
    lattice_boxes,
    nested_boxes,
    pairwise_drop_duplicates,
    random_boxes,
)

from jobs.dataset.findings import Report  # noqa: E402
from jobs.dataset.validate import drop_duplicates  # noqa: E402

GOAL_S, GOAL_MB = 30.0, 1536.0
BOX_SETS = {
    "random": lambda n: random_boxes(n, 1, image=40.0 * n ** 0.5),
    "one box repeated": identical_boxes,
    "lattice, all kept": lambda n: lattice_boxes(round(n ** 0.5), 2.6),  # IoU 0.949 with each neighbour
    "lattice, nearly all dropped": lambda n: lattice_boxes(round(n ** 0.5), 0.3),
    "nested, chains anywhere": lambda n: nested_boxes(n, 1, spread=40.0 * n ** 0.5),
    "nested, all chains at one corner": lambda n: nested_boxes(n, 1),
}


def timed(check, boxes) -> tuple[float, list, Report]:
    report = Report()
    start = time.perf_counter()
    kept = check(boxes, report)
    return time.perf_counter() - start, kept, report


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(kind: str, count: int) -> None:
    """One grid check in this process: prints seconds, peak RSS and RSS before the check as JSON."""
    boxes = BOX_SETS[kind](count)
    before = peak_mb()
    seconds, kept, report = timed(drop_duplicates, boxes)
    print(json.dumps({"boxes": len(boxes), "seconds": seconds, "peak_mb": peak_mb(), "boxes_mb": before,
                      "kept": len(kept), "findings": len(report.findings)}))


def in_child(kind: str, count: int) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", kind, str(count)], cwd=REPO, check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", type=int, default=10_000, help="boxes for the pairwise check")
    parser.add_argument("--boxes", type=int, default=1_000_000)
    parser.add_argument("--adversarial", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    boxes = BOX_SETS["random"](args.baseline)
    pairwise_s, pairwise_kept, pairwise_report = timed(pairwise_drop_duplicates, boxes)
    grid_s, grid_kept, grid_report = timed(drop_duplicates, boxes)
    assert grid_kept == pairwise_kept and grid_report.findings == pairwise_report.findings, "results differ"
    print(f"pairwise check (baseline), {len(boxes):,} boxes: {pairwise_s:8.2f} s, "
          f"{len(pairwise_report.findings):,} findings")
    print(f"grid check,                {len(boxes):,} boxes: {grid_s:8.2f} s, the same kept boxes and findings; "
          f"{pairwise_s / grid_s:,.0f}x faster")
    for kind in BOX_SETS if args.adversarial else ["random"]:
        run = in_child(kind, args.boxes)
        met = run["seconds"] <= GOAL_S and run["peak_mb"] <= GOAL_MB
        print(f"grid check, {kind}, {run['boxes']:,} boxes: {run['seconds']:.2f} s "
              f"({run['seconds'] / run['boxes'] * 1e6:.1f} us a box; {grid_s / len(boxes) * 1e6:.1f} at "
              f"{len(boxes):,}), peak RSS {run['peak_mb']:,.0f} MB ({run['boxes_mb']:,.0f} MB before the check), "
              f"{run['kept']:,} kept, {run['findings']:,} findings; goal <= {GOAL_S:.0f} s and "
              f"<= {GOAL_MB / 1024:.1f} GB: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
