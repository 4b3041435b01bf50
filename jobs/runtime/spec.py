"""What a training run is: a preset plus the few overrides a user gives, saved as ``experiment.json``.

The spec is written into the model dir at the start of training, so evaluation, export and a resumed run
rebuild exactly the same Model Garden experiment from the model dir alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

SPEC_FILE = "experiment.json"
PROGRESS_PREFIX = "progress:"  # the trainer's progress lines; the local backend parses them


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TrainSpec:
        data = json.loads(text)
        data["classes"] = tuple(data.get("classes", ()))
        return cls(**data)
