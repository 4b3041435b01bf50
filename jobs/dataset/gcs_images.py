"""The gs:// images a label file names (Vertex AI CSV), downloaded into a local folder that then is the images folder.

``gs://bucket/a/b.jpg`` becomes ``DIR/a/b.jpg`` (the bucket name is dropped; two buckets with the same object path
would collide). The folder is a cache: an object already there with the size GCS lists is not downloaded again.
Downloads run in threads, each verified by CRC32C and written under a temporary name, then renamed. An object that
does not exist is not an error here: the checks report its rows (I001 missing-image).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.dataset.gcs import client, split_uri
from jobs.dataset.parallel import Progress
from jobs.errors import DetectorError

if TYPE_CHECKING:
    from google.cloud.storage import Blob  # untyped (no py.typed): a name for the reader, Any to mypy

THREADS = 16  # downloads are network-bound


class DownloadFailed(DetectorError):
    """An image could not be downloaded intact."""


def download_images(uris: Iterable[str], folder: Path, progress: Progress | None = None) -> int:
    """Download the objects not yet in ``folder``; returns how many were downloaded."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for uri in uris:
        bucket, name = split_uri(uri)
        wanted[bucket].add(name)
    storage = client()
    todo: list[tuple[Blob, Path]] = []
    for bucket_name, names in wanted.items():
        bucket = storage.bucket(bucket_name)
        prefix = os.path.commonprefix(sorted(names)).rpartition("/")[0]
        listed = {blob.name: blob.size for blob in storage.list_blobs(bucket_name, prefix=prefix or None)}
        for name in sorted(names & listed.keys()):
            target = folder / name
            if not target.is_file() or target.stat().st_size != listed[name]:
                todo.append((bucket.blob(name), target))
    with ThreadPoolExecutor(THREADS) as pool:
        for done, _ in enumerate(pool.map(_download, todo), start=1):
            if progress:
                progress("download", done, len(todo))
    return len(todo)


def _download(task: tuple[Blob, Path]) -> None:
    from google.api_core.exceptions import GoogleAPIError
    from google.resumable_media.common import DataCorruption
    from requests.exceptions import RequestException

    blob, target = task
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    try:
        blob.download_to_filename(str(partial), checksum="crc32c")  # retried on transient errors by the client
        os.replace(partial, target)
    except (GoogleAPIError, DataCorruption, RequestException, OSError) as err:
        partial.unlink(missing_ok=True)
        raise DownloadFailed(f"gs://{blob.bucket.name}/{blob.name}: {type(err).__name__}: {err}; rerun to "
                             "resume (finished images are kept)") from None
