"""Training entrypoint (the trainer container runs ``python -m jobs.runtime.train``).

Trains a Model Garden RetinaNet from a preset, checkpointing into the model dir; started again on the same
model dir (a Spot preemption, a worker restart, a second local call) it resumes from the latest checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orbit
import tensorflow as tf
from official.core import base_trainer, config_definitions, task_factory, train_lib, train_utils
from official.modeling import performance

from jobs.errors import DetectorError
from jobs.runtime import devices
from jobs.runtime.checkpoints import RestoreReport, local_checkpoint, restore_modules
from jobs.runtime.experiment import build_experiment, init_modules, load_spec, make_spec, save_spec
from jobs.runtime.spec import SPEC_FILE, ProgressEvent, TrainArgs, TrainSpec, check_model_dir, resume
from jobs.runtime.summaries import summary_dir

TrainProgress = Callable[[int, int, float], None]  # (step, total steps, loss)


@dataclass(frozen=True)
class TrainResult:
    model_dir: str
    spec: TrainSpec
    start_step: int
    final_step: int
    final_loss: float | None
    restored: RestoreReport | None = None  # what the initial checkpoint restored (None: none, or a resumed run)


class Stopped(Exception):
    """Training stopped on a SIGTERM, after saving a checkpoint at ``step``."""

    def __init__(self, step: int):
        super().__init__(f"stopped at step {step}")
        self.step = step


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


def build_trainer(params: config_definitions.ExperimentConfig, strategy: tf.distribute.Strategy,
                  model_dir: str) -> base_trainer.Trainer:
    """The task, model and optimizer under ``strategy``, computing in the spec's precision: Model Garden's
    ``official/vision/train.py`` sets the Keras policy from ``runtime.mixed_precision_dtype`` before building
    (mixed_bfloat16 on TPU: bfloat16 compute, float32 variables); float32 resets it."""
    performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
    with strategy.scope():
        task = task_factory.get_task(params.task, logging_dir=model_dir)
        return train_utils.create_trainer(params, task, train=True, evaluate=False)


def train(spec: TrainSpec, model_dir: str, device: str = "auto", progress: TrainProgress | None = None,
          stop: threading.Event | None = None) -> TrainResult:
    """Train ``spec`` into ``model_dir``. Once ``stop`` is set (a SIGTERM), the end of the current loop saves a
    checkpoint and raises ``Stopped``."""
    spec = resolve_spec(model_dir, spec)
    save_spec(spec, model_dir)
    params = build_experiment(spec)
    start = latest_step(model_dir)
    seed = spec.seed + start  # reproducible, and a resumed run does not replay the first batches of the data
    tf.keras.utils.set_random_seed(seed)
    params.task.train_data.seed = seed
    train_utils.serialize_config(params, model_dir)
    strategy = devices.make_strategy(device)
    last: dict[str, Any] = {"step": start, "loss": None, "restored": None}

    def report(output: dict[str, Any]) -> None:
        last["step"] = min(last["step"] + params.trainer.steps_per_loop, spec.steps)
        loss = output.get("training_loss", output.get("total_loss"))
        last["loss"] = float(loss) if loss is not None else None
        if progress:
            progress(last["step"], spec.steps, last["loss"] or float("nan"))

    def stop_when_asked(_output: dict[str, Any]) -> None:
        if stop is not None and stop.is_set():
            step = int(trainer.global_step.numpy())
            runner.checkpoint_manager.save(checkpoint_number=step, check_interval=False)
            raise Stopped(step)

    if start < spec.steps:
        # The initial checkpoint is fetched before the model is built (an unreachable one fails at once); a resumed
        # run restores its own checkpoint instead.
        init = spec.init_checkpoint if start == 0 else None
        with local_checkpoint(init) if init else contextlib.nullcontext() as checkpoint:
            trainer = build_trainer(params, strategy, model_dir)
            if init and checkpoint:
                last["restored"] = restore_modules(trainer.model, checkpoint, init_modules(spec), init)
                print("\n".join(last["restored"].lines()), file=sys.__stdout__, flush=True)
        # Summaries from the chief only, into the folder Vertex AI streams to its TensorBoard where there is one.
        summaries = orbit.utils.SummaryManager(
            summary_dir(os.path.join(model_dir, "train"), "train") if devices.writes_summaries(strategy) else None,
            tf.summary.scalar, global_step=trainer.global_step)
        runner = train_lib.OrbitExperimentRunner(
            distribution_strategy=strategy, task=trainer.task, mode="train", params=params, model_dir=model_dir,
            trainer=trainer, train_actions=[report, stop_when_asked], summary_manager=summaries)
        # Orbit prints every loop's metrics; next to a progress display they go to a local train.log instead.
        log = _log_to(model_dir) if progress and "://" not in model_dir else contextlib.nullcontext()
        with log:
            runner.run()
    elif progress:
        progress(start, spec.steps, float("nan"))
    return TrainResult(model_dir, spec, start, latest_step(model_dir), last["loss"], last["restored"])


def print_progress(step: int, total: int, loss: float) -> None:
    """One progress event per training loop on the process's stdout, even while Orbit's output goes to train.log
    (the local launcher draws its progress bar from these)."""
    print(ProgressEvent("train", step, total, loss).to_line(), file=sys.__stdout__, flush=True)


@contextlib.contextmanager
def _log_to(model_dir: str) -> Iterator[None]:
    with tf.io.gfile.GFile(os.path.join(model_dir, "train.log"), "a") as stream, \
            contextlib.redirect_stdout(stream):
        yield


def stop_on_sigterm() -> threading.Event | None:
    """An event set by SIGTERM: a preempted Spot VM shuts down with an ACPI soft-off and is stopped 30 s later
    (``Scheduling.skipGuestOsShutdown``, Compute Engine v1 API reference), and the container runtime stops the
    container with SIGTERM on that shutdown; Vertex AI then runs the container again and it resumes. None on a
    multi-worker run, where one worker cannot save alone (every worker takes part in a save): it resumes from the
    last periodic checkpoint."""
    if devices.workers() > 1:
        return None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def main(argv: list[str] | None = None) -> None:
    try:
        args = TrainArgs.from_argv(argv)
        assert args.data and args.model_dir  # TrainArgs.check (from_argv runs it) requires both
        print(devices.describe_devices(), flush=True)
        spec = resolve_spec(args.model_dir, make_spec(args.preset, args.data, args.steps, args.batch_size,
                                                      args.init_checkpoint, devices.precision_for(args.device),
                                                      args.seed))
        start = latest_step(args.model_dir)
        print(f"{'resuming from' if start else 'starting at'} step {start} of {spec.steps} in {args.model_dir}",
              flush=True)
        result = train(spec, args.model_dir, args.device, print_progress, stop_on_sigterm())
    except (DetectorError, FileNotFoundError) as err:  # one line for the user (or the job's log), no traceback
        print(f"error: {err}", file=sys.stderr, flush=True)
        os._exit(getattr(err, "exit_code", 1))
    except Stopped as stopped:
        print(f"SIGTERM: saved a checkpoint at step {stopped.step} in {args.model_dir}; stopping", flush=True)
        sys.stderr.flush()
        # End as the signal asked, killed by SIGTERM (a launcher tells it from "done"); 143 is the same to a shell.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(128 + signal.SIGTERM)
    print(f"trained {result.spec.preset} to step {result.final_step} in {result.model_dir}", flush=True)
    sys.stderr.flush()
    os._exit(0)  # skip the slow interpreter teardown of TensorFlow threads


if __name__ == "__main__":
    main()
