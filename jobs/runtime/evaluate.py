"""Evaluation entrypoint (the evaluator container runs ``python -m jobs.runtime.evaluate``).

Runs a checkpoint over a prepared split, scores it with pycocotools and writes, under ``<model dir>/eval``:
``metrics.json`` (latest) and ``metrics-<step>.json``, ``detections.json``, ``groundtruth.json``, and
TensorBoard scalars. ``--continuous`` follows a training run checkpoint by checkpoint until its last step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import tensorflow as tf

from jobs.metrics import COCO_KEYS, coco_metrics
from jobs.runtime.experiment import load_spec, read_dataset
from jobs.runtime.inference import CheckpointDetector, Detections, decode_image

EvalProgress = Callable[[int, int], None]  # (images done, total)


@dataclass(frozen=True)
class EvalResult:
    step: int
    metrics: dict
    eval_dir: str


def read_split(data_dir: str, split: str) -> tuple[dict, Iterator[tuple[int, bytes]]]:
    """The split's COCO ground truth and its (image id, encoded image) pairs from the TFRecords."""
    dataset = read_dataset(data_dir)
    info = dataset["splits"][split]
    with tf.io.gfile.GFile(os.path.join(data_dir, info["coco"])) as stream:
        ground_truth = json.load(stream)
    files = sorted(tf.io.gfile.glob(os.path.join(data_dir, info["pattern"])))
    features = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/source_id": tf.io.FixedLenFeature([], tf.string)}

    def records() -> Iterator[tuple[int, bytes]]:
        for raw in tf.data.TFRecordDataset(files):
            example = tf.io.parse_single_example(raw, features)
            yield int(example["image/source_id"].numpy()), example["image/encoded"].numpy()

    return ground_truth, records()


def to_coco_results(image_id: int, width: int, height: int, found: Detections) -> list[dict]:
    results = []
    for (ymin, xmin, ymax, xmax), score, class_id in zip(found.boxes, found.scores, found.classes, strict=True):
        x, y = float(xmin) * width, float(ymin) * height
        results.append({"image_id": image_id, "category_id": int(class_id), "score": round(float(score), 5),
                        "bbox": [round(x, 2), round(y, 2), round(float(xmax) * width - x, 2),
                                 round(float(ymax) * height - y, 2)]})
    return results


def detect_split(detector: Callable[[object], Detections], ground_truth: dict,
                 records: Iterator[tuple[int, bytes]], progress: EvalProgress | None = None) -> list[dict]:
    sizes = {image["id"]: (image["width"], image["height"]) for image in ground_truth["images"]}
    detections: list[dict] = []
    for done, (image_id, data) in enumerate(records, start=1):
        width, height = sizes[image_id]
        detections.extend(to_coco_results(image_id, width, height, detector(decode_image(data))))
        if progress:
            progress(done, len(sizes))
    return detections


def evaluate_checkpoint(model_dir: str, data_dir: str | None = None, split: str = "val",
                        checkpoint: str | None = None, progress: EvalProgress | None = None) -> EvalResult:
    detector = CheckpointDetector(model_dir, checkpoint)
    data_dir = data_dir or detector.spec.data_dir
    ground_truth, records = read_split(data_dir, split)
    detections = detect_split(detector, ground_truth, records, progress)
    metrics = coco_metrics(ground_truth, detections)
    metrics.update(step=detector.step, checkpoint=detector.checkpoint, split=split, data=data_dir)
    eval_dir = os.path.join(model_dir, "eval")
    _write(eval_dir, metrics, ground_truth, detections)
    return EvalResult(detector.step, metrics, eval_dir)


def _write(eval_dir: str, metrics: dict, ground_truth: dict, detections: list[dict]) -> None:
    tf.io.gfile.makedirs(eval_dir)
    step = metrics["step"]
    for name, data in ((f"metrics-{step}.json", metrics), ("groundtruth.json", ground_truth),
                       ("detections.json", detections), ("metrics.json", metrics)):
        temp = os.path.join(eval_dir, f".{name}.tmp")
        with tf.io.gfile.GFile(temp, "w") as stream:
            json.dump(data, stream, indent=1 if name.startswith("metrics") else None)
        tf.io.gfile.rename(temp, os.path.join(eval_dir, name), overwrite=True)
    writer = tf.summary.create_file_writer(eval_dir)
    with writer.as_default(step=step):
        for key in COCO_KEYS:
            tf.summary.scalar(f"coco/{key}", metrics["summary"][key])
        for name, values in metrics["per_class"].items():
            if values["AP"] is not None:
                tf.summary.scalar(f"AP_per_class/{name}", values["AP"])
    writer.flush()


def evaluate_continuously(model_dir: str, data_dir: str | None = None, timeout_s: float = 3600,
                          on_result: Callable[[EvalResult], None] | None = None) -> list[EvalResult]:
    """Evaluate each new checkpoint until the run's last step is evaluated (or none comes for ``timeout_s``)."""
    results = []
    final_step = load_spec(model_dir).steps
    for checkpoint in tf.train.checkpoints_iterator(model_dir, min_interval_secs=5, timeout=timeout_s):
        result = evaluate_checkpoint(model_dir, data_dir, checkpoint=checkpoint)
        results.append(result)
        if on_result:
            on_result(result)
        if result.step >= final_step:
            break
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", default=os.environ.get("AIP_MODEL_DIR"))
    parser.add_argument("--data", help="prepared data dir (default: the one the run trained on)")
    parser.add_argument("--continuous", action="store_true")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for a new checkpoint")
    args = parser.parse_args(argv)
    if not args.model_dir:
        parser.error("--model-dir is required outside Vertex AI")

    def show(result: EvalResult) -> None:
        summary = result.metrics["summary"]
        print(f"step {result.step}: AP {summary['AP']:.3f} AP50 {summary['AP50']:.3f}", flush=True)

    if args.continuous:
        evaluate_continuously(args.model_dir, args.data, args.timeout, show)
    else:
        show(evaluate_checkpoint(args.model_dir, args.data))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
