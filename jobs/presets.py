"""Registered model presets: a backbone, an input size, the cloud checkpoint and sensible schedules.

A preset is data (no TensorFlow import); ``jobs.runtime.experiment`` turns it into a Model Garden experiment.
New presets are new registered functions, as Model Garden registers its experiment factories.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from jobs.errors import UsageError


@dataclass(frozen=True)
class Backbone:
    """A Model Garden backbone (``type`` and its parameters) and the decoder that follows it."""

    type: str
    params: dict[str, int | float | str]  # the backbone config's fields
    decoder: str = "fpn"
    fpn_filters: int = 256
    fpn_separable: bool = False  # separable convolutions (and Keras layers) in the FPN, as the mobile recipes


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    backbone: Backbone
    input_size: int
    head_filters: int = 256
    head_convs: int = 4
    separable_head: bool = False
    anchor_size: float = 4.0
    activation: str = "relu"
    batch_size: int = 8  # local (CPU) default; Vertex accelerators scale it up
    steps: int = 1000
    learning_rate: float = 0.01  # per 8 images, scaled linearly with the batch size
    warmup_steps: int = 100
    cloud_checkpoint: str | None = None  # the pretrained Model Garden checkpoint every run starts from by default
    checkpoint_modules: tuple[str, ...] = ("backbone",)  # what of it restores (its head has COCO's 91 classes)
    accelerator: str = "cpu"  # recommended Vertex accelerator
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)

    def init_checkpoint(self, given: str | None) -> str | None:
        """The checkpoint a run starts from: ``given`` (``--init-checkpoint``), else the preset's pretrained one;
        ``none`` trains from scratch."""
        if given is None:
            return self.cloud_checkpoint
        return None if given.strip().lower() == NO_CHECKPOINT else given


NO_CHECKPOINT = "none"  # --init-checkpoint none: from scratch
PRESETS: dict[str, Preset] = {}


def register_preset(fn: Callable[[], Preset]) -> Callable[[], Preset]:
    preset = fn()
    if preset.name in PRESETS:
        raise ValueError(f"preset {preset.name} registered twice")
    PRESETS[preset.name] = preset
    return fn


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


# A float (not QAT) COCO RetinaNet, MobileNetV2 + separable FPN 128 + separable head 4x128, relu6, 256 px, levels
# 3-7, ckpt-277200: the "pre-trained floating point model" that QAT fine-tunes (tensorflow/models
# official/projects/qat/vision/README.md, "Training"; its QAT twin is mobilenetv2_ssd_i256_qat_ckpt.tar.gz), trained
# with official/vision/configs/experiments/retinanet/coco_mobilenetv2_tpu.yaml (277200 steps, COCO AP 23.5 in
# official/vision/MODEL_GARDEN.md); MediaPipe Model Maker's MOBILENET_V2 object detector starts from it
# (google/mediapipe mediapipe/model_maker/python/vision/object_detector/model_spec.py). A detector: its backbone
# and FPN restore, the head (91 classes) does not.
MOBILENET_V2_COCO = "gs://tf_model_garden/vision/qat/mobilenetv2_ssd_coco/mobilenetv2_ssd_i256_ckpt.tar.gz"
# ImageNet classification ResNet-50 (224 px), the init_checkpoint of Model Garden's own retinanet_resnetfpn_coco
# with init_checkpoint_modules='backbone' (tensorflow/models official/vision/configs/retinanet.py).
RESNET50_IMAGENET = "gs://cloud-tpu-checkpoints/vision-2.0/resnet50_imagenet/ckpt-28080"
# A COCO RetinaNet, Mobile SpineNet-49 at 384 px, identity decoder, COCO box AP 28.1: the checkpoint of the "Mobile-size
# RetinaNet" table of official/vision/MODEL_GARDEN.md, whose config is
# official/vision/configs/experiments/retinanet/coco_spinenet49_mobile_tpu.yaml (hard_swish, se_ratio 0.2, head
# 4x48 separable). Only the backbone has weights to restore (the identity decoder has none).
SPINENET49_MOBILE_COCO = "gs://tf_model_garden/vision/retinanet/spinenet49mobile.tar.gz"


@register_preset
def retinanet_tiny_128() -> Preset:
    return Preset(
        name="retinanet-tiny-128",
        description="ResNet-18 x0.25 + FPN 32 at 128 px: the laptop demo and CI model, trained from scratch",
        backbone=Backbone("resnet", {"model_id": 18, "depth_multiplier": 0.25}, fpn_filters=32),
        input_size=128, head_filters=32, head_convs=2, batch_size=8, steps=600, learning_rate=0.08,
        warmup_steps=50, cloud_checkpoint=None, checkpoint_modules=(), accelerator="cpu",
        notes="Small enough to train in about a minute on 2 CPU cores.",
    )


@register_preset
def retinanet_mobilenet_256() -> Preset:
    return Preset(
        name="retinanet-mobilenet-256",
        description="MobileNetV2 + FPN at 256 px (Model Garden coco_mobilenetv2_tpu): fast, for edge devices",
        backbone=Backbone("mobilenet", {"model_id": "MobileNetV2", "filter_size_scale": 1.0}, fpn_filters=128,
                          fpn_separable=True),
        input_size=256, head_filters=128, separable_head=True, anchor_size=3.0, activation="relu6", batch_size=8,
        steps=5000, learning_rate=0.02, warmup_steps=200, cloud_checkpoint=MOBILENET_V2_COCO,
        checkpoint_modules=("backbone", "decoder"), accelerator="tpu-v5e-4",
        notes="COCO box AP 23.5 at 256 px for the Model Garden checkpoint.",
    )


@register_preset
def retinanet_mobilenet_640() -> Preset:
    return Preset(
        name="retinanet-mobilenet-640",
        description="MobileNetV2 + FPN at 640 px: the 256 px model at 2.5x the resolution, for small objects",
        backbone=Backbone("mobilenet", {"model_id": "MobileNetV2", "filter_size_scale": 1.0}, fpn_filters=128,
                          fpn_separable=True),
        input_size=640, head_filters=128, separable_head=True, anchor_size=3.0, activation="relu6", batch_size=8,
        steps=10000, learning_rate=0.02, warmup_steps=500, cloud_checkpoint=MOBILENET_V2_COCO,
        checkpoint_modules=("backbone", "decoder"), accelerator="tpu-v5e-8",
        notes="Backbone and FPN from the Model Garden MobileNetV2 COCO detector (trained at 256 px; Model Garden "
              "publishes no 640 px one); head trained for your classes.",
    )


@register_preset
def retinanet_resnet50fpn_640() -> Preset:
    return Preset(
        name="retinanet-resnet50fpn-640",
        description="ResNet-50 + FPN at 640 px (Model Garden retinanet_resnetfpn_coco): the accurate choice",
        backbone=Backbone("resnet", {"model_id": 50}, fpn_filters=256),
        input_size=640, batch_size=8, steps=10000, learning_rate=0.01, warmup_steps=500,
        cloud_checkpoint=RESNET50_IMAGENET, checkpoint_modules=("backbone",), accelerator="tpu-v3-8",
        notes="COCO box AP 36.8 for the Model Garden 72-epoch recipe.",
    )


@register_preset
def retinanet_spinenet_mobile_384() -> Preset:
    return Preset(
        name="retinanet-spinenet-mobile-384",
        description="SpineNet-49 mobile at 384 px (Model Garden coco_spinenet49_mobile_tpu)",
        backbone=Backbone("spinenet_mobile", {"model_id": "49", "se_ratio": 0.2, "expand_ratio": 6,
                                              "use_keras_upsampling_2d": False}, decoder="identity"),
        input_size=384, head_filters=48, separable_head=True, anchor_size=3.0, activation="hard_swish",
        batch_size=8, steps=10000, learning_rate=0.02, warmup_steps=500,
        cloud_checkpoint=SPINENET49_MOBILE_COCO, checkpoint_modules=("backbone",), accelerator="tpu-v5e-4",
        notes="COCO box AP 28.1 for the Model Garden checkpoint.",
    )
