"""``serve`` over real HTTP with a real client (http.client): boxes, hostile input, limits, concurrency, CLI."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from serve_checks import assert_matches_predict, vertex_body

pytest_plugins = ["serve_fixtures"]

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PREDICT = "/v1/models/detector:predict"


@pytest.fixture(scope="module")
def model(export):
    from jobs.runtime.serve import Model

    return Model(str(export))


def start(model, **limits):
    """A server on a free loopback port, running in a thread; its port."""
    from jobs.runtime.serve import Limits, make_server, serve_config

    config = serve_config(model="unused: the model is given", port=0, host="127.0.0.1", limits=Limits(**limits),
                          environ={})
    server = make_server(config, model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def server(model):
    server = start(model)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, JSON answer) through a new connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_predict_gives_predicts_boxes_for_each_image_of_a_batch(server, images, expected):
    status, answer = request(server, "POST", PREDICT, vertex_body(images))
    assert status == 200, answer
    assert len(answer["predictions"]) == len(images)
    for prediction, path in zip(answer["predictions"], images, strict=True):
        assert_matches_predict(prediction, path, expected[path])


def test_the_named_input_form_and_health_and_model_status(server, images, expected):
    body = json.dumps({"instances": [{"image_bytes": {"b64": b64(images[2].read_bytes())}}]}).encode()
    status, answer = request(server, "POST", PREDICT, body)
    assert status == 200, answer
    assert_matches_predict(answer["predictions"][0], images[2], expected[images[2]])
    assert request(server, "GET", "/healthz") == (200, {"status": "ok", "model": "detector"})
    status, answer = request(server, "GET", "/v1/models/detector")
    assert status == 200 and answer["model_version_status"][0]["state"] == "AVAILABLE"
    assert request(server, "GET", "/elsewhere")[0] == 404


def _png(width: int, height: int) -> bytes:
    from PIL import Image

    stream = io.BytesIO()
    Image.new("1", (width, height)).save(stream, format="PNG")  # 1 bit per pixel: small to draw and to send
    return stream.getvalue()


def _hostile_bodies(images: list[Path]) -> dict[str, tuple[bytes, str]]:
    jpeg = images[0].read_bytes()
    one = lambda data: json.dumps({"instances": [{"b64": b64(data)}]}).encode()  # noqa: E731
    return {
        "malformed JSON": (b'{"instances": [{"b64": ', "the body is not JSON"),
        "not JSON at all": (b"\xff\xfe binary", "the body is not JSON"),
        "no instances": (b'{"inputs": []}', 'the body must be a JSON object {"instances"'),
        "empty instances": (b'{"instances": []}', "instances is empty"),
        "an instance without b64": (b'{"instances": [[1, 2, 3]]}', 'instances[0] must be {"b64"'),
        "b64 that is not base64": (b'{"instances": [{"b64": "***"}]}', "instances[0]: b64 is not base64"),
        "not an image": (one(b"%PDF-1.4 this is a document"), "instances[0]: not an image"),
        "a truncated JPEG": (one(jpeg[: len(jpeg) // 2]), "an image could not be decoded: jpeg::Uncompress failed"),
        "a 100 megapixel PNG": (one(_png(10_000, 10_000)), "instances[0]: 10000x10000 is 100 megapixels; at most 40"),
        "a TIFF": (one(_tiff()), "instances[0]: TIFF images are not read"),
    }


def _tiff() -> bytes:
    from PIL import Image

    stream = io.BytesIO()
    Image.new("RGB", (8, 8)).save(stream, format="TIFF")
    return stream.getvalue()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's, before the server's check
def test_hostile_requests_get_400_with_a_reason_and_the_server_keeps_serving(server, images):
    for what, (body, reason) in _hostile_bodies(images).items():
        status, answer = request(server, "POST", PREDICT, body)
        assert (status, answer["error"][: len(reason)]) == (400, reason), what
    status, answer = request(server, "POST", PREDICT, vertex_body(images[:1]))
    assert status == 200 and answer["predictions"][0]["num_detections"] > 0


def test_one_bad_image_fails_its_request_naming_it(server, images):
    body = json.dumps({"instances": [{"b64": b64(images[0].read_bytes())}, {"b64": b64(b"GIF89a nonsense")}]})
    status, answer = request(server, "POST", PREDICT, body.encode())
    assert status == 400 and answer["error"].startswith("instances[1]: not an image")


def test_a_body_over_the_limit_gets_400_unread_and_too_many_instances_400(model, images):
    small = start(model, max_body_bytes=50_000, max_instances=2)
    port = small.server_address[1]
    try:
        big = json.dumps({"instances": [{"b64": "A" * 120_000}]}).encode()
        status, answer = request(port, "POST", PREDICT, big)
        assert status == 400 and answer["error"].startswith(f"the body is {len(big)} bytes; at most 50000")
        status, answer = request(port, "POST", PREDICT, vertex_body(images))
        assert (status, answer["error"]) == (400, "3 instances in one request; at most 2")
        status, answer = request(port, "POST", PREDICT, b"{}", headers={"Content-Length": "nope"})
        assert status == 411
        assert request(port, "POST", PREDICT, vertex_body(images[:2]))[0] == 200
    finally:
        small.shutdown()
        small.server_close()


def test_requests_beyond_the_limit_in_progress_get_503(model, images):
    busy = start(model, max_requests=1)
    port = busy.server_address[1]
    try:
        stalled = socket.create_connection(("127.0.0.1", port))  # its body never comes: it stays in progress
        stalled.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{".encode())
        time.sleep(0.5)
        status, answer = request(port, "POST", PREDICT, vertex_body(images[:1]))
        assert (status, answer["error"]) == (503, "busy: 1 requests in progress; retry later")
        stalled.close()  # the stalled request ends (a short body) and frees its place
        deadline = time.monotonic() + 10
        while (status := request(port, "POST", PREDICT, vertex_body(images[:1]))[0]) == 503:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert status == 200
    finally:
        busy.shutdown()
        busy.server_close()


def test_a_client_that_stops_sending_gets_408_and_frees_its_place(model, images):
    slow = start(model, max_requests=1, read_timeout_s=1.0)
    port = slow.server_address[1]
    try:
        stalled = socket.create_connection(("127.0.0.1", port), timeout=30)
        stalled.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{".encode())
        answer = stalled.makefile("rb").read()  # the server answers, then closes
        stalled.close()
        assert answer.startswith(b"HTTP/1.1 408 ") and b'"the body did not arrive within 1 s"' in answer
        assert request(port, "POST", PREDICT, vertex_body(images[:1]))[0] == 200
    finally:
        slow.shutdown()
        slow.server_close()


def test_50_concurrent_requests_all_succeed_with_their_own_boxes(server, images, expected):
    def call(index: int):
        path = images[index % len(images)]
        return path, request(server, "POST", PREDICT, vertex_body([path]))

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(call, range(50)))
    assert [status for _, (status, _) in results] == [200] * 50
    for path, (_, answer) in results:
        assert_matches_predict(answer["predictions"][0], path, expected[path])


def test_vertex_contract_variables_choose_port_routes_model_and_host():
    from jobs.runtime.serve import serve_config

    environ = {"AIP_HTTP_PORT": "7080", "AIP_HEALTH_ROUTE": "/v1/endpoints/1/deployedModels/2",
               "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict", "AIP_STORAGE_URI": "gs://b/model"}
    config = serve_config(environ=environ)
    assert (config.model, config.host, config.port) == ("gs://b/model", "0.0.0.0", 7080)
    assert config.predict_routes == (PREDICT, "/v1/endpoints/1/deployedModels/2:predict")
    assert config.health_routes == ("/healthz", "/v1/endpoints/1/deployedModels/2")
    local = serve_config(model="exported", environ={})
    assert (local.host, local.port, local.predict_routes) == ("127.0.0.1", 8080, (PREDICT,))
    assert serve_config(model="m", port=9000, host="::1", environ=environ).port == 9000


def test_the_serve_command_answers_on_the_vertex_routes_and_stops_on_sigterm(export, images, expected, tmp_path):
    environ = {**os.environ, "AIP_HTTP_PORT": "0", "AIP_STORAGE_URI": str(export),
               "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict", "COLUMNS": "300"}
    process = subprocess.Popen([sys.executable, "-m", "jobs", "serve", "--host", "127.0.0.1"], cwd=REPO,
                               env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert "serving" in line, line + process.stderr.read() if process.poll() is not None else line
        port = int(line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
        status, answer = request(port, "POST", "/v1/endpoints/1/deployedModels/2:predict", vertex_body(images[:1]))
        assert status == 200, answer
        assert_matches_predict(answer["predictions"][0], images[0], expected[images[0]])
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM
