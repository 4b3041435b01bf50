"""Images in Cloud Storage: listed where they are (``list_images``: what every engine reads from), or, with
``--download-to``, downloaded into a local folder that then is the images folder (``download_images``).

Listing: ``--images gs://bucket/prefix`` lists the prefix (names relative to it, as in a folder); labels that name
``gs://`` URIs (Vertex AI CSV) without ``--images`` list their bucket below the names' common folder. Either way one
listing gives every object's name, size and generation (the input fingerprint), and nothing is downloaded.

Downloading:
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

from jobs.dataset.annotations import Labels
from jobs.dataset.gcs import client, split_uri
from jobs.dataset.locate import ObjectTree
from jobs.dataset.parallel import Progress
from jobs.errors import DetectorError, UsageError

if TYPE_CHECKING:
    from google.cloud.storage import Blob  # untyped (no py.typed): a name for the reader, Any to mypy

THREADS = 16  # downloads are network-bound


class DownloadFailed(DetectorError):
    """An image could not be downloaded intact."""


def list_images(images: str | None, labels: Labels, source: str) -> ObjectTree:
    """The objects the images are looked for in, with each one's (bytes, generation); ``images`` is
    ``gs://bucket/prefix``, or None for the gs:// URIs the labels name (``source``: the label file, for messages)."""
    from google.api_core.exceptions import Forbidden, NotFound, Unauthorized

    if images is None:
        bucket, prefix = _named_location(labels, source)
        first = next(image.uri for image in labels.images.values() if image.uri)
        where, scan, relative_to = (f"{source} names gs:// images ({first}), read where they are; for a local copy "
                                    "pass --images DIR or --download-to DIR"), False, ""
    elif images.startswith("gs://"):
        bucket, prefix = split_uri(images)
        where, scan, relative_to = f"--images {images}", True, f"{prefix}/" if prefix else ""
    else:
        raise UsageError(f"--images {images}: a folder, or gs://BUCKET/PREFIX")
    try:
        storage = client()
    except UsageError as err:
        raise UsageError(f"{where}: {err}") from None
    try:
        objects = {blob.name.removeprefix(relative_to): (blob.size, blob.generation or 0)
                   for blob in storage.list_blobs(bucket, prefix=f"{prefix}/" if prefix else None)
                   if not blob.name.endswith("/")}  # "folder" placeholders some tools create
    except NotFound:
        raise UsageError(f"{where}: bucket gs://{bucket} does not exist") from None
    except (Forbidden, Unauthorized) as err:
        raise UsageError(f"{where}: no access to list gs://{bucket}/{prefix}: {err.message}; listing needs "
                         "storage.objects.list on the bucket") from None
    return ObjectTree(f"gs://{bucket}/{relative_to}".rstrip("/"), objects, scan)


def _named_location(labels: Labels, source: str) -> tuple[str, str]:
    """The bucket of the gs:// URIs the labels name, and their common folder (what is listed)."""
    buckets = sorted({split_uri(image.uri)[0] for image in labels.images.values() if image.uri})
    if not buckets:
        raise UsageError(f"pass --images DIR (or gs://BUCKET/PREFIX), the folder the image names in {source} are "
                         "relative to")
    if len(buckets) > 1:
        raise UsageError(f"{source} names images in {len(buckets)} buckets ({', '.join(buckets[:3])}); they are "
                         "read from one: pass --download-to DIR to gather them in one folder")
    names = sorted(image.filename for image in labels.images.values())
    return buckets[0], os.path.commonprefix(names).rpartition("/")[0]


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
