"""The whole path on this machine: prepare -> train -> evaluate -> export -> predict (tens of seconds each)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jobs.metrics import COCO_KEYS

pytestmark = pytest.mark.slow
STEPS = 300


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from jobs.demo import run_demo

    # 300 steps, not fewer: at 200 the run's AP50 depended on TensorFlow's thread count (0.44 to 0.93 over 1 to 16
    # intra-op threads on one machine, 0.28 in a CI run); at 300 it was 0.94 to 0.98 with 1, 2, 8 and 16.
    return run_demo(tmp_path_factory.mktemp("demo"), steps=STEPS, images=150)


def test_demo_trains_a_model_that_finds_the_shapes(demo):
    metrics = json.loads(demo.paths["metrics"].read_text())
    assert set(metrics["summary"]) == set(COCO_KEYS)
    assert set(metrics["per_class"]) == {"circle", "square", "triangle"}
    assert metrics["step"] == STEPS
    # An untrained RetinaNet scores AP50 ~0 here; 300 steps reach far more.
    assert metrics["summary"]["AP50"] > 0.3, metrics["summary"]
    assert (demo.paths["model dir (TensorBoard)"] / "eval").glob("events.out.tfevents.*")
    assert len(list(demo.paths["predictions"].iterdir())) == 4


def test_exported_model_predicts_boxes_in_image_pixels(demo):
    from jobs.runtime.predict import Predictor

    predictor = Predictor(demo.paths["exported model"])
    ground_truth = json.loads((demo.paths["prepared data"] / "val_coco.json").read_text())
    image = ground_truth["images"][0]
    found, _ = predictor.predict(demo.paths["synthetic images"] / image["file_name"], score_threshold=0.3)
    assert found, "the demo model found nothing on a validation image"
    truth = [a for a in ground_truth["annotations"] if a["image_id"] == image["id"]]
    best = max(found, key=lambda d: d.score)
    ious = [_iou((best.xmin, best.ymin, best.xmax, best.ymax), a["bbox"]) for a in truth]
    assert max(ious) > 0.5
    info = json.loads((demo.paths["exported model"] / "model.json").read_text())
    assert info["step"] == STEPS and info["classes"] == ["circle", "square", "triangle"]


def _iou(box, xywh) -> float:
    x, y, w, h = xywh
    ix = max(0.0, min(box[2], x + w) - max(box[0], x))
    iy = max(0.0, min(box[3], y + h) - max(box[1], y))
    inter = ix * iy
    return inter / ((box[2] - box[0]) * (box[3] - box[1]) + w * h - inter)


def test_raccoon_prepares_trains_resumes_and_evaluates(raccoon, tmp_path):
    from jobs.dataset.pipeline import CheckOptions
    from jobs.dataset.prepare import PrepareOptions, prepare
    from jobs.runtime.evaluate import evaluate_checkpoint
    from jobs.runtime.experiment import make_spec
    from jobs.runtime.train import train

    data = tmp_path / "data"
    prepare(PrepareOptions(CheckOptions(raccoon / "data" / "test_labels.csv", raccoon / "images", val_fraction=0.25),
                           data))
    first = train(make_spec("retinanet-tiny-128", str(data), 4, 4, None), str(tmp_path / "model"), "cpu")
    assert (first.start_step, first.final_step) == (0, 4)
    resumed = train(make_spec("retinanet-tiny-128", str(data), 6, 4, None), str(tmp_path / "model"), "cpu")
    assert (resumed.start_step, resumed.final_step) == (4, 6)
    result = evaluate_checkpoint(str(tmp_path / "model"))
    assert result.step == 6
    assert set(result.metrics["summary"]) == set(COCO_KEYS)
    assert all(np.isfinite(v) for v in result.metrics["summary"].values())
    assert set(result.metrics["per_class"]) == {"raccoon"}
