"""Fixtures of the evaluation tests: one demo model per session, its exports, and headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from evaluation_cli import run_cli
from report_browser import chromium

STEPS = 400  # enough for confident boxes (AP50 ~0.95): at 200 the model, and so its int8 copy, varies run to run


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """prepare -> train -> evaluate -> SavedModel export, once per session (about 2 minutes)."""
    from jobs.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("evaluation-demo"), steps=STEPS, images=150)


@pytest.fixture(scope="session")
def steps() -> int:
    return STEPS


@pytest.fixture(scope="session")
def exports(demo_run, tmp_path_factory) -> dict[str, Path]:
    """The demo model in every format: ``tflite`` through the library, ``tflite-int8`` through the CLI."""
    from jobs.runtime.export import export_model

    model_dir = demo_run.paths["model dir (TensorBoard)"]
    folder = tmp_path_factory.mktemp("exports")
    export_model(str(model_dir), str(folder / "tflite"), "tflite")
    result = run_cli("export", "--model-dir", str(model_dir), "--out", str(folder / "tflite-int8"),
                     "--format", "tflite-int8")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "as tflite-int8" in result.stdout
    return {"saved_model": demo_run.paths["exported model"], "tflite": folder / "tflite",
            "tflite-int8": folder / "tflite-int8"}


@pytest.fixture(scope="session")
def browser() -> str:
    binary = chromium()
    if not binary:
        pytest.skip("chromium is not installed (`apt-get install chromium` as root; `make test` tries it): "
                    "report.html was not checked in a browser")
    return binary
