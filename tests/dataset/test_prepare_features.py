"""``prepare`` features beyond one format: Vertex splits, negatives, conversion, case fixes, shards, reruns,
parallel workers and charts."""

from __future__ import annotations

import json
from pathlib import Path

from image_kinds import make_image

from jobs.dataset.pipeline import CheckOptions
from jobs.dataset.prepare import PrepareOptions, prepare
from jobs.dataset.synthetic import make_dataset
from jobs.dataset.tfrecord import read_records

VOTT = '"image","xmin","ymin","xmax","ymax","label"\n'


def _vott(path: Path, rows: list[str]) -> Path:
    path.write_text(VOTT + "".join(f"{row}\n" for row in rows))
    return path


def _examples(out: Path) -> dict[str, dict]:
    from tensorflow.core.example import example_pb2

    examples = {}
    for shard in sorted(out.glob("*.tfrecord")):
        with shard.open("rb") as stream:
            for raw in read_records(stream):
                feature = example_pb2.Example.FromString(raw).features.feature
                examples[feature["image/filename"].bytes_list.value[0].decode()] = feature
    return examples


def test_vertex_splits_honour_ml_use_and_split_unassigned_80_10_10(tmp_path):
    images = tmp_path / "images"
    rows = []
    for index in range(60):
        make_image(images / f"u{index:02d}.jpg", "jpeg")
        rows.append(f"UNASSIGNED,gs://bucket/u{index:02d}.jpg,cat,0.1,0.1,,,0.6,0.6,,")
    for name, use in (("t.jpg", "TRAIN"), ("v.jpg", "VALIDATION"), ("x.jpg", "TEST")):
        make_image(images / name, "jpeg")
        rows.append(f"{use},gs://bucket/{name},cat,0.1,0.1,,,0.6,0.6,,")
    labels = tmp_path / "vertex.csv"
    labels.write_text("\n".join(rows) + "\n")
    summary = prepare(PrepareOptions(CheckOptions(labels, images), tmp_path / "out", stats=False)).summary
    assert {split: s["images"] for split, s in summary["splits"].items()} == {"train": 49, "val": 7, "test": 7}
    truth = {split: {i["file_name"] for i in json.loads((tmp_path / "out" / f"{split}_coco.json").read_text())[
        "images"]} for split in ("train", "val", "test")}
    assert "t.jpg" in truth["train"] and "v.jpg" in truth["val"] and "x.jpg" in truth["test"]


def test_coco_crowd_regions_are_kept_as_crowds_in_records_and_ground_truth(tmp_path):
    images = tmp_path / "images"
    data = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}
    for index in range(10):
        make_image(images / f"c{index}.jpg", "jpeg")
        data["images"].append({"id": index + 1, "file_name": f"c{index}.jpg", "width": 64, "height": 48})
        for crowd, bbox in ((0, [4, 4, 20, 20]), (index == 0, [30, 10, 30, 30])):
            data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": index + 1,
                                        "category_id": 1, "bbox": bbox, "iscrowd": int(crowd)})
    labels = tmp_path / "instances.json"
    labels.write_text(json.dumps(data))
    result = prepare(PrepareOptions(CheckOptions(labels, images, val_fraction=0.0), tmp_path / "out", stats=False))
    assert result.summary["findings"] == {"B010": 1} and result.summary["rows"]["written"] == 20
    crowd = _examples(tmp_path / "out")["c0.jpg"]
    assert list(crowd["image/object/is_crowd"].int64_list.value) == [0, 1]
    assert list(_examples(tmp_path / "out")["c1.jpg"]["image/object/is_crowd"].int64_list.value) == [0, 0]
    truth = json.loads((tmp_path / "out" / "train_coco.json").read_text())["annotations"]
    assert sorted(a["iscrowd"] for a in truth) == [0] * 19 + [1]


def test_unlabeled_images_become_negatives_but_not_images_whose_rows_were_dropped(tmp_path):
    images = tmp_path / "images"
    for name in ("a.jpg", "b.jpg", "c.jpg", "bad-row.jpg", "sub/d.png"):
        make_image(images / name, "png" if name.endswith("png") else "jpeg")
    labels = _vott(tmp_path / "labels.csv", ['"a.jpg","8","8","40","40","cat"', '"b.jpg","8","8","40","40","cat"',
                                             '"bad-row.jpg","x","8","40","40","cat"'])
    given = CheckOptions(labels, images, val_fraction=0.0, unlabeled_as_negatives=True)
    result = prepare(PrepareOptions(given, tmp_path / "out", stats=False))
    assert result.summary["rows"] == {"in": 5, "written": 4, "reported": 1}
    assert result.summary["splits"]["train"]["negatives"] == 2
    assert sorted(_examples(tmp_path / "out")) == ["a.jpg", "b.jpg", "c.jpg", "sub/d.png"]
    assert not [f for f in result.report.findings if f.code == "I013"]
    without = prepare(PrepareOptions(CheckOptions(labels, images, val_fraction=0.0), tmp_path / "out2", stats=False))
    assert [f.message for f in without.report.findings if f.code == "I013"] == [
        "2 image(s) are named by no label and not used: c.jpg, sub/d.png; pass --unlabeled-as-negatives to keep "
        "them as negatives (images without objects)"]


def test_other_formats_are_converted_to_png_and_names_use_the_case_on_disk(tmp_path):
    images = tmp_path / "images"
    make_image(images / "anim.gif", "gif")
    make_image(images / "Photo.JPG", "jpeg")
    labels = _vott(tmp_path / "labels.csv", ['"anim.gif","8","8","40","40","cat"', '"photo.jpg","8","8","40","40",'
                                                                                   '"cat"'])
    result = prepare(PrepareOptions(CheckOptions(labels, images, val_fraction=0.0), tmp_path / "out", stats=False))
    assert {f.code for f in result.report.findings} >= {"I007", "I012"}
    examples = _examples(tmp_path / "out")
    assert sorted(examples) == ["Photo.JPG", "anim.gif"]
    gif = examples["anim.gif"]
    assert gif["image/format"].bytes_list.value == [b"png"]
    assert gif["image/encoded"].bytes_list.value[0].startswith(b"\x89PNG")
    assert examples["Photo.JPG"]["image/encoded"].bytes_list.value[0] == (images / "Photo.JPG").read_bytes()


def test_shards_by_count_or_by_bytes(tmp_path):
    data = make_dataset(tmp_path / "data", count=30, seed=2, size=64)
    given = CheckOptions(data.labels_csv, data.images_dir)
    by_count = prepare(PrepareOptions(given, tmp_path / "a", num_shards=3, stats=False))
    assert [s["file"] for s in by_count.summary["splits"]["train"]["shards"]] == [
        "train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord", "train-00002-of-00003.tfrecord"]
    by_bytes = prepare(PrepareOptions(given, tmp_path / "b", shard_bytes=8_000, stats=False))
    shards = by_bytes.summary["splits"]["train"]["shards"]
    assert len(shards) >= 4 and sum(s["records"] for s in shards) == by_bytes.summary["splits"]["train"]["images"]
    assert by_bytes.summary["content_hash"] == by_count.summary["content_hash"], "the hash ignores the sharding"


def test_parallel_workers_write_exactly_what_one_process_writes(tmp_path):
    data = make_dataset(tmp_path / "data", count=80, seed=3, size=64)
    one = prepare(PrepareOptions(CheckOptions(data.labels_csv, data.images_dir, workers=1), tmp_path / "one",
                                 stats=False))
    two = prepare(PrepareOptions(CheckOptions(data.labels_csv, data.images_dir, workers=2), tmp_path / "two",
                                 stats=False))
    assert one.summary["content_hash"] == two.summary["content_hash"]
    for shard in (tmp_path / "one").glob("*.tfrecord"):
        assert shard.read_bytes() == (tmp_path / "two" / shard.name).read_bytes()
    assert one.summary["rows"] == two.summary["rows"] == {"in": data.boxes, "written": data.boxes, "reported": 0}


def test_a_voc_folder_rerun_is_unchanged_until_an_annotation_changes(tmp_path):
    images = tmp_path / "images"
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    for name in ("a", "b", "c"):
        make_image(images / f"{name}.jpg", "jpeg")
        (annotations / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><object><name>cat</name><bndbox><xmin>8</xmin>"
            "<ymin>8</ymin><xmax>40</xmax><ymax>40</ymax></bndbox></object></annotation>")
    options = PrepareOptions(CheckOptions(annotations, None), tmp_path / "out", stats=False)
    first = prepare(options)
    assert first.summary["format"] == "voc-xml" and not first.unchanged
    assert prepare(options).unchanged
    xml = annotations / "b.xml"
    xml.write_text(xml.read_text().replace("<xmax>40</xmax>", "<xmax>41</xmax>"))
    assert not prepare(options).unchanged


def test_a_voc_devkit_keeps_the_splits_of_its_image_sets(tmp_path):
    devkit = tmp_path / "VOC2007"
    (devkit / "Annotations").mkdir(parents=True)
    (devkit / "ImageSets" / "Main").mkdir(parents=True)
    for index in range(20):
        make_image(devkit / "JPEGImages" / f"{index:06d}.jpg", "jpeg")
        (devkit / "Annotations" / f"{index:06d}.xml").write_text(
            f"<annotation><filename>{index:06d}.jpg</filename><object><name>cat</name><bndbox><xmin>8</xmin>"
            "<ymin>8</ymin><xmax>40</xmax><ymax>40</ymax></bndbox></object></annotation>")
    sets = {"train": range(0, 12), "val": range(12, 16), "test": range(16, 18)}  # 18, 19: in no set
    for split, ids in sets.items():
        (devkit / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i:06d}\n" for i in ids))
    options = PrepareOptions(CheckOptions(devkit, None, val_fraction=0.5), tmp_path / "out", stats=False)
    summary = prepare(options).summary
    truth = {split: {i["file_name"] for i in json.loads((tmp_path / "out" / f"{split}_coco.json").read_text())[
        "images"]} for split in ("train", "val", "test")}
    for split, ids in sets.items():
        assert {f"{i:06d}.jpg" for i in ids} <= truth[split]
    assert {summary["splits"][split]["images"] for split in ("train", "val")} == {13, 5}  # 18, 19: one each
    assert summary["splits"]["test"]["images"] == 2
    (devkit / "ImageSets" / "Main" / "val.txt").write_text("000012\n")
    assert not prepare(options).unchanged, "a changed image set is a changed input"


def test_charts_are_written_beside_the_records(tmp_path):
    data = make_dataset(tmp_path / "data", count=12, seed=4, size=64)
    result = prepare(PrepareOptions(CheckOptions(data.labels_csv, data.images_dir), tmp_path / "out"))
    assert result.summary["stats"] == ["stats/classes.png", "stats/boxes_per_image.png", "stats/box_sizes.png",
                                       "stats/samples.png"]
    for name in result.summary["stats"]:
        assert (tmp_path / "out" / name).read_bytes().startswith(b"\x89PNG")
    assert not [p for p in (tmp_path / "out" / "stats").iterdir() if p.name.startswith(".")]

