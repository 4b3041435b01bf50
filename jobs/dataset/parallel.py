"""Map a picklable function over items in worker processes (all cores), reporting progress in order."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

Progress = Callable[[str, int, int], None]  # (stage, done, total)
PARALLEL_FROM = 64  # images; below this, starting workers costs more than it saves


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int | None, progress: Progress | None,
                 stage: str, parallel: bool) -> list[R]:
    """``[fn(item) for item in items]``, in worker processes when ``parallel``; items are tasks (chunks of work)."""
    workers = min(workers or os.cpu_count() or 1, len(items))
    results: list[R] = []
    with ProcessPoolExecutor(max_workers=workers) if parallel and workers > 1 else nullcontext() as pool:
        for index, result in enumerate(pool.map(fn, items) if pool else map(fn, items), start=1):
            results.append(result)
            if progress:
                progress(stage, index, len(items))
    return results
