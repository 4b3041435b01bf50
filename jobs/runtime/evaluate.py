"""Evaluation entrypoint (the evaluator container runs ``python -m jobs.runtime.evaluate``).

Runs a checkpoint, or an exported model (``--model``), over a prepared split and scores it with pycocotools.
Writes under ``<model dir>/eval`` (``<export>/eval`` for an export): ``metrics.json`` (latest) and
``metrics-<step>.json``, ``groundtruth.json`` and ``detections.json`` (the COCO files that were scored), the
report's PNGs and ``report.html``, and TensorBoard scalars and the worst-images grid. ``--continuous`` follows
a training run checkpoint by checkpoint until its last step.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from jobs.dataset import label_map as label_maps
from jobs.dataset.tfrecord import read_records
from jobs.errors import DetectorError, UsageError
from jobs.io import check_output_folder, is_output, write_atomic, write_marker
from jobs.metrics import (
    COCO_KEYS,
    CocoCategory,
    CocoGroundTruth,
    Detection,
    MetricsJson,
    coco_ground_truth,
    coco_metrics,
)
from jobs.report.gallery import worst_image_ids
from jobs.report.matching import analyze
from jobs.report.render import render_report
from jobs.runtime.devices import describe_devices
from jobs.runtime.experiment import load_spec, read_dataset
from jobs.runtime.inference import CheckpointDetector, Detections, decode_image, load_detector, read_model_info
from jobs.runtime.spec import EVAL_DIR, SPEC_FILE, EvalArgs, ProgressEvent, TrainSpec
from jobs.runtime.summaries import summary_dir

EVAL_KIND = "evaluation"  # the kind of output folder (jobs.io)
EvalProgress = Callable[[int, int], None]  # (images done, total)


class NoCheckpoint(DetectorError):
    """``--continuous`` waited ``--timeout`` seconds for a checkpoint before the run's last step."""


@dataclass(frozen=True)
class EvalResult:
    step: int
    metrics: MetricsJson
    eval_dir: str


def read_split(data_dir: str, split: str) -> tuple[CocoGroundTruth, Iterator[tuple[int, bytes]]]:
    """The split's COCO ground truth and its (image id, encoded image) pairs from the TFRecords."""
    dataset = read_dataset(data_dir)
    info = dataset["splits"][split]
    with tf.io.gfile.GFile(os.path.join(data_dir, info["coco"])) as stream:
        ground_truth: CocoGroundTruth = json.load(stream)
    files = sorted(tf.io.gfile.glob(os.path.join(data_dir, info["pattern"])))

    def records() -> Iterator[tuple[int, bytes]]:
        # Read in this thread, not by tf.data: its reader threads slow inference down by a third on 2 cores.
        for path in files:
            with tf.io.gfile.GFile(path, "rb") as stream:
                for raw in read_records(stream):
                    feature = tf.train.Example.FromString(raw).features.feature
                    yield (int(feature["image/source_id"].bytes_list.value[0]),
                           feature["image/encoded"].bytes_list.value[0])

    return ground_truth, records()


def read_images(data_dir: str, split: str, image_ids: list[int]) -> dict[int, np.ndarray]:
    """The decoded images of ``image_ids`` (a second pass over the split's records)."""
    wanted = set(image_ids)
    _, records = read_split(data_dir, split)
    return {image_id: decode_image(data) for image_id, data in records if image_id in wanted}


def to_coco_results(image_id: int, width: int, height: int, found: Detections) -> list[Detection]:
    results: list[Detection] = []
    for (ymin, xmin, ymax, xmax), score, class_id in zip(found.boxes, found.scores, found.classes, strict=True):
        x, y = float(xmin) * width, float(ymin) * height
        results.append({"image_id": int(image_id), "category_id": int(class_id), "score": round(float(score), 5),
                        "bbox": [round(x, 2), round(y, 2), round(float(xmax) * width - x, 2),
                                 round(float(ymax) * height - y, 2)]})
    return results


def detect_split(detector: Callable[[np.ndarray], Detections], ground_truth: CocoGroundTruth,
                 records: Iterator[tuple[int, bytes]], progress: EvalProgress | None = None) -> list[Detection]:
    sizes = {image["id"]: (image["width"], image["height"]) for image in ground_truth["images"]}
    detections: list[Detection] = []
    for done, (image_id, data) in enumerate(records, start=1):
        width, height = sizes[image_id]
        detections.extend(to_coco_results(image_id, width, height, detector(decode_image(data))))
        if progress:
            progress(done, len(sizes))
    return detections


def evaluate_checkpoint(model_dir: str, data_dir: str | None = None, split: str = "val",
                        checkpoint: str | None = None, progress: EvalProgress | None = None,
                        score_threshold: float | None = None, eval_dir: str | None = None) -> EvalResult:
    """Evaluate a training run's checkpoint (default: the latest) into ``eval_dir`` (default: ``<model_dir>/eval``;
    a Vertex AI run's go to its results prefix, ``runs/RUN/eval``, which outlives its checkpoints)."""
    eval_dir = eval_dir or os.path.join(model_dir, EVAL_DIR)
    spec = load_spec(model_dir)
    data_dir = data_dir or spec.data_dir
    class_ids = match_classes(run_label_map(spec), data_dir, f"the model in {model_dir}")
    claim_eval_dir(eval_dir, data_dir)
    detector = CheckpointDetector(model_dir, checkpoint)
    about = {"step": detector.step, "checkpoint": detector.checkpoint,
             "model": {"format": "checkpoint", "path": detector.checkpoint}}
    return _evaluate(detector, data_dir, split, eval_dir, about,
                     {"experiment.json": asdict(detector.spec)}, progress, score_threshold, class_ids)


def evaluate_export(path: str, data_dir: str | None = None, split: str = "val",
                    progress: EvalProgress | None = None, score_threshold: float | None = None,
                    eval_dir: str | None = None) -> EvalResult:
    """Evaluate an exported model (SavedModel or TFLite) into ``eval_dir`` (default: ``<path>/eval``), next to the
    float checkpoint's AP on the same split (``baseline`` in the metrics) when the checkpoint can be read."""
    eval_dir = eval_dir or os.path.join(path, EVAL_DIR)
    info = read_model_info(path)
    data_dir = data_dir or info.get("data")
    if not data_dir:
        raise UsageError(f"{path}/model.json does not say which data the model was trained on: give --data")
    with tf.io.gfile.GFile(os.path.join(path, "label_map.pbtxt")) as stream:
        label_map = label_maps.loads(stream.read(), os.path.join(path, "label_map.pbtxt"))
    class_ids = match_classes(label_map, data_dir, f"the model in {path}")
    claim_eval_dir(eval_dir, data_dir)
    baseline = float_baseline(info, data_dir, split, progress)
    about = {"step": info["step"], "checkpoint": info["checkpoint"],
             "model": {"format": info["format"], "path": path}, "baseline": baseline}
    return _evaluate(load_detector(path), data_dir, split, eval_dir, about,
                     {"model.json": info}, progress, score_threshold, class_ids)


def claim_eval_dir(eval_dir: str, data_dir: str) -> None:
    """A local ``eval/`` must be new, empty or an earlier evaluation, and hold no input; it is marked as an output
    of this tool before anything is evaluated. (A ``gs://`` one lies in the run's own prefix.)"""
    if eval_dir.startswith("gs://"):
        return
    folder = check_output_folder(Path(eval_dir), EVAL_KIND, [Path(data_dir)] if "://" not in data_dir else [],
                                 "the evaluation folder")
    folder.mkdir(parents=True, exist_ok=True)
    if not is_output(folder, EVAL_KIND):
        write_marker(folder, EVAL_KIND)


def run_label_map(spec: TrainSpec) -> dict[str, int] | None:
    """The class names and ids a training run learned: its data's label map while that still holds the classes
    the run recorded, else ids from 1 in the recorded order; None for a run that recorded no classes."""
    path = os.path.join(spec.data_dir, "label_map.pbtxt")
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as stream:
            label_map = label_maps.loads(stream.read(), path)
        if tuple(sorted(label_map, key=label_map.__getitem__)) == spec.classes:
            return label_map
    if spec.classes and len(spec.classes) == spec.num_classes - 1:
        return {name: class_id for class_id, name in enumerate(spec.classes, start=1)}
    return None


def match_classes(label_map: dict[str, int] | None, data_dir: str, model: str) -> dict[int, int]:
    """The data's class ids mapped to the model's ids for the same names; a UsageError (before anything is
    evaluated or written) when the names differ, since detections would be scored against another class."""
    classes = {c["id"]: c["name"] for c in read_dataset(data_dir)["classes"]}
    if label_map is None:  # a run that recorded no classes: its ids are taken to be the data's, as before
        return {class_id: class_id for class_id in classes}
    only_model = sorted(set(label_map) - set(classes.values()))
    only_data = sorted(set(classes.values()) - set(label_map))
    if only_model or only_data:
        raise UsageError(f"{data_dir} has other classes than {model} (only in the model: "
                         f"{', '.join(only_model) or 'none'}; only in the data: {', '.join(only_data) or 'none'}): "
                         "evaluate on data with the model's classes")
    return {class_id: label_map[name] for class_id, name in classes.items()}


def renumber_classes(ground_truth: CocoGroundTruth, class_ids: dict[int, int]) -> CocoGroundTruth:
    """COCO ground truth with its category ids replaced by the model's (``class_ids``: data id -> model id)."""
    if all(data_id == model_id for data_id, model_id in class_ids.items()):
        return ground_truth
    categories: list[CocoCategory] = [{**c, "id": class_ids[c["id"]]} for c in ground_truth["categories"]]
    return {**ground_truth, "categories": sorted(categories, key=lambda c: c["id"]),
            "annotations": [{**a, "category_id": class_ids[a["category_id"]]} for a in ground_truth["annotations"]]}


def float_baseline(info: dict[str, Any], data_dir: str, split: str,
                   progress: EvalProgress | None = None) -> dict[str, Any] | None:
    """AP and AP50 of the checkpoint an export came from: its saved evaluation of that step on the same split
    and data, else evaluated now; None where the checkpoint is gone."""
    step, checkpoint = info["step"], info["checkpoint"]
    model_dir = info.get("model_dir") or os.path.dirname(checkpoint)
    saved = os.path.join(model_dir, EVAL_DIR, f"metrics-{step}.json")
    metrics: MetricsJson | None = None
    if tf.io.gfile.exists(saved):
        with tf.io.gfile.GFile(saved) as stream:
            metrics = json.load(stream)
        if (metrics.get("split"), metrics.get("data")) != (split, data_dir):
            metrics = None
    if metrics is None:
        if not tf.io.gfile.exists(f"{checkpoint}.index"):
            return None
        metrics = evaluate_checkpoint(model_dir, data_dir, split, checkpoint, progress).metrics
    return {"model": f"checkpoint, step {step}", "AP": metrics["summary"]["AP"],
            "AP50": metrics["summary"]["AP50"], "source": saved}


def _evaluate(detector: Callable[[np.ndarray], Detections], data_dir: str, split: str, eval_dir: str,
              about: dict[str, Any], config: dict[str, object], progress: EvalProgress | None,
              score_threshold: float | None,
              class_ids: dict[int, int]) -> EvalResult:
    read, records = read_split(data_dir, split)
    ground_truth = coco_ground_truth(renumber_classes(read, class_ids))
    detections = detect_split(detector, ground_truth, records, progress)
    analysis = analyze(ground_truth, detections, score_threshold)
    metrics = {**analysis.annotate(coco_metrics(ground_truth, detections)), **about, "split": split,
               "data": data_dir}
    config = {**config, "dataset.json": _dataset_summary(read_dataset(data_dir))}
    images = read_images(data_dir, split, worst_image_ids(analysis))
    files = render_report(metrics, analysis, ground_truth, detections, images, config)
    _write(eval_dir, metrics, ground_truth, detections, files)
    return EvalResult(metrics["step"], metrics, eval_dir)


def _dataset_summary(dataset: dict[str, Any]) -> dict[str, Any]:
    kept = ("created", "labels", "format", "seed", "val_fraction", "classes", "rows", "max_boxes_per_image")
    summary: dict[str, Any] = {key: dataset[key] for key in kept if key in dataset}
    summary["splits"] = {name: {key: value for key, value in split.items() if key != "shards"}
                         for name, split in dataset.get("splits", {}).items()}
    return summary


def _write(eval_dir: str, metrics: MetricsJson, ground_truth: CocoGroundTruth, detections: list[Detection],
           files: dict[str, bytes]) -> None:
    tf.io.gfile.makedirs(eval_dir)
    step = metrics["step"]
    outputs: dict[str, object] = {f"metrics-{step}.json": metrics, "groundtruth.json": ground_truth,
                                  "detections.json": detections}
    contents = {name: json.dumps(data, indent=1 if name.startswith("metrics") else None).encode()
                for name, data in outputs.items()}
    contents.update(files)
    contents["metrics.json"] = contents[f"metrics-{step}.json"]  # last: it says the evaluation is complete
    for name, data in contents.items():
        write_atomic(f"{eval_dir}/{name}", data)
    writer = tf.summary.create_file_writer(summary_dir(eval_dir, "eval"))
    with writer.as_default(step=step):
        for key in COCO_KEYS:
            tf.summary.scalar(f"coco/{key}", metrics["summary"][key])
        for name, values in metrics["per_class"].items():
            if values["AP"] is not None:
                tf.summary.scalar(f"AP_per_class/{name}", values["AP"])
        for key in ("P", "R"):
            if metrics["all"][key] is not None:
                tf.summary.scalar(f"at_threshold/{key}", metrics["all"][key])
        tf.summary.image("worst_images", tf.io.decode_png(files["worst_images.png"], channels=3)[tf.newaxis],
                         description="ground truth | predictions at the report's score threshold")
    writer.flush()


def evaluate_continuously(model_dir: str, data_dir: str | None = None, timeout_s: float = 3600,
                          on_result: Callable[[EvalResult], None] | None = None, split: str = "val",
                          score_threshold: float | None = None, eval_dir: str | None = None) -> list[EvalResult]:
    """Evaluate each new checkpoint into ``eval_dir`` (default: ``<model_dir>/eval``) until the run's last step is
    evaluated. Waits up to ``timeout_s`` for the run to start (its ``experiment.json``) and for each checkpoint:
    launched with its training job, the evaluator gets that job's timeout, so a Spot gap between two checkpoints
    cannot end it early. A NoCheckpoint error when a wait runs out before the last step is evaluated."""
    results = []
    spec = wait_for_run(model_dir, timeout_s)
    match_classes(run_label_map(spec), data_dir or spec.data_dir, f"the model in {model_dir}")  # before waiting
    final_step = spec.steps
    for checkpoint in tf.train.checkpoints_iterator(model_dir, min_interval_secs=5, timeout=timeout_s):
        result = evaluate_checkpoint(model_dir, data_dir, split, checkpoint,
                                     score_threshold=score_threshold, eval_dir=eval_dir)
        results.append(result)
        if on_result:
            on_result(result)
        if result.step >= final_step:
            return results
    done = f"evaluated up to step {results[-1].step}" if results else "evaluated nothing"
    raise NoCheckpoint(f"no new checkpoint in {model_dir} for {timeout_s:.0f} s ({done} of {final_step}): did its "
                       "training stop? Evaluate its latest checkpoint without --continuous, or give a longer "
                       "--timeout")


def wait_for_run(model_dir: str, timeout_s: float, poll_s: float = 5) -> TrainSpec:
    """The spec of the run in ``model_dir`` once its trainer has written it (an evaluation may start before its
    training job does); a UsageError when none comes within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not tf.io.gfile.exists(os.path.join(model_dir, SPEC_FILE)) and time.monotonic() < deadline:
        time.sleep(poll_s)
    return load_spec(model_dir)


def main(argv: list[str] | None = None) -> None:
    def emit(event: ProgressEvent) -> None:
        print(event.to_line(), file=sys.__stdout__, flush=True)

    def progress(done: int, total: int) -> None:  # about a hundred events an evaluation, however many images
        if done == total or done % max(1, total // 100) == 0:
            emit(ProgressEvent("evaluate", done, total))

    def evaluated(result: EvalResult) -> None:
        emit(ProgressEvent("evaluated", result.step, result.step, path=result.eval_dir))

    try:
        args = EvalArgs.from_argv(argv)
        print(describe_devices(), flush=True)
        if args.model:
            evaluated(evaluate_export(args.model, args.data, args.split, progress, args.score_threshold,
                                      args.eval_dir))
        elif args.continuous:
            assert args.model_dir  # EvalArgs.check: without --model, --model-dir is given
            evaluate_continuously(args.model_dir, args.data, args.timeout, evaluated, args.split,
                                  args.score_threshold, args.eval_dir)
        else:
            assert args.model_dir  # EvalArgs.check: without --model, --model-dir is given
            evaluated(evaluate_checkpoint(args.model_dir, args.data, args.split, progress=progress,
                                          score_threshold=args.score_threshold, eval_dir=args.eval_dir))
    except (DetectorError, FileNotFoundError) as err:  # one line for the user (or the job's log), no traceback
        print(f"error: {err}", file=sys.stderr, flush=True)
        os._exit(getattr(err, "exit_code", 1))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
