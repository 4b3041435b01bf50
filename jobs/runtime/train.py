"""Training entrypoint (the trainer container runs ``python -m jobs.runtime.train``).

Trains a Model Garden RetinaNet from a preset, checkpointing into the model dir; started again on the same
model dir (a Spot preemption, a worker restart, a second local call) it resumes from the latest checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import tensorflow as tf
from official.core import task_factory, train_lib, train_utils

from jobs.errors import DetectorError
from jobs.runtime import devices
from jobs.runtime.checkpoints import resolve_init_checkpoint
from jobs.runtime.experiment import build_experiment, load_spec, make_spec, save_spec
from jobs.runtime.spec import SPEC_FILE, ProgressEvent, TrainArgs, TrainSpec, check_model_dir, resume

TrainProgress = Callable[[int, int, float], None]  # (step, total steps, loss)


@dataclass(frozen=True)
class TrainResult:
    model_dir: str
    spec: TrainSpec
    start_step: int
    final_step: int
    final_loss: float | None


def latest_step(model_dir: str) -> int:
    path = tf.train.latest_checkpoint(model_dir)
    match = re.search(r"ckpt-(\d+)$", path or "")
    return int(match.group(1)) if match else 0


def resolve_spec(model_dir: str, spec: TrainSpec) -> TrainSpec:
    """A model dir belongs to one run: resuming keeps its spec, only the step budget may grow (a UsageError
    when the preset, the data or the batch size differ from the saved ones)."""
    check_model_dir(model_dir, spec.data_dir)
    if not tf.io.gfile.exists(os.path.join(model_dir, SPEC_FILE)):
        return spec
    return resume(load_spec(model_dir), spec, model_dir)


def train(spec: TrainSpec, model_dir: str, device: str = "auto", progress: TrainProgress | None = None
          ) -> TrainResult:
    spec = resolve_spec(model_dir, spec)
    save_spec(spec, model_dir)
    params = build_experiment(spec)
    start = latest_step(model_dir)
    if spec.init_checkpoint and start == 0:  # a resumed run restores its own checkpoint instead
        params.task.init_checkpoint = resolve_init_checkpoint(spec.init_checkpoint)
    seed = spec.seed + start  # reproducible, and a resumed run does not replay the first batches of the data
    tf.keras.utils.set_random_seed(seed)
    params.task.train_data.seed = seed
    train_utils.serialize_config(params, model_dir)
    strategy = devices.make_strategy(device)
    last = {"step": start, "loss": None}

    def report(output: dict) -> None:
        last["step"] = min(last["step"] + params.trainer.steps_per_loop, spec.steps)
        loss = output.get("training_loss", output.get("total_loss"))
        last["loss"] = float(loss) if loss is not None else None
        if progress:
            progress(last["step"], spec.steps, last["loss"] or float("nan"))

    if start < spec.steps:
        with strategy.scope():
            task = task_factory.get_task(params.task, logging_dir=model_dir)
        # Orbit prints every loop's metrics; next to a progress display they go to a local train.log instead.
        log = _log_to(model_dir) if progress and "://" not in model_dir else contextlib.nullcontext()
        with log:
            train_lib.run_experiment(distribution_strategy=strategy, task=task, mode="train", params=params,
                                     model_dir=model_dir, train_actions=[report])
    elif progress:
        progress(start, spec.steps, float("nan"))
    return TrainResult(model_dir, spec, start, latest_step(model_dir), last["loss"])


def print_progress(step: int, total: int, loss: float) -> None:
    """One progress event per training loop on the process's stdout, even while Orbit's output goes to train.log
    (the local launcher draws its progress bar from these)."""
    print(ProgressEvent("train", step, total, loss).to_line(), file=sys.__stdout__, flush=True)


@contextlib.contextmanager
def _log_to(model_dir: str) -> Iterator[None]:
    with tf.io.gfile.GFile(os.path.join(model_dir, "train.log"), "a") as stream, \
            contextlib.redirect_stdout(stream):
        yield


def main(argv: list[str] | None = None) -> None:
    try:
        args = TrainArgs.from_argv(argv)
        spec = resolve_spec(args.model_dir, make_spec(args.preset, args.data, args.steps, args.batch_size,
                                                      args.init_checkpoint, devices.precision_for(args.device),
                                                      args.seed))
        start = latest_step(args.model_dir)
        print(f"{'resuming from' if start else 'starting at'} step {start} of {spec.steps} in {args.model_dir}",
              flush=True)
        result = train(spec, args.model_dir, args.device, print_progress)
    except (DetectorError, FileNotFoundError) as err:  # one line for the user (or the job's log), no traceback
        print(f"error: {err}", file=sys.stderr, flush=True)
        os._exit(getattr(err, "exit_code", 1))
    print(f"trained {result.spec.preset} to step {result.final_step} in {result.model_dir}", flush=True)
    sys.stderr.flush()
    os._exit(0)  # skip the slow interpreter teardown of TensorFlow threads


if __name__ == "__main__":
    main()
