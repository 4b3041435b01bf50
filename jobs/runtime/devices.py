"""The distribution strategy for where the code runs: a laptop CPU, one or more GPUs, a Vertex TPU VM."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from jobs.errors import DetectorError, UsageError
from jobs.runtime.spec import DEVICES


class NoDevice(DetectorError):
    """The accelerator asked for is not visible to TensorFlow on this machine."""


def make_strategy(device: str = "auto") -> tf.distribute.Strategy:
    """``auto`` takes the GPUs if TensorFlow sees any, else the CPU; TPU jobs ask for ``tpu`` explicitly.

    Several Vertex replicas (``TF_CONFIG`` with more than one task) train with MultiWorkerMirroredStrategy.
    """
    if device not in DEVICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "auto":
        device = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if device == "tpu":
        # On a Vertex TPU VM the TPU is attached to this host: the resolver takes 'local'.
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if device == "gpu":
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:  # on every worker: a multi-worker strategy would train on the CPUs
            raise NoDevice("--device gpu, but TensorFlow sees no GPU: check the driver (nvidia-smi) and that "
                           "TensorFlow was installed with CUDA (tensorflow[and-cuda]), or use --device cpu")
        if workers() > 1:
            return tf.distribute.MultiWorkerMirroredStrategy()
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.OneDeviceStrategy("/gpu:0")
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def workers() -> int:
    """The machines of the job: the chief and workers of ``TF_CONFIG`` (Vertex AI writes it for several
    replicas), 1 without it."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    return max(1, sum(len(tasks) for name, tasks in cluster.items() if name in ("chief", "worker")))


def writes_summaries(strategy: tf.distribute.Strategy) -> bool:
    """Only the chief writes TensorBoard summaries: every worker of a multi-worker run sees the same values."""
    return bool(strategy.extended.should_save_summary)


def describe_devices() -> str:
    """The devices TensorFlow sees, for the job's log at start-up (a GPU or TPU missing here explains a slow run)."""
    found = tf.config.list_physical_devices()
    return "TensorFlow sees " + (", ".join(f"{d.device_type} {d.name}" for d in found) or "no devices")


def precision_for(device: str) -> str:
    return "bfloat16" if device == "tpu" else "float32"
