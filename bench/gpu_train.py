"""GPU training throughput: the evaluator image's code path vs Model Garden directly, and the input pipeline.

Trains the 640 px preset on synthetic data with ``--device gpu`` through ``jobs.runtime.train`` (what the
evaluator image runs) and through ``train_lib.run_experiment`` directly, and times the input pipeline alone.
Goals: ours >= 0.95x direct; input >= 2x what training consumes.
Run (needs TensorFlow with CUDA): python bench/gpu_train.py [--preset retinanet-mobilenet-640] [--steps 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from train_overhead import direct, ours


def input_images_per_second(spec, batches: int) -> float:
    from official.core import task_factory

    from jobs.runtime.experiment import build_experiment

    params = build_experiment(spec)
    task = task_factory.get_task(params.task)
    dataset = iter(task.build_inputs(params.task.train_data))
    next(dataset)
    start = time.perf_counter()
    for _ in range(batches):
        next(dataset)
    return batches * spec.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="retinanet-mobilenet-640")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="gpu")
    parser.add_argument("--images", type=int, default=512)
    args = parser.parse_args()
    import tensorflow as tf

    from jobs.dataset.pipeline import CheckOptions
    from jobs.dataset.prepare import PrepareOptions, prepare
    from jobs.dataset.synthetic import make_dataset
    from jobs.runtime.experiment import make_spec

    print("devices:", [d.name for d in tf.config.list_physical_devices()], flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        synthetic = make_dataset(root / "synthetic", count=args.images, size=640)
        prepare(PrepareOptions(CheckOptions(synthetic.labels_csv, synthetic.images_dir), root / "data"))
        spec = make_spec(args.preset, str(root / "data"), args.steps, args.batch_size, None)
        pipeline = input_images_per_second(spec, 50)
        mine = ours(spec, str(root / "ours"), args.device) * args.batch_size
        theirs = direct(spec, str(root / "direct"), args.device) * args.batch_size
    print(f"input pipeline alone: {pipeline:.1f} images/s")
    print(f"ours (jobs.runtime.train): {mine:.1f} images/s; Model Garden directly: {theirs:.1f} images/s; "
          f"ratio {mine / theirs:.3f} (goal >= 0.95)")
    print(f"input / training consumption: {pipeline / mine:.2f}x (goal >= 2)")


if __name__ == "__main__":
    main()
