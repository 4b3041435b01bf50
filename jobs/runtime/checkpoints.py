"""Initial checkpoints: a checkpoint prefix, a folder, or a Model Garden ``.tar.gz`` archive (local or gs://)."""

from __future__ import annotations

import os
import tarfile
import tempfile

import tensorflow as tf

from jobs.errors import UsageError


def resolve_init_checkpoint(uri: str, scratch_dir: str | None = None) -> str:
    """A path ``tf.train.Checkpoint.restore`` accepts; archives are copied and unpacked first."""
    if not uri.endswith((".tar.gz", ".tgz")):
        if tf.io.gfile.isdir(uri):
            return tf.train.latest_checkpoint(uri) or uri
        return uri
    folder = tempfile.mkdtemp(prefix="init-checkpoint-", dir=scratch_dir)
    archive = os.path.join(folder, os.path.basename(uri))
    tf.io.gfile.copy(uri, archive, overwrite=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    os.remove(archive)
    indexes = sorted(tf.io.gfile.glob(os.path.join(folder, "**", "*.index")) +
                     tf.io.gfile.glob(os.path.join(folder, "*.index")))
    if not indexes:
        raise UsageError(f"{uri} holds no checkpoint (.index file): give --init-checkpoint a checkpoint prefix")
    return indexes[-1].removesuffix(".index")
