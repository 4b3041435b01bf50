"""Our records from the raccoon CSV match the reference written by the old generate_tfrecord.py."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.dataset.pipeline import CheckOptions
from jobs.dataset.prepare import PrepareOptions, prepare

BOX_KEYS = ("xmin", "xmax", "ymin", "ymax")


def _examples(files) -> dict[str, dict]:
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    examples = {}
    for raw in tf.data.TFRecordDataset([str(f) for f in files]):
        feature = example_pb2.Example.FromString(raw.numpy()).features.feature
        examples[feature["image/filename"].bytes_list.value[0].decode()] = feature
    return examples


@pytest.fixture(scope="module")
def prepared(raccoon, tmp_path_factory):
    out = tmp_path_factory.mktemp("raccoon") / "data"
    given = CheckOptions(raccoon / "data" / "test_labels.csv", raccoon / "images", val_fraction=0.0)
    result = prepare(PrepareOptions(given, out))
    return out, result


def test_same_images_boxes_and_classes_as_the_reference_record(raccoon, prepared):
    out, result = prepared
    reference = _examples([raccoon / "data" / "test.record"])
    ours = _examples(sorted(out.glob("train-*.tfrecord")))
    assert len(reference) == 40 and ours.keys() == reference.keys()
    assert result.summary["rows"]["reported"] == 0
    for name, ref in reference.items():
        mine = ours[name]
        assert mine["image/encoded"].bytes_list.value == ref["image/encoded"].bytes_list.value, name
        for key in BOX_KEYS:
            np.testing.assert_allclose(mine[f"image/object/bbox/{key}"].float_list.value,
                                       ref[f"image/object/bbox/{key}"].float_list.value, atol=1e-6)
        assert mine["image/object/class/text"].bytes_list.value == ref["image/object/class/text"].bytes_list.value
        assert mine["image/object/class/label"].int64_list.value == ref["image/object/class/label"].int64_list.value
        assert mine["image/height"].int64_list.value == ref["image/height"].int64_list.value
        assert mine["image/width"].int64_list.value == ref["image/width"].int64_list.value


def test_model_garden_decoder_reads_the_same_boxes_and_classes(raccoon, prepared):
    import tensorflow as tf
    from official.vision.dataloaders.tf_example_decoder import TfExampleDecoder

    out, _ = prepared
    decoder = TfExampleDecoder()
    by_name = {}
    for path in sorted(out.glob("train-*.tfrecord")):
        for raw in tf.data.TFRecordDataset(str(path)):
            features = tf.io.parse_single_example(raw, {"image/filename": tf.io.FixedLenFeature([], tf.string)})
            by_name[features["image/filename"].numpy().decode()] = decoder.decode(raw)
    ref_by_name = {}
    for raw in tf.data.TFRecordDataset(str(raccoon / "data" / "test.record")):
        features = tf.io.parse_single_example(raw, {"image/filename": tf.io.FixedLenFeature([], tf.string)})
        ref_by_name[features["image/filename"].numpy().decode()] = decoder.decode(raw)
    assert by_name.keys() == ref_by_name.keys()
    for name, ref in ref_by_name.items():
        mine = by_name[name]
        np.testing.assert_allclose(mine["groundtruth_boxes"].numpy(), ref["groundtruth_boxes"].numpy(), atol=1e-6)
        np.testing.assert_array_equal(mine["groundtruth_classes"].numpy(), ref["groundtruth_classes"].numpy())
        assert mine["image"].shape == ref["image"].shape
        assert int(mine["source_id"].numpy()) > 0  # Model Garden parses it as a number
