"""``predict_paths`` skips the files it cannot decode, predicts the rest and says which were skipped and why.

A stand-in predictor (one box per picture) keeps these tests free of a trained model; the CLI's exit code and
messages on a real export are in tests/runtime/test_other_data.py.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from jobs.errors import DataError
from jobs.io import OUTPUT_MARKER
from jobs.report.drawing import Detection


class OneBoxPerPicture:
    def detect(self, image, name: str, score_threshold: float = 0.3, frame: int | None = None) -> list[Detection]:
        return [Detection(name, "square", 1, 0.9, 1.0, 1.0, 5.0, 5.0, frame)]

    def detect_all(self, pictures, score_threshold: float) -> list[list[Detection]]:
        return [self.detect(p.image, str(p.source), score_threshold, p.frame) for p in pictures]


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "c.png"):
        Image.new("RGB", (16, 12), (200, 10, 10)).save(images / name)
    (images / "b.jpg").write_bytes(b"this is not a JPEG")
    good = images / "a.jpg"
    (images / "d.jpg").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])  # truncated
    (images / "notes.txt").write_text("not an input")
    return images


def test_unreadable_files_are_skipped_and_listed_and_the_rest_predicted(folder, tmp_path):
    from jobs.runtime.predict import predict_paths

    out = tmp_path / "out"
    result = predict_paths(OneBoxPerPicture(), [folder], out)
    assert result.files == 4
    reasons = {e.path.name: e.reason for e in result.unreadable}
    assert reasons.keys() == {"b.jpg", "d.jpg"}
    assert reasons["b.jpg"] == "not an image that Pillow can read" and "truncated" in reasons["d.jpg"].lower()
    assert all(str(e) == f"{e.path}: {e.reason}" for e in result.unreadable)
    assert [d.image for d in result.detections] == [str(folder / "a.jpg"), str(folder / "c.png")]
    assert sorted(p.name for p in out.iterdir()) == [
        OUTPUT_MARKER, "a.jpg", "c.png", "detections.csv", "detections.json"]
    assert [d["image"] for d in json.loads((out / "detections.json").read_text())] == [
        str(folder / "a.jpg"), str(folder / "c.png")]
    assert len((out / "detections.csv").read_text().splitlines()) == 3


def test_an_unreadable_video_is_skipped_too(tmp_path):
    from jobs.runtime.predict import predict_paths

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not a video")
    result = predict_paths(OneBoxPerPicture(), [video])
    assert result.detections == [] and result.files == 1
    assert [(e.path, e.reason) for e in result.unreadable] == [
        (video, "cannot read this video (OpenCV could not open it)")]


def test_no_images_at_all_is_a_data_error_and_writes_nothing(tmp_path):
    from jobs.runtime.predict import predict_paths

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no pictures here")
    with pytest.raises(DataError, match=rf"^no images or videos in {empty} \(looked for .*\.jpg") as raised:
        predict_paths(OneBoxPerPicture(), [empty], tmp_path / "out")
    assert raised.value.exit_code == 1
    assert not (tmp_path / "out").exists()


def test_out_never_replaces_an_input_or_a_folder_it_did_not_write(folder, tmp_path):
    from jobs.io import OutputRefused
    from jobs.runtime.predict import predict_paths

    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for out in (folder, tmp_path):
        with pytest.raises(OutputRefused, match="the input"):
            predict_paths(OneBoxPerPicture(), [folder], out)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    with pytest.raises(OutputRefused, match="did not write"):
        predict_paths(OneBoxPerPicture(), [folder], notes)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before and (notes / "todo.txt").read_text() == "mine"


def test_earlier_predictions_are_replaced_and_equal_names_kept_apart(folder, tmp_path):
    from jobs.runtime.predict import predict_paths

    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (16, 12)).save(other / "a.jpg")
    Image.new("RGB", (16, 12)).save(other / "detections.csv.jpg")
    out = tmp_path / "out"
    predict_paths(OneBoxPerPicture(), [folder / "c.png"], out)
    predict_paths(OneBoxPerPicture(), [folder / "a.jpg", other], out)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "a-2.jpg", "a.jpg", "detections.csv", "detections.csv.jpg", "detections.json"]
