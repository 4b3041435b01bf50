"""Terminal output shared by the CLI commands: progress bars, tables, and only the library output that matters.

Libraries print some things on every run that tell the user nothing they can act on; they are dropped here, each
matched exactly, so that other output from the same sources (any other warning, a cuInit failure on a machine
that has a GPU) still shows:

- google-api-core warns on every import that Google's client libraries will drop this Python version in a year
  (a FutureWarning). The warning that the version is past its end of life, or unsupported, still shows.
- TensorFlow's C++ code logs, as errors, that CUDA found no GPU (on a machine without one it runs on the CPU, as
  asked) and that oneDNN leaves ops of some types to Eigen; the TFLite converter logs flags it ignores.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

GOOGLE_PYTHON_NOTICE = r"You are using a Python version \([\d.]+\) which Google will stop supporting "
GOOGLE_PYTHON_MODULE = r"google\.api_core\._python_version_support"
_NATIVE_LOG = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: E "  # TensorFlow's C++ log prefix, level E(rror)
_ABSL_LOG = r"[IW]\d{4} [\d:]+\.\d+ +\d+ "  # absl's, levels I(nfo) and W(arning)
NOISE = tuple(re.compile(pattern) for pattern in (
    # No GPU: CUDA's driver library is absent (303, TensorFlow's stub answering) or finds no device.
    _NATIVE_LOG + r"\S+/cuda_platform\.cc:\d+\] failed call to cuInit: .*"
                  r"(?:UNKNOWN ERROR \(303\)|CUDA_ERROR_NO_DEVICE\b.*)",
    _NATIVE_LOG + r"tensorflow/core/util/util\.cc:\d+\] oneDNN supports DT_\w+ only on platforms with AVX-512\. "
                  r"Falling back to the default Eigen-based implementation if present\.",
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    _ABSL_LOG + r"tf_tfl_flatbuffer_helpers\.cc:\d+\] Ignored (?:output_format|drop_control_dependency)\.",
    _ABSL_LOG + r"mlir_graph_optimization_pass\.cc:\d+\] MLIR V1 optimization pass is not enabled",
    # The google-api-core notice as another Python process prints it (a local job's stderr).
    r".*[/\\]google[/\\]api_core[/\\]_python_version_support\.py:\d+: FutureWarning: " + GOOGLE_PYTHON_NOTICE + ".*",
))

console = Console(file=sys.stdout)  # bound now: library code may redirect sys.stdout to a log file
errors = Console(stderr=True)


class NoiseFilter:
    """Line by line, whether to show output: not a ``NOISE`` line, nor the source line that Python prints under a
    warning it dropped."""

    def __init__(self) -> None:
        self._after_warning = False

    def keep(self, line: str) -> bool:
        after_warning, self._after_warning = self._after_warning, False
        if after_warning and line.startswith("  "):
            return False
        if any(pattern.fullmatch(line) for pattern in NOISE):
            self._after_warning = ": FutureWarning: " in line
            return False
        return True


def hide_python_version_notice() -> None:
    """Drop google-api-core's FutureWarning that this Python version will lose support (before it is imported)."""
    warnings.filterwarnings("ignore", GOOGLE_PYTHON_NOTICE, FutureWarning, GOOGLE_PYTHON_MODULE)


hide_python_version_notice()  # every command: the CLI imports this module before any command runs


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ and absl chatter out of the progress bars (call before TF is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ info or warnings; errors show, less NOISE
    import absl.logging

    absl.logging.set_verbosity(absl.logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    filter_native_stderr()


_pump: threading.Thread | None = None


def filter_native_stderr() -> None:
    """Pass file descriptor 2, where C++ code logs past Python, through a thread that drops ``NOISE`` lines.

    Python's ``sys.stderr`` keeps writing to the terminal itself (tracebacks, rich's colours and line wrapping
    as before). Once per process, and only where ``sys.stderr`` is descriptor 2 (not under a test runner that
    captures it); at exit descriptor 2 is given back and what the thread holds is written.
    """
    global _pump
    try:
        if _pump is not None or sys.stderr.fileno() != 2:
            return
    except (AttributeError, OSError, ValueError):  # a stream without a descriptor
        return
    sys.stderr.flush()
    terminal = os.dup(2)
    source, sink = os.pipe()
    os.dup2(sink, 2)  # child processes inherit it too
    os.close(sink)
    sys.stderr = _Stderr(terminal, sys.stderr)
    _pump = threading.Thread(target=_pass_lines, args=(source, terminal), name="stderr-filter", daemon=True)
    _pump.start()

    def give_back() -> None:
        sys.stderr.flush()
        os.dup2(terminal, 2)  # closes the pipe's last write end here: the thread reads to its end and stops
        _pump.join(timeout=2)

    atexit.register(give_back)


class _Stderr(io.TextIOWrapper):
    """``sys.stderr`` writing to the terminal's descriptor (saved before descriptor 2 became the pipe)."""

    def __init__(self, descriptor: int, like: TextIO) -> None:
        super().__init__(io.FileIO(descriptor, "w", closefd=False), encoding=like.encoding, errors=like.errors,
                         line_buffering=True, write_through=True)


def _pass_lines(source: int, terminal: int) -> None:
    noise = NoiseFilter()
    pending = b""
    while chunk := os.read(source, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        _write(terminal, b"".join(line + b"\n" for line in lines if noise.keep(line.decode(errors="replace"))))
    if pending and noise.keep(pending.decode(errors="replace")):
        _write(terminal, pending)
    os.close(source)


def _write(descriptor: int, data: bytes) -> None:
    while data:
        data = data[os.write(descriptor, data):]


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


def table(title: str, columns: list[str], rows: Sequence[Sequence[object]],
          total: Sequence[object] | None = None) -> Table:
    """``total``: a row above the others, in bold and ruled off from them."""
    view = Table(title=title, title_justify="left")
    for index, name in enumerate(columns):
        view.add_column(name, justify="left" if index == 0 else "right", no_wrap=index == 0)
    if total:
        view.add_row(*_cells(total), style="bold", end_section=True)
    for row in rows:
        view.add_row(*_cells(row))
    return view


def _cells(row: Sequence[object]) -> list[str]:
    return [f"{v:.3f}" if isinstance(v, float) else "-" if v is None else str(v) for v in row]
