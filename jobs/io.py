"""Writing outputs without ever destroying what the tool did not write.

An output folder is claimed only when it is absent, empty or a previous output of this tool of the same kind
(recognised by ``OUTPUT_MARKER``, which every output folder carries), and never when it is, or contains, one of the
command's inputs. One run at a time writes it (a lock beside it); the new output is built in a temporary folder
beside it and swapped in whole (``RENAME_EXCHANGE`` where the kernel has it, so readers always find an output);
temporary folders left by runs that died (kill -9, power loss) are removed by the next run. Single files are
written under a temporary name and renamed.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

from jobs.errors import DetectorError, UsageError

OUTPUT_MARKER = ".detector-output.json"  # {"tool": "detector", "kind": ...}; inside every output folder
TOOL = "detector"
TEMPORARY = ".tmp-"  # .NAME.tmp-PID-RANDOM: a folder being written by process PID
PREVIOUS = ".old-"  # .NAME.old-PID: the output being replaced by process PID
LOCK = ".lock"  # .NAME.lock: held by the run that writes NAME


class OutputRefused(UsageError):
    """The output path holds something this command must not replace (exit 2)."""


class OutputBusy(DetectorError):
    """Another run is writing the same output (exit 1)."""


def resolved(path: Path | str) -> Path:
    """Absolute, with ``.``, ``..`` and symbolic links resolved: ``--out .`` and ``--out x/..`` name real folders."""
    return Path(path).expanduser().resolve()


def is_output(folder: Path, kind: str | None = None) -> bool:
    """Whether ``folder`` is an output of this tool (of ``kind``, when given)."""
    try:
        return is_marker((folder / OUTPUT_MARKER).read_text(encoding="utf-8"), kind)
    except OSError:
        return False


def is_marker(text: str, kind: str | None = None) -> bool:
    """Whether ``text`` is the marker of an output of this tool (of ``kind``, when given)."""
    try:
        marker = json.loads(text)
    except ValueError:
        return False
    return isinstance(marker, dict) and marker.get("tool") == TOOL and kind in (None, marker.get("kind"))


def refuse_inputs(out: Path, inputs: Iterable[Path | None], flag: str = "--out") -> None:
    """Exit 2 when ``out`` is one of ``inputs`` or a folder above one: writing there would replace it."""
    for given in inputs:
        if given is None:
            continue
        source = resolved(given)
        if out == source or out in source.parents:
            how = "is" if out == source else "contains"
            raise OutputRefused(f"{flag} {out} {how} the input {source}: writing there would replace it; "
                                f"choose a new {flag} folder")


def check_output_folder(out: Path, kind: str, inputs: Iterable[Path | None] = (), flag: str = "--out") -> Path:
    """``out`` resolved, if this command may replace it: absent, empty or a ``kind`` output, holding no input."""
    out = resolved(out)
    refuse_inputs(out, inputs, flag)
    if out.exists() and not out.is_dir():
        raise OutputRefused(f"{flag} {out} is a file, not a folder: choose a folder name")
    if out.is_dir() and not is_output(out, kind) and any(out.iterdir()):
        what = "another kind of output of this tool" if is_output(out) else "files that this tool did not write"
        raise OutputRefused(f"{flag} {out} holds {what}; it is replaced only when it is empty or a previous "
                            f"{kind} output: choose a new folder, or empty it yourself")
    return out


def check_output_file(path: Path, kind: str, inputs: Iterable[Path | None] = (), flag: str = "--out") -> Path:
    """``path`` resolved, if this command may write it: absent, or a JSON file of ``kind`` that this tool wrote."""
    path = resolved(path)
    refuse_inputs(path, inputs, flag)
    if path.is_dir():
        raise OutputRefused(f"{flag} {path} is a folder, not a file: choose a file name")
    if path.exists() and not (path.is_file() and _is_marked_file(path, kind)):
        raise OutputRefused(f"{flag} {path} exists and was not written by this tool: choose a new file name")
    return path


def _is_marked_file(path: Path, kind: str) -> bool:
    try:
        return is_marker(path.read_text(encoding="utf-8"), kind)
    except (OSError, UnicodeDecodeError):
        return False


class OutputClaim:
    """An output folder this run may replace, locked against other runs (see ``claim_output``)."""

    def __init__(self, out: Path, kind: str, flag: str, removed: list[Path]):
        self.out, self.kind, self.flag = out, kind, flag
        self.removed = removed  # temporary folders of dead runs, removed when the claim was made

    def refuse_inputs(self, inputs: Iterable[Path | None]) -> None:
        """Inputs known only later (a format's own images folder): exit 2 if the output holds one."""
        refuse_inputs(self.out, inputs, self.flag)

    @contextmanager
    def staged(self) -> Iterator[Path]:
        """Yield a new folder beside the output; when the block succeeds it replaces the output whole, on any
        error or signal it is removed and the output is left as it was."""
        stage = _new_stage(self.out, self.kind)
        try:
            yield stage
            _swap_in(stage, self.out)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise


@contextmanager
def claim_output(out: Path | str, kind: str, inputs: Iterable[Path | None] = (),
                 flag: str = "--out") -> Iterator[OutputClaim]:
    """Check ``out`` (``check_output_folder``), lock it for this run and remove what dead runs left beside it."""
    out = resolved(out)
    inputs = list(inputs)
    check_output_folder(out, kind, inputs, flag)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DetectorError(f"cannot create {out.parent}: {err.strerror or err}") from None
    with output_lock(out):
        check_output_folder(out, kind, inputs, flag)  # again, now that no other run can change it
        yield OutputClaim(out, kind, flag, remove_stale(out.parent, f".{out.name}"))


@contextmanager
def staged_dir(out: Path | str, kind: str, inputs: Iterable[Path | None] = (), flag: str = "--out"
               ) -> Iterator[Path]:
    """``claim_output`` and ``OutputClaim.staged`` in one: a folder that replaces ``out`` when the block succeeds."""
    with claim_output(out, kind, inputs, flag) as claim, claim.staged() as stage:
        yield stage


def _new_stage(out: Path, kind: str) -> Path:
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}{TEMPORARY}{os.getpid()}-", dir=out.parent))
    except OSError as err:
        raise DetectorError(f"cannot write into {out.parent}: {err.strerror or err}") from None
    stage.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result should look like any new folder
    write_marker(stage, kind)
    return stage


def write_marker(folder: Path, kind: str) -> None:
    """Mark ``folder`` as an output of this tool, so later runs may replace it and image scans skip it."""
    (folder / OUTPUT_MARKER).write_text(json.dumps({"tool": TOOL, "kind": kind}) + "\n", encoding="utf-8")


def _swap_in(stage: Path, out: Path) -> None:
    """``stage`` becomes ``out``; the previous ``out`` is removed after the swap."""
    if out.exists() and _exchange(stage, out):
        shutil.rmtree(stage, ignore_errors=True)  # now holds the previous output
        return
    previous = out.with_name(f".{out.name}{PREVIOUS}{os.getpid()}")
    if out.exists():
        out.rename(previous)
    stage.rename(out)
    shutil.rmtree(previous, ignore_errors=True)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system cannot."""
    rename_exchange = 2  # linux/fs.h
    at_cwd = -100  # fcntl.h AT_FDCWD
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except AttributeError:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # a file system without it
        return False
    raise OSError(code, f"cannot swap {first} into {second}: {os.strerror(code)}")


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``out`` (created for the run and removed after it); if another run holds it,
    exit 1 saying which process."""
    lock = out.with_name(f".{out.name}{LOCK}")
    while True:
        try:
            handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise DetectorError(f"cannot write into {out.parent}: {err.strerror or err}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(handle)
            raise OutputBusy(f"{out} is being written by {holder}; wait for it to finish, or choose another "
                             "output") from None
        if _same_file(handle, lock):  # not removed by its previous holder between our open and our lock
            break
        os.close(handle)
    try:
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"pid {os.getpid()} ({' '.join(sys.argv[:3])})\n".encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(handle)


def _same_file(handle: int, path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(handle)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def remove_stale(folder: Path, prefix: str) -> list[Path]:
    """Remove ``PREFIX.tmp-PID-…`` and ``PREFIX.old-PID`` entries of ``folder`` whose process is gone."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        pid = _owner(entry.name, prefix)
        if pid is not None and pid != os.getpid() and not _alive(pid):
            path = Path(entry.path)
            shutil.rmtree(path, ignore_errors=True) if entry.is_dir(follow_symlinks=False) else path.unlink()
            removed.append(path)
    return removed


def _owner(name: str, prefix: str) -> int | None:
    """The pid in a temporary name made for ``prefix``, or None."""
    for kind in (TEMPORARY, PREVIOUS):
        if name.startswith(prefix + kind):
            pid = name[len(prefix + kind):].split("-", 1)[0]
            return int(pid) if pid.isdecimal() else None
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def atomic_file(path: Path, mode: Literal["wb", "w"] = "wb") -> Iterator[IO[Any]]:
    """Write ``path`` under a temporary name beside it, renamed over it when the block succeeds: readers never see
    half a file, and a failure leaves the previous file as it was. ``mode`` "w" writes UTF-8 text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}{TEMPORARY}{os.getpid()}-", dir=path.parent)
    try:
        opened = os.fdopen(handle, "wb") if mode == "wb" else os.fdopen(handle, "w", encoding="utf-8")
        with opened as stream:
            yield stream
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_atomic(location: str | Path, data: bytes) -> None:
    """``data`` at a local path or a ``gs://`` URI, all or nothing: readers see the previous content or the new,
    never part of it (locally through ``atomic_file``; in Cloud Storage one object upload is that step already)."""
    if str(location).startswith("gs://"):
        from jobs.dataset.gcs import write_object

        write_object(str(location), data)
        return
    with atomic_file(Path(location)) as stream:
        stream.write(data)


def write_json(path: Path, data: object, indent: int | None = 2) -> None:
    """UTF-8 JSON; ``indent=None`` for large machine-read files (the C encoder is several times faster)."""
    path.write_text(json.dumps(data, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def write_json_atomic(path: Path, data: object) -> None:
    """``write_json`` through ``atomic_file``."""
    with atomic_file(path, "w") as stream:
        stream.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
