"""``--format auto``: every format is recognised by its header, file type or folder layout; anything else is a usage
error that says what was expected."""

from __future__ import annotations

import pytest

from jobs.dataset.readers import READERS, detect_format
from jobs.errors import UsageError


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("vott.csv", '"image","xmin","ymin","xmax","ymax","label"\n', "vott-csv"),
    ("train_labels.csv", "filename,width,height,class,xmin,ymin,xmax,ymax\n", "datitran-csv"),
    ("vertex.csv", "TRAIN,gs://b/a.jpg,cat,0.1,0.1,,,0.5,0.5,,\n", "vertex-csv"),
    ("vertex-no-ml-use.csv", "gs://b/a.jpg,cat,0.1,0.1,,,0.5,0.5,,\n", "vertex-csv"),
    ("unassigned.csv", "unassigned,gs://b/a.jpg\n", "vertex-csv"),
    ("instances.json", "{}", "coco-json"),
    ("a.xml", "<annotation/>", "voc-xml"),
    ("data.yaml", "names: [cat]\n", "yolo"),
])
def test_files_are_recognised(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    assert detect_format(path) == expected


def test_folders_are_recognised(tmp_path):
    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "a.xml").write_text("<annotation/>")
    assert detect_format(voc) == "voc-xml"
    flat = tmp_path / "labelimg"
    flat.mkdir()
    (flat / "a.xml").write_text("<annotation/>")
    assert detect_format(flat) == "voc-xml"
    yolo = tmp_path / "yolo"
    (yolo / "labels").mkdir(parents=True)
    assert detect_format(yolo) == "yolo"


def test_a_folder_matching_two_formats_needs_format(tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "a.xml").write_text("<annotation/>")
    with pytest.raises(UsageError, match=r"matches several formats \(voc-xml, yolo\); pass --format"):
        detect_format(tmp_path)


def test_an_unknown_folder_lists_what_each_format_looks_like(tmp_path):
    with pytest.raises(UsageError, match="matches no known format") as error:
        detect_format(tmp_path)
    for reader in READERS.values():
        assert reader.detection in str(error.value)


def test_a_missing_input_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        detect_format(tmp_path / "nothing.csv")
