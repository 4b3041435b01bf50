"""Predictions from Vertex AI: online from an endpoint (``predict --endpoint``), written as local ``predict``
writes them (jobs/runtime/predict.py).

Images larger than the deployed preset's input size are shrunk on this machine first (aspect ratio kept; the model
shrinks them to that size anyway), sent as JPEG in ``{"b64": …}`` instances, and the boxes, normalized to the image
sent, are scaled back to the original's pixels. Requests are batched so that each body stays under Vertex AI's
online-prediction payload limit.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.errors import DataError, DetectorError, UsageError
from jobs.launch.jobspec import vertex_parent
from jobs.launch.models import vertex_endpoint
from jobs.report.drawing import Detection
from jobs.stack import StackOutputs

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from PIL.Image import Image

    from jobs.runtime.predict import Picture

# Vertex AI accepts online prediction bodies up to 1.5 MB: "the service itself will accept instances up to the
# payload limit size (currently, 1.5MB)" ("gcloud ai endpoints predict" reference,
# https://cloud.google.com/sdk/gcloud/reference/ai/endpoints/predict, found with the search tool; the Vertex AI
# docs pages stored there give no figure). Read as 1,500,000 bytes, the smaller reading, with room for the JSON.
REQUEST_LIMIT_BYTES = 1_500_000
JSON_OVERHEAD_BYTES = 1024  # '{"instances": […]}' around the images
INSTANCE_OVERHEAD_BYTES = 16  # '{"b64": ""},' around one image
MAX_INSTANCES = 64  # per request: what `serve` accepts by default (jobs/runtime/serve.py Limits.max_instances)
JPEG_QUALITIES = (95, 85, 70, 50)  # tried in turn until one image fits a request on its own


class EndpointPredictionError(DetectorError):
    """The endpoint answered with something other than this tool's serving signature."""


@dataclass(frozen=True)
class Encoded:
    b64: str
    sent_size: tuple[int, int]  # width, height of the image sent
    scale: float  # sent pixels per original pixel (1.0 when not shrunk)


def encode(image: Image, input_size: int, limit_bytes: int = REQUEST_LIMIT_BYTES) -> Encoded:
    """The image shrunk to fit ``input_size`` (aspect ratio kept; never enlarged) as base64 JPEG that fits a
    request of ``limit_bytes`` on its own."""
    from PIL import Image as PILImage

    width, height = image.size
    scale = min(1.0, input_size / max(width, height))
    if scale < 1.0:
        sent = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(sent, PILImage.Resampling.BILINEAR)
    for quality in JPEG_QUALITIES:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        if len(data) + INSTANCE_OVERHEAD_BYTES + JSON_OVERHEAD_BYTES <= limit_bytes:
            return Encoded(data, image.size, scale)
    raise DataError(f"an image of {width} x {height} px does not fit a {limit_bytes}-byte request even as a JPEG "
                    f"of quality {JPEG_QUALITIES[-1]} at {image.size[0]} x {image.size[1]} px")


def batches(sizes: list[int], limit_bytes: int = REQUEST_LIMIT_BYTES,
            max_instances: int = MAX_INSTANCES) -> list[list[int]]:
    """Indexes of the instances of each request, in order: each request's base64 sizes plus overheads under
    ``limit_bytes`` and at most ``max_instances`` of them."""
    groups: list[list[int]] = []
    used = limit_bytes
    for index, size in enumerate(sizes):
        cost = size + INSTANCE_OVERHEAD_BYTES
        if used + cost > limit_bytes or len(groups[-1]) >= max_instances:
            groups.append([])
            used = JSON_OVERHEAD_BYTES
        groups[-1].append(index)
        used += cost
    return groups


def to_detections(prediction: dict[str, Any], picture: Picture, sent: Encoded,
                  score_threshold: float) -> list[Detection]:
    """One instance's outputs of the serving signature as detections in the original picture's pixels."""
    try:
        count = int(prediction["num_detections"])
        rows = zip(prediction["detection_boxes"][:count], prediction["detection_scores"][:count],
                   prediction["detection_classes"][:count], prediction["detection_class_names"][:count], strict=True)
        answered = [int(v) for v in prediction["image_size"]]
    except (KeyError, TypeError, ValueError) as err:
        raise EndpointPredictionError(
            f"the endpoint's answer lacks the serving signature's outputs ({err}): deploy a model registered with "
            "`models upload` from an `export --format saved_model`") from None
    if answered != [sent.sent_size[1], sent.sent_size[0]]:
        raise EndpointPredictionError(f"the endpoint answered for a {answered[1]} x {answered[0]} image, but a "
                                      f"{sent.sent_size[0]} x {sent.sent_size[1]} one was sent")
    width, height = picture.image.size
    return [Detection(str(picture.source), name or f"class {int(c)}", int(c), float(s),
                      float(b[1]) * width, float(b[0]) * height, float(b[3]) * width, float(b[2]) * height,
                      picture.frame)
            for b, s, c, name in rows if s >= score_threshold]


class EndpointPredictor:
    """A ``jobs.runtime.predict.Detector`` that asks a Vertex AI endpoint, through google-cloud-aiplatform's
    PredictionServiceClient (REST)."""

    def __init__(self, stack: StackOutputs, endpoint: str, preset: str | None = None,
                 api_endpoint: str | None = None, credentials: Credentials | None = None,
                 limit_bytes: int = REQUEST_LIMIT_BYTES):
        from google.cloud.aiplatform_v1.services.prediction_service import PredictionServiceClient

        from jobs.launch.endpoints import Endpoints

        api = api_endpoint or vertex_endpoint(stack)
        self.endpoints = Endpoints(stack, api, credentials)
        self.client = PredictionServiceClient(credentials=credentials, transport="rest",
                                              client_options={"api_endpoint": api})
        self.endpoint = self._resolve(stack, endpoint)
        self.input_size = input_size(preset) if preset else self._deployed_input_size(api, credentials)
        self.limit_bytes = limit_bytes
        self.requests = 0

    def detect_all(self, pictures: list[Picture], score_threshold: float) -> list[list[Detection]]:
        encoded = [encode(p.image, self.input_size, self.limit_bytes) for p in pictures]
        found: list[list[Detection]] = []
        for group in batches([len(e.b64) for e in encoded], self.limit_bytes):
            predictions = self._predict([encoded[i].b64 for i in group])
            if len(predictions) != len(group):
                raise EndpointPredictionError(f"the endpoint answered {len(predictions)} predictions for "
                                              f"{len(group)} images")
            found += [to_detections(prediction, pictures[i], encoded[i], score_threshold)
                      for i, prediction in zip(group, predictions, strict=True)]
        return found

    def _predict(self, images: list[str]) -> list[dict[str, Any]]:
        from google.api_core import exceptions
        from google.cloud.aiplatform_v1 import types

        self.requests += 1
        try:
            response = self.client.predict(endpoint=self.endpoint, instances=[{"b64": data} for data in images])
        except exceptions.GoogleAPICallError as err:
            raise EndpointPredictionError(f"{self.endpoint} refused the prediction request: {err.message}") from None
        predictions: list[dict[str, Any]] = json.loads(types.PredictResponse.to_json(response)).get("predictions", [])
        return predictions

    def _resolve(self, stack: StackOutputs, endpoint: str) -> str:
        """The endpoint's resource name from its name, its id or its display name."""
        if endpoint.startswith("projects/"):
            return endpoint
        if endpoint.isdigit():
            return f"{vertex_parent(stack)}/endpoints/{endpoint}"
        named = [e.name for e in self.endpoints.list() if e.display_name == endpoint]  # any: predicting changes nothing
        if not named:
            raise UsageError(f"no endpoint {endpoint} in {vertex_parent(stack)}: see `endpoints list`")
        return str(named[0])

    def _deployed_input_size(self, api: str, credentials: Credentials | None) -> int:
        """The largest input size of the presets of the models deployed on the endpoint (their ``preset`` label)."""
        from google.api_core import exceptions

        from jobs.launch.models import ModelRegistry

        try:
            found = self.endpoints.client.get_endpoint(name=self.endpoint)
        except exceptions.NotFound:
            raise UsageError(f"no endpoint {self.endpoint}: see `endpoints list`") from None
        if not found.deployed_models:
            raise UsageError(f"endpoint {self.endpoint} has no deployed model: `endpoints deploy` one first")
        registry = ModelRegistry(self.endpoints.stack, api, credentials)
        presets = {registry.client.get_model(name=d.model).labels.get("preset", "") for d in found.deployed_models}
        sizes = [input_size(p) for p in presets if p]
        if not sizes:
            raise UsageError(f"the models on {self.endpoint} have no preset label: pass --preset")
        return max(sizes)


def input_size(preset: str) -> int:
    from jobs.presets import PRESETS

    known = {name.lower(): p.input_size for name, p in PRESETS.items()}  # labels are lowercase
    if preset.lower() not in known:
        raise UsageError(f"unknown preset {preset}: see `python -m jobs presets`")
    return known[preset.lower()]
