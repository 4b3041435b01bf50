"""The ``detector`` command line (``python -m jobs``). Each command parses flags and calls one library function.

Nothing heavy is imported at module level: ``--help`` and the data commands never load TensorFlow.
"""

from __future__ import annotations

import atexit
import gc

from jobs.cli import cloud, data, model  # noqa: F401  (registers the commands)
from jobs.cli.app import app
from jobs.console import errors
from jobs.errors import DetectorError

__all__ = ["app", "main"]

atexit.register(gc.freeze)  # the exit skips a last collection pass over every object: 0.2 s with typer and rich


def main() -> None:
    try:
        app()
    except DetectorError as err:
        errors.print(f"[red]error:[/red] {err}", highlight=False)
        raise SystemExit(err.exit_code) from None
    except FileNotFoundError as err:
        errors.print(f"[red]error:[/red] {err}", highlight=False)
        raise SystemExit(1) from None
