"""The build context of a job image as a deterministic tarball, and the content-hash tag derived from it.

Only what goes into the image is in the context (its Dockerfile, the pinned requirements, the package source),
with sorted entries, fixed times, owners and modes: the same tree always gives the same bytes and the same tag,
any change to a file that goes in changes the tag, and files that do not go in (tests, docs) never do.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from jobs.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE_NAMES = ("trainer", "evaluator")
SHARED_FILES = ("requirements.txt", "pyproject.toml", "README.md", "images/dev-only.txt")
PACKAGE_DIR = "jobs"
SKIPPED_PARTS = {"__pycache__", ".pytest_cache"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class BuildContext:
    image: str
    tarball: bytes  # gzip of the tar, itself deterministic
    tag: str  # first 16 hex digits of the tar's sha256
    files: tuple[str, ...]


def context_files(image: str, root: Path = REPO_ROOT) -> list[str]:
    if image not in IMAGE_NAMES:
        raise UsageError(f"unknown image {image!r}; choose one of: {', '.join(IMAGE_NAMES)}")
    files = set(SHARED_FILES)
    files.update(str(p.relative_to(root)) for p in (root / "images" / image).rglob("*") if p.is_file())
    for path in (root / PACKAGE_DIR).rglob("*"):
        if path.is_file() and not SKIPPED_PARTS & set(path.parts) and path.suffix not in SKIPPED_SUFFIXES:
            files.add(str(path.relative_to(root)))
    missing = [f for f in sorted(files) if not (root / f).is_file()]
    if missing:
        raise UsageError(f"the build context lacks {', '.join(missing)} under {root}")
    return sorted(files)


def build_context(image: str, root: Path = REPO_ROOT) -> BuildContext:
    files = context_files(image, root)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in files:
            path = root / name
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            with path.open("rb") as stream:
                tar.addfile(info, stream)
    raw = buffer.getvalue()
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(raw)
    return BuildContext(image, compressed.getvalue(), hashlib.sha256(raw).hexdigest()[:16], tuple(files))
