"""A prepared dataset uploaded to ``gs://bucket/prefix``: retried, checksum-verified, ``dataset.json`` last. Files a
Dataflow job wrote in Cloud Storage are copied there server-side (checked by CRC32C too), never downloaded.

``dataset.json`` is the commit marker: a reader that finds it finds a complete dataset. An upload therefore first
deletes the old marker, uploads every other file (each retried with exponential backoff on any error, and compared
by CRC32C with the local file after the upload), deletes the old dataset's shards and charts that the new one does
not have, and uploads the new marker last. If a file still fails, the files of this upload are deleted again and
nothing claims to be a dataset there. ``STORAGE_EMULATOR_HOST`` points the client at an emulator (tests).
"""

from __future__ import annotations

import base64
import contextlib
import json
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import google_crc32c

from jobs.dataset.parallel import Progress
from jobs.errors import DetectorError, UsageError
from jobs.io import OUTPUT_MARKER, OutputRefused, is_marker

if TYPE_CHECKING:
    from google.cloud.storage import Bucket, Client  # untyped (no py.typed): names for the reader, Any to mypy

ATTEMPTS = 5
BACKOFF_S = 1.0  # doubled after each failed attempt: 1, 2, 4, 8 s


class UploadFailed(DetectorError):
    """An output file could not be stored intact in GCS."""


def split_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> (``bucket``, ``a/b``)."""
    bucket, _, prefix = uri.removeprefix("gs://").partition("/")
    return bucket, prefix.strip("/")


def client() -> Client:
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud.storage import Client  # not `from google.cloud import storage`: mypy's namespace bug

    try:
        return Client()
    except DefaultCredentialsError as err:
        raise UsageError(f"no Google Cloud credentials for gs:// ({err}); run `gcloud auth "
                         "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS") from None


def _name(prefix: str, relative: str) -> str:
    return f"{prefix}/{relative}" if prefix else relative


def read_text(uri: str) -> str | None:
    """The object's text, or None when it does not exist."""
    from google.api_core.exceptions import Forbidden, NotFound, Unauthorized

    bucket, name = split_uri(uri)
    try:
        text: str = client().bucket(bucket).blob(name).download_as_text()
    except NotFound:
        return None
    except (Forbidden, Unauthorized) as err:
        raise UsageError(f"no access to {uri}: {err.message}; check the bucket name and your permissions") from None
    return text


def write_object(uri: str, data: bytes) -> None:
    """One object, replaced in a single step: Cloud Storage serves the previous object until the upload of the
    new one succeeds, and the new one from then on ("Cloud Storage consistency": strongly consistent
    read-after-write, for new and replaced objects alike). The upload is checked with CRC32C."""
    bucket, name = split_uri(uri)
    client().bucket(bucket).blob(name).upload_from_string(data, checksum="crc32c")


def check_prefix(uri: str, kind: str) -> None:
    """Exit 2 unless ``uri`` holds no object yet or is an output of this tool of ``kind`` (its marker object)."""
    bucket, prefix = split_uri(uri)
    marker = read_text(f"gs://{bucket}/{_name(prefix, OUTPUT_MARKER)}")
    if marker is not None and is_marker(marker, kind):
        return
    if any(client().list_blobs(bucket, prefix=f"{prefix}/" if prefix else "", max_results=1)):
        raise OutputRefused(f"--out {uri} holds objects that this tool did not write; it is replaced only when it "
                            f"is empty or a previous {kind} output: choose a new prefix")


def crc32c_base64(path: Path) -> str:
    """CRC32C as GCS reports it: base64 of the big-endian 32-bit value."""
    value = 0
    with path.open("rb") as stream:
        while chunk := stream.read(8 << 20):
            value = google_crc32c.extend(value, chunk)
    return base64.b64encode(struct.pack(">I", value)).decode()


def upload_file(bucket: Bucket, local: Path, name: str) -> int:
    """Upload and verify one file; returns the attempts it took. UploadFailed after ATTEMPTS."""
    expected = crc32c_base64(local)

    def once() -> str | None:
        blob = bucket.blob(name)
        blob.upload_from_filename(str(local), checksum="crc32c", retry=None)  # retried here, with the checksum
        return None if blob.crc32c == expected else f"stored crc32c {blob.crc32c} differs from the local {expected}"

    return _retried(once, f"gs://{bucket.name}/{name}")


def copy_object(source: str, bucket: Bucket, name: str) -> int:
    """Copy one object within Cloud Storage (nothing passes through this machine) and check the copy's CRC32C
    against the source's; returns the attempts it took. UploadFailed after ATTEMPTS. It is a rewrite, called until
    done: the JSON API's objects.rewrite copies between any locations and storage classes, where objects.copy may
    time out (Cloud Storage's maintainers, googleapis/google-cloud-node#1663; "Objects: rewrite" reference)."""
    source_bucket, source_name = split_uri(source)

    def once() -> str | None:
        original = bucket.client.bucket(source_bucket).get_blob(source_name)
        if original is None:
            raise UploadFailed(f"{source} does not exist")
        copy = bucket.blob(name)
        token, _, _ = copy.rewrite(original, retry=None)  # retried here
        while token is not None:
            token, _, _ = copy.rewrite(original, token=token, retry=None)
        return None if copy.crc32c == original.crc32c else (
            f"the copy's crc32c {copy.crc32c} differs from the source's {original.crc32c}")

    return _retried(once, f"gs://{bucket.name}/{name} from {source}")


def _retried(once: Callable[[], str | None], what: str) -> int:
    """Call ``once`` until it returns None (done and verified), at most ATTEMPTS times with exponential backoff;
    it returns, or raises, what went wrong. Returns the attempts it took; UploadFailed after the last."""
    from google.api_core.exceptions import GoogleAPIError
    from google.resumable_media.common import DataCorruption, InvalidResponse
    from requests.exceptions import RequestException

    problem: str | None = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            problem = once()
            if problem is None:
                return attempt
        except (GoogleAPIError, DataCorruption, InvalidResponse, RequestException, ConnectionError) as err:
            problem = f"{type(err).__name__}: {err}"
        if attempt < ATTEMPTS:
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
    raise UploadFailed(f"{what}: {problem} ({ATTEMPTS} attempts)")


def upload_dataset(local: Path, uri: str, marker: str, progress: Progress | None = None,
                   copies: dict[str, str] | None = None) -> None:
    """Upload every file below ``local`` to ``uri``, and copy the objects of ``copies`` (name in the dataset ->
    URI) there within Cloud Storage, ``marker`` last (see the module doc)."""
    bucket_name, prefix = split_uri(uri)
    bucket = client().bucket(bucket_name)
    old = _delete_marker(bucket, _name(prefix, marker))
    copies = copies or {}
    files = sorted([p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()] + list(copies))
    files = [f for f in files if f != marker] + [marker]
    uploaded: list[str] = []
    try:
        for index, relative in enumerate(files, start=1):
            if relative == marker:
                for stale in sorted(old - set(files)):
                    bucket.blob(_name(prefix, stale)).delete()
            if relative in copies:
                copy_object(copies[relative], bucket, _name(prefix, relative))
            else:
                upload_file(bucket, local / relative, _name(prefix, relative))
            uploaded.append(relative)
            if progress:
                progress("upload", index, len(files))
    except UploadFailed as err:
        # the output marker stays: the prefix holds what this tool wrote, so a rerun may replace it
        _delete(bucket, [_name(prefix, relative) for relative in uploaded if relative != OUTPUT_MARKER])
        raise UploadFailed(f"upload to {uri} failed, {err}; the files of this upload were removed and "
                           f"{marker} was not written, so nothing there reads as a dataset: rerun prepare") from None


def delete_prefix(uri: str) -> None:
    """Every object below ``uri`` (a folder of this tool's own), best effort."""
    from google.api_core.exceptions import GoogleAPIError
    from requests.exceptions import RequestException

    bucket_name, prefix = split_uri(uri)
    with contextlib.suppress(GoogleAPIError, RequestException, UsageError):
        bucket = client().bucket(bucket_name)
        _delete(bucket, [blob.name for blob in bucket.list_blobs(prefix=f"{prefix}/")])


def _delete(bucket: Bucket, names: list[str]) -> None:
    """Best effort: the caller is already reporting a failure."""
    from google.api_core.exceptions import GoogleAPIError
    from requests.exceptions import RequestException

    for name in names:
        with contextlib.suppress(GoogleAPIError, RequestException):
            bucket.blob(name).delete()


def _delete_marker(bucket: Bucket, name: str) -> set[str]:
    """Delete the old marker; returns the shard and chart files that the old dataset listed."""
    from google.api_core.exceptions import NotFound

    blob = bucket.blob(name)
    try:
        summary = json.loads(blob.download_as_text())
    except NotFound:
        return set()
    except ValueError:
        summary = {}
    blob.delete()
    listed = set(summary.get("stats", []))
    for split in summary.get("splits", {}).values():
        listed.update(shard["file"] for shard in split.get("shards", []))
    return listed
