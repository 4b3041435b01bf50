"""Label files in Cloud Storage: ``--input gs://bucket/labels.csv`` (one object) or ``gs://bucket/voc/`` (the label
files below a prefix: every object but images) is mirrored into a local cache, ``~/.cache/detector/gcs/BUCKET/PATH``,
and read from there like any label file. The mirror belongs to this tool: a file there that the bucket no longer
holds is removed. Images the format places next to its labels (COCO, VOC, YOLO) are then looked for at the mirror's
``gs://`` counterpart (``remote_folder``), where they are read, not downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from jobs.dataset.gcs import client, split_uri
from jobs.dataset.locate import IMAGE_SUFFIXES
from jobs.errors import UsageError
from jobs.io import atomic_file

if TYPE_CHECKING:
    from google.cloud.storage import Blob  # untyped (no py.typed): a name for the reader, Any to mypy


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "detector" / "gcs"


def fetch_labels(uri: str) -> Path:
    """The local mirror of the label file (or label folder) at ``uri``; only changed objects are downloaded."""
    from google.api_core.exceptions import Forbidden, NotFound, Unauthorized

    bucket, name = split_uri(uri)
    if not bucket:
        raise UsageError(f"--input {uri}: give gs://BUCKET/FILE or gs://BUCKET/PREFIX/")
    local = cache_root() / bucket / name
    try:
        storage = client()
        single = None if uri.endswith("/") or not name else storage.bucket(bucket).get_blob(name)
        if single is not None:
            _mirror(single, local)
            return local
        prefix = f"{name}/" if name else ""
        blobs = [blob for blob in storage.list_blobs(bucket, prefix=prefix or None)
                 if not blob.name.endswith("/") and PurePosixPath(blob.name).suffix.lower() not in IMAGE_SUFFIXES]
    except NotFound:
        raise UsageError(f"--input {uri}: bucket gs://{bucket} does not exist") from None
    except (Forbidden, Unauthorized) as err:
        raise UsageError(f"--input {uri}: no access ({err.message}); reading labels needs storage.objects.get and "
                         "storage.objects.list on the bucket") from None
    if not blobs:
        raise UsageError(f"--input {uri}: no such object, and no label files below it")
    wanted = {local / blob.name.removeprefix(prefix) for blob in blobs}
    for blob in blobs:
        _mirror(blob, local / blob.name.removeprefix(prefix))
    if local.is_dir():
        for path in list(local.rglob("*")):
            if path.is_file() and not path.name.startswith(".") and path not in wanted:
                path.unlink()  # the mirror is this tool's: the bucket no longer holds it
                _stamp(path).unlink(missing_ok=True)
    return local


def _mirror(blob: Blob, target: Path) -> None:
    """Download ``blob`` to ``target`` unless the copy there has its generation (kept in a hidden side file)."""
    generation = f"{blob.generation}:{blob.size}"
    stamp = _stamp(target)
    if target.is_file() and stamp.is_file() and stamp.read_text() == generation:
        return
    with atomic_file(target) as stream:
        blob.download_to_file(stream, checksum="crc32c")
    stamp.write_text(generation)


def _stamp(path: Path) -> Path:
    return path.with_name(f".{path.name}.generation")


def remote_folder(folder: Path) -> str | None:
    """The ``gs://`` location a folder of the mirror stands for, or None for any other folder."""
    try:
        relative = folder.resolve().relative_to(cache_root().resolve())
    except ValueError:
        return None
    return f"gs://{relative.as_posix()}".rstrip("/")
