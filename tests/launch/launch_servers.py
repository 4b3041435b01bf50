"""Local stand-ins for the Google services a launch talks to, driven through the real client libraries.

- ``VertexServer``: the v1 REST paths of Vertex AI custom jobs (create, get, list, cancel); records requests.
- ``RegistryServer``: Docker Registry v2 manifest HEADs, answering for the tags it holds.
- ``CloudBuildServer``: Cloud Build's v1 REST builds (create returns a finished operation; a build "pushes"
  its image tag into the registry).
- gcp-storage-emulator for Cloud Storage (a real HTTP server).
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Server:
    """A threaded HTTP server calling ``self.handle(method, path, body) -> (status, dict, headers)``."""

    def __init__(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload, headers = owner.handle(self.command, self.path, body)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_HEAD = do_DELETE = do_PATCH = _serve

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle(self, method: str, path: str, body: bytes):
        raise NotImplementedError


class VertexServer(_Server):
    def __init__(self):
        self.jobs: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self._ids = itertools.count(1000)
        super().__init__()

    def created(self) -> list[dict]:
        return [body for method, path, body in self.requests if method == "POST" and path.endswith("/customJobs")]

    def set_state(self, name: str, state: str) -> None:
        self.jobs[name]["state"] = state

    def handle(self, method, path, body):
        path = urlparse(path).path.removeprefix("/v1/")
        payload = json.loads(body) if body else {}
        self.requests.append((method, path, payload))
        if method == "POST" and path.endswith("/customJobs"):
            name = f"{path}/{next(self._ids)}"
            job = dict(payload, name=name, state="JOB_STATE_PENDING", createTime="2026-11-26T12:00:00Z")
            self.jobs[name] = job
            return 200, job, {}
        if method == "POST" and path.endswith(":cancel"):
            name = path.removesuffix(":cancel")
            self.jobs[name]["state"] = "JOB_STATE_CANCELLING"
            return 200, {}, {}
        if method == "GET" and path in self.jobs:
            return 200, self.jobs[path], {}
        if method == "GET" and path.endswith("/customJobs"):
            return 200, {"customJobs": list(self.jobs.values())}, {}
        return 404, {"error": {"code": 404, "message": f"{path} not found", "status": "NOT_FOUND"}}, {}


class RegistryServer(_Server):
    def __init__(self):
        self.tags: set[str] = set()  # "PATH:TAG" below the host
        self.heads = 0
        super().__init__()

    def handle(self, method, path, body):
        self.heads += method == "HEAD"
        repository, _, tag = path.removeprefix("/v2/").partition("/manifests/")
        if f"{repository}:{tag}" in self.tags:
            return 200, None, {"Docker-Content-Digest": f"sha256:{abs(hash((repository, tag))):064x}"[:71]}
        return 404, None, {}

    def push(self, image_ref: str) -> None:
        self.tags.add(image_ref.split("/", 1)[1])


class CloudBuildServer(_Server):
    def __init__(self, registry: RegistryServer):
        self.registry = registry
        self.builds: dict[str, dict] = {}
        self._ids = itertools.count(1)
        super().__init__()

    def handle(self, method, path, body):
        path = urlparse(path).path
        if method == "POST" and path.endswith("/builds"):
            build = json.loads(body)
            build_id = f"build-{next(self._ids)}"
            build.update(id=build_id, status="SUCCESS", logUrl=f"https://console/{build_id}")
            self.builds[build_id] = build
            for image in build.get("images", []):
                self.registry.push(image)
            metadata = {"@type": "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata",
                        "build": build}
            return 200, {"name": f"operations/{build_id}", "metadata": metadata, "done": False}, {}
        build_id = path.rsplit("/", 1)[-1]
        if method == "GET" and build_id in self.builds:
            return 200, self.builds[build_id], {}
        return 404, {"error": {"code": 404, "message": "not found"}}, {}


@pytest.fixture
def storage_emulator(monkeypatch):
    """A gcp-storage-emulator server and a google-cloud-storage client talking to it."""
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    try:
        yield storage.Client(project="test", credentials=AnonymousCredentials())
    finally:
        server.stop()


@pytest.fixture
def vertex_server():
    server = VertexServer()
    yield server
    server.close()


@pytest.fixture
def registry_server():
    server = RegistryServer()
    yield server
    server.close()


@pytest.fixture
def build_server(registry_server):
    server = CloudBuildServer(registry_server)
    yield server
    server.close()
