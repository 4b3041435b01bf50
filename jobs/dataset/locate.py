"""Find the file of every labelled image below the images folder, and the images that no label names.

Names are relative to the images folder. A name that is absolute or climbs out with ``..`` is refused, and so is a
path through a symbolic link that leads out of the folder (unless links are followed). A name that
matches a file only when letter case is ignored uses that file (and says so). A ``gs://bucket/a/b.jpg`` reference
is looked for as ``a/b.jpg``, then as ``b.jpg``, so a folder made by ``gsutil cp -r gs://bucket/a DIR`` or by
copying every image flat into DIR both work.

The images folder may also be a Cloud Storage location (``ObjectTree``): its objects, listed once (names, sizes and
generations; nothing downloaded), stand for the files. Cloud Storage has no folders and no links: only the letter-case
and the flat-copy rules apply there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

from jobs.dataset.annotations import LabelledImage, Labels
from jobs.dataset.findings import (
    CASE_MISMATCH,
    MISSING_IMAGE,
    SYMLINK_OUTSIDE,
    UNLABELED_IMAGES,
    UNSAFE_PATH,
    Report,
)
from jobs.io import OUTPUT_MARKER

# What data prepare takes as an image (TIFF is re-encoded); prediction looks for fewer
# (jobs.runtime.predict.IMAGE_SUFFIXES).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SHOWN = 5


@dataclass
class _Folder:
    files: set[str]
    folders: set[str]
    links: set[str]  # the files and folders that are symbolic links
    _by_lower: dict[str, list[str]] | None = None

    def by_lower(self, name: str) -> list[str]:
        """Files and folders whose lower-case name is ``name`` (the index is built on the first miss)."""
        if self._by_lower is None:
            self._by_lower = {}
            for entry in sorted(self.files | self.folders):
                self._by_lower.setdefault(entry.lower(), []).append(entry)
        return self._by_lower.get(name, [])


@dataclass
class Located:
    images: list[LabelledImage] = field(default_factory=list)  # filenames now as on disk
    dropped_rows: int = 0


class Tree(Protocol):
    """The files below an images folder, as ``locate`` needs them."""

    @property
    def name(self) -> str:
        """The folder's name: row locations of the files that no label names are ``name/file``."""

    @property
    def location(self) -> str:
        """The whole folder, for messages."""

    def find(self, name: str) -> str | None:
        """The name as stored (letter case may differ), or None."""

    def outside(self, name: str) -> str | None:
        """Where ``name`` leads when that is outside the folder (through a link), else None."""

    def files(self) -> Iterator[str]:
        """The names of the files below the folder, but for those in hidden folders and prepared outputs."""


class ObjectTree:
    """The objects below a Cloud Storage location, from one listing: ``{name relative to it: (bytes, generation)}``.
    ``scan``: look for images that no label names (not when the labels name whole ``gs://`` URIs: the bucket may
    hold anything)."""

    def __init__(self, uri: str, objects: dict[str, tuple[int, int]], scan: bool = True):
        self.uri = uri.rstrip("/")
        self.objects = objects
        self.scan = scan
        self._by_lower: dict[str, list[str]] | None = None

    @property
    def name(self) -> str:
        return self.uri

    @property
    def location(self) -> str:
        return self.uri

    def find(self, name: str) -> str | None:
        if name in self.objects:
            return name
        if self._by_lower is None:
            self._by_lower = {}
            for entry in sorted(self.objects):
                self._by_lower.setdefault(entry.lower(), []).append(entry)
        found = self._by_lower.get(name.lower())
        return found[0] if found else None

    def outside(self, name: str) -> str | None:
        return None  # no links in Cloud Storage

    def files(self) -> Iterator[str]:
        if not self.scan:
            return
        outputs = {name.rpartition("/")[0] for name in self.objects if name.rpartition("/")[2] == OUTPUT_MARKER}
        for name in sorted(self.objects):
            folders = name.split("/")[:-1]
            if not any(folder.startswith(".") for folder in folders) and not any(
                    "/".join(folders[:depth]) in outputs for depth in range(1, len(folders) + 1)):
                yield name


class FolderTree:
    """Directory listings below the images folder, read once each."""

    def __init__(self, root: Path):
        self.root = root
        self.real_root = os.path.realpath(root)
        self.folders: dict[str, _Folder | None] = {}
        self.top = self.folder("")

    def folder(self, rel: str) -> _Folder | None:
        if rel not in self.folders:
            try:
                entries = list(os.scandir(self.root / rel if rel else self.root))
            except OSError:
                self.folders[rel] = None
                return None
            folders = {e.name for e in entries if e.is_dir()}
            links = {e.name for e in entries if e.is_symlink()}  # from the listing: no system call
            self.folders[rel] = _Folder({e.name for e in entries} - folders, folders, links)
        return self.folders[rel]

    def find(self, name: str) -> str | None:
        """The name as on disk (letter case may differ), or None."""
        if self.top is not None and name in self.top.files:
            return name
        parts = name.split("/")
        actual: list[str] = []
        for index, part in enumerate(parts):
            listing = self.folder("/".join(actual))
            if listing is None:
                return None
            last = index == len(parts) - 1
            exact = part in (listing.files if last else listing.folders)
            if exact:
                actual.append(part)
                continue
            found = [c for c in listing.by_lower(part.lower())
                     if c in (listing.files if last else listing.folders)]
            if not found:
                return None
            actual.append(found[0])
        return "/".join(actual)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def location(self) -> str:
        return str(self.root)

    def files(self) -> Iterator[str]:
        for folder, dirs, files in os.walk(self.root):
            if OUTPUT_MARKER in files and folder != str(self.root):  # an output of this tool: its charts are not data
                dirs[:] = []
                continue
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel = Path(folder).relative_to(self.root).as_posix()
            yield from sorted(files) if rel == "." else sorted(f"{rel}/{file}" for file in files)

    def outside(self, name: str) -> str | None:
        """Where ``name`` (as on disk) leads when it passes through a symbolic link to outside the root, else None.
        Set lookups for the names that pass through no link, nearly all of them; ``realpath`` for the others."""
        if "/" in name:
            parts = name.split("/")
            for index, part in enumerate(parts):
                listing = self.folder("/".join(parts[:index]))
                if listing is not None and part in listing.links:
                    break
            else:
                return None
        elif self.top is None or name not in self.top.links:
            return None
        real = os.path.realpath(self.root / name)
        return None if real.startswith(self.real_root + os.sep) else real


def unsafe(name: str) -> bool:
    """Absolute (``/x``, ``C:/x``) or climbing out with ``..``; ``name`` uses ``/`` separators."""
    return name.startswith("/") or ".." in name.split("/") or name[1:2] == ":"


def locate(tree: Tree, labels: Labels, report: Report, unlabeled_as_negatives: bool,
           follow_symlinks: bool = False) -> Located:
    """Resolve every image of ``labels`` to its file; images not found (or, unless ``follow_symlinks``, behind a link
    out of the folder) are reported and their rows dropped."""
    located = Located()
    by_actual: dict[str, LabelledImage] = {}
    refused: set[str] = set()  # found, but behind a link out of the folder: labelled, not unlabeled
    for item in labels.images.values():
        rows = f"{len(item.locations)} row(s) dropped"
        name = item.filename.replace("\\", "/")
        if unsafe(name):
            report.add(UNSAFE_PATH, item.locations[0],
                       f"'{item.filename}' must be relative to the images folder, without '..' ({rows})")
            located.dropped_rows += len(item.locations)
            continue
        candidates = [name, PurePosixPath(name).name] if item.uri else [name]
        actual = candidate = None
        for candidate in candidates:
            if (actual := tree.find(candidate)) is not None:
                break
        if actual is None:
            also = f" as {' or '.join(candidates)} ({item.uri})" if item.uri else ""
            report.add(MISSING_IMAGE, item.locations[0],
                       f"image '{item.filename}' not found in {tree.location}{also} ({rows})")
            located.dropped_rows += len(item.locations)
            continue
        target = None if follow_symlinks else tree.outside(actual)
        if target is not None:
            report.add(SYMLINK_OUTSIDE, item.locations[0], _link_message(actual, target, rows))
            located.dropped_rows += len(item.locations)
            refused.add(actual)
            continue
        if actual != candidate:
            report.add(CASE_MISMATCH, item.locations[0],
                       f"'{candidate}' is '{actual}' on disk; using it (rename one of them to match)")
        merged = by_actual.get(actual)
        if merged is None:
            item.filename = actual
            by_actual[actual] = item
            located.images.append(item)
        else:
            merged.boxes += item.boxes
            merged.locations += item.locations
            merged.negative_rows += item.negative_rows
    named = set(by_actual) | refused | {name.replace("\\", "/") for name in labels.mentioned}
    _unlabeled(tree, labels, named, located, report, unlabeled_as_negatives, follow_symlinks)
    return located


def _link_message(name: str, target: str, rows: str) -> str:
    return (f"'{name}' is behind a symbolic link out of the images folder (to {target}); pass --follow-symlinks to "
            f"use it ({rows})")


def _unlabeled(tree: Tree, labels: Labels, named: set[str], located: Located, report: Report,
               as_negatives: bool, follow_symlinks: bool) -> None:
    """Images below the folder that no label names (hidden files and prepared outputs inside it are skipped)."""
    unnamed = [name for name in tree.files()
               if name not in named  # most are named: the few left are checked
               and not name.rpartition("/")[2].startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES]
    if not unnamed:
        return
    if as_negatives:
        for name in unnamed:
            location = f"{tree.name}/{name}"
            target = None if follow_symlinks else tree.outside(name)
            if target is not None:
                report.add(SYMLINK_OUTSIDE, location, _link_message(name, target, "not used"))
            else:
                located.images.append(labels.add_negative(name, location))
        return
    examples = ", ".join(unnamed[:SHOWN]) + (f" and {len(unnamed) - SHOWN} more" if len(unnamed) > SHOWN else "")
    report.add(UNLABELED_IMAGES, tree.location,
               f"{len(unnamed)} image(s) are named by no label and not used: {examples}; pass "
               "--unlabeled-as-negatives to keep them as negatives (images without objects)")
