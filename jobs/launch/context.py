"""The build context of a job image as a deterministic tarball, and the content-hash tag derived from it.

The context holds exactly what the image is built from and runs: its Dockerfile, the pinned requirements, and
the modules of ``jobs`` that the container code needs (the image's code: every module of ``jobs.runtime`` for the
trainer and evaluator, ``jobs.dataset.beam`` for the Dataflow workers, ``jobs.runtime.serve`` for the serving
image; each ``jobs`` module those import, at module level or inside a function; and the packages' ``__init__.py``
on the way). The Dockerfiles copy all of it and
nothing else, so the tag changes exactly when the image would: editing the CLI (its help texts), the README or the
tests builds nothing. Entries are sorted, with fixed times, owners and modes: the same files always give the same
bytes and the same tag.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from jobs.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "jobs"
RUNTIME = "jobs.runtime"  # the code the job containers run; see the images' ENTRYPOINTs


@dataclass(frozen=True)
class ImageSource:
    """What an image is built from, besides its own folder under ``images/``."""

    code: str  # the package (all its modules) or module the container runs
    shared: tuple[str, ...]  # repository files its Dockerfile copies


IMAGES = {
    "trainer": ImageSource(RUNTIME, ("requirements.txt", "images/dev-only.txt")),
    "evaluator": ImageSource(RUNTIME, ("requirements.txt", "images/dev-only.txt")),
    # Beam's SDK harness imports the pipeline's functions from here (data prepare --engine dataflow).
    "dataflow-worker": ImageSource("jobs.dataset.beam", ("requirements.txt",)),
    # Vertex AI endpoints run `serve` in it (models upload names it; images/serving/Dockerfile).
    "serving": ImageSource("jobs.runtime.serve", ("requirements.txt", "images/dev-only.txt")),
}
IMAGE_NAMES = tuple(IMAGES)
IMPORT_LINES = re.compile(
    rb"^[ \t]*(?:from[ \t]+[.\w]+[ \t]+import[ \t]+(?:\([^)]*\)|[^\n]*)|import[ \t]+[^\n]*)", re.M)


@dataclass(frozen=True)
class BuildContext:
    image: str
    tarball: bytes  # gzip of the tar, itself deterministic
    tag: str  # first 16 hex digits of the tar's sha256
    files: tuple[str, ...]


def context_files(image: str, root: Path = REPO_ROOT) -> list[str]:
    """Repository-relative paths of the files the image is built from, sorted."""
    if image not in IMAGES:
        raise UsageError(f"unknown image {image!r}; choose one of: {', '.join(IMAGE_NAMES)}")
    source = IMAGES[image]
    files = set(source.shared)
    files.update(str(p.relative_to(root)) for p in (root / "images" / image).rglob("*") if p.is_file())
    missing = [f for f in sorted(files) if not (root / f).is_file()]
    if missing:
        raise UsageError(f"the build context lacks {', '.join(missing)} under {root}")
    files.update(code_files(source.code, root))
    return sorted(files)


def code_files(code: str = RUNTIME, root: Path = REPO_ROOT) -> list[str]:
    """The files of ``jobs`` that a container runs: ``code`` (a package: all its modules) and everything it
    imports."""
    entry = _module_file(root, code)
    if entry is None:
        raise UsageError(f"the build context lacks {code} under {root}")
    pending = [code]
    if entry.name == "__init__.py":
        pending.extend(f"{code}.{p.stem}" for p in entry.parent.glob("*.py") if p.name != "__init__.py")
    found: dict[str, Path] = {}
    while pending:
        module = pending.pop()
        if module in found or (module != PACKAGE and not module.startswith(PACKAGE + ".")):
            continue
        path = _module_file(root, module)
        if path is None:  # a name imported from a module (`from jobs.io import staged_dir`), not a module
            continue
        found[module] = path
        parts = module.split(".")
        pending.extend(".".join(parts[:end]) for end in range(1, len(parts)))  # its packages run first
        pending.extend(_imported(path, module))
    return sorted(str(path.relative_to(root)) for path in found.values())


def _module_file(root: Path, module: str) -> Path | None:
    path = root.joinpath(*module.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path, module: str) -> set[str]:
    """Every module name an import statement in the file may load: ``from a import b`` gives ``a`` and ``a.b``.

    Only the import statements are parsed (a tenth of the time of the whole file, which is parsed when one of
    them is not a statement on its own)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    source = path.read_bytes()
    nodes: list[ast.AST]
    try:
        nodes = [node for match in IMPORT_LINES.finditer(source) for node in ast.parse(match.group().strip()).body]
    except SyntaxError:
        nodes = list(ast.walk(ast.parse(source, str(path))))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


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
