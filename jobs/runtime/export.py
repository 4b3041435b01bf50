"""Export a training run's checkpoint for serving: a SavedModel, or a TFLite model (float or int8) for devices.

The folder holds the model (``saved_model/`` or ``model.tflite``), ``label_map.pbtxt`` and ``model.json``: the
format, input size, preprocessing and box format, so ``predict`` and ``evaluate --model`` need nothing else.

TFLite follows Model Garden's recipe: an export with ``input_type="tflite"`` (preprocessing left outside the
model) and ``nms_version="tflite"`` (TFLite's detection post-processing op), converted by ``export_tflite_lib``.
``tflite-int8`` quantizes weights and activations to int8, calibrated on training images through the task's
input pipeline; the final detection post-processing (no int8 kernel) and the box arithmetic after it
(``FLOAT_OPS``) stay float, and input and outputs stay float32. Full uint8 I/O (Model Garden's ``int8_full``)
converts too but quantizes the outputs: the detection count and class ids come back scaled by calibrated ranges
(13 detections read 12.16), so it is not offered.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tensorflow as tf
from official.core import config_definitions as cfg
from official.vision.ops import preprocess_ops
from official.vision.serving import export_saved_model_lib, export_tflite_lib

from jobs.dataset import label_map as label_maps
from jobs.errors import UsageError
from jobs.io import staged_dir
from jobs.runtime.experiment import build_experiment, load_spec
from jobs.runtime.inference import MODEL_INFO
from jobs.runtime.serving import add_encoded_image_signature, signature_info
from jobs.runtime.spec import TrainSpec

ModelInfo = dict[str, Any]  # what model.json records: JSON whose keys depend on the format
KIND = "export"  # the kind of output folder (jobs.io): an export replaces only an earlier export
BOX_FORMAT = "normalized [ymin, xmin, ymax, xmax]"
# Op types kept float in tflite-int8 (Model Garden's ``denylisted_ops``): those of the box arithmetic after TFLite's
# detection post-processing (scale to pixels, normalize, clip: MUL, STRIDED_SLICE, CONCATENATION, MINIMUM, RELU).
# Calibrated, that arithmetic took its range from the boxes of every low-score detection, some tens of thousands of
# pixels wide, and in some runs rounded every real box to 0 or 1 (a CI run: AP50 0.0 for a model at 0.99). The same
# op types in the FPN (two MULs, one RELU) and the head's two concatenations stay float too: same size and speed.
FLOAT_OPS = ("MUL", "STRIDED_SLICE", "CONCATENATION", "MINIMUM", "RELU")
CALIBRATION_IMAGES = 200  # training images (augmented as in training) that set the int8 ranges


def export_model(model_dir: str, out: str, model_format: str = "saved_model", checkpoint: str | None = None
                 ) -> ModelInfo:
    """Export in one of ``FORMATS``; returns what ``model.json`` records."""
    if model_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {model_format!r}")
    spec = load_spec(model_dir)
    params = build_experiment(spec)
    checkpoint = checkpoint or tf.train.latest_checkpoint(model_dir)
    if not checkpoint:
        raise UsageError(f"no checkpoint in {model_dir}: train first")
    size = list(params.task.model.input_size[:2])
    with staged_dir(out, KIND, [Path(model_dir), Path(spec.data_dir)]) as stage:
        shutil.copy(os.path.join(spec.data_dir, "label_map.pbtxt"), stage / "label_map.pbtxt")
        details = FORMATS[model_format](params, checkpoint, size, str(stage))
        info = {"format": model_format, **details, **_provenance(spec, model_dir, checkpoint), "input_size": size}
        with open(stage / MODEL_INFO, "w", encoding="utf-8") as stream:
            json.dump(info, stream, indent=2)
    return info


def export_saved_model(model_dir: str, out: str, checkpoint: str | None = None) -> ModelInfo:
    return export_model(model_dir, out, "saved_model", checkpoint)


def _saved_model(params: cfg.ExperimentConfig, checkpoint: str, size: list[int], stage: str) -> ModelInfo:
    export_saved_model_lib.export_inference_graph(
        input_type="image_tensor", batch_size=None, input_image_size=size, params=params,
        checkpoint_path=checkpoint, export_dir=stage, export_checkpoint_subdir="checkpoint",
        export_saved_model_subdir="saved_model")
    label_map = label_maps.load(Path(stage) / "label_map.pbtxt")
    add_encoded_image_signature(os.path.join(stage, "saved_model"), label_map)
    return {"file": "saved_model", "boxes": BOX_FORMAT, "signatures": signature_info()}


def _tflite(params: cfg.ExperimentConfig, checkpoint: str, size: list[int], stage: str,
            quantize: bool = False) -> ModelInfo:
    generator = params.task.model.detection_generator
    generator.nms_version = "tflite"
    post = generator.tflite_post_processing
    post.use_regular_nms = True  # per-class NMS with the same limits as the SavedModel's
    post.max_detections = post.detections_per_class = generator.max_num_detections
    post.nms_score_threshold = generator.pre_nms_score_threshold
    post.nms_iou_threshold = generator.nms_iou_threshold
    saved = tempfile.mkdtemp(prefix="tflite-saved-model-")
    try:
        export_saved_model_lib.export_inference_graph(
            input_type="tflite", batch_size=1, input_image_size=size, params=params, checkpoint_path=checkpoint,
            export_dir=saved)
        model = export_tflite_lib.convert_tflite_model(
            saved_model_dir=saved, quant_type="int8" if quantize else None, params=params,
            calibration_steps=CALIBRATION_IMAGES, denylisted_ops=list(FLOAT_OPS) if quantize else None)
    finally:
        shutil.rmtree(saved, ignore_errors=True)
    with open(os.path.join(stage, "model.tflite"), "wb") as stream:
        stream.write(model)
    height, width = size
    return {
        "file": "model.tflite",
        "input": f"inputs float32 [1, {height}, {width}, 3]: the preprocessed image",
        "preprocessing": {
            "keep_aspect_ratio": bool(params.task.train_data.parser.keep_aspect_ratio),
            "resize": f"bilinear, keeping the aspect ratio: scale = min({height} / height, {width} / width)",
            "pad": f"bottom and right to {height}x{width} with 0 (after normalizing)",
            "normalize": "(rgb - mean) / stddev, rgb in 0..255",
            "mean": list(preprocess_ops.MEAN_RGB), "stddev": list(preprocess_ops.STDDEV_RGB)},
        "boxes": (f"[ymin, xmin, ymax, xmax] normalized to the {height}x{width} input: multiply by the input "
                  "size and divide by the resize scale for image pixels"),
        "outputs": "detection_boxes, detection_classes (label-map ids), detection_scores, num_detections",
        "quantization": (f"int8 weights and activations calibrated on {CALIBRATION_IMAGES} training images, "
                         "detection post-processing and box arithmetic float, float32 input and outputs"
                         if quantize else None),
    }


Exporter = Callable[[cfg.ExperimentConfig, str, list[int], str], ModelInfo]  # (params, checkpoint, size, folder)
FORMATS: dict[str, Exporter] = {
    "saved_model": _saved_model,
    "tflite": _tflite,
    "tflite-int8": lambda params, checkpoint, size, stage: _tflite(params, checkpoint, size, stage, quantize=True),
}


def _provenance(spec: TrainSpec, model_dir: str, checkpoint: str) -> ModelInfo:
    return {"preset": spec.preset, "classes": list(spec.classes), "model_dir": model_dir, "data": spec.data_dir,
            "checkpoint": checkpoint, "step": int(checkpoint.rsplit("-", 1)[-1])}
