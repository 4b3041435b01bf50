"""Bulk work: map a picklable function over tasks in worker processes (all cores), with the cyclic garbage
collector paused (tens of thousands of small objects make its passes cost a fifth of the run)."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

Progress = Callable[[str, int, int], None]  # (stage, done, total)
PARALLEL_FROM = 64  # images; below this, starting workers costs more than it saves


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (reference counting still frees everything without cycles); forked
    workers inherit the pause."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
