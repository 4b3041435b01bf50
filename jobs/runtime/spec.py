"""What a training run is: a preset plus the few overrides a user gives, saved as ``experiment.json``.

The spec is written into the model dir at the start of training, so evaluation, export and a resumed run
rebuild exactly the same Model Garden experiment from the model dir alone. No TensorFlow here: the CLI checks a
resume against the saved spec before the trainer (and TensorFlow) starts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from jobs.errors import UsageError
from jobs.io import OutputRefused, refuse_inputs, resolved

SPEC_FILE = "experiment.json"
PROGRESS_PREFIX = "progress:"  # the trainer's progress lines; the local backend parses them
MODEL_GARDEN_LIMIT = 100  # Model Garden's default max_num_instances: more boxes per image are silently cut


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


def spec_from_dataset(preset_name: str, data_dir: str, dataset: dict, steps: int | None, batch_size: int | None,
                      init_checkpoint: str | None, precision: str = "float32", seed: int = 0) -> TrainSpec:
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
    """A local model dir is new, empty or a training run's (its ``experiment.json``), and holds no input: training
    never writes checkpoints among files it did not write. (A ``gs://`` one lies in the run's own prefix.)"""
    if "://" in model_dir:
        return
    folder = resolved(model_dir)
    refuse_inputs(folder, [Path(data_dir)] if "://" not in data_dir else [], "--model-dir")
    if folder.exists() and not folder.is_dir():
        raise OutputRefused(f"--model-dir {folder} is a file, not a folder: choose a folder name")
    if folder.is_dir() and not (folder / SPEC_FILE).is_file() and any(folder.iterdir()):
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
