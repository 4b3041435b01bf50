"""Map a picklable function over items in worker processes (all cores), reporting progress in order."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

Progress = Callable[[str, int, int], None]  # (stage, done, total)
PARALLEL_FROM = 64  # items; below this, starting workers costs more than it saves


def workers_for(requested: int | None) -> int:
    return requested or os.cpu_count() or 1


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int | None, progress: Progress | None,
                 stage: str, chunk: int | None = None, parallel: bool | None = None) -> list[R]:
    """``[fn(item) for item in items]``; in processes when ``parallel`` (by default: from PARALLEL_FROM items)."""
    workers = min(workers_for(workers), len(items)) or 1
    results: list[R] = []
    if parallel is None:
        parallel = len(items) >= PARALLEL_FROM
    if workers == 1 or not parallel:
        for index, item in enumerate(items, start=1):
            results.append(fn(item))
            if progress:
                progress(stage, index, len(items))
        return results
    chunk = chunk or max(1, min(256, len(items) // (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for index, result in enumerate(pool.map(fn, items, chunksize=chunk), start=1):
            results.append(result)
            if progress and (index % chunk == 0 or index == len(items)):
                progress(stage, index, len(items))
    return results
