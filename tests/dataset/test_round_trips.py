"""Every format, end to end on real raccoon images: labels -> ``prepare`` (auto-detected) -> TFRecords -> Model
Garden's decoder gives back the same images, boxes, classes and splits, negatives included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from engine_outputs import outcome
from format_writers import (
    read_voc,
    write_coco,
    write_datitran,
    write_vertex,
    write_vott,
    write_yolo,
)

from jobs.dataset.pipeline import CheckOptions
from jobs.dataset.prepare import PrepareOptions, prepare

FORMATS = ("vott-csv", "datitran-csv", "vertex-csv", "voc-xml", "coco-json", "yolo")
ASSIGNS_SPLITS = {"vertex-csv", "yolo"}
NEGATIVE = "raccoon-13.jpg"


@pytest.fixture(scope="module")
def sample(raccoon, tmp_path_factory):
    """12 labelled raccoon images from their VOC files, one more as a negative; images in one folder."""
    root = tmp_path_factory.mktemp("sample")
    images = root / "images"
    images.mkdir()
    xmls = [raccoon / "annotations" / f"raccoon-{i}.xml" for i in range(1, 13)]
    items = []
    for index, xml in enumerate(xmls):
        name, width, height, boxes = read_voc(xml)
        split = "val" if index % 4 == 3 else "test" if index % 6 == 5 else "train"
        items.append((name, width, height, split, boxes))
        shutil.copy(raccoon / "images" / name, images / name)
    from PIL import Image

    shutil.copy(raccoon / "images" / NEGATIVE, images / NEGATIVE)
    with Image.open(images / NEGATIVE) as negative:
        items.append((NEGATIVE, negative.width, negative.height, "train", []))
    return root, images, items, xmls


def _write(fmt: str, folder: Path, sample) -> tuple[Path, Path | None, bool]:
    """(input, images folder or None for the format's own, unlabeled as negatives)"""
    _, images, items, xmls = sample
    if fmt == "vott-csv":
        return write_vott(folder, items), images, True
    if fmt == "datitran-csv":
        return write_datitran(folder, items), images, True
    if fmt == "vertex-csv":
        return write_vertex(folder, items), images, False
    if fmt == "voc-xml":  # the raccoon XML files themselves, plus one without objects
        annotations = folder / "annotations"
        annotations.mkdir()
        for xml in xmls:
            shutil.copy(xml, annotations / xml.name)
        (annotations / "raccoon-13.xml").write_text(f"<annotation><filename>{NEGATIVE}</filename></annotation>")
        return annotations, images, False
    if fmt == "coco-json":
        return write_coco(folder, items), images, False
    return write_yolo(folder, items, images), None, False


def _decoded(out: Path) -> dict[str, dict]:
    import tensorflow as tf
    from official.vision.dataloaders.tf_example_decoder import TfExampleDecoder

    decoder = TfExampleDecoder()
    records = {}
    for path in sorted(out.glob("*.tfrecord")):
        for raw in tf.data.TFRecordDataset(str(path)):
            decoded = decoder.decode(raw)
            features = tf.io.parse_single_example(raw, {
                "image/filename": tf.io.FixedLenFeature([], tf.string),
                "image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/object/class/text": tf.io.VarLenFeature(tf.string)})
            name = features["image/filename"].numpy().decode()
            records[name] = {
                "split": path.name.split("-")[0], "boxes": decoded["groundtruth_boxes"].numpy(),
                "classes": decoded["groundtruth_classes"].numpy(), "shape": tuple(decoded["image"].shape),
                "encoded": features["image/encoded"].numpy(),
                "text": [t.decode() for t in tf.sparse.to_dense(features["image/object/class/text"]).numpy()]}
    return records


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(fmt, sample, tmp_path):
    labels, images, negatives = _write(fmt, tmp_path, sample)
    out = tmp_path / "out"
    given = CheckOptions(labels, images, val_fraction=0.0, unlabeled_as_negatives=negatives)
    result = prepare(PrepareOptions(given, out, stats=False))
    summary = result.summary
    assert summary["format"] == fmt
    assert summary["rows"]["reported"] == 0 and summary["rows"]["in"] == summary["rows"]["written"]
    assert summary["classes"] == [{"id": 1, "name": "raccoon"}]
    records = {Path(name).name: record for name, record in _decoded(out).items()}  # YOLO: images/<split>/...
    _, image_dir, items, _ = sample
    assert set(records) == {item[0] for item in items}
    for name, width, height, split, boxes in items:
        record = records[name]
        assert record["encoded"] == (image_dir / name).read_bytes(), "JPEG bytes pass through unchanged"
        assert record["shape"] == (height, width, 3)
        expected = np.array([[b[2] / height, b[1] / width, b[4] / height, b[3] / width] for b in boxes])
        np.testing.assert_allclose(record["boxes"], expected.reshape(-1, 4), atol=1e-5)
        assert list(record["classes"]) == [1] * len(boxes)
        assert record["text"] == ["raccoon"] * len(boxes)
        assert record["split"] == (split if fmt in ASSIGNS_SPLITS else "train")
    splits = summary["splits"]
    assert sum(s["negatives"] for s in splits.values()) == 1
    if fmt in ASSIGNS_SPLITS:
        assert splits["test"]["pattern"] == "test-*.tfrecord" and splits["test"]["coco"] == "test_coco.json"
        test_truth = json.loads((out / "test_coco.json").read_text())
        assert sorted(Path(i["file_name"]).name for i in test_truth["images"]) == sorted(
            i[0] for i in items if i[3] == "test")
    else:
        assert set(splits) == {"train", "val"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_beam_engine_writes_what_the_local_engine_writes(fmt, sample, tmp_path):
    """Every format's sample through both engines: the same examples one by one, split, label map, ground truth,
    findings and reconciliation line."""
    labels, images, negatives = _write(fmt, tmp_path, sample)
    given = CheckOptions(labels, images, val_fraction=0.25, seed=5, unlabeled_as_negatives=negatives)
    prepare(PrepareOptions(given, tmp_path / "local", stats=False))
    prepare(PrepareOptions(given, tmp_path / "beam", stats=False, engine="beam"))
    expected = outcome(tmp_path / "local")
    assert sum(len(examples) for examples in expected["examples"].values()) == len(sample[2])
    assert outcome(tmp_path / "beam") == expected
