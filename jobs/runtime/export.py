"""Export a training run's checkpoint as a SavedModel that takes uint8 images of any size.

The folder holds ``saved_model/``, ``label_map.pbtxt`` and ``model.json`` (preset, input size, classes,
checkpoint step, box format), so ``predict`` needs nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import tensorflow as tf
from official.vision.serving import export_saved_model_lib

from jobs.runtime.experiment import build_experiment, load_spec

MODEL_INFO = "model.json"
BOX_FORMAT = "normalized [ymin, xmin, ymax, xmax]"


def export_saved_model(model_dir: str, out: str, checkpoint: str | None = None) -> dict:
    spec = load_spec(model_dir)
    params = build_experiment(spec)
    checkpoint = checkpoint or tf.train.latest_checkpoint(model_dir)
    if not checkpoint:
        raise FileNotFoundError(f"no checkpoint in {model_dir}: train first")
    size = params.task.model.input_size[:2]
    parent = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    try:
        export_saved_model_lib.export_inference_graph(
            input_type="image_tensor", batch_size=None, input_image_size=size, params=params,
            checkpoint_path=checkpoint, export_dir=stage, export_checkpoint_subdir="checkpoint",
            export_saved_model_subdir="saved_model")
        shutil.copy(os.path.join(spec.data_dir, "label_map.pbtxt"), os.path.join(stage, "label_map.pbtxt"))
        info = {"format": "saved_model", "preset": spec.preset, "input_size": size,
                "classes": list(spec.classes), "checkpoint": checkpoint,
                "step": int(checkpoint.rsplit("-", 1)[-1]), "boxes": BOX_FORMAT,
                "signature": "serving_default: inputs uint8 [batch, height, width, 3]"}
        with open(os.path.join(stage, MODEL_INFO), "w", encoding="utf-8") as stream:
            json.dump(info, stream, indent=2)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return info
