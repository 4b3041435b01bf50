"""``prepare --out gs://…`` against gcp-storage-emulator (a real HTTP server started here), behind a small proxy
that injects failures: a dropped connection, and a corrupted body whose checksum the server cannot see."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from gcp_storage_emulator.server import create_server

from jobs.dataset import gcs
from jobs.dataset.prepare import PrepareOptions, prepare

BUCKET = "bucket"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FaultyProxy:
    """Forwards to the emulator; ``faults[object name] = [fault, ...]`` applies one fault per upload of it.

    ``drop``: read the upload, close the connection without an answer. ``corrupt``: flip a byte of the content and
    remove the client's crc32c from the metadata, so the server stores bad bytes and only a check after the upload
    can tell. ``uploads`` counts upload requests per object.
    """

    def __init__(self, upstream: int):
        self.faults: dict[str, list[str]] = {}
        self.uploads: dict[str, int] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                name = proxy._object(body) if self.command == "POST" and "/upload/" in self.path else None
                if name is not None:
                    proxy.uploads[name] = proxy.uploads.get(name, 0) + 1
                    fault = proxy.faults.get(name, []).pop(0) if proxy.faults.get(name) else None
                    if fault == "drop":
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if fault == "corrupt":
                        body = re.sub(rb',?\s*"crc32c":\s*"[^"]*"', b"", body)
                        end = body.rindex(b"\r\n--")
                        body = body[:end - 1] + bytes([body[end - 1] ^ 0xFF]) + body[end:]
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}}
                upstream_connection = http.client.HTTPConnection("127.0.0.1", upstream, timeout=30)
                upstream_connection.request(self.command, self.path, body=body, headers=headers)
                response = upstream_connection.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in {"content-length", "transfer-encoding", "connection"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                upstream_connection.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", _free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def _object(body: bytes) -> str | None:
        match = re.search(rb'"name":\s*"([^"]+)"', body)
        return match.group(1).decode() if match else None


@pytest.fixture
def storage(monkeypatch):
    emulator_port = _free_port()
    emulator = create_server("127.0.0.1", emulator_port, in_memory=True, default_bucket=BUCKET)
    emulator.start()
    proxy = FaultyProxy(emulator_port)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setattr(gcs, "BACKOFF_S", 0.01)
    from google.cloud.storage import Client

    yield proxy, Client()
    proxy.server.shutdown()
    emulator.stop()


def _objects(client, prefix: str) -> dict[str, bytes]:
    return {b.name.removeprefix(prefix + "/"): b.download_as_bytes() for b in client.list_blobs(BUCKET, prefix=prefix)}


def _local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_upload_retries_a_dropped_connection_and_a_corrupted_body(synthetic, storage, tmp_path):
    proxy, client = storage
    proxy.faults = {"data/label_map.pbtxt": ["drop"], "data/train_coco.json": ["corrupt"]}
    options = PrepareOptions(synthetic.labels_csv, synthetic.images_dir, f"gs://{BUCKET}/data", stats=False)
    result = prepare(options)
    assert proxy.uploads["data/label_map.pbtxt"] == 2 and proxy.uploads["data/train_coco.json"] == 2
    assert proxy.uploads["data/dataset.json"] == 1
    local = prepare(PrepareOptions(synthetic.labels_csv, synthetic.images_dir, tmp_path / "local", stats=False))
    stored = _objects(client, "data")
    expected = _local_files(tmp_path / "local")
    assert stored.keys() == expected.keys()
    for name in expected.keys() - {"dataset.json"}:  # dataset.json differs only in its creation time
        assert stored[name] == expected[name], name
    assert json.loads(stored["dataset.json"])["content_hash"] == local.summary["content_hash"]
    assert result.summary["content_hash"] == local.summary["content_hash"]
    again = prepare(options)
    assert again.unchanged and proxy.uploads["data/dataset.json"] == 1


def test_a_failed_upload_leaves_nothing_that_reads_as_a_dataset(synthetic, storage):
    proxy, client = storage
    proxy.faults = {"data/train_coco.json": ["drop"] * gcs.ATTEMPTS}
    with pytest.raises(gcs.UploadFailed, match=r"data/train_coco.json: .*\(5 attempts\).*dataset.json was not"):
        prepare(PrepareOptions(synthetic.labels_csv, synthetic.images_dir, f"gs://{BUCKET}/data", stats=False))
    assert _objects(client, "data") == {}


def test_a_new_upload_replaces_the_old_dataset_and_its_stale_shards(synthetic, storage):
    _, client = storage
    out = f"gs://{BUCKET}/data"
    prepare(PrepareOptions(synthetic.labels_csv, synthetic.images_dir, out, num_shards=3, stats=False))
    assert sum(1 for name in _objects(client, "data") if name.startswith("train-")) == 3
    prepare(PrepareOptions(synthetic.labels_csv, synthetic.images_dir, out, num_shards=2, stats=False))
    stored = _objects(client, "data")
    assert sorted(n for n in stored if n.endswith(".tfrecord")) == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord", "val-00000-of-00002.tfrecord",
        "val-00001-of-00002.tfrecord"]
    assert json.loads(stored["dataset.json"])["splits"]["train"]["shards"][0]["file"] == "train-00000-of-00002.tfrecord"
