"""Hostile inputs beyond the corpus (tests/data/bad/): files too large to keep in git, made here, and the checks
behind each corpus case taken one at a time: CSV quoting cannot hide rows, declared pixel counts are checked before
any decode, FIFOs are never opened and links out of the images folder are refused unless followed, auto-detection
never crashes, and what the checks cannot see (a JPEG cut short with its end marker put back) is said."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from image_kinds import image_bytes, make_image
from PIL import Image

from jobs.dataset.check import check
from jobs.dataset.findings import DEFAULT_MAX_PIXELS, Report
from jobs.dataset.images import ImageProblem, _inspect_with_pillow, inspect
from jobs.dataset.pipeline import CheckFailed, CheckOptions
from jobs.dataset.prepare import PrepareOptions, prepare
from jobs.dataset.readers import detect_format, read_labels
from jobs.errors import DataError, UsageError

REPO = Path(__file__).resolve().parents[2]
VOTT = "image,xmin,ymin,xmax,ymax,label\n"
GOOD = "".join(f"good{i}.jpg,8,8,40,40,cat\n" for i in (1, 2, 3))


def _images(folder: Path, names=("good1.jpg", "good2.jpg", "good3.jpg")) -> Path:
    for name in names:
        make_image(folder / name, "jpeg")
    return folder


def _coco(path: Path, category_name: str = "cat", info: object = None) -> Path:
    data = {"images": [{"id": i, "file_name": f"good{i}.jpg"} for i in (1, 2, 3)],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [8, 8, 32, 32]} for i in (1, 2, 3)],
            "categories": [{"id": 1, "name": category_name}]}
    if info is not None:
        data["info"] = info
    path.write_text(json.dumps(data, separators=(",", ":")))
    return path


def test_an_open_quote_that_swallows_more_than_a_csv_field_holds_is_fatal_at_its_first_line(tmp_path):
    rest = "".join(f"good{1 + i % 3}.jpg,{i},{i},30,30,cat\n" for i in range(8000))  # about 200 KB
    labels = tmp_path / "labels.csv"
    labels.write_text(VOTT + GOOD + 'good1.jpg,1,1,30,30,"cat\n' + rest)
    report = Report()
    with pytest.raises(DataError):
        read_labels(labels, "auto", report)
    [finding] = report.findings
    assert (finding.code, finding.location) == ("F005", "labels.csv:5")
    assert "from line 5 to" in finding.message and "field larger than field limit" in finding.message


def test_rows_in_count_every_physical_line_a_record_spans(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text(VOTT + GOOD + 'good1.jpg,1,1,30,30,"two\nlines"\n\ngood2.jpg,2,2,30,30,cat\n')
    report = Report()
    _, read = read_labels(labels, "vott-csv", report)
    assert [str(f) for f in report.findings] == [
        "labels.csv:5: F009 unclosed-quote: the row runs over lines 5 to 6: a quoted field holds line breaks (a quote "
        "left open?); its 2 lines are not used"]
    assert (read.rows_in, read.rows_dropped) == (6, 2)  # the blank line 7 is no row


def test_the_pixel_limit_is_checked_on_every_header_not_only_on_sampled_decodes(tmp_path):
    path = tmp_path / "big.png"
    make_image(path, "png-declared:100000x100000")
    with pytest.raises(ImageProblem) as problem:
        inspect(path, decode=False)
    assert problem.value.rule.code == "I014"
    assert "over the limit of 89,478,485; pass --max-pixels N" in str(problem.value)
    assert inspect(path, decode=False, max_pixels=10**10).width == 100000  # raised: the header check passes


def test_the_default_limit_is_pillows_and_other_formats_are_checked_before_any_decode(tmp_path):
    assert DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS
    bmp = bytearray(image_bytes("bmp"))
    bmp[18:26] = (30000).to_bytes(4, "little") + (20000).to_bytes(4, "little")  # declares 600 million pixels
    with pytest.raises(ImageProblem) as problem:
        _inspect_with_pillow(io.BytesIO(bytes(bmp)), decode=False)
    assert problem.value.rule.code == "I014"
    with pytest.raises(ImageProblem) as problem:  # raised: past the size check, to the decode (the data is short)
        _inspect_with_pillow(io.BytesIO(bytes(bmp)), decode=False, max_pixels=10**9)
    assert problem.value.rule.code == "I002" and "truncated" in str(problem.value)  # not Pillow's bomb check
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS  # which is back in place


def test_max_pixels_and_follow_symlinks_are_part_of_the_input_fingerprint(tmp_path):
    _images(tmp_path / "images")
    (tmp_path / "labels.csv").write_text(VOTT + GOOD)
    given = CheckOptions(tmp_path / "labels.csv", tmp_path / "images")
    options = PrepareOptions(given, tmp_path / "out", stats=False)
    assert not prepare(options).unchanged
    assert prepare(options).unchanged
    fewer = replace(given, max_pixels=10**6)
    assert not prepare(replace(options, check=fewer)).unchanged
    assert not prepare(replace(options, check=replace(fewer, follow_symlinks=True))).unchanged


def test_links_inside_the_images_folder_are_used_and_links_out_of_it_only_when_followed(tmp_path):
    images = _images(tmp_path / "images")
    make_image(tmp_path / "elsewhere" / "far.jpg", "jpeg")
    (images / "near.jpg").symlink_to("good1.jpg")
    (images / "far.jpg").symlink_to(tmp_path / "elsewhere" / "far.jpg")
    (tmp_path / "labels.csv").write_text(VOTT + GOOD + "near.jpg,8,8,40,40,cat\nfar.jpg,8,8,40,40,cat\n")
    options = CheckOptions(tmp_path / "labels.csv", images)
    refused = check(options)
    assert [f.code for f in refused.report.findings if f.code.startswith("I")] == ["I016"]
    kept = {image.filename for images in refused.splits.values() for image in images}
    assert "near.jpg" in kept and "far.jpg" not in kept
    followed = check(CheckOptions(tmp_path / "labels.csv", images, follow_symlinks=True))
    assert not [f for f in followed.report.findings if f.code.startswith("I")]
    assert followed.rows == {"in": 5, "written": 5, "reported": 0}


def test_a_fifo_named_like_a_label_file_is_refused_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "labels.csv")
    os.mkfifo(tmp_path / "instances.json")
    for path in (tmp_path / "labels.csv", tmp_path / "instances.json"):
        with pytest.raises(UsageError, match="is not a regular file"):
            detect_format(path)
        with pytest.raises(UsageError, match="is not a regular file"):
            read_labels(path, "coco-json" if path.suffix == ".json" else "vott-csv", Report())


def test_a_one_line_coco_file_with_a_long_string_is_detected_as_json(tmp_path):
    path = _coco(tmp_path / "instances.json", info={"description": "x" * 200_000})  # no comma in 200 KB
    assert detect_format(path) == "coco-json"
    assert read_labels(path, "auto", Report())[1].rows_in == 3


def test_no_sniffer_crashes_on_a_first_line_longer_than_a_csv_field(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text('"' + "x" * 200_000 + "\n")
    with pytest.raises(UsageError, match="matches no known format"):
        detect_format(path)


def test_json_nested_200000_deep_is_one_finding(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text('{"images": ' + "[" * 200_000 + "]" * 200_000 + "}")
    report = Report()
    with pytest.raises(DataError):
        read_labels(path, "auto", report)
    assert [f.code for f in report.findings] == ["F011"]


def test_a_class_name_of_a_million_characters_is_one_short_fatal_error(tmp_path):
    _images(tmp_path)
    labels = _coco(tmp_path / "instances.json", category_name="n" * 1_000_000)
    with pytest.raises(CheckFailed) as failure:
        check(CheckOptions(labels))
    assert [f.code for f in failure.value.report.findings] == ["C006"]
    assert "a class name of 1,000,000 characters" in str(failure.value) and len(str(failure.value)) < 500


def test_a_jpeg_cut_short_with_its_end_marker_put_back_is_not_detected_and_the_readme_says_so(tmp_path):
    """Decoders (Pillow, and TensorFlow's too) fill the missing part and raise nothing; libjpeg's warning is not
    reachable from Python. If this starts failing, a decoder can tell: report it (I006) and update the README."""
    images = _images(tmp_path / "images")
    make_image(images / "cut.jpg", "cut:256x192")
    (tmp_path / "labels.csv").write_text(VOTT + GOOD + "cut.jpg,8,8,40,40,cat\n")
    checked = check(CheckOptions(tmp_path / "labels.csv", images, verify="full"))
    assert not [f for f in checked.report.findings if f.code in {"I002", "I006"}]
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert "Not detected: a JPEG cut short with its end marker put back" in readme


def test_check_and_stats_take_max_pixels_and_follow_symlinks(tmp_path):
    images = _images(tmp_path / "images")
    make_image(tmp_path / "elsewhere" / "far.jpg", "jpeg")
    (images / "far.jpg").symlink_to(tmp_path / "elsewhere" / "far.jpg")
    (tmp_path / "labels.csv").write_text(VOTT + GOOD + "far.jpg,8,8,40,40,cat\n")
    env = os.environ | {"COLUMNS": "1000", "PYTHONPATH": str(REPO)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "jobs", "data", *args, "--input", "labels.csv", "--images",
                               "images"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    checked = run("check", "--follow-symlinks", "--report", "report.json")
    assert checked.returncode == 0, checked.stderr
    assert "I016" not in checked.stderr and "rows in 4 = written 4 + reported 0" in checked.stdout
    stats = run("stats", "--out", "charts", "--max-pixels", "3000")
    assert stats.returncode == 1
    assert "I014 too-many-pixels: image 'good1.jpg': 64x48 is 3,072 pixels" in stats.stderr
