"""Detectors: a checkpoint in a model dir, or an export (SavedModel or TFLite), behind one call.

All return boxes normalized to the image ([ymin, xmin, ymax, xmax] in 0..1), scores and class ids.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
from official.vision.ops import preprocess_ops
from official.vision.serving import detection

from jobs.errors import UsageError
from jobs.runtime.experiment import build_experiment, load_spec
from jobs.runtime.serving import UINT8_SIGNATURE

MODEL_INFO = "model.json"


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (n, 4) normalized ymin, xmin, ymax, xmax
    scores: np.ndarray  # (n,)
    classes: np.ndarray  # (n,) label-map ids


def _unbatch(outputs: Mapping[str, Any]) -> Detections:
    count = int(np.asarray(outputs["num_detections"]).reshape(-1)[0])
    return Detections(
        boxes=np.clip(np.asarray(outputs["detection_boxes"])[0, :count], 0.0, 1.0),
        scores=np.asarray(outputs["detection_scores"])[0, :count],
        classes=np.asarray(outputs["detection_classes"])[0, :count].astype(np.int64),
    )


class CheckpointDetector:
    """The model of a training run, restored from its latest (or a given) checkpoint."""

    def __init__(self, model_dir: str, checkpoint: str | None = None):
        self.spec = load_spec(model_dir)
        self.params = build_experiment(self.spec)
        self.checkpoint = checkpoint or tf.train.latest_checkpoint(model_dir)
        if not self.checkpoint:
            raise UsageError(f"no checkpoint in {model_dir}: train first")
        size = self.params.task.model.input_size[:2]
        self.module = detection.DetectionModule(self.params, batch_size=1, input_image_size=size,
                                                input_type="image_tensor")
        tf.train.Checkpoint(model=self.module.model).restore(self.checkpoint).expect_partial()
        self._serve = tf.function(self.module.serve,
                                  input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8)])

    @property
    def step(self) -> int:
        return int(self.checkpoint.rsplit("-", 1)[-1])

    def __call__(self, image: np.ndarray) -> Detections:
        return _unbatch(self._serve(tf.convert_to_tensor(image[np.newaxis])))


class SavedModelDetector:
    """An exported SavedModel (``export``'s ``saved_model`` folder): uint8 images of any size in, through
    ``serving_uint8`` (``serving_default`` in exports made before it took encoded images)."""

    def __init__(self, path: str):
        saved = os.path.join(path, "saved_model")
        self.path = saved if tf.io.gfile.exists(saved) else path
        signatures = tf.saved_model.load(self.path).signatures
        self._signature = signatures.get(UINT8_SIGNATURE) or signatures["serving_default"]

    def __call__(self, image: np.ndarray) -> Detections:
        return _unbatch(self._signature(tf.convert_to_tensor(image[np.newaxis])))


class TFLiteDetector:
    """A TFLite export. Its model takes the preprocessed image, so the image is resized (aspect ratio kept),
    padded and normalized here exactly as Model Garden's serving module does, and the boxes (normalized to
    the model input) are mapped back to the image."""

    def __init__(self, path: str):
        from ai_edge_litert.interpreter import Interpreter

        info = read_model_info(path)
        self.input_size = list(info["input_size"])
        self.keep_aspect_ratio = info["preprocessing"]["keep_aspect_ratio"]
        with tf.io.gfile.GFile(os.path.join(path, info["file"]), "rb") as stream:
            # One thread: with two, LiteRT 2.3's TFLite_Detection_PostProcess (per-class NMS) drops whole classes.
            self._interpreter = Interpreter(model_content=stream.read(), num_threads=1)
        self._run = self._interpreter.get_signature_runner()

    def __call__(self, image: np.ndarray) -> Detections:
        pixels, scale = preprocess(image, self.input_size, self.keep_aspect_ratio)
        outputs = self._run(inputs=pixels[np.newaxis])
        found = _unbatch(outputs)
        height, width = image.shape[:2]
        model_h, model_w = self.input_size
        to_image = np.array([model_h / scale[0] / height, model_w / scale[1] / width] * 2)
        keep = found.classes > 0  # the TFLite post-processing op may return the background class
        return Detections(np.clip(found.boxes[keep] * to_image, 0.0, 1.0), found.scores[keep], found.classes[keep])


def preprocess(image: np.ndarray, size: list[int], keep_aspect_ratio: bool = True
               ) -> tuple[np.ndarray, tuple[float, float]]:
    """The input of a TFLite export: normalized, resized and padded to ``size``; and the (y, x) resize scale."""
    pixels = preprocess_ops.normalize_image(tf.cast(image, tf.float32), offset=preprocess_ops.MEAN_RGB,
                                            scale=preprocess_ops.STDDEV_RGB)
    pixels, image_info = preprocess_ops.resize_and_crop_image(pixels, size, padded_size=size,
                                                              keep_aspect_ratio=keep_aspect_ratio)
    scale_y, scale_x = (float(value) for value in image_info[2].numpy())
    return pixels.numpy(), (scale_y, scale_x)


def read_model_info(path: str) -> dict[str, Any]:
    """An export folder's ``model.json``."""
    info_path = os.path.join(path, MODEL_INFO)
    if not tf.io.gfile.exists(info_path):
        raise UsageError(f"{info_path} not found: {path} is not a folder written by `export`")
    with tf.io.gfile.GFile(info_path) as stream:
        info: dict[str, Any] = json.load(stream)
    return info


DETECTORS: dict[str, Callable[[str], Callable[[np.ndarray], Detections]]] = {
    "saved_model": SavedModelDetector, "tflite": TFLiteDetector, "tflite-int8": TFLiteDetector}


def load_detector(path: str) -> Callable[[np.ndarray], Detections]:
    """The detector for an export folder, chosen by the format its ``model.json`` records."""
    return DETECTORS[read_model_info(path)["format"]](path)


def decode_image(data: bytes) -> np.ndarray:
    """RGB uint8, as the training input pipeline sees it (EXIF rotation not applied)."""
    pixels: np.ndarray = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    return pixels
