"""Pretrained checkpoints through the cache: served by gcp-storage-emulator (a real HTTP server) or a loopback HTTP
server, fetched once, verified, unpacked safely, reused, and restored into a preset's model."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from json_server import free_port

from jobs.runtime.checkpoint_cache import CheckpointUnavailable, cached_folder, fetch

BUCKET = "models"


class Storage:
    """gcp-storage-emulator on loopback, with STORAGE_EMULATOR_HOST pointing at it."""

    def __init__(self, monkeypatch):
        from gcp_storage_emulator.server import create_server

        self.port = free_port()
        self.server = create_server("127.0.0.1", self.port, in_memory=True, default_bucket=BUCKET)
        self.server.start()
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{self.port}")
        from google.cloud.storage import Client

        self.bucket = Client().bucket(BUCKET)

    def put(self, name: str, data: bytes) -> str:
        self.bucket.blob(name).upload_from_string(data)
        return f"gs://{BUCKET}/{name}"

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def storage(monkeypatch):
    served = Storage(monkeypatch)
    yield served
    served.stop()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("DETECTOR_CACHE", str(folder))
    return folder


def archive(members: dict[str, bytes], links: dict[str, tuple[bytes, str]] | None = None) -> bytes:
    """A .tar.gz of files, and of links (name -> (tar type, target))."""
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return stream.getvalue()


def leftovers(cache: Path) -> list[str]:
    return sorted(str(path.relative_to(cache)) for path in cache.rglob("*")) if cache.exists() else []


def test_an_archive_is_fetched_verified_unpacked_and_then_reused_without_the_network(storage, cache):
    uri = storage.put("vision/m.tar.gz", archive({"m/ckpt-7.index": b"i" * 10, "m/ckpt-7.data-00000-of-00001":
                                                  b"d" * 5000}))
    folder = fetch(uri, quiet=True)
    assert folder == cached_folder(uri) and folder.is_relative_to(cache)
    assert (folder / "m" / "ckpt-7.data-00000-of-00001").read_bytes() == b"d" * 5000
    record = json.loads((folder / "source.json").read_text())
    blob = storage.bucket.get_blob("vision/m.tar.gz")
    assert record["files"][0]["crc32c"] == blob.crc32c and record["files"][0]["md5"] == blob.md5_hash
    assert not [name for name in leftovers(cache) if ".partial-" in name]
    storage.stop()  # no server any more: a second fetch that tried the network would fail
    assert fetch(uri, quiet=True) == folder


def test_a_checkpoint_prefix_brings_its_index_and_data_files(storage, cache):
    storage.put("ckpts/ckpt-28080.index", b"index")
    storage.put("ckpts/ckpt-28080.data-00000-of-00001", b"data")
    storage.put("ckpts/ckpt-28080x.index", b"another checkpoint")
    folder = fetch(f"gs://{BUCKET}/ckpts/ckpt-28080", quiet=True)
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt-28080.data-00000-of-00001", "ckpt-28080.index",
                                                        "source.json"]


@pytest.mark.parametrize("hostile", [
    {"members": {"../escaped": b"x"}},
    {"members": {"/tmp/escaped-absolute": b"x"}},
    {"members": {"m/ckpt-1.index": b"i"}, "links": {"m/link": (tarfile.SYMTYPE, "../../../../etc/passwd")}},
    {"members": {"m/ckpt-1.index": b"i"}, "links": {"m/hard": (tarfile.LNKTYPE, "/etc/passwd")}},
    {"members": {"m/ckpt-1.index": b"i"}, "links": {"m/up": (tarfile.SYMTYPE, "/"), }},
], ids=["dotdot", "absolute", "symlink-out", "hardlink-out", "symlink-root"])
def test_a_hostile_archive_is_refused_whole_and_leaves_nothing(storage, cache, hostile):
    uri = storage.put("evil.tar.gz", archive(hostile["members"], hostile.get("links")))
    with pytest.raises(CheckpointUnavailable, match="refused the archive"):
        fetch(uri, quiet=True)
    assert [name for name in leftovers(cache) if not name.endswith(BUCKET) and name != BUCKET] == []
    assert not (cache.parent / "escaped").exists() and not Path("/tmp/escaped-absolute").exists()


def test_offline_is_one_line_that_says_what_was_tried_and_how_to_go_on(storage, cache):
    uri = storage.put("m.tar.gz", archive({"m/ckpt-1.index": b"i"}))
    storage.stop()
    with pytest.raises(CheckpointUnavailable) as raised:
        fetch(uri, quiet=True)
    message = str(raised.value)
    assert "\n" not in message and uri in message
    assert "cannot reach" in message and "anonymous read" in message and "--init-checkpoint none" in message
    assert leftovers(cache) == [] or all(".partial-" not in name for name in leftovers(cache))


def test_a_missing_object_says_so(storage, cache):
    with pytest.raises(CheckpointUnavailable, match=r"no such .*object.*--init-checkpoint none"):
        fetch(f"gs://{BUCKET}/nothing/here.tar.gz", quiet=True)
    with pytest.raises(CheckpointUnavailable, match="no such object"):
        fetch(f"gs://{BUCKET}/nothing/ckpt-1", quiet=True)


class ArchiveServer:
    """A loopback HTTP server for one archive, sending Cloud Storage's x-goog-hash header (or a wrong one)."""

    def __init__(self, data: bytes, md5: str | None = None):
        crc = __import__("google_crc32c").value(data).to_bytes(4, "big")
        digest = md5 or base64.b64encode(hashlib.md5(data).digest()).decode()
        header = f"crc32c={base64.b64encode(crc).decode()},md5={digest}"
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-goog-hash", header)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/ckpt.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_an_http_archive_is_verified_against_x_goog_hash(cache):
    data = archive({"m/ckpt-3.index": b"i"})
    good, bad = ArchiveServer(data), ArchiveServer(data, md5=base64.b64encode(b"0" * 16).decode())
    try:
        assert (fetch(good.url, quiet=True) / "m" / "ckpt-3.index").read_bytes() == b"i"
        assert fetch(good.url, quiet=True) and good.requests == 1
        with pytest.raises(CheckpointUnavailable, match="md5 .* corrupted download"):
            fetch(bad.url, quiet=True)
        assert not cached_folder(bad.url).exists()
    finally:
        good.close()
        bad.close()
