"""The serving signatures of a SavedModel export: encoded images in, boxes in two units and class names out.

Model Garden exports ``serving_default`` taking uint8 image tensors. Clients of an endpoint send files, so
``add_encoded_image_signature`` re-saves the export with two signatures:

- ``serving_default``: ``image_bytes``, a batch of encoded JPEG / PNG / GIF / BMP files of any sizes. Vertex AI's
  prebuilt TensorFlow containers (TF Serving) call the default signature, and turn a JSON instance
  ``{"b64": "..."}`` into the bytes of a string input; the input's name ends in ``_bytes`` as Vertex asks of
  binary inputs ("Get online predictions from a custom trained model", section "Encode binary data for
  prediction input": https://cloud.google.com/vertex-ai/docs/predictions/get-online-predictions).
- ``serving_uint8``: Model Garden's signature as it was (``inputs`` uint8 [batch, height, width, 3]).

Every output has the batch first, so TF Serving's row format gives one object per instance, and no output name
ends in ``_bytes``, so class names come back as plain strings, not base64 (TF Serving "RESTful API", sections
"Response format" and "Encoding binary values": https://www.tensorflow.org/tfx/serving/api_rest). Each image holds
``max_num_detections`` slots, the first ``num_detections`` of them real (best score first), the rest zero.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

ENCODED_SIGNATURE = "serving_default"
UINT8_SIGNATURE = "serving_uint8"
ENCODED_INPUT = "image_bytes"
OUTPUTS = {
    "detection_boxes": "float32 [max, 4]: ymin, xmin, ymax, xmax normalized to 0..1",
    "detection_boxes_pixels": "float32 [max, 4]: ymin, xmin, ymax, xmax in pixels of the image sent",
    "detection_scores": "float32 [max]",
    "detection_classes": "int64 [max]: label-map ids",
    "detection_class_names": "string [max]: label-map names",
    "num_detections": "int32: how many of the slots are detections",
    "image_size": "int32 [2]: height, width of the image sent",
}


def signature_info() -> dict[str, Any]:
    """What ``model.json`` says about the signatures."""
    return {
        ENCODED_SIGNATURE: {"inputs": f"{ENCODED_INPUT} string [batch]: encoded JPEG, PNG, GIF or BMP files "
                                      "(JSON: {\"b64\": base64 of the file})",
                            "outputs": OUTPUTS},
        UINT8_SIGNATURE: {"inputs": "inputs uint8 [batch, height, width, 3]",
                          "outputs": "detection_boxes (normalized), detection_scores, detection_classes, "
                                     "num_detections"},
    }


def add_encoded_image_signature(saved_model: str, label_map: Mapping[str, int]) -> None:
    """Re-save the Model Garden SavedModel at ``saved_model`` with both signatures, the label map inside."""
    loaded = tf.saved_model.load(saved_model)
    uint8 = loaded.signatures["serving_default"]
    module = _EncodedImageModule(loaded, uint8, label_map)
    staged = tempfile.mkdtemp(prefix="saved-model-", dir=os.path.dirname(os.path.abspath(saved_model)))
    try:
        tf.saved_model.save(module, staged, signatures={
            ENCODED_SIGNATURE: module.detect_encoded.get_concrete_function(),
            UINT8_SIGNATURE: uint8})
        shutil.rmtree(saved_model)
        os.rename(staged, saved_model)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


class _EncodedImageModule(tf.Module):  # type: ignore[misc]  # tf.Module is Any to mypy
    def __init__(self, loaded: Any, uint8: Any, label_map: Mapping[str, int]):
        super().__init__()
        self.loaded = loaded  # tracked: its variables are saved again
        self._uint8 = uint8
        ids = sorted(label_map.values())
        names = {class_id: name for name, class_id in label_map.items()}
        self.class_names = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(ids, tf.int64), tf.constant([names[i] for i in ids])),
            default_value="")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=ENCODED_INPUT)],  # type: ignore[untyped-decorator]
                 autograph=False)  # plain TensorFlow ops, no Python control flow to convert
    def detect_encoded(self, image_bytes: Any) -> dict[str, Any]:
        found = tf.map_fn(self._detect_one, image_bytes, fn_output_signature={
            "detection_boxes": tf.TensorSpec([None, 4], tf.float32),
            "detection_boxes_pixels": tf.TensorSpec([None, 4], tf.float32),
            "detection_scores": tf.TensorSpec([None], tf.float32),
            "detection_classes": tf.TensorSpec([None], tf.int64),
            "num_detections": tf.TensorSpec([], tf.int32),
            "image_size": tf.TensorSpec([2], tf.int32)})
        found["detection_class_names"] = self.class_names.lookup(found["detection_classes"])
        return dict(found)

    def _detect_one(self, encoded: Any) -> dict[str, Any]:
        image = tf.ensure_shape(tf.io.decode_image(encoded, channels=3, expand_animations=False), [None, None, 3])
        outputs = self._uint8(inputs=image[tf.newaxis])
        count = tf.cast(tf.reshape(outputs["num_detections"], [-1])[0], tf.int32)
        real = tf.sequence_mask(count, tf.shape(outputs["detection_scores"])[1])
        boxes = tf.where(real[:, tf.newaxis], tf.clip_by_value(outputs["detection_boxes"][0], 0.0, 1.0), 0.0)
        size = tf.shape(image)[:2]
        height, width = tf.cast(size[0], tf.float32), tf.cast(size[1], tf.float32)
        return {
            "detection_boxes": boxes,
            "detection_boxes_pixels": boxes * tf.stack([height, width, height, width]),
            "detection_scores": tf.where(real, outputs["detection_scores"][0], 0.0),
            "detection_classes": tf.where(real, tf.cast(outputs["detection_classes"][0], tf.int64), 0),
            "num_detections": count,
            "image_size": size,
        }
