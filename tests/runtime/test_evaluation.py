"""A trained demo model evaluated, exported to every format, evaluated again and run on images and a video."""

from __future__ import annotations

import numpy as np
import pytest
from evaluation_cli import run_cli
from report_checks import PICTURES, assert_pictures_decode, assert_report_in_chromium, load_json

from jobs.dataset.tfrecord import read_records
from jobs.metrics import COCO_KEYS
from jobs.report.matching import iou_matrix

pytestmark = pytest.mark.slow
pytest_plugins = ["evaluation_fixtures"]

CLASSES = {"circle", "square", "triangle"}


@pytest.fixture(scope="module")
def eval_dir(demo_run):
    return demo_run.paths["model dir (TensorBoard)"] / "eval"


def test_evaluation_writes_every_output(eval_dir, steps):
    names = {p.name for p in eval_dir.iterdir()}
    assert {"metrics.json", f"metrics-{steps}.json", "groundtruth.json", "detections.json", "report.html",
            *PICTURES} <= names
    metrics = load_json(eval_dir / "metrics.json")
    assert metrics == load_json(eval_dir / f"metrics-{steps}.json")
    assert metrics["step"] == steps and metrics["split"] == "val"
    assert list(metrics["summary"]) == list(COCO_KEYS)
    assert all(0.0 <= v <= 1.0 for v in metrics["summary"].values())
    assert set(metrics["per_class"]) == CLASSES
    for entry in metrics["per_class"].values():
        assert set(entry) == {"AP", "AP50", "recall", "images", "instances", "P", "R"}
    assert metrics["all"]["instances"] == sum(e["instances"] for e in metrics["per_class"].values())
    assert metrics["threshold"]["rule"] == "max F1" and 0 < metrics["threshold"]["score"] < 1
    assert_pictures_decode(eval_dir)


def test_coco_files_are_valid(eval_dir):
    ground_truth = load_json(eval_dir / "groundtruth.json")
    detections = load_json(eval_dir / "detections.json")
    image_ids = {image["id"] for image in ground_truth["images"]}
    category_ids = {c["id"] for c in ground_truth["categories"]}
    assert all(isinstance(i, int) for i in image_ids)
    annotation_ids = [a["id"] for a in ground_truth["annotations"]]
    assert min(annotation_ids) >= 1 and len(set(annotation_ids)) == len(annotation_ids)
    assert all({"iscrowd", "area", "bbox"} <= set(a) for a in ground_truth["annotations"])
    assert detections, "the demo model detected nothing"
    for detection in detections:
        assert set(detection) == {"image_id", "category_id", "bbox", "score"}
        assert detection["image_id"] in image_ids and detection["category_id"] in category_ids
        assert len(detection["bbox"]) == 4 and min(detection["bbox"][2:]) >= 0 and 0 <= detection["score"] <= 1


def test_numbers_agree_with_faster_coco_eval(eval_dir):
    from faster_coco_eval import COCO, COCOeval_faster

    ground_truth = COCO(str(eval_dir / "groundtruth.json"))
    evaluator = COCOeval_faster(ground_truth, ground_truth.loadRes(str(eval_dir / "detections.json")), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    summary = load_json(eval_dir / "metrics.json")["summary"]
    for key, theirs in zip(COCO_KEYS, evaluator.stats, strict=True):
        assert summary[key] == pytest.approx(max(0.0, theirs), abs=1e-4), key


def test_tensorboard_gets_the_scalars_and_the_grid(eval_dir):
    from tensorboard.compat.proto.event_pb2 import Event

    tags = {}
    for path in eval_dir.glob("events.out.tfevents.*"):
        with path.open("rb") as stream:
            for record in read_records(stream):
                for value in Event.FromString(record).summary.value:
                    tags[value.tag] = value.metadata.plugin_data.plugin_name
    assert {f"coco/{key}" for key in COCO_KEYS} | {f"AP_per_class/{c}" for c in CLASSES} <= set(tags)
    assert tags["worst_images"] == "images"


def test_report_loads_in_chromium(eval_dir, browser, steps):
    page = assert_report_in_chromium(eval_dir / "report.html", browser)
    assert page["title"] == f"Evaluation: checkpoint, step {steps}, val split"


def test_exports_record_how_to_run_them(exports, steps):
    for model_format, folder in exports.items():
        info = load_json(folder / "model.json")
        assert info["format"] == model_format and info["input_size"] == [128, 128] and info["step"] == steps
        assert (folder / info["file"]).exists() and (folder / "label_map.pbtxt").exists()
    tflite = load_json(exports["tflite-int8"] / "model.json")
    assert tflite["preprocessing"]["keep_aspect_ratio"] is True and len(tflite["preprocessing"]["mean"]) == 3
    assert "int8" in tflite["quantization"] and load_json(exports["tflite"] / "model.json")["quantization"] is None


def test_int8_keeps_the_detection_post_processing_and_what_follows_it_float(exports):
    """Quantized, the box arithmetic after TFLite's post-processing op took its range from the huge boxes of
    low-score detections and rounded every box to 0 or 1 in some runs; it must stay float, the network int8."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(exports["tflite-int8"] / "model.tflite"))
    interpreter.allocate_tensors()
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
    start = next(n for n, op in enumerate(ops) if op["op_name"] == "TFLite_Detection_PostProcess")
    tail = ops[start + 1:]
    assert {op["op_name"] for op in tail} >= {"MUL", "STRIDED_SLICE", "MINIMUM"}
    assert all(dtypes[i] == np.float32 for op in tail for i in op["outputs"]), [op["op_name"] for op in tail]
    convolutions = [op for op in ops[:start] if op["op_name"] == "CONV_2D"]
    assert convolutions and all(dtypes[i] == np.int8 for op in convolutions for i in op["outputs"])


def test_tflite_predicts_boxes_close_to_the_saved_model(exports, demo_run):
    from PIL import Image

    from jobs.runtime.predict import Predictor

    saved, tflite = Predictor(exports["saved_model"]), Predictor(exports["tflite"])
    entries = load_json(demo_run.paths["prepared data"] / "val_coco.json")["images"][:8]
    pictures = [Image.open(demo_run.paths["synthetic images"] / e["file_name"]).convert("RGB") for e in entries]
    wide = Image.new("RGB", (300, 160), (128, 128, 128))  # not square: the resize scale and padding matter
    wide.paste(pictures[0].resize((160, 160)), (100, 0))
    compared = 0
    for image in [*pictures, wide]:
        # Confident boxes only: the two NMS implementations (v2 vs TFLite's) may keep different ones of several
        # overlapping low-score candidates, which is not a difference of the models.
        expected = saved.detect(image, "image", score_threshold=0.4)
        found = tflite.detect(image, "image", score_threshold=0.15)
        for box in expected:
            best = min(found, key=lambda d, box=box: (d.class_id != box.class_id, _gap(box, d)))
            # IoU > 0.95, or corners within a pixel (a box clipped to zero width has no IoU at all)
            close = _iou(_corners(box), _corners(best)) > 0.95 or _gap(box, best) <= 1.0
            assert best.class_id == box.class_id and close, (box, best)
            assert best.score == pytest.approx(box.score, abs=0.01)
            compared += 1
    assert compared >= 8


def _gap(a, b) -> float:
    return max(abs(x - y) for x, y in zip(_corners(a), _corners(b), strict=True))


def _corners(detection) -> tuple[float, float, float, float]:
    return detection.xmin, detection.ymin, detection.xmax, detection.ymax


def _iou(a: tuple, b: tuple) -> float:
    return float(iou_matrix(np.array([a], float), np.array([b], float))[0, 0])


def test_exported_tflite_is_evaluated_next_to_the_float_model(exports, eval_dir, browser):
    from jobs.runtime.evaluate import evaluate_export

    float_metrics = load_json(eval_dir / "metrics.json")
    result = evaluate_export(str(exports["tflite"]))
    assert result.eval_dir == str(exports["tflite"] / "eval")
    assert result.metrics["model"]["format"] == "tflite"
    assert result.metrics["baseline"]["AP50"] == float_metrics["summary"]["AP50"]
    assert result.metrics["summary"]["AP50"] == pytest.approx(float_metrics["summary"]["AP50"], abs=0.01)
    assert result.metrics["summary"]["AP"] == pytest.approx(float_metrics["summary"]["AP"], abs=0.01)
    assert_pictures_decode(exports["tflite"] / "eval")
    assert_report_in_chromium(exports["tflite"] / "eval" / "report.html", browser)


def test_cli_evaluates_int8_and_says_the_cost(exports, eval_dir, steps):
    result = run_cli("evaluate", "--model", str(exports["tflite-int8"]))
    assert result.returncode == 0, result.stderr[-3000:]
    for text in (f"tflite-int8, step {steps}, val split", "instances", "AP50", "against the float checkpoint",
                 f"checkpoint, step {steps}", "ΔAP50", "report.html"):
        assert text in result.stdout, text
    assert any(line.split("│")[1].strip() == "(all classes)" for line in result.stdout.splitlines() if "│" in line)
    int8 = load_json(exports["tflite-int8"] / "eval" / "metrics.json")["summary"]["AP50"]
    float_ap50 = load_json(eval_dir / "metrics.json")["summary"]["AP50"]
    assert f"{int8 - float_ap50:+.3f}" in result.stdout, "the cost shown is not the one measured"
    assert int8 == pytest.approx(float_ap50, abs=0.1), "int8 lost too much accuracy"


def test_cli_predicts_on_a_folder_and_a_video(exports, demo_run, tmp_path):
    import cv2

    images = sorted(demo_run.paths["synthetic images"].iterdir())
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for path in images[:3]:
        (inputs / path.name).write_bytes(path.read_bytes())
    writer = cv2.VideoWriter(str(inputs / "printer.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (128, 128))
    for path in images[:10]:  # 2 s at 5 fps: frames 0 and 5 are sampled
        writer.write(cv2.imread(str(path)))
    writer.release()
    out = tmp_path / "out"
    result = run_cli("predict", "--model", str(exports["tflite-int8"]), str(inputs), "--out", str(out),
                     "--score-threshold", "0.4")
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {p.name for p in images[:3]} | {"printer-frame000000.jpg", "printer-frame000005.jpg"}
    assert {p.name for p in out.glob("*.jpg")} == expected
    rows = (out / "detections.csv").read_text().splitlines()
    detections = load_json(out / "detections.json")
    assert rows[0] == "image,label,class_id,score,xmin,ymin,xmax,ymax,frame"
    assert len(rows) - 1 == len(detections) > 0
    assert {d["frame"] for d in detections if d["image"].endswith(".avi")} <= {0, 5}
    assert all(d["score"] >= 0.4 and d["label"] in CLASSES for d in detections)


@pytest.mark.parametrize("model_format", ["saved_model", "tflite", "tflite-int8"])
def test_predictor_runs_every_format(exports, demo_run, model_format):
    from jobs.runtime.predict import Predictor

    ground_truth = load_json(demo_run.paths["prepared data"] / "val_coco.json")
    image = ground_truth["images"][0]
    found, _ = Predictor(exports[model_format]).predict(demo_run.paths["synthetic images"] / image["file_name"])
    truth = [(x, y, x + w, y + h) for x, y, w, h in
             (a["bbox"] for a in ground_truth["annotations"] if a["image_id"] == image["id"])]
    best = max(found, key=lambda d: d.score)
    assert max(_iou(_corners(best), box) for box in truth) > 0.5
