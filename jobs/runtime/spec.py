"""What a job is: a training run's spec, the arguments a job is started with, and the progress it reports.

``TrainSpec`` (a preset plus the few overrides a user gives) is saved as ``experiment.json`` in the model dir at the
start of training, so evaluation, export and a resumed run rebuild exactly the same Model Garden experiment from
the model dir alone. ``TrainArgs`` and ``EvalArgs`` are the two entrypoints' arguments: the CLI and the launchers
build them, ``to_argv`` writes them into the job (a Vertex AI container's args, a local subprocess), ``from_argv``
reads them back there. A job reports ``ProgressEvent``s, one JSON line each on its stdout. No TensorFlow here:
the CLI checks a resume against the saved spec before the trainer (and TensorFlow) starts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from dataclasses import MISSING, Field, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Self, get_args, get_type_hints

from jobs.errors import UsageError
from jobs.io import OutputRefused, refuse_inputs, resolved

SPEC_FILE = "experiment.json"
RUN_RECORD = "run.json"  # a local run's record in its model dir (jobs.launch.runs)
EVAL_DIR = "eval"  # where evaluations go by default: <model dir>/eval (a Vertex AI run's: runs/RUN/eval)
MODEL_GARDEN_LIMIT = 100  # Model Garden's default max_num_instances: more boxes per image are silently cut
DEVICES = ("auto", "cpu", "gpu", "tpu")


def job_log(kind: str) -> str:
    """The file in a local run's model dir that keeps the output of its ``kind`` job."""
    return f"{kind}-job.log"


def launcher_file(name: str) -> bool:
    """Written into a model dir by the local launcher before the trainer starts (the run record, also while it is
    being replaced, and the job's log): a folder holding only these still counts as new."""
    return name in (RUN_RECORD, job_log("train")) or name.startswith(f".{RUN_RECORD}")


def flag(name: str) -> str:
    """The command-line flag of an argument field: ``batch_size`` -> ``--batch-size`` (typer derives the same)."""
    return "--" + name.replace("_", "-")


class JobArgs:
    """A frozen dataclass of one entrypoint's flags, one field per flag; ``help`` and ``env`` (a default read from
    the environment) in the field's metadata. ``to_argv`` writes every field that is set; ``from_argv`` reads them."""

    KIND: ClassVar[str]  # "train" or "evaluate"
    ENTRYPOINT: ClassVar[str]  # the module a job runs: python -m ENTRYPOINT
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # set by @dataclass on each subclass: ``fields`` works

    def to_argv(self) -> list[str]:
        argv: list[str] = []
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None or value is False:
                continue
            argv += [flag(item.name)] if value is True else [flag(item.name), str(value)]
        return argv

    @classmethod
    def from_argv(cls, argv: Sequence[str] | None = None) -> Self:
        """The arguments of ``argv`` (default: ``sys.argv[1:]``): argparse exits 2 on a malformed flag, ``check``
        raises a UsageError (exit 2) for arguments a job cannot run with."""
        namespace = cls.parser().parse_args(argv)
        return cls(**vars(namespace)).check()

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=f"python -m {cls.ENTRYPOINT}", description=cls.__doc__)
        hints = get_type_hints(cls)
        for item in fields(cls):
            kind = next(t for t in (get_args(hints[item.name]) or (hints[item.name],)) if t is not type(None))
            options: dict[str, Any] = {"dest": item.name, "help": item.metadata.get("help")}
            if kind is bool:
                options["action"] = "store_true"
            else:
                options["type"] = kind
                options["choices"] = item.metadata.get("choices")
                if item.default is MISSING:
                    options["required"] = True
                else:
                    env = item.metadata.get("env")
                    options["default"] = os.environ.get(env, item.default) if env else item.default
            parser.add_argument(flag(item.name), **options)
        return parser

    def check(self) -> Self:
        """These arguments, if a job can run with them; else a UsageError that says what is missing."""
        return self

    @classmethod
    def describe(cls, name: str) -> str | None:
        """The help of a field's flag (the CLI shows the same)."""
        return next(item.metadata.get("help") for item in fields(cls) if item.name == name)


@dataclass(frozen=True)
class TrainArgs(JobArgs):
    """Train a Model Garden RetinaNet from a preset (the trainer image runs ``python -m jobs.runtime.train``).

    ``None`` is "not given": a launcher fills data, model dir, batch and device where it decides them.
    """

    KIND: ClassVar[str] = "train"
    ENTRYPOINT: ClassVar[str] = "jobs.runtime.train"

    preset: str = field(metadata={"help": "see `python -m jobs presets`"})
    data: str | None = field(default=None, metadata={"help": "prepared data dir (local or gs://)"})
    # Vertex AI sets AIP_MODEL_DIR to <baseOutputDirectory>/model/ when a CustomJob has a base output directory
    # (CustomJobSpec.base_output_directory, Vertex AI v1 API reference); our launcher passes --model-dir anyway.
    model_dir: str | None = field(default=None, metadata={
        "help": "checkpoints and summaries (default: $AIP_MODEL_DIR on Vertex AI)", "env": "AIP_MODEL_DIR"})
    steps: int | None = field(default=None, metadata={"help": "default: the preset's"})
    batch_size: int | None = field(default=None, metadata={"help": "global batch (default: the preset's)"})
    init_checkpoint: str | None = field(default=None, metadata={
        "help": "start from this checkpoint (a prefix, folder or .tar.gz; local, gs:// or https://, fetched once "
                "into $DETECTOR_CACHE, default ~/.cache/detector/checkpoints); default: the preset's pretrained "
                "one; none: from scratch"})
    seed: int = field(default=0, metadata={"help": "weights, data order and augmentation"})
    device: str = field(default="auto", metadata={"help": "auto (a GPU if TensorFlow sees one), cpu, gpu or tpu",
                                                  "choices": DEVICES})

    def check(self) -> TrainArgs:
        if self.device not in DEVICES:
            raise UsageError(f"--device {self.device}: choose one of {', '.join(DEVICES)}")
        missing = [flag(name) for name in ("data", "model_dir") if not getattr(self, name)]
        if missing:
            raise UsageError(f"training needs {' and '.join(missing)}"
                             + (" (on Vertex AI, $AIP_MODEL_DIR stands in for --model-dir)"
                                if "--model-dir" in missing else ""))
        return self


@dataclass(frozen=True)
class EvalArgs(JobArgs):
    """Evaluate a training run's checkpoint or an exported model (the evaluator image runs
    ``python -m jobs.runtime.evaluate``)."""

    KIND: ClassVar[str] = "evaluate"
    ENTRYPOINT: ClassVar[str] = "jobs.runtime.evaluate"

    model_dir: str | None = field(default=None, metadata={"help": "a model dir written by `train`"})
    model: str | None = field(default=None, metadata={"help": "an export folder (SavedModel or TFLite) instead"})
    data: str | None = field(default=None, metadata={"help": "prepared data dir (default: the one it trained on)"})
    split: str = field(default="val", metadata={"help": "prepared split to evaluate on"})
    score_threshold: float | None = field(default=None, metadata={"help": "for P, R and the pictures (default: "
                                                                          "best F1)"})
    continuous: bool = field(default=False, metadata={"help": "follow new checkpoints until the run's last step"})
    timeout: float = field(default=3600.0, metadata={
        "help": "--continuous: seconds to wait for the run to start and for each new checkpoint"})
    eval_dir: str | None = field(default=None, metadata={
        "help": f"where the metrics, report and detections go (default: <model dir or model>/{EVAL_DIR})"})

    def check(self) -> EvalArgs:
        if bool(self.model_dir) == bool(self.model):
            raise UsageError("give --model-dir (a training run) or --model (an export)")
        if self.continuous and self.model:
            raise UsageError("--continuous follows a training run: use it with --model-dir")
        return self


@dataclass(frozen=True)
class ProgressEvent:
    """How far a job is, one JSON line on its stdout (``to_line``; ``from_line`` is the one parser).

    ``stage``: ``train`` (done and total count steps, with the loss), ``evaluate`` (images), ``evaluated`` (an
    evaluation is written: done is its step, ``path`` its folder, with ``metrics.json`` and ``report.html``).
    ``message`` repeats it as a sentence for a person reading the job's log.
    """

    STAGES: ClassVar[tuple[str, ...]] = ("train", "evaluate", "evaluated")
    TAG: ClassVar[str] = "detector.progress"  # the "event" of every line: tells ours from other JSON output

    stage: str
    done: int
    total: int
    loss: float | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.stage not in self.STAGES:
            raise ValueError(f"progress stage {self.stage!r} is not one of {', '.join(self.STAGES)}")
        if self.loss is not None and not math.isfinite(self.loss):
            object.__setattr__(self, "loss", None)  # JSON has no NaN: a loss not known yet is null

    @property
    def message(self) -> str:
        if self.stage == "train":
            loss = "" if self.loss is None else f" loss {self.loss:.5f}"
            return f"step {self.done}/{self.total}{loss}"
        if self.stage == "evaluate":
            return f"evaluated {self.done}/{self.total} images"
        return f"evaluated step {self.done}: {self.path}/report.html"

    def to_line(self) -> str:
        return json.dumps({"event": self.TAG, **asdict(self), "message": self.message}, allow_nan=False)

    @classmethod
    def from_line(cls, line: str) -> ProgressEvent | None:
        """The event on ``line``, or None for any other output line."""
        if not line.startswith("{"):
            return None
        try:
            data = json.loads(line)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("event") != cls.TAG:
            return None
        values: dict[str, Any] = {item.name: data.get(item.name) for item in fields(cls)}  # checked as it is built
        return cls(**values)


@dataclass(frozen=True)
class TrainSpec:
    preset: str
    data_dir: str
    steps: int
    batch_size: int
    init_checkpoint: str | None = None
    num_classes: int = 0  # Model Garden counts the background: max label id + 1
    max_instances: int = 100
    classes: tuple[str, ...] = ()
    precision: str = "float32"  # bfloat16 on TPU
    seed: int = 0  # weights, data order and augmentation; a resumed run continues from seed + its start step
    data_hash: str = ""  # dataset.json's content_hash: a resumed run must train on the same data

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TrainSpec:
        data = json.loads(text)
        data["classes"] = tuple(data.get("classes", ()))
        return cls(**data)


def spec_from_dataset(preset_name: str, data_dir: str, dataset: dict[str, Any], steps: int | None,
                      batch_size: int | None, init_checkpoint: str | None, precision: str = "float32",
                      seed: int = 0) -> TrainSpec:
    """The spec of a run of a preset on prepared data (``dataset`` is its ``dataset.json``)."""
    from jobs.presets import get_preset

    preset = get_preset(preset_name)
    return TrainSpec(
        preset=preset.name, data_dir=data_dir, steps=steps or preset.steps,
        batch_size=batch_size or preset.batch_size, init_checkpoint=init_checkpoint,
        num_classes=max(c["id"] for c in dataset["classes"]) + 1,
        max_instances=max(MODEL_GARDEN_LIMIT, dataset["max_boxes_per_image"]),
        classes=tuple(c["name"] for c in sorted(dataset["classes"], key=lambda c: c["id"])),
        precision=precision,
        seed=seed,
        data_hash=dataset.get("content_hash", ""),
    )


def resume(saved: TrainSpec, wanted: TrainSpec, model_dir: str) -> TrainSpec:
    """The spec a run resumed in ``model_dir`` trains with: the saved one, its step budget grown to ``wanted``'s.

    Another preset, other data or another batch size would go on training the saved checkpoints with settings
    that are not the ones recorded: a UsageError says what differs and the two ways out.
    """
    differences, original = [], []
    if saved.preset != wanted.preset:
        differences.append(f"preset was {saved.preset}, now {wanted.preset}")
        original.append(f"--preset {saved.preset}")
    data = _data_difference(saved, wanted)
    if data:
        differences.append(data)
        original.append(f"--data {saved.data_dir}")
    if saved.batch_size != wanted.batch_size:
        differences.append(f"batch size was {saved.batch_size}, now {wanted.batch_size}")
        original.append(f"--batch-size {saved.batch_size}")
    if differences:
        raise UsageError(f"{model_dir} holds a run with other settings ({'; '.join(differences)}): train into a "
                         f"new --model-dir, or resume with the original values: {' '.join(original)}")
    return replace(saved, steps=max(saved.steps, wanted.steps), data_dir=wanted.data_dir)


def _data_difference(saved: TrainSpec, wanted: TrainSpec) -> str | None:
    if saved.classes and saved.classes != wanted.classes:
        gone = [name for name in saved.classes if name not in wanted.classes]
        new = [name for name in wanted.classes if name not in saved.classes]
        if gone or new:
            return (f"classes differ (only in the run: {_names(gone)}; only in {wanted.data_dir}: {_names(new)})")
        return f"class ids differ (the same names in another order in {wanted.data_dir})"
    if saved.num_classes != wanted.num_classes:
        return f"classes were {saved.num_classes - 1}, now {wanted.num_classes - 1}"
    if saved.data_hash and wanted.data_hash:
        if saved.data_hash != wanted.data_hash:
            return (f"data content hash was {saved.data_hash[:12]} ({saved.data_dir}), "
                    f"now {wanted.data_hash[:12]} ({wanted.data_dir})")
    elif saved.data_dir != wanted.data_dir:  # a run or data from before content hashes: compare the folders
        return f"data was {saved.data_dir}, now {wanted.data_dir}"
    return None


def _names(names: list[str], shown: int = 5) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def check_model_dir(model_dir: str, data_dir: str) -> None:
    """A local model dir is new, empty (but for what the local launcher wrote there) or a training run's (its
    ``experiment.json``), and holds no input: training never writes checkpoints among files it did not write.
    (A ``gs://`` one lies in the run's own prefix.)"""
    if "://" in model_dir:
        return
    folder = resolved(model_dir)
    refuse_inputs(folder, [Path(data_dir)] if "://" not in data_dir else [], "--model-dir")
    if folder.exists() and not folder.is_dir():
        raise OutputRefused(f"--model-dir {folder} is a file, not a folder: choose a folder name")
    if folder.is_dir() and not (folder / SPEC_FILE).is_file() and any(
            not launcher_file(path.name) for path in folder.iterdir()):
        raise OutputRefused(f"--model-dir {folder} holds files and no {SPEC_FILE}: it is not a model dir of this "
                            "tool; choose a new or empty folder")


def preflight_resume(preset_name: str, data_dir: str, model_dir: str, batch_size: int | None) -> None:
    """The trainer's resume check, run before the trainer (and TensorFlow) starts, where the model dir and the
    data are local folders; the trainer runs it again wherever it runs."""
    check_model_dir(model_dir, data_dir)
    saved_path, dataset_path = Path(model_dir) / SPEC_FILE, Path(data_dir) / "dataset.json"
    if "://" in model_dir or "://" in data_dir or not saved_path.is_file() or not dataset_path.is_file():
        return
    saved = TrainSpec.from_json(saved_path.read_text(encoding="utf-8"))
    dataset = json.loads(dataset_path.read_text(encoding="utf-8"))
    resume(saved, spec_from_dataset(preset_name, data_dir, dataset, None, batch_size, None), model_dir)
