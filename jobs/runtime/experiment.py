"""Turn a preset and a prepared dataset into a Model Garden RetinaNet ``ExperimentConfig``."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import tensorflow as tf
from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import optimization
from official.vision.configs import backbones, decoders
from official.vision.configs import retinanet as retinanet_cfg

from jobs.errors import UsageError
from jobs.presets import Preset, get_preset
from jobs.runtime.spec import SPEC_FILE, TrainSpec, spec_from_dataset


def read_dataset(data_dir: str) -> dict[str, Any]:
    """``dataset.json`` written by ``data prepare`` (local path or gs://)."""
    path = os.path.join(data_dir, "dataset.json")
    if not tf.io.gfile.exists(path):
        raise UsageError(f"{path} not found: run `python -m jobs data prepare` first")
    with tf.io.gfile.GFile(path) as stream:
        dataset: dict[str, Any] = json.load(stream)
    return dataset


def make_spec(preset_name: str, data_dir: str, steps: int | None, batch_size: int | None,
              init_checkpoint: str | None, precision: str = "float32", seed: int = 0) -> TrainSpec:
    """The spec of a run; ``init_checkpoint`` None starts from the preset's pretrained checkpoint, ``none`` from
    scratch."""
    init = get_preset(preset_name).init_checkpoint(init_checkpoint)
    return spec_from_dataset(preset_name, data_dir, read_dataset(data_dir), steps, batch_size, init, precision, seed)


def init_modules(spec: TrainSpec) -> tuple[str, ...]:
    """What of ``spec.init_checkpoint`` restores: the preset's modules of its pretrained checkpoint (another head);
    everything of any other (one of your runs, or a checkpoint of this very model)."""
    preset = get_preset(spec.preset)
    if spec.init_checkpoint == preset.cloud_checkpoint and preset.checkpoint_modules:
        return preset.checkpoint_modules
    return ("backbone", "decoder", "head")


def load_spec(model_dir: str) -> TrainSpec:
    path = os.path.join(model_dir, SPEC_FILE)
    if not tf.io.gfile.exists(path):
        raise UsageError(f"{path} not found: {model_dir} is not a model dir written by `train`")
    with tf.io.gfile.GFile(path) as stream:
        return TrainSpec.from_json(stream.read())


def save_spec(spec: TrainSpec, model_dir: str) -> None:
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(os.path.join(model_dir, SPEC_FILE), "w") as stream:
        stream.write(spec.to_json())


def _backbone(preset: Preset) -> backbones.Backbone:
    kind = preset.backbone.type
    config_cls = {"resnet": backbones.ResNet, "mobilenet": backbones.MobileNet,
                  "spinenet_mobile": backbones.SpineNetMobile}[kind]
    return backbones.Backbone(type=kind, **{kind: config_cls(**preset.backbone.params)})


def _decoder(preset: Preset) -> decoders.Decoder:
    if preset.backbone.decoder == "identity":
        return decoders.Decoder(type="identity", identity=decoders.Identity())
    return decoders.Decoder(type="fpn", fpn=decoders.FPN(
        num_filters=preset.backbone.fpn_filters, use_separable_conv=preset.backbone.fpn_separable,
        use_keras_layer=preset.backbone.fpn_separable))


def build_experiment(spec: TrainSpec) -> cfg.ExperimentConfig:
    """Model Garden's ``retinanet_resnetfpn_coco`` recipe, reshaped by the preset and the dataset."""
    preset = get_preset(spec.preset)
    dataset = read_dataset(spec.data_dir)
    config = exp_factory.get_exp_config("retinanet_resnetfpn_coco")
    config.runtime.mixed_precision_dtype = spec.precision
    task = config.task
    # The trainer restores spec.init_checkpoint itself (jobs.runtime.checkpoints.restore_modules, which reports what
    # it restored); Model Garden's task must not restore the recipe's default ImageNet checkpoint as well.
    task.init_checkpoint = None
    task.annotation_file = os.path.join(spec.data_dir, dataset["splits"]["val"]["coco"])
    task.per_category_metrics = True
    task.export_config.output_normalized_coordinates = True  # boxes independent of the resize
    task.losses.l2_weight_decay = 4e-5

    model = task.model
    model.num_classes = spec.num_classes
    model.input_size = [preset.input_size, preset.input_size, 3]
    model.backbone = _backbone(preset)
    model.decoder = _decoder(preset)
    model.head = retinanet_cfg.RetinaNetHead(
        num_convs=preset.head_convs, num_filters=preset.head_filters,
        use_separable_conv=preset.separable_head)
    model.anchor.anchor_size = preset.anchor_size
    model.norm_activation.activation = preset.activation
    model.norm_activation.use_sync_bn = False
    model.detection_generator.max_num_detections = 100

    eval_batch = 8
    for data, split, training in ((task.train_data, "train", True), (task.validation_data, "val", False)):
        data.input_path = os.path.join(spec.data_dir, dataset["splits"][split]["pattern"])
        data.is_training = training
        data.dtype = spec.precision
        data.global_batch_size = spec.batch_size if training else eval_batch
        data.parser.max_num_instances = spec.max_instances
        data.shuffle_buffer_size = 1000
    task.train_data.parser.aug_rand_hflip = True
    task.train_data.parser.aug_scale_min = 0.8
    task.train_data.parser.aug_scale_max = 1.2

    steps_per_loop = min(50, spec.steps)
    trainer = config.trainer
    trainer.train_steps = spec.steps
    trainer.steps_per_loop = steps_per_loop
    trainer.summary_interval = steps_per_loop
    trainer.checkpoint_interval = min(2 * steps_per_loop, spec.steps)
    trainer.max_to_keep = 5
    trainer.validation_interval = spec.steps
    trainer.validation_steps = max(1, math.ceil(dataset["splits"]["val"]["images"] / eval_batch))
    learning_rate = preset.learning_rate * spec.batch_size / 8
    warmup = min(preset.warmup_steps, max(1, spec.steps // 10))
    trainer.optimizer_config = optimization.OptimizationConfig({
        "optimizer": {"type": "sgd", "sgd": {"momentum": 0.9, "global_clipnorm": 10.0}},
        "learning_rate": {"type": "cosine", "cosine": {
            "initial_learning_rate": learning_rate, "decay_steps": spec.steps}},
        "warmup": {"type": "linear", "linear": {"warmup_steps": warmup,
                                                "warmup_learning_rate": learning_rate / 10}},
    })
    config.validate()
    return config
