"""Detectors: a checkpoint in a model dir, or an exported SavedModel, behind one call.

Both return boxes normalized to the image ([ymin, xmin, ymax, xmax] in 0..1), scores and class ids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from official.vision.serving import detection

from jobs.runtime.experiment import build_experiment, load_spec


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (n, 4) normalized ymin, xmin, ymax, xmax
    scores: np.ndarray  # (n,)
    classes: np.ndarray  # (n,) label-map ids


def _unbatch(outputs: dict) -> Detections:
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
            raise FileNotFoundError(f"no checkpoint in {model_dir}: train first")
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
    """An exported model (``export``'s ``saved_model`` folder)."""

    def __init__(self, path: str):
        saved = os.path.join(path, "saved_model")
        self.path = saved if tf.io.gfile.exists(saved) else path
        self._signature = tf.saved_model.load(self.path).signatures["serving_default"]

    def __call__(self, image: np.ndarray) -> Detections:
        return _unbatch(self._signature(tf.convert_to_tensor(image[np.newaxis])))


def decode_image(data: bytes) -> np.ndarray:
    """RGB uint8, as the training input pipeline sees it (EXIF rotation not applied)."""
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
