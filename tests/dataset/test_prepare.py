"""``data prepare`` on small hand-made datasets: messages, reconciliation, split, all-or-nothing output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from jobs.dataset.pipeline import CheckOptions
from jobs.dataset.prepare import PrepareFailed, PrepareOptions, prepare
from jobs.dataset.tfrecord import read_records

HEADER = '"image","xmin","ymin","xmax","ymax","label"\n'


def make_images(folder: Path, names: list[str], size=(100, 80)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        Image.new("RGB", size, (index * 20 % 255, 90, 140)).save(folder / name)
    return folder


def vott(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def small(tmp_path):
    images = make_images(tmp_path / "images", [f"img{i}.jpg" for i in range(10)])
    rows = [f'"img{i}.jpg","10","10","{30 + i}","40","{"cat" if i % 2 else "dog"}"' for i in range(10)]
    return tmp_path, images, rows


def messages(report) -> list[str]:
    """Findings about rows and images (not the per-class split warnings of tiny test sets)."""
    return [str(finding) for finding in report.findings if not finding.code.startswith("S")]


def test_bad_rows_are_reported_with_file_row_and_reason(small):
    tmp, images, rows = small
    rows += [
        '"gone.jpg","1","1","5","5","cat"',  # line 12: missing image
        '"img1.jpg","0","0","500","50","cat"',  # line 13: box outside the 100x80 image
        '"img2.jpg","50","10","20","40","dog"',  # line 14: inverted
        '"img3.jpg","5","5","5","40","dog"',  # line 15: zero area
        '"img4.jpg","abc","5","9","40","dog"',  # line 16: not a number
        '"img5.jpg","-1","0","30","81","dog"',  # line 17: within tolerance: clipped and kept
    ]
    labels = vott(tmp / "labels.csv", rows)
    result = prepare(PrepareOptions(CheckOptions(labels, images), tmp / "out"))
    assert sorted(messages(result.report), key=lambda m: int(m.split(":")[1])) == [
        f"labels.csv:12: I001 missing-image: image 'gone.jpg' not found in {images} (1 row(s) dropped)",
        "labels.csv:13: B005 box-outside-image: box (0, 0, 500, 50) of 'cat' lies outside the 100x80 image",
        "labels.csv:14: B002 box-inverted: box (50, 10, 20, 40) of 'dog' is inverted (max < min)",
        "labels.csv:15: B003 box-zero-area: box (5, 5, 5, 40) of 'dog' has zero area",
        "labels.csv:16: F003 bad-field: xmin='abc' is not a number",
        "labels.csv:17: B004 box-clipped: box (-1, 0, 30, 81) of 'dog' clipped to the 100x80 image",
    ]
    assert result.summary["rows"] == {"in": 16, "written": 11, "reported": 5}
    train, val = (result.summary["splits"][s] for s in ("train", "val"))
    assert train["boxes"] + val["boxes"] == 11
    report = json.loads((tmp / "out" / "report.json").read_text())
    assert {f["code"] for f in report["findings"]} == {"I001", "B005", "B002", "B003", "F003", "B004", "S002"}


def test_clipped_box_is_written_inside_the_image(small):
    tmp, images, _ = small
    labels = vott(tmp / "labels.csv", ['"img0.jpg","-1","0","30","81","dog"', '"img1.jpg","1","1","9","9","cat"'])
    prepare(PrepareOptions(CheckOptions(labels, images, val_fraction=0.0), tmp / "out"))
    ground_truth = json.loads((tmp / "out" / "train_coco.json").read_text())
    boxes = {a["image_id"]: a["bbox"] for a in ground_truth["annotations"]}
    assert boxes[1] == [0.0, 0.0, 30.0, 80.0]


def test_unknown_class_against_a_label_map_is_one_fatal_error_and_writes_nothing(small):
    tmp, images, rows = small
    rows += ['"img1.jpg","1","1","9","9","bird"', '"img2.jpg","1","1","9","9","bird"']
    labels = vott(tmp / "labels.csv", rows)
    label_map = tmp / "label_map.pbtxt"
    label_map.write_text("item { id: 1 name: 'cat' }\nitem { id: 2 name: 'dog' }\n")
    with pytest.raises(PrepareFailed) as failure:
        prepare(PrepareOptions(CheckOptions(labels, images, label_map=label_map), tmp / "out"))
    assert messages(failure.value.report) == [
        "labels.csv: C001 unknown-class: classes not in the label map (cat, dog): "
        "'bird' at labels.csv:12, labels.csv:13; add them to the label map or fix the labels"
    ]
    assert not (tmp / "out").exists()
    assert [p.name for p in tmp.iterdir() if p.name.startswith(".out")] == []


def test_given_label_map_fixes_the_ids(small):
    tmp, images, rows = small
    labels = vott(tmp / "labels.csv", rows)
    label_map = tmp / "label_map.pbtxt"
    label_map.write_text("item { id: 7 name: 'dog' }\nitem { id: 3 name: 'cat' }\n")
    result = prepare(PrepareOptions(CheckOptions(labels, images, label_map=label_map), tmp / "out"))
    assert result.summary["classes"] == [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]


def test_failed_prepare_keeps_the_previous_output(small):
    tmp, images, rows = small
    out = tmp / "out"
    prepare(PrepareOptions(CheckOptions(vott(tmp / "labels.csv", rows), images), out))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = vott(tmp / "bad.csv", ['"gone.jpg","1","1","5","5","cat"'])
    with pytest.raises(PrepareFailed, match="no usable box remains"):
        prepare(PrepareOptions(CheckOptions(bad, images), out))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_rerun_with_unchanged_inputs_rewrites_nothing(small):
    tmp, images, rows = small
    labels = vott(tmp / "labels.csv", rows)
    first = prepare(PrepareOptions(CheckOptions(labels, images), tmp / "out"))
    stamps = {p: p.stat().st_mtime_ns for p in (tmp / "out").rglob("*")}
    again = prepare(PrepareOptions(CheckOptions(labels, images), tmp / "out"))
    assert again.unchanged and not first.unchanged
    assert {p: p.stat().st_mtime_ns for p in (tmp / "out").rglob("*")} == stamps
    changed = prepare(PrepareOptions(CheckOptions(labels, images, seed=1), tmp / "out"))
    assert not changed.unchanged


def test_split_is_stratified_deterministic_and_independent_of_row_order(tmp_path):
    names = [f"img{i:02d}.jpg" for i in range(40)]
    images = make_images(tmp_path / "images", names)
    rows = [f'"{n}","1","1","20","20","{"rare" if i < 10 else "common"}"' for i, n in enumerate(names)]
    out_a = prepare(PrepareOptions(CheckOptions(vott(tmp_path / "a.csv", rows), images, seed=3), tmp_path / "a"))
    out_b = prepare(PrepareOptions(CheckOptions(vott(tmp_path / "b.csv", rows[::-1]), images, seed=3), tmp_path / "b"))
    out_c = prepare(PrepareOptions(CheckOptions(vott(tmp_path / "c.csv", rows), images, seed=4), tmp_path / "c"))
    val = json.loads((tmp_path / "a" / "val_coco.json").read_text())["images"]
    assert out_a.summary["splits"]["val"]["per_class"] == {"common": 6, "rare": 2}
    assert [i["file_name"] for i in val] == [
        i["file_name"] for i in json.loads((tmp_path / "b" / "val_coco.json").read_text())["images"]]
    assert out_b.summary["content_hash"] == out_a.summary["content_hash"]
    assert out_c.summary["content_hash"] != out_a.summary["content_hash"]


def test_records_carry_original_bytes_and_real_format(tmp_path):
    images = make_images(tmp_path / "images", ["a.png", "b.jpg"])
    labels = vott(tmp_path / "labels.csv", ['"a.png","1","2","30","40","x"', '"b.jpg","1","2","30","40","x"'])
    prepare(PrepareOptions(CheckOptions(labels, images, val_fraction=0.0), tmp_path / "out"))
    from tensorflow.core.example import example_pb2

    with (tmp_path / "out" / "train-00000-of-00001.tfrecord").open("rb") as stream:
        examples = [example_pb2.Example.FromString(r).features.feature for r in read_records(stream)]
    by_name = {e["image/filename"].bytes_list.value[0].decode(): e for e in examples}
    assert by_name["a.png"]["image/format"].bytes_list.value == [b"png"]
    assert by_name["b.jpg"]["image/format"].bytes_list.value == [b"jpeg"]
    assert by_name["a.png"]["image/encoded"].bytes_list.value[0] == (images / "a.png").read_bytes()
    assert {e["image/source_id"].bytes_list.value[0] for e in examples} == {b"1", b"2"}
    assert list(by_name["a.png"]["image/object/bbox/ymax"].float_list.value) == [pytest.approx(0.5)]
