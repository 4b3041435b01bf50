"""The SavedModel's serving signature takes what Vertex AI's prebuilt TensorFlow container sends it.

TF Serving (inside that container) maps the JSON body to the default signature: with one input, each instance
is that input's value, and ``{"b64": …}`` becomes the decoded bytes of a string tensor. The test does exactly
that, calls the signature and checks the boxes against ``predict`` (which runs the uint8 signature).
"""

from __future__ import annotations

import base64
import json

import pytest
from serve_checks import assert_matches_predict, vertex_body

pytest_plugins = ["serve_fixtures"]

pytestmark = pytest.mark.slow


def tf_serving_row_format(signature, body: bytes) -> list[dict]:
    """What TF Serving's REST :predict does with ``{"instances": [...]}`` for a one-input signature."""
    import tensorflow as tf

    (name, spec), = signature.structured_input_signature[1].items()
    assert spec.dtype == tf.string and spec.shape.as_list() == [None], "one string input with the batch first"
    values = [base64.b64decode(instance["b64"]) for instance in json.loads(body)["instances"]]
    outputs = signature(**{name: tf.constant(values)})
    rows = []
    for index in range(len(values)):
        row = {}
        for key, tensor in outputs.items():
            value = tensor.numpy()[index].tolist()
            row[key] = [v.decode() for v in value] if tensor.dtype == tf.string else value
        rows.append(row)
    return rows


def test_the_vertex_json_body_through_the_default_signature_gives_predicts_boxes(export, images, expected):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(export / "saved_model"))
    default = loaded.signatures["serving_default"]
    (name, _), = default.structured_input_signature[1].items()
    assert name == "image_bytes"  # Vertex asks binary inputs to end in _bytes
    predictions = tf_serving_row_format(default, vertex_body(images))
    assert len(predictions) == len(images)
    for prediction, path in zip(predictions, images, strict=True):
        assert_matches_predict(prediction, path, expected[path])


def test_the_uint8_signature_is_kept_and_model_json_describes_both(export, images):
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    signatures = tf.saved_model.load(str(export / "saved_model")).signatures
    assert set(signatures) == {"serving_default", "serving_uint8"}
    uint8 = signatures["serving_uint8"]
    assert {name: (spec.dtype, spec.shape.as_list()) for name, spec in uint8.structured_input_signature[1].items()
            } == {"inputs": (tf.uint8, [None, None, None, 3])}
    pixels = np.asarray(Image.open(images[0]).convert("RGB"))[np.newaxis]
    assert int(uint8(inputs=tf.constant(pixels))["num_detections"][0]) > 0
    info = json.loads((export / "model.json").read_text())
    assert set(info["signatures"]) == {"serving_default", "serving_uint8"}
    assert "detection_class_names" in info["signatures"]["serving_default"]["outputs"]


def test_class_names_come_from_the_label_map_inside_the_model(export, images):
    import tensorflow as tf

    from jobs.dataset import label_map

    names = label_map.load(export / "label_map.pbtxt")
    default = tf.saved_model.load(str(export / "saved_model")).signatures["serving_default"]
    (prediction,) = tf_serving_row_format(default, vertex_body(images[:1]))
    count = prediction["num_detections"]
    assert count > 0
    assert [names[n] for n in prediction["detection_class_names"][:count]] == prediction["detection_classes"][:count]
    assert set(prediction["detection_class_names"][count:]) <= {""}
