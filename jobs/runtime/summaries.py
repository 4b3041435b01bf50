"""Where a job writes its TensorBoard summaries."""

from __future__ import annotations

import os

# "Use Vertex AI TensorBoard with custom training" (cloud.google.com/vertex-ai/docs/experiments/tensorboard-training):
# the training code must write its TensorBoard logs to the Cloud Storage folder that Vertex AI gives in
# AIP_TENSORBOARD_LOG_DIR, and Vertex AI streams what is written there to the job's TensorBoard. The summaries go
# there instead of the model dir: one copy, in the folder that is read, and a local run (no such variable) keeps
# them in the model dir.
TENSORBOARD_LOG_DIR = "AIP_TENSORBOARD_LOG_DIR"


def summary_dir(local: str, run: str) -> str:
    """``$AIP_TENSORBOARD_LOG_DIR/<run>`` on a Vertex AI job with a TensorBoard, else ``local``: ``run`` (train,
    eval) names the curves in TensorBoard, as the sub-folders of a local model dir do."""
    logs = os.environ.get(TENSORBOARD_LOG_DIR)
    return os.path.join(logs, run) if logs else local
