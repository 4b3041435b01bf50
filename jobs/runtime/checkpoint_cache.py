"""Pretrained checkpoints fetched once into a local cache (``~/.cache/detector/checkpoints``, or ``$DETECTOR_CACHE``).

``gs://`` objects come through google-cloud-storage: anonymously first (Model Garden's buckets are public), then
with the application-default credentials where the object is not public; the client honours
``STORAGE_EMULATOR_HOST`` (``tf.io.gfile`` does not). ``http(s)://`` archives come through urllib. Every download is
checked against the size and the checksums the server publishes (the object's crc32c and md5 in its metadata;
``x-goog-hash`` over HTTPS), a ``.tar.gz`` is unpacked only if no member can land outside its folder, and a
checkpoint appears in the cache under its final name only once complete (a temporary folder, then a rename).
No TensorFlow here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import struct
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

import google_crc32c

from jobs.errors import DetectorError, UsageError

CACHE_ENV = "DETECTOR_CACHE"
ARCHIVES = (".tar.gz", ".tgz")
SOURCE_FILE = "source.json"  # what a cached checkpoint was fetched from, and its checksums
OPT_OUT = "--init-checkpoint none"
CHUNK = 1 << 20
TIMEOUT_S = 60.0


class CheckpointUnavailable(DetectorError):
    """An initial checkpoint could not be fetched, verified or unpacked: training does not start from scratch
    silently."""


def cache_dir() -> Path:
    """Where fetched checkpoints are kept: ``$DETECTOR_CACHE`` or ``~/.cache/detector/checkpoints``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "detector" / "checkpoints"


def is_remote(uri: str) -> bool:
    return uri.startswith(("gs://", "http://", "https://"))


def is_archive(uri: str) -> bool:
    return uri.endswith(ARCHIVES)


def cached_folder(uri: str, cache: Path | None = None) -> Path:
    """The cache folder of ``uri``: readable (bucket or host, then the object's name) and unique (a digest)."""
    parsed = urlparse(uri)
    name = parsed.path.rstrip("/").rsplit("/", 1)[-1]
    for suffix in ARCHIVES:
        name = name.removesuffix(suffix)
    digest = hashlib.sha256(uri.encode()).hexdigest()[:12]
    return (cache or cache_dir()) / _safe(parsed.netloc) / f"{_safe(name) or 'checkpoint'}-{digest}"


def fetch(uri: str, cache: Path | None = None, quiet: bool = False) -> Path:
    """The local folder holding the checkpoint of ``uri`` (gs:// or http(s)://): the cached one when it is there
    (nothing is downloaded), else downloaded, verified and (for an archive) unpacked into the cache first."""
    if not is_remote(uri):
        raise UsageError(f"{uri} is not a gs:// or http(s):// address")
    folder = cached_folder(uri, cache)
    if folder.is_dir():
        return folder
    if uri.startswith("gs://"):
        source: _Source = _GcsSource(uri)
    elif is_archive(uri):
        source = _HttpSource(uri)
    else:
        raise UsageError(f"--init-checkpoint {uri}: an http(s):// checkpoint must be a .tar.gz archive (a gs:// "
                         "checkpoint may also be a prefix or a folder)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _staging(folder.parent) as stage:
        download, unpacked = stage / "download", stage / "checkpoint"
        download.mkdir()
        files = source.download(download, quiet)
        if is_archive(uri):
            unpacked.mkdir()
            extract_archive(download / files[0]["name"], unpacked, uri)
        else:
            download.rename(unpacked)
        (unpacked / SOURCE_FILE).write_text(json.dumps({"uri": uri, "files": files}, indent=2) + "\n")
        try:
            unpacked.rename(folder)
        except OSError:  # another process published the same checkpoint meanwhile: keep theirs
            if not folder.is_dir():
                raise
    return folder


@contextmanager
def _staging(parent: Path) -> Iterator[Path]:
    """A temporary folder beside the cached ones (the final rename stays on one file system), removed whatever
    happens: a failed fetch leaves nothing behind."""
    stage = Path(tempfile.mkdtemp(prefix=".partial-", dir=parent))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def extract_archive(archive: Path, into: Path, uri: str) -> None:
    """Unpack ``archive`` into the folder ``into``, refusing the whole archive when any member could land outside
    it (an absolute name, ``..``, a link pointing out, a device): checked before unpacking, unpacked with
    tarfile's ``data`` filter, and checked again on disk."""
    root = into.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                _check_member(member, root, uri)
            tar.extractall(root, filter="data")
    except tarfile.FilterError as err:
        raise CheckpointUnavailable(f"{uri}: refused the archive, {err}") from None
    except (tarfile.TarError, EOFError, OSError) as err:
        raise CheckpointUnavailable(f"{uri}: not a readable .tar.gz archive ({err})") from None
    for path in root.rglob("*"):
        if path.is_symlink() or not path.resolve().is_relative_to(root):
            raise CheckpointUnavailable(f"{uri}: refused the archive, {path.relative_to(root)} points outside "
                                        "its folder")


def _check_member(member: tarfile.TarInfo, root: Path, uri: str) -> None:
    def refuse(why: str) -> CheckpointUnavailable:
        return CheckpointUnavailable(f"{uri}: refused the archive, its member {member.name!r} {why}")

    target = (root / member.name).resolve()
    if os.path.isabs(member.name) or ".." in Path(member.name).parts or not target.is_relative_to(root):
        raise refuse("would be written outside the cache folder")
    if member.issym() or member.islnk():
        base = root if member.islnk() else target.parent
        if os.path.isabs(member.linkname) or not (base / member.linkname).resolve().is_relative_to(root):
            raise refuse(f"links outside the cache folder ({member.linkname})")
    elif not (member.isfile() or member.isdir()):
        raise refuse("is not a file or a folder")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")


# --- sources ---------------------------------------------------------------------------------------------------


class _Source:
    uri: str

    def download(self, folder: Path, quiet: bool) -> list[dict[str, Any]]:
        """Download every file of the checkpoint into ``folder``; returns their names, sizes and checksums."""
        raise NotImplementedError

    def unavailable(self, reason: str, tried: str) -> CheckpointUnavailable:
        return CheckpointUnavailable(f"cannot fetch the initial checkpoint {self.uri}: {reason} (tried {tried}); "
                                     "check the address and the network, give a local copy with "
                                     f"--init-checkpoint PATH, or train from scratch with {OPT_OUT}")


class _Verifier:
    """Counts, hashes (crc32c and md5) and reports the bytes written through it."""

    def __init__(self, stream: IO[bytes], advance: Callable[[int], None]):
        self.stream, self.advance = stream, advance
        self.size, self.crc32c, self.md5 = 0, 0, hashlib.md5(usedforsecurity=False)

    def write(self, data: bytes) -> int:
        self.stream.write(data)
        self.size += len(data)
        self.crc32c = google_crc32c.extend(self.crc32c, data)
        self.md5.update(data)
        self.advance(len(data))
        return len(data)

    def check(self, source: _Source, name: str, size: int | None, crc32c: str | None,
              md5: str | None) -> dict[str, Any]:
        """The file's record, after comparing it with what the server published (base64 digests, GCS's form)."""
        found = {"crc32c": base64.b64encode(struct.pack(">I", self.crc32c)).decode(),
                 "md5": base64.b64encode(self.md5.digest()).decode()}
        if size is not None and self.size != size:
            raise CheckpointUnavailable(f"{source.uri}: {name} arrived with {self.size} bytes, the server announced "
                                        f"{size}; run again to fetch it anew")
        for kind, expected in (("crc32c", crc32c), ("md5", md5)):
            if expected and found[kind] != expected:
                raise CheckpointUnavailable(f"{source.uri}: the {kind} of {name} is {found[kind]}, the server's "
                                            f"is {expected}: a corrupted download; run again to fetch it anew")
        if not (crc32c or md5):
            found["unverified"] = "the server published no checksum"
        return {"name": name, "size": self.size, **found}


@contextmanager
def _progress(files: list[tuple[str, int | None]], quiet: bool) -> Iterator[Callable[[str], Callable[[int], None]]]:
    """A rich progress bar on stderr, one task per file; yields ``start(name) -> advance(bytes)``."""
    if quiet:
        yield lambda _name: lambda _done: None
        return
    from rich import progress
    from rich.console import Console

    sizes = dict(files)
    with progress.Progress(progress.TextColumn("{task.description}"), progress.BarColumn(), progress.DownloadColumn(),
                           progress.TransferSpeedColumn(), progress.TimeRemainingColumn(),
                           console=Console(stderr=True)) as bar:
        def start(name: str) -> Callable[[int], None]:
            task = bar.add_task(f"fetching {name}", total=sizes.get(name))
            return lambda done: bar.advance(task, done)

        yield start


class _GcsSource(_Source):
    """A gs:// object: an archive, a checkpoint prefix (``…/ckpt-28080``: its ``.index`` and data files) or a
    folder (``…/`` : every object under it)."""

    def __init__(self, uri: str):
        self.uri = uri
        self.bucket, _, self.name = uri.removeprefix("gs://").partition("/")
        self.tried = ["anonymous read"]

    def download(self, folder: Path, quiet: bool) -> list[dict[str, Any]]:
        from google.api_core import exceptions

        try:
            client = self._client(anonymous=True)
            try:
                blobs = self._blobs(client)
            except (exceptions.Forbidden, exceptions.Unauthorized):
                client = self._client(anonymous=False)
                blobs = self._blobs(client)
            if not blobs:
                raise self.unavailable("no such object", self._tried())
            with _progress([(name, blob.size) for name, blob in blobs], quiet) as start:
                return [self._download(blob, name, folder, start(name)) for name, blob in blobs]
        except exceptions.NotFound:
            raise self.unavailable("no such bucket or object", self._tried()) from None
        except (exceptions.Forbidden, exceptions.Unauthorized) as err:
            raise self.unavailable(f"access denied ({_first_line(err)})", self._tried()) from None
        except exceptions.GoogleAPIError as err:
            raise self.unavailable(_first_line(err), self._tried()) from None
        except Exception as err:  # requests' and google.auth's transport errors: offline, DNS, refused
            if not _is_transport_error(err):
                raise
            raise self.unavailable(f"cannot reach {self._endpoint()} ({_network_reason(err)})",
                                   self._tried()) from None

    def _client(self, anonymous: bool) -> Any:
        from google.cloud.storage import Client  # not `from google.cloud import storage`: mypy's namespace bug

        if anonymous:
            return Client.create_anonymous_client()
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            credentials, project = google.auth.default()
        except DefaultCredentialsError:
            raise self.unavailable("the object is not public and there are no application-default credentials",
                                   self._tried()) from None
        self.tried.append("application-default credentials")
        return Client(project=project, credentials=credentials)

    def _blobs(self, client: Any) -> list[tuple[str, Any]]:
        """The objects to download with their names in the cache folder: the archive, the prefix's files or the
        folder's objects."""
        bucket = client.bucket(self.bucket)
        if is_archive(self.name):
            blob = bucket.get_blob(self.name, retry=_metadata_retry(), timeout=TIMEOUT_S)
            return [(os.path.basename(self.name), blob)] if blob is not None else []
        prefix = self.name.rstrip("/")
        found = []
        for blob in client.list_blobs(bucket, prefix=prefix, retry=_metadata_retry(), timeout=TIMEOUT_S):
            rest = blob.name[len(prefix):]
            if rest.startswith(".") and "/" not in rest:  # the files of a checkpoint prefix
                found.append((os.path.basename(blob.name), blob))
            elif rest.startswith("/") and not blob.name.endswith("/"):  # the objects of a folder
                found.append((rest.lstrip("/"), blob))
        if any(".." in Path(name).parts for name, _ in found):
            raise self.unavailable("an object name holds '..'", self._tried())
        return found

    def _download(self, blob: Any, name: str, folder: Path, advance: Callable[[int], None]) -> dict[str, Any]:
        from google.cloud.storage.retry import DEFAULT_RETRY

        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as stream:
            verifier = _Verifier(stream, advance)
            # raw: the stored bytes, which the object's checksums describe (no decompressive transcoding)
            blob.download_to_file(verifier, raw_download=True, checksum=None, retry=DEFAULT_RETRY,
                                  timeout=TIMEOUT_S)
        return verifier.check(self, name, blob.size, blob.crc32c, blob.md5_hash)

    def _endpoint(self) -> str:
        return os.environ.get("STORAGE_EMULATOR_HOST") or "storage.googleapis.com"

    def _tried(self) -> str:
        return " then ".join(self.tried) + f" of gs://{self.bucket} through {self._endpoint()}"


class _HttpSource(_Source):
    """An http(s):// archive; checked against its Content-Length and the ``x-goog-hash`` header that Cloud
    Storage's public URLs send (crc32c and md5), where the server sends them."""

    def __init__(self, uri: str):
        self.uri = uri

    def download(self, folder: Path, quiet: bool) -> list[dict[str, Any]]:
        name = os.path.basename(urlparse(self.uri).path)
        try:
            with urllib.request.urlopen(self.uri, timeout=TIMEOUT_S) as response:
                length = response.headers.get("Content-Length")
                size = int(length) if length and not response.headers.get("Content-Encoding") else None
                hashes = dict(part.strip().split("=", 1) for part in response.headers.get_all("x-goog-hash", [])
                              for part in part.split(",") if "=" in part)
                with _progress([(name, size)], quiet) as start, open(folder / name, "wb") as stream:
                    verifier = _Verifier(stream, start(name))
                    while chunk := response.read(CHUNK):
                        verifier.write(chunk)
        except urllib.error.HTTPError as err:
            raise self.unavailable(f"HTTP {err.code} {err.reason}", "urllib") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise self.unavailable(f"cannot reach {urlparse(self.uri).netloc} ({reason})", "urllib") from None
        return [verifier.check(self, name, size, hashes.get("crc32c"), hashes.get("md5"))]


def _is_transport_error(err: Exception) -> bool:
    import requests
    from google.auth.exceptions import TransportError

    return isinstance(err, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, TransportError))


def _network_reason(err: BaseException) -> str:
    """The operating system's words from deep inside a transport error ("Connection refused", "Temporary failure in
    name resolution"), else the error's type."""
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(err))
    return match.group(1).strip() if match else type(err).__name__


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _server_error(err: Exception) -> bool:
    """Retried: the server's passing refusals (429, 5xx). Not retried: an unreachable server (offline fails at
    once, with a message, rather than after minutes of retries)."""
    from google.api_core import exceptions

    return isinstance(err, (exceptions.TooManyRequests, exceptions.InternalServerError, exceptions.BadGateway,
                            exceptions.ServiceUnavailable, exceptions.GatewayTimeout))


def _metadata_retry() -> Any:
    from google.api_core.retry import Retry

    return Retry(predicate=_server_error, initial=1.0, maximum=10.0, timeout=60.0)

