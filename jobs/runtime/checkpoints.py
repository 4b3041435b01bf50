"""Initial checkpoints: where one comes from (a checkpoint prefix, a folder or a ``.tar.gz`` archive, local, gs:// or
https://; remote ones through the cache of ``checkpoint_cache``) and what restoring it did to the model, module by
module (Model Garden's ``checkpoint_items``: backbone, decoder, head)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf

from jobs.errors import DetectorError, UsageError
from jobs.runtime.checkpoint_cache import extract_archive, fetch, is_archive, is_remote

MODULES = ("backbone", "decoder", "head")  # RetinaNetModel.checkpoint_items


class CheckpointMismatch(DetectorError):
    """The initial checkpoint does not fit the preset's model."""


@contextmanager
def local_checkpoint(uri: str) -> Iterator[str]:
    """The checkpoint prefix (``…/ckpt-N``) of ``uri``, readable while the context lasts: gs:// and http(s)://
    through the cache (fetched the first time), a local archive unpacked into a temporary folder."""
    if is_remote(uri):
        yield checkpoint_prefix(fetch(uri), uri)
    elif is_archive(uri):
        if not Path(uri).is_file():
            raise UsageError(f"--init-checkpoint {uri}: no such archive")
        with tempfile.TemporaryDirectory(prefix="init-checkpoint-") as folder:
            extract_archive(Path(uri), Path(folder), uri)
            yield checkpoint_prefix(Path(folder), uri)
    elif "://" in uri:
        raise UsageError(f"--init-checkpoint {uri}: give a local path, gs://… or https://…")
    elif Path(uri).is_dir():
        yield checkpoint_prefix(Path(uri), uri)
    elif Path(f"{uri}.index").is_file():
        yield uri
    else:
        raise UsageError(f"--init-checkpoint {uri}: no checkpoint there (a folder, a prefix with its .index file or "
                         "a .tar.gz archive)")


def checkpoint_prefix(folder: Path, uri: str) -> str:
    """The newest checkpoint in ``folder`` or below: the one its ``checkpoint`` file names, else the highest
    step among the ``.index`` files."""
    latest = tf.train.latest_checkpoint(str(folder))
    if latest:
        return str(latest)
    indexes = list(folder.rglob("*.index"))
    if not indexes:
        raise UsageError(f"{uri} holds no checkpoint (.index file): give --init-checkpoint a checkpoint prefix")

    def step(path: Path) -> tuple[int, str]:
        match = re.search(r"-(\d+)\.index$", path.name)
        return (int(match.group(1)) if match else -1, str(path))

    return str(max(indexes, key=step)).removesuffix(".index")


@dataclass(frozen=True)
class ModuleRestore:
    module: str
    restored: int  # variables read from the checkpoint
    fresh: int  # variables that keep their initial values


@dataclass(frozen=True)
class RestoreReport:
    checkpoint: str
    modules: tuple[ModuleRestore, ...]

    def lines(self) -> list[str]:
        return [f"initial checkpoint {self.checkpoint}:"] + [
            f"  {m.module}: {m.restored} variables restored, {m.fresh} start fresh" for m in self.modules]


def restore_modules(model: Any, checkpoint: str, modules: Sequence[str], source: str | None = None) -> RestoreReport:
    """Restore ``modules`` of a Model Garden model from ``checkpoint`` the way Model Garden's task does
    (``tf.train.Checkpoint(backbone=…, decoder=…)``, which reads both a classification and a detection checkpoint),
    and count per module the variables restored and those left fresh. A CheckpointMismatch when nothing of the
    backbone restores or a variable's shape differs (another preset's or another class count's checkpoint)."""
    source = source or checkpoint
    stored = dict(tf.train.list_variables(checkpoint))
    report = []
    for module in MODULES:
        layer = getattr(model, module, None)
        if layer is None:
            continue
        keys = _variable_shapes(module, layer) if module in modules else {}
        matched = [key for key in keys if key in stored]
        for key in matched:
            if list(stored[key]) != keys[key]:
                raise CheckpointMismatch(
                    f"--init-checkpoint {source}: {key} has the shape {list(stored[key])} there, {keys[key]} in "
                    f"this model: the checkpoint belongs to another preset (or, for the head, another class count)")
        total = len(keys) if module in modules else len(layer.weights)
        report.append(ModuleRestore(module, len(matched), total - len(matched)))
    if not any(m.module == "backbone" and m.restored for m in report):
        raise CheckpointMismatch(f"--init-checkpoint {source} restores no variable of the backbone: it is not a "
                                 "checkpoint of this preset's backbone; give another, or --init-checkpoint none")
    restoring = {module: getattr(model, module) for module in modules if getattr(model, module, None) is not None}
    tf.train.Checkpoint(**restoring).read(checkpoint).expect_partial()
    return RestoreReport(source, tuple(report))


def _variable_shapes(module: str, layer: Any) -> dict[str, list[int]]:
    """The checkpoint keys (``backbone/…/.ATTRIBUTES/VARIABLE_VALUE``) and shapes of a module's variables, as a
    ``tf.train.Checkpoint(module=layer)`` names them: written once to a temporary folder and listed."""
    with tempfile.TemporaryDirectory(prefix="module-keys-") as folder:
        path = tf.train.Checkpoint(**{module: layer}).write(str(Path(folder) / "keys"))
        return {key: list(shape) for key, shape in tf.train.list_variables(path) if key.startswith(f"{module}/")}
