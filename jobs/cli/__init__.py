"""The ``detector`` command line (``python -m jobs``). Each command parses flags and calls one library function.

Nothing heavy is imported at module level: ``--help`` and the data commands never load TensorFlow.
"""

from __future__ import annotations

import atexit
import gc
import signal

from rich.markup import escape

from jobs.cli import cloud, data, model, serve, serving  # noqa: F401  (registers the commands)
from jobs.cli.app import app
from jobs.console import errors
from jobs.errors import DetectorError

__all__ = ["app", "main"]

atexit.register(gc.freeze)  # the exit skips a last collection pass over every object: 0.2 s with typer and rich


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be: every clean-up that Ctrl-C runs runs for it too."""


_signals: list[int] = []  # received: typer turns the KeyboardInterrupt into a silent exit 130


def _terminate(signum: int, frame: object) -> None:
    _signals.append(signum)
    raise Terminated


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except DetectorError as err:
        _error(str(err))
        raise SystemExit(err.exit_code) from None
    except OSError as err:  # the environment: a missing file, no space left, no permission
        _error(_os_error(err))
        raise SystemExit(1) from None
    except (KeyboardInterrupt, SystemExit) as stop:
        if _signals or isinstance(stop, KeyboardInterrupt) or stop.code == 128 + signal.SIGINT:
            _error("terminated (SIGTERM)" if _signals else "interrupted")
            raise SystemExit(128 + (_signals[0] if _signals else signal.SIGINT)) from None
        raise


def _error(message: str) -> None:
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False)


def _os_error(err: OSError) -> str:
    if err.filename is None or str(err.filename) in str(err.strerror):
        return str(err.strerror or err)
    return f"{err.filename}: {err.strerror}"
