"""Terminal output shared by the CLI commands: progress bars, tables, quiet TensorFlow."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(file=sys.stdout)  # bound now: library code may redirect sys.stdout to a log file
errors = Console(stderr=True)


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ and absl chatter out of the progress bars (set before TF is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import absl.logging

    absl.logging.set_verbosity(absl.logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[..., None]]:
    """Yield ``update(done, total, **fields)``; extra fields (e.g. loss) are shown after the bar."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[extra]}"))
    with Progress(*columns, console=console, redirect_stdout=False, redirect_stderr=False) as progress:
        task = progress.add_task(description, total=None, extra="")

        def update(done: int, total: int, **fields: object) -> None:
            extra = "  ".join(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
                              for key, value in fields.items())
            progress.update(task, completed=done, total=total, extra=extra)

        yield update


def table(title: str, columns: list[str], rows: list[list[object]], total: list[object] | None = None) -> Table:
    """``total``: a row above the others, in bold and ruled off from them."""
    view = Table(title=title, title_justify="left")
    for index, name in enumerate(columns):
        view.add_column(name, justify="left" if index == 0 else "right", no_wrap=index == 0)
    if total:
        view.add_row(*_cells(total), style="bold", end_section=True)
    for row in rows:
        view.add_row(*_cells(row))
    return view


def _cells(row: list[object]) -> list[str]:
    return [f"{v:.3f}" if isinstance(v, float) else "-" if v is None else str(v) for v in row]
