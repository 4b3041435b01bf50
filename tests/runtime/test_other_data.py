"""The demo model evaluated on other data (other class names: refused; the same names under other ids: scored
by name) and run by ``predict`` on folders with an unreadable image and with no image at all."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from evaluation_cli import run_cli

from jobs.dataset import label_map as label_maps

pytestmark = pytest.mark.slow
pytest_plugins = ["evaluation_fixtures"]


def _prepare(demo_run, out, rename=None, label_map=None):
    from jobs.dataset.pipeline import CheckOptions
    from jobs.dataset.prepare import PrepareOptions, prepare

    labels = demo_run.paths["labels (VoTT CSV)"]
    if rename:
        with labels.open(newline="", encoding="utf-8") as stream:
            header, *rows = list(csv.reader(stream))
        labels = out.parent / f"{out.name}.csv"
        with labels.open("w", newline="", encoding="utf-8") as stream:
            csv.writer(stream).writerows([header, *([*row[:5], rename.get(row[5], row[5])] for row in rows)])
    prepare(PrepareOptions(CheckOptions(labels, demo_run.paths["synthetic images"], label_map=label_map), out))
    return out


@pytest.fixture
def model_dir(demo_run, tmp_path):
    """A copy of the demo run, so that a failure here cannot touch the evaluation the other tests read."""
    return shutil.copytree(demo_run.paths["model dir (TensorBoard)"], tmp_path / "model")


def _snapshot(folder) -> dict:
    return {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in folder.iterdir()}


def test_other_class_names_exit_2_naming_them_before_eval_is_written(demo_run, model_dir, tmp_path):
    from jobs.errors import UsageError
    from jobs.runtime.evaluate import evaluate_export

    renamed = _prepare(demo_run, tmp_path / "renamed", rename={"triangle": "star"})
    before = _snapshot(model_dir / "eval")
    result = run_cli("evaluate", "--model-dir", str(model_dir), "--data", str(renamed))
    assert result.returncode == 2, result.stderr[-3000:]
    message = " ".join(result.stderr.split())
    assert f"error: {renamed} has other classes than the model in {model_dir}" in message
    assert "(only in the model: triangle; only in the data: star)" in message
    assert "Traceback" not in result.stderr
    assert _snapshot(model_dir / "eval") == before

    export = shutil.copytree(demo_run.paths["exported model"], tmp_path / "exported")
    with pytest.raises(UsageError, match="only in the model: triangle; only in the data: star"):
        evaluate_export(str(export), str(renamed))
    assert not (export / "eval").exists()


def test_the_same_names_under_other_ids_are_scored_by_name(demo_run, model_dir, tmp_path):
    from jobs.runtime.evaluate import evaluate_checkpoint, evaluate_export

    reversed_ids = tmp_path / "reversed.pbtxt"
    reversed_ids.write_text(label_maps.dumps({"triangle": 1, "square": 2, "circle": 3}))
    reordered = _prepare(demo_run, tmp_path / "reordered", label_map=reversed_ids)
    assert label_maps.load(reordered / "label_map.pbtxt") != label_maps.load(
        demo_run.paths["prepared data"] / "label_map.pbtxt")
    names = [[image["file_name"] for image in json.loads((data / "val_coco.json").read_text())["images"]]
             for data in (reordered, demo_run.paths["prepared data"])]
    assert sorted(names[0]) == sorted(names[1]), "the split changed with the ids: no like-for-like comparison"

    result = evaluate_checkpoint(str(model_dir), str(reordered))
    expected = demo_run.metrics
    assert result.metrics["data"] == str(reordered)
    for name, entry in expected["per_class"].items():
        assert result.metrics["per_class"][name]["AP"] == pytest.approx(entry["AP"], abs=1e-6), name
    assert result.metrics["summary"]["AP"] == pytest.approx(expected["summary"]["AP"], abs=1e-6)
    scored = json.loads((model_dir / "eval" / "groundtruth.json").read_text())
    assert {c["name"]: c["id"] for c in scored["categories"]} == {"circle": 1, "square": 2, "triangle": 3}

    export = shutil.copytree(demo_run.paths["exported model"], tmp_path / "exported")
    info = json.loads((export / "model.json").read_text())
    (export / "model.json").write_text(json.dumps({**info, "model_dir": str(model_dir)}))  # its baseline: the copy
    exported = evaluate_export(str(export), str(reordered))
    assert exported.metrics["baseline"]["AP"] == result.metrics["summary"]["AP"]
    assert exported.metrics["summary"]["AP"] == pytest.approx(expected["summary"]["AP"], abs=0.01)


def _images(demo_run, folder, count):
    folder.mkdir()
    for path in sorted(demo_run.paths["synthetic images"].iterdir())[:count]:
        shutil.copy(path, folder / path.name)
    return folder


def test_predict_skips_an_unreadable_image_writes_the_rest_and_exits_1(demo_run, tmp_path):
    inputs = _images(demo_run, tmp_path / "inputs", 2)
    (inputs / "broken.jpg").write_bytes(b"a text file named like a JPEG")
    out = tmp_path / "out"
    result = run_cli("predict", "--model", str(demo_run.paths["exported model"]), str(inputs), "--out", str(out))
    assert result.returncode == 1, result.stderr[-3000:]
    message = " ".join(result.stderr.split())
    assert f"skipped {inputs / 'broken.jpg'}: not an image that Pillow can read" in message
    assert "error: 1 of 3 files could not be read (listed above); the others were predicted" in message
    assert "Traceback" not in result.stderr
    good = sorted(p.name for p in inputs.iterdir() if p.name != "broken.jpg")
    assert sorted(p.name for p in out.glob("*.jpg")) == good
    detections = json.loads((out / "detections.json").read_text())
    assert detections and {d["image"] for d in detections} <= {str(inputs / name) for name in good}
    assert len((out / "detections.csv").read_text().splitlines()) == len(detections) + 1


def test_predict_on_a_folder_without_images_exits_1_and_says_so(demo_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("predict", "--model", str(demo_run.paths["exported model"]), str(empty))
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"error: no images or videos in {empty}" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
