"""Bulk work: map a function over tasks in worker processes (all cores), with the cyclic garbage collector paused
(tens of thousands of small objects make its passes cost a fifth of the run).

The bulk data the tasks refer to (every image's job) is handed to the workers once, as ``shared``: on Linux the
workers are forked and inherit it without pickling (pickling 20,000 jobs costs 0.4 CPU-seconds), elsewhere it is
pickled once per worker. Tasks themselves stay small (which jobs, where to write).
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Progress = Callable[[str, int, int], None]  # (stage, done, total)
PARALLEL_FROM = 64  # images; below this, starting workers costs more than it saves

_shared: Any = None  # in a worker: what parallel_map was given as ``shared``


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


def parallel_map(fn: Callable[[Any, T], R], shared: Any, tasks: Sequence[T], workers: int | None,
                 progress: Progress | None, stage: str, parallel: bool) -> list[R]:
    """``[fn(shared, task) for task in tasks]``, in worker processes when ``parallel``; results in task order."""
    workers = min(workers or os.cpu_count() or 1, len(tasks))
    results: list[R] = []
    pool: ProcessPoolExecutor | nullcontext[None]
    outcomes: Iterator[R]
    if parallel and workers > 1:
        context = multiprocessing.get_context("fork") if sys.platform == "linux" else None
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_receive,
                                   initargs=(shared, os.getpid()))
        outcomes = pool.map(partial(_call, fn), tasks)
    else:
        pool, outcomes = nullcontext(), (fn(shared, task) for task in tasks)
    with pool:
        try:
            for index, result in enumerate(outcomes, start=1):
                results.append(result)
                if progress:
                    progress(stage, index, len(tasks))
        except BaseException:  # an error, Ctrl-C or SIGTERM: no new task starts; the caller cleans up after them
            if isinstance(pool, ProcessPoolExecutor):
                pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results


def _receive(shared: Any, parent: int) -> None:
    """Worker start: take ``shared``, die with the parent, leave Ctrl-C and SIGTERM to the parent."""
    global _shared
    _shared = shared
    if sys.platform == "linux":
        pr_set_pdeathsig = 1  # linux/prctl.h
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _call(fn: Callable[[Any, T], R], task: T) -> R:
    return fn(_shared, task)
