"""gcp-storage-emulator (a real HTTP server, in memory) behind a proxy that can inject failures, for the GCS tests.

``emulated_storage`` starts both and points STORAGE_EMULATOR_HOST at the proxy.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from gcp_storage_emulator.server import create_server
from json_server import free_port

from jobs.dataset import gcs

BUCKET = "bucket"


class FaultyProxy:
    """Forwards to the emulator; ``faults[object name] = [fault, ...]`` applies one fault per upload of it.

    ``drop``: read the upload, close the connection without an answer. ``corrupt``: flip a byte of the content and
    remove the client's crc32c from the metadata, so the server stores bad bytes and only a check after the upload
    can tell. ``uploads`` and ``downloads`` count the requests per object.
    """

    def __init__(self, upstream: int):
        self.faults: dict[str, list[str]] = {}
        self.forbidden: set[str] = set()  # objects whose downloads are answered 403, as without storage.objects.get
        self.forbidden_policies: set[str] = set()  # buckets whose IAM policy reads are answered 403
        self.projects: dict[str, str] = {}  # bucket -> the project number its metadata reports (one project else)
        self.uploads: dict[str, int] = {}
        self.downloads: dict[str, int] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "GET" and "alt=media" in self.path:
                    name = unquote(self.path.split("/o/", 1)[1].split("?", 1)[0])
                    proxy.downloads[name] = proxy.downloads.get(name, 0) + 1
                    if name in proxy.forbidden:
                        self._deny("storage.objects.get")
                        return
                policy = re.match(r".*/b/([^/?]+)/iam(\?|$)", self.path)
                if self.command == "GET" and policy and policy.group(1) in proxy.forbidden_policies:
                    self._deny("storage.buckets.getIamPolicy")
                    return
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
                bucket = re.match(r".*/storage/v1/b/([^/?]+)(\?|$)", self.path)
                if self.command == "GET" and bucket and bucket.group(1) in proxy.projects:
                    data = re.sub(rb'"projectNumber": "\d+"', b'"projectNumber": "%s"'
                                  % proxy.projects[bucket.group(1)].encode(), data)
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in {"content-length", "transfer-encoding", "connection"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                upstream_connection.close()

            def _deny(self, permission: str) -> None:
                answer = b'{"error": {"code": 403, "message": "caller does not have %s"}}' % permission.encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def _object(body: bytes) -> str | None:
        match = re.search(rb'"name":\s*"([^"]+)"', body)
        return match.group(1).decode() if match else None


@contextmanager
def emulated_storage(monkeypatch) -> Iterator[tuple[FaultyProxy, object]]:
    """An in-memory emulator with the bucket BUCKET, behind a FaultyProxy; yields (proxy, storage client)."""
    emulator_port = free_port()
    emulator = create_server("127.0.0.1", emulator_port, in_memory=True, default_bucket=BUCKET)
    emulator.start()
    proxy = FaultyProxy(emulator_port)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setattr(gcs, "BACKOFF_S", 0.01)
    from google.cloud.storage import Client

    try:
        yield proxy, Client()
    finally:
        proxy.server.shutdown()
        emulator.stop()
