"""How fast the CLI answers: ``python -m jobs --help`` (goal: median <= 0.4 s, no TensorFlow or Pulumi import).

Baseline in the same run: a bare ``python -c pass`` (the interpreter's own start-up).
Run: .venv/bin/python bench/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    bare = median_seconds([sys.executable, "-c", "pass"], runs)
    helped = median_seconds([sys.executable, "-m", "jobs", "--help"], runs)
    data_help = median_seconds([sys.executable, "-m", "jobs", "data", "prepare", "--help"], runs)
    probe = subprocess.run([sys.executable, "-c", "import sys, jobs.cli; from typer.main import get_command; "
                            "get_command(jobs.cli.app); print(' '.join(m for m in ('tensorflow', 'pulumi', "
                            "'google.cloud.aiplatform_v1') if m in sys.modules) or 'none')"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    print(f"python -c pass              median {bare:.3f} s")
    print(f"python -m jobs --help       median {helped:.3f} s  ({helped / bare:.1f}x bare; goal <= 0.400 s: "
          f"{'met' if helped <= 0.4 else 'NOT met'})")
    print(f"python -m jobs data prepare --help  median {data_help:.3f} s")
    print(f"heavy modules imported by the CLI: {probe}")


if __name__ == "__main__":
    main()
