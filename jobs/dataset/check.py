"""``data check`` (and ``data stats``): every check of ``prepare``, reading image headers only, writing nothing."""

from __future__ import annotations

from jobs.dataset.parallel import Progress, gc_paused
from jobs.dataset.pipeline import Checked, CheckOptions, examine, finish, load, plan


def check(options: CheckOptions, progress: Progress | None = None) -> Checked:
    """load -> plan -> examine -> finish (``pipeline.py``); CheckFailed when the data cannot be used."""
    with gc_paused():
        loaded = load(options, progress)
        planned = plan(loaded)
        return finish(loaded, planned, examine(planned, options.workers, progress))
