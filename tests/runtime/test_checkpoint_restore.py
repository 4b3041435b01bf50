"""A checkpoint with the structure Model Garden writes for a preset's backbone (its own classes), served by
gcp-storage-emulator, fetched through the cache and restored: the model's backbone then holds the checkpoint's values,
and the trainer's report counts what restored per module."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from jobs.presets import PRESETS, get_preset
from jobs.runtime.checkpoints import CheckpointMismatch, local_checkpoint, restore_modules

PRESET = "retinanet-mobilenet-256"


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    (folder / "dataset.json").write_text(json.dumps({
        "classes": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "max_boxes_per_image": 5,
        "splits": {s: {"pattern": f"{s}-*.tfrecord", "coco": f"{s}_coco.json", "images": 10}
                   for s in ("train", "val")}}))
    return str(folder)


def detector(preset: str, dataset_dir: str, init: str | None):
    from official.core import task_factory

    from jobs.runtime.experiment import build_experiment, make_spec

    spec = make_spec(preset, dataset_dir, steps=1, batch_size=None, init_checkpoint=init)
    params = build_experiment(spec)
    return task_factory.get_task(params.task).build_model(), spec, params


def classification_checkpoint(params, folder, step: int = 180648):
    """What Model Garden's image-classification trainer writes for the preset's backbone: a ClassificationModel
    (1001 ImageNet classes) around the backbone its factory builds, saved as its base_trainer does
    (``tf.train.Checkpoint(global_step=…, model=…, **model.checkpoint_items)``), weights set to random values."""
    import tensorflow as tf
    import tf_keras
    from official.vision.modeling import backbones, classification_model

    specs = tf_keras.layers.InputSpec(shape=[None, 224, 224, 3])
    backbone = backbones.factory.build_backbone(input_specs=specs, backbone_config=params.task.model.backbone,
                                                norm_activation_config=params.task.model.norm_activation)
    model = classification_model.ClassificationModel(backbone=backbone, num_classes=1001, input_specs=specs)
    rng = np.random.default_rng(0)
    for variable in model.weights:
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(variable.dtype.as_numpy_dtype))
    checkpoint = tf.train.Checkpoint(global_step=tf.Variable(step, dtype=tf.int64), model=model,
                                     **model.checkpoint_items)
    return checkpoint.write(str(folder / f"ckpt-{step}")), model


def test_the_preset_default_is_its_pretrained_checkpoint_and_none_opts_out(dataset_dir):
    from jobs.runtime.experiment import init_modules, make_spec

    for name, preset in PRESETS.items():
        spec = make_spec(name, dataset_dir, 1, None, None)
        assert spec.init_checkpoint == preset.cloud_checkpoint
        assert (spec.init_checkpoint is None) == (name == "retinanet-tiny-128")
        assert make_spec(name, dataset_dir, 1, None, "none").init_checkpoint is None
        assert make_spec(name, dataset_dir, 1, None, "gs://b/x.tar.gz").init_checkpoint == "gs://b/x.tar.gz"
        if preset.cloud_checkpoint:
            assert "backbone" in init_modules(spec)
    assert init_modules(make_spec(PRESET, dataset_dir, 1, None, "/runs/a/ckpt-9")) == ("backbone", "decoder", "head")


def test_a_model_garden_backbone_checkpoint_restores_through_the_emulator_and_the_cache(
        dataset_dir, tmp_path, monkeypatch):
    from test_checkpoint_cache import Storage

    from jobs.runtime.experiment import init_modules

    monkeypatch.setenv("DETECTOR_CACHE", str(tmp_path / "cache"))
    model, spec, params = detector(PRESET, dataset_dir, "none")
    prefix, source = classification_checkpoint(params, tmp_path / "written")
    storage = Storage(monkeypatch)
    try:
        for suffix in (".index", ".data-00000-of-00001"):
            with open(prefix + suffix, "rb") as stream:
                uri = storage.put(f"vision/mobilenet/v2_1.0_float/ckpt-180648{suffix}", stream.read())
        uri = uri.removesuffix(".data-00000-of-00001")
        before = [w.numpy() for w in model.backbone.weights]
        with local_checkpoint(uri) as local:
            report = restore_modules(model, local, init_modules(replace(spec, init_checkpoint=uri)), uri)
    finally:
        storage.stop()
    counts = {m.module: (m.restored, m.fresh) for m in report.modules}
    backbone_variables = len(model.backbone.weights)
    assert counts["backbone"] == (backbone_variables, 0)
    assert counts["decoder"][0] == 0 and counts["decoder"][1] > 0
    assert counts["head"] == (0, len(model.head.weights))
    assert any(f"backbone: {backbone_variables} variables restored, 0 start fresh" in line for line in report.lines())
    restored, saved = model.backbone.weights, source.backbone.weights
    assert len(restored) == len(saved)
    for variable, expected in zip(restored, saved, strict=True):
        np.testing.assert_array_equal(variable.numpy(), expected.numpy(), err_msg=variable.name)
    assert sum(not np.array_equal(a, b.numpy()) for a, b in zip(before, saved, strict=True)) == len(saved)


def test_a_checkpoint_that_restores_nothing_of_the_backbone_is_an_error(dataset_dir, tmp_path):
    import tensorflow as tf

    model, _, _ = detector(PRESET, dataset_dir, "none")
    prefix = tf.train.Checkpoint(global_step=tf.Variable(3, dtype=tf.int64)).write(str(tmp_path / "ckpt-3"))
    with pytest.raises(CheckpointMismatch, match="restores no variable of the backbone.*--init-checkpoint none"):
        restore_modules(model, prefix, ("backbone", "decoder"))


def test_a_checkpoint_of_another_backbone_is_an_error(dataset_dir, tmp_path):
    _, _, tiny_params = detector("retinanet-tiny-128", dataset_dir, None)
    prefix, _ = classification_checkpoint(tiny_params, tmp_path, step=5)
    model, _, _ = detector(PRESET, dataset_dir, "none")
    with pytest.raises(CheckpointMismatch):
        restore_modules(model, prefix, get_preset(PRESET).checkpoint_modules)
