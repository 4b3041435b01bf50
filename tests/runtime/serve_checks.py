"""Checks shared by the serving tests: the body Vertex AI sends, and served predictions against ``predict``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest


def vertex_body(paths: list[Path]) -> bytes:
    """The body Vertex AI's prebuilt TensorFlow container receives for ``endpoint.predict(instances=…)`` on
    images: binary inputs as ``{"b64": …}`` ("Get online predictions from a custom trained model", Encode binary
    data: https://cloud.google.com/vertex-ai/docs/predictions/get-online-predictions)."""
    instances = [{"b64": base64.b64encode(path.read_bytes()).decode("ascii")} for path in paths]
    return json.dumps({"instances": instances}).encode("utf-8")


def detections(prediction: dict, threshold: float = 0.3) -> list[tuple[str, int, float, list[float], list[float]]]:
    """(name, class id, score, pixel box, normalized box) of one prediction's slots at or above the threshold."""
    count = prediction["num_detections"]
    return [(prediction["detection_class_names"][i], prediction["detection_classes"][i],
             prediction["detection_scores"][i], prediction["detection_boxes_pixels"][i],
             prediction["detection_boxes"][i])
            for i in range(count) if prediction["detection_scores"][i] >= threshold]


def assert_matches_predict(prediction: dict, path: Path, expected: list) -> None:
    """The served boxes are ``predict``'s: same classes and names, boxes within 1 pixel (JPEG decoders differ
    by a few levels), pixel boxes = normalized boxes x the image's size."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    assert prediction["image_size"] == [height, width]
    found = detections(prediction)
    assert len(found) == len(expected) > 0, (found, expected)
    for (name, class_id, score, pixels, normalized), want in zip(found, expected, strict=True):
        assert (name, class_id) == (want.label, want.class_id)
        assert score == pytest.approx(want.score, abs=0.02)
        ymin, xmin, ymax, xmax = pixels
        assert [xmin, ymin, xmax, ymax] == pytest.approx([want.xmin, want.ymin, want.xmax, want.ymax], abs=1.0)
        assert pixels == pytest.approx([normalized[0] * height, normalized[1] * width, normalized[2] * height,
                                        normalized[3] * width], abs=1e-3)
    assert all(prediction["detection_scores"][i] == 0 for i in range(prediction["num_detections"],
                                                                       len(prediction["detection_scores"])))
