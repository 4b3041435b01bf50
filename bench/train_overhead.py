"""Training speed through our path vs the same Model Garden experiment run directly (goal: within 5 %).

Both train the demo preset on a synthetic dataset on the CPU, in this process, taking turns; the rate is taken
between the first and the last training loop (after tracing), from Orbit train actions in both cases.
Run: .venv/bin/python bench/train_overhead.py [--steps 300] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def rate(times: list[tuple[float, int]]) -> float:
    (t0, s0), (t1, s1) = times[0], times[-1]
    return (s1 - s0) / (t1 - t0)


def ours(spec, model_dir: str, device: str = "cpu") -> float:
    from jobs.runtime.train import train

    marks: list[tuple[float, int]] = []
    train(spec, model_dir, device, lambda step, total, loss: marks.append((time.perf_counter(), step)))
    return rate(marks)


def direct(spec, model_dir: str, device: str = "cpu") -> float:
    import tensorflow as tf
    from official.core import task_factory, train_lib

    from jobs.runtime.experiment import build_experiment

    params = build_experiment(spec)
    strategy = tf.distribute.OneDeviceStrategy(f"/{device}:0")
    with strategy.scope():
        task = task_factory.get_task(params.task, logging_dir=model_dir)
    marks: list[tuple[float, int]] = []
    loop = params.trainer.steps_per_loop
    train_lib.run_experiment(distribution_strategy=strategy, task=task, mode="train", params=params,
                             model_dir=model_dir,
                             train_actions=[lambda output: marks.append((time.perf_counter(), len(marks) * loop))])
    return rate(marks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    from jobs.dataset.pipeline import CheckOptions
    from jobs.dataset.prepare import PrepareOptions, prepare
    from jobs.dataset.synthetic import make_dataset
    from jobs.runtime.experiment import make_spec

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        synthetic = make_dataset(root / "synthetic", count=200)
        prepare(PrepareOptions(CheckOptions(synthetic.labels_csv, synthetic.images_dir), root / "data"))
        spec = make_spec("retinanet-tiny-128", str(root / "data"), args.steps, 8, None)
        rates: dict[str, list[float]] = {"ours": [], "direct": []}
        for round_ in range(args.rounds):
            order = (("ours", ours), ("direct", direct))
            for name, run in order if round_ % 2 == 0 else order[::-1]:  # neither always goes first
                rates[name].append(run(spec, str(root / f"{name}-{round_}")))
                print(f"round {round_ + 1} {name:6}: {rates[name][-1]:.2f} steps/s", flush=True)
    mine, theirs = statistics.median(rates["ours"]), statistics.median(rates["direct"])
    print(f"median: ours {mine:.2f} steps/s, Model Garden directly {theirs:.2f} steps/s, ratio {mine / theirs:.3f} "
          f"(goal >= 0.95: {'met' if mine / theirs >= 0.95 else 'NOT met'})")


if __name__ == "__main__":
    main()
