"""Quiet output: commands drop exactly the library noise that tells a user nothing, and every other warning shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.console import NoiseFilter
from jobs.stack import StackOutputs

REPO = Path(__file__).resolve().parents[1]
GOOGLE_NOTICE = "which Google will stop supporting"
NOISE_MARKS = ("failed call to cuInit", "oneDNN supports", GOOGLE_NOTICE, "Ignored output_format")

CUINIT = ("2026-12-02 03:33:59.837825: E external/local_xla/xla/stream_executor/cuda/cuda_platform.cc:51] "
          "failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: {}")
DEPRECATION = ("/work/.venv/lib/python3.11/site-packages/google/api_core/_python_version_support.py:254: "
               "FutureWarning: You are using a Python version (3.11.7) which Google will stop supporting in new "
               "releases of google.api_core once it reaches its end of life (2027-10-24). Please upgrade to the "
               "latest Python version, or at least Python 3.12, to continue receiving updates for "
               "google.api_core past that date.")


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "160", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, env=env, **kwargs)


def test_the_noise_filter_drops_exactly_the_known_lines():
    dropped = [
        CUINIT.format("UNKNOWN ERROR (303)"),
        CUINIT.format("CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected"),
        "2026-12-02 03:32:04.374589: E tensorflow/core/util/util.cc:131] oneDNN supports DT_INT32 only on "
        "platforms with AVX-512. Falling back to the default Eigen-based implementation if present.",
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "W0000 00:00:1796182475.116410   23101 tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format.",
        "W0000 00:00:1796182475.116504   23101 tf_tfl_flatbuffer_helpers.cc:367] Ignored drop_control_dependency.",
        "I0000 00:00:1796182475.289064   23101 mlir_graph_optimization_pass.cc:437] MLIR V1 optimization pass is "
        "not enabled",
        DEPRECATION,
        "  warnings.warn(message, FutureWarning)",  # the source line under the warning just dropped
    ]
    kept = [
        CUINIT.format("CUDA_ERROR_SYSTEM_DRIVER_MISMATCH: system has unsupported display driver / cuda driver "
                      "combination"),  # a GPU machine whose driver is broken: it matters
        "2026-12-02 03:32:04.374589: E tensorflow/core/framework/op_kernel.cc:1840] OP_REQUIRES failed",
        "W0000 00:00:1796182475.116410   23101 tf_tfl_flatbuffer_helpers.cc:364] Ignored something_else.",
        DEPRECATION.replace("which Google will stop supporting in new releases of", "past its end of life for"),
        "/app/jobs/runtime/train.py:12: FutureWarning: a real one",
        "  warnings.warn(message, FutureWarning)",  # under a warning that was kept
        "  indented output of a job",
    ]
    noise = NoiseFilter()
    assert [line for line in dropped + kept if noise.keep(line)] == kept


def test_a_cloud_command_drops_googles_python_notice_and_keeps_every_other_warning(tmp_path):
    """The real `train --dry-run` imports Google's client libraries; afterwards, in the same process, warnings
    of the same module and category that are not the notice still show."""
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(StackOutputs(
        project="acme-ml", region="us-central1", bucket="acme-exp", data_prefix="gs://acme-exp/data",
        runs_prefix="gs://acme-exp/runs", job_service_account="job@acme-ml.iam.gserviceaccount.com",
        repository_url="us-central1-docker.pkg.dev/acme-ml/detector", tensorboard="", experiment="exp-a",
        checkpoints_prefix="gs://acme-exp/checkpoints").to_outputs()))
    args = ["train", "--stack-outputs", str(outputs), "--preset", "retinanet-spinenet-mobile-384",
            "--accelerator", "tpu-v5e-4", "--run-id", "dry", "--dry-run"]
    probe = f"""
import datetime, sys, warnings
sys.argv = ["detector", *{args!r}]
from jobs.cli import main
try:
    main()
except SystemExit as stop:
    assert not stop.code, stop.code
import google.api_core
assert "google.cloud.aiplatform_v1" in sys.modules  # the command did import the client libraries
warnings.warn("a warning of our own", FutureWarning)
google.api_core.check_python_version("google.api_core", today=datetime.date(2099, 1, 1))  # unsupported
eol = google.api_core._python_version_support.PYTHON_VERSION_INFO[sys.version_info[:2]].python_eol
google.api_core.check_python_version("google.api_core", today=eol - datetime.timedelta(days=30))  # the notice
"""
    done = run([sys.executable, "-c", probe])
    assert done.returncode == 0, done.stderr
    assert '"customJob"' in done.stdout
    assert "FutureWarning: a warning of our own" in done.stderr
    assert "You are using a non-supported Python version" in done.stderr
    assert GOOGLE_NOTICE not in done.stderr


STUB_MODEL = """
import json, sys
from pathlib import Path
import tensorflow as tf

class Stub(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def serve(self, images):
        tf.print("the model ran on", tf.shape(images)[1:3], output_stream=sys.stderr)  # from C++, to stderr
        return {"num_detections": tf.constant([1.0]), "detection_boxes": tf.constant([[[0.1, 0.1, 0.5, 0.5]]]),
                "detection_scores": tf.constant([[0.9]]), "detection_classes": tf.constant([[1.0]])}

out = Path(sys.argv[1])
stub = Stub()
tf.saved_model.save(stub, str(out / "saved_model"), signatures={"serving_default": stub.serve})
(out / "model.json").write_text(json.dumps({"format": "saved_model"}))
(out / "label_map.pbtxt").write_text('item {\\n  id: 1\\n  name: "thing"\\n}\\n')
"""


def test_a_tensorflow_command_drops_the_cuda_and_onednn_noise_and_keeps_other_native_output(tmp_path):
    """`predict` on a SavedModel export (a stub that writes a line to stderr from C++ when it runs): the same
    TensorFlow without the CLI logs its noise (on a machine without a GPU), the command shows only the line."""
    from PIL import Image

    model, image = tmp_path / "model", tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (90, 90, 90)).save(image)
    unfiltered = run([sys.executable, "-c", STUB_MODEL, str(model)])
    assert unfiltered.returncode == 0, unfiltered.stderr
    if not any(mark in unfiltered.stderr for mark in NOISE_MARKS):
        pytest.skip("TensorFlow printed none of the noise here (a machine with a GPU?)")

    done = run([sys.executable, "-m", "jobs", "predict", "--model", str(model), str(image)])
    assert done.returncode == 0, done.stderr
    assert "thing" in done.stdout and "0.900" in done.stdout
    assert "the model ran on [48 64]" in done.stderr  # native output that is not noise
    assert not [mark for mark in NOISE_MARKS if mark in done.stderr], done.stderr
