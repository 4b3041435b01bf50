"""Every registered preset becomes a valid Model Garden experiment whose model runs."""

from __future__ import annotations

import json

import pytest

from jobs.errors import UsageError
from jobs.presets import PRESETS, get_preset

REQUIRED = ("retinanet-mobilenet-256", "retinanet-mobilenet-640", "retinanet-resnet50fpn-640",
            "retinanet-spinenet-mobile-384")


def test_required_presets_are_registered_with_their_cloud_checkpoints():
    for name in REQUIRED:
        assert PRESETS[name].cloud_checkpoint.startswith("gs://")
    with pytest.raises(UsageError, match="unknown preset 'nope'"):
        get_preset("nope")


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    (folder / "dataset.json").write_text(json.dumps({
        "classes": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "max_boxes_per_image": 250,
        "splits": {s: {"pattern": f"{s}-*.tfrecord", "coco": f"{s}_coco.json", "images": 10}
                   for s in ("train", "val")}}))
    return str(folder)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_builds_a_model_with_the_dataset_overrides(name, dataset_dir):
    import tensorflow as tf
    from official.vision.serving import detection

    from jobs.runtime.experiment import build_experiment, make_spec

    spec = make_spec(name, dataset_dir, steps=10, batch_size=None, init_checkpoint=None)
    params = build_experiment(spec)
    assert params.task.model.num_classes == 3  # two classes + background
    assert params.task.train_data.parser.max_num_instances == 250  # raised above Model Garden's 100
    assert params.task.model.input_size == [PRESETS[name].input_size] * 2 + [3]
    size = PRESETS[name].input_size
    module = detection.DetectionModule(params, batch_size=1, input_image_size=[size, size],
                                       input_type="image_tensor")
    outputs = module.serve(tf.zeros([1, 90, 70, 3], tf.uint8))
    assert outputs["detection_boxes"].shape[-1] == 4
    assert outputs["detection_scores"].shape[-1] == 100
