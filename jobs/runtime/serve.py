"""``serve``: a SavedModel export behind TF Serving's REST predict API, to test clients before deploying.

``POST /v1/models/NAME:predict`` takes ``{"instances": [{"b64": "<base64 of a JPEG or PNG>"}, ...]}`` (or
``{"image_bytes": {"b64": ...}}`` per instance) and answers ``{"predictions": [{...}, ...]}``: one object per
image with the outputs of the ``serving_default`` signature (jobs/runtime/serving.py), as TF Serving and a
Vertex AI endpoint of the prebuilt TensorFlow container answer. ``GET /healthz`` says whether the model is loaded.

Vertex AI's custom-container contract is honoured, so the same command runs in a serving image: the port from
``AIP_HTTP_PORT`` (and then listening on 0.0.0.0), predictions also on ``AIP_PREDICT_ROUTE``, health also on
``AIP_HEALTH_ROUTE``, the model from ``AIP_STORAGE_URI`` when ``--model`` is not given ("Custom container
requirements for prediction": https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements).

Request, response, error and model-status shapes follow TF Serving's "RESTful API"
(https://www.tensorflow.org/tfx/serving/api_rest); only the row format (``instances``) is read.

A bad request gets 400 and ``{"error": reason}`` (TF Serving's error shape); a request beyond the limits on
requests in progress gets 503. Images are checked from their headers (format, pixel count) before decoding.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from jobs.errors import UsageError

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080  # Vertex AI's default for AIP_HTTP_PORT
DEFAULT_NAME = "detector"
HEALTH_ROUTE = "/healthz"
IMAGE_FORMATS = {"JPEG", "PNG", "GIF", "BMP"}  # what the signature's tf.io.decode_image reads
DRAIN_FACTOR = 4  # a body over the limit but under this many times it is read and dropped, so the client sees
# the 400 rather than a reset connection; a larger one is refused unread


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 20 * 2**20
    max_instances: int = 64
    max_pixels: int = 40_000_000  # per image, from its header, before it is decoded
    max_requests: int = 64  # in progress at once; more get 503
    model_calls: int = 2  # model calls at once; other requests in progress wait for a turn
    read_timeout_s: float = 60.0  # a client silent this long mid-request (or idle on keep-alive) is dropped


@dataclass(frozen=True)
class ServeConfig:
    model: str
    host: str
    port: int
    name: str = DEFAULT_NAME
    limits: Limits = field(default_factory=Limits)
    predict_routes: tuple[str, ...] = ()
    health_routes: tuple[str, ...] = (HEALTH_ROUTE,)


def serve_config(model: str | None = None, port: int | None = None, host: str | None = None,
                 name: str = DEFAULT_NAME, limits: Limits | None = None,
                 environ: Mapping[str, str] = os.environ) -> ServeConfig:
    """Flags first, then Vertex AI's ``AIP_*`` variables, then the defaults."""
    model = model or environ.get("AIP_STORAGE_URI")
    if not model:
        raise UsageError("give --model EXPORT_FOLDER (or set AIP_STORAGE_URI, as Vertex AI does)")
    on_vertex = "AIP_HTTP_PORT" in environ
    if port is None:
        try:
            port = int(environ.get("AIP_HTTP_PORT", DEFAULT_PORT))
        except ValueError:
            raise UsageError(f"AIP_HTTP_PORT must be a port number, not {environ['AIP_HTTP_PORT']!r}") from None
    predict = [f"/v1/models/{name}:predict", environ.get("AIP_PREDICT_ROUTE", "")]
    health = [HEALTH_ROUTE, environ.get("AIP_HEALTH_ROUTE", "")]
    return ServeConfig(model, host or ("0.0.0.0" if on_vertex else "127.0.0.1"), port, name, limits or Limits(),
                       tuple(dict.fromkeys(r for r in predict if r)), tuple(dict.fromkeys(r for r in health if r)))


class BadRequest(Exception):
    """A request the server refuses, with the reason the client is told."""

    def __init__(self, reason: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(reason)
        self.reason, self.status = reason, status


def parse_instances(body: bytes, limits: Limits) -> list[bytes]:
    """The encoded images of a ``:predict`` body, each checked from its header; BadRequest says what is wrong."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(f"the body is not JSON: {err}") from None
    if not isinstance(request, dict) or not isinstance(request.get("instances"), list):
        raise BadRequest('the body must be a JSON object {"instances": [{"b64": "<base64 of an image>"}, ...]}')
    instances = request["instances"]
    if not instances:
        raise BadRequest("instances is empty: send at least one image")
    if len(instances) > limits.max_instances:
        raise BadRequest(f"{len(instances)} instances in one request; at most {limits.max_instances}")
    return [_image(instance, index, limits) for index, instance in enumerate(instances)]


def _image(instance: object, index: int, limits: Limits) -> bytes:
    from jobs.runtime.serving import ENCODED_INPUT

    if isinstance(instance, dict) and set(instance) == {ENCODED_INPUT}:
        instance = instance[ENCODED_INPUT]
    if not (isinstance(instance, dict) and set(instance) == {"b64"} and isinstance(instance["b64"], str)):
        raise BadRequest(f'instances[{index}] must be {{"b64": "<base64 of an image>"}} '
                         f'or {{"{ENCODED_INPUT}": {{"b64": ...}}}}')
    try:
        data = base64.b64decode(instance["b64"], validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadRequest(f"instances[{index}]: b64 is not base64: {err}") from None
    _check_header(data, f"instances[{index}]", limits)
    return data


def _check_header(data: bytes, where: str, limits: Limits) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size
    except Image.DecompressionBombError as err:
        raise BadRequest(f"{where}: too many pixels: {err}") from None
    except Exception:  # noqa: BLE001  Pillow raises many types on data that is not an image it knows
        raise BadRequest(f"{where}: not an image (JPEG, PNG, GIF or BMP expected)") from None
    if kind not in IMAGE_FORMATS:
        raise BadRequest(f"{where}: {kind} images are not read; send JPEG, PNG, GIF or BMP")
    if width * height > limits.max_pixels:
        raise BadRequest(f"{where}: {width}x{height} is {width * height / 1e6:.0f} megapixels; at most "
                         f"{limits.max_pixels / 1e6:g} (resize it first)")


class Model:
    """The ``serving_default`` signature of an export, called as TF Serving calls it."""

    def __init__(self, path: str):
        import tensorflow as tf

        from jobs.runtime.serving import ENCODED_INPUT, ENCODED_SIGNATURE

        self._tf = tf
        folder = path.rstrip("/")
        saved = folder if tf.io.gfile.exists(f"{folder}/saved_model.pb") else f"{folder}/saved_model"
        if not tf.io.gfile.exists(f"{saved}/saved_model.pb"):
            raise UsageError(f"no SavedModel in {path}: give a folder written by `export --format saved_model`")
        self._loaded = tf.saved_model.load(saved)
        self._signature = self._loaded.signatures[ENCODED_SIGNATURE]
        inputs = self._signature.structured_input_signature[1]
        if ENCODED_INPUT not in inputs:
            raise UsageError(f"{path} takes {', '.join(inputs)}, not encoded images: export it again with this "
                             "version of `export`")
        self.predict([tf.io.encode_png(tf.zeros([8, 8, 3], tf.uint8)).numpy()])
        # ^ the first call of a loaded model takes seconds: made here, before the server says it is healthy

    def predict(self, images: list[bytes]) -> dict[str, list[dict[str, Any]]]:
        """The ``:predict`` response body for encoded images; BadRequest where one cannot be decoded."""
        tf = self._tf
        try:
            outputs = self._signature(image_bytes=tf.constant(images))
        except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as err:
            raise BadRequest(f"an image could not be decoded: {_tf_reason(err.message)}") from None
        arrays = {name: tensor.numpy() for name, tensor in outputs.items()}
        return {"predictions": [{name: _plain(values[i]) for name, values in sorted(arrays.items())}
                                for i in range(len(images))]}


def _tf_reason(message: str | None) -> str:
    """The line of a TensorFlow error that says what went wrong, without the graph's node and stack lines."""
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[", "Traceback")
    lines = [line.strip() for line in (message or "").splitlines()]
    return next((line for line in lines if line and not line.startswith(noise)), "the decoder failed")


def _plain(value: Any) -> Any:
    """An output row as JSON values (strings for byte strings)."""
    listed = value.tolist()
    if value.dtype.kind in "SO":
        return _decode(listed)
    return listed


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def make_server(config: ServeConfig, model: Model | None = None) -> ThreadingHTTPServer:
    """A bound server (port 0 picks a free one); ``serve_forever`` runs it. Loads the model unless given."""
    handler = _handler(config, model or Model(config.model))
    return _Server((config.host, config.port), handler)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the listen backlog: bursts of connections wait rather than being refused


def _handler(config: ServeConfig, model: Model) -> type[BaseHTTPRequestHandler]:
    limits = config.limits
    in_progress = threading.BoundedSemaphore(limits.max_requests)
    model_turns = threading.BoundedSemaphore(limits.model_calls)
    status_body = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                             "status": {"error_code": "OK", "error_message": ""}}]}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connections
        server_version = "detector-serve"
        timeout = limits.read_timeout_s

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path in config.health_routes:
                self._send(HTTPStatus.OK, {"status": "ok", "model": config.name})
            elif path == f"/v1/models/{config.name}":
                self._send(HTTPStatus.OK, status_body)
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no route {path}"})

        def do_POST(self) -> None:
            if urlsplit(self.path).path not in config.predict_routes:
                self._discard_body()
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}: POST to "
                                                           f"{config.predict_routes[0]}"})
                return
            if not in_progress.acquire(blocking=False):
                self._discard_body()
                self._send(HTTPStatus.SERVICE_UNAVAILABLE,
                           {"error": f"busy: {limits.max_requests} requests in progress; retry later"})
                return
            try:
                images = parse_instances(self._body(), limits)
                with model_turns:
                    response = model.predict(images)
                self._send(HTTPStatus.OK, response)
            except BadRequest as err:
                self._send(err.status, {"error": err.reason})
            except Exception as err:  # noqa: BLE001  one request's failure must not stop the server
                log.exception("predict failed")
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {err}"})
            finally:
                in_progress.release()

        def _length(self) -> int:
            """The body's length; BadRequest (and the connection closed after the answer) when unknown."""
            keep = self.close_connection
            self.close_connection = True  # until the length is known, the next request's start is not
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                raise BadRequest("chunked bodies are not read: send Content-Length", HTTPStatus.LENGTH_REQUIRED)
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                raise BadRequest("Content-Length is missing or not a number", HTTPStatus.LENGTH_REQUIRED) from None
            if length < 0:
                raise BadRequest("Content-Length is negative")
            self.close_connection = keep
            return length

        def _body(self) -> bytes:
            length = self._length()
            if length > limits.max_body_bytes:
                self._discard_body(length)
                raise BadRequest(f"the body is {length} bytes; at most {limits.max_body_bytes} (send fewer or "
                                 "smaller images per request)")
            try:
                body = self.rfile.read(length)
            except TimeoutError:
                self.close_connection = True
                raise BadRequest(f"the body did not arrive within {limits.read_timeout_s:g} s",
                                 HTTPStatus.REQUEST_TIMEOUT) from None
            if len(body) < length:
                self.close_connection = True
                raise BadRequest(f"the body ended after {len(body)} of {length} bytes")
            return body

        def _discard_body(self, length: int | None = None) -> None:
            """Read and drop a body that will not be used, so the connection can answer; close it when the
            body is too large to be worth reading."""
            try:
                length = self._length() if length is None else length
            except BadRequest:
                self.close_connection = True
                return
            if length > DRAIN_FACTOR * limits.max_body_bytes:
                self.close_connection = True
                return
            try:
                while length > 0:
                    chunk = self.rfile.read(min(length, 2**20))
                    if not chunk:
                        break
                    length -= len(chunk)
            except TimeoutError:
                self.close_connection = True

        def _send(self, status: HTTPStatus, payload: object) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client left; nothing to tell it
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  the base class names it so
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


def run_server(config: ServeConfig, ready: Callable[[ServeConfig, int], None] | None = None,
               model: Model | None = None) -> None:
    """Load the model (unless given), listen, call ``ready(config, port)`` and serve until interrupted."""
    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # answered with a 400 instead
    server = make_server(config, model)
    with server:
        if ready:
            ready(config, server.server_address[1])
        server.serve_forever()


def main() -> None:
    """The serving image's entrypoint (``python -m jobs.runtime.serve``): ``serve`` configured by Vertex AI's
    ``AIP_*`` variables alone, the model from ``AIP_STORAGE_URI``; one line when it listens, one on an error."""

    def ready(config: ServeConfig, port: int) -> None:
        print(f"serving {config.model} on {config.host}:{port} {' '.join(config.predict_routes)} "
              f"(health: {' '.join(config.health_routes)})", flush=True)

    try:
        run_server(serve_config(), ready)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(err.exit_code) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
