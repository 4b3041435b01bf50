"""Fixtures of the serving tests: the evaluation tests' demo model (trained once per session) and its images."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluation"))

pytest_plugins = ["evaluation_fixtures"]  # demo_run: prepare -> train -> evaluate -> export, once per session


@pytest.fixture(scope="session")
def export(demo_run) -> Path:
    return demo_run.paths["exported model"]


@pytest.fixture(scope="session")
def images(demo_run, tmp_path_factory) -> list[Path]:
    """Two validation JPEGs as drawn (128 x 128), and one of them enlarged to a 200 x 150 PNG, so that boxes in
    pixels differ from boxes in 0..1 on both axes by different factors."""
    from PIL import Image

    entries = json.loads((demo_run.paths["prepared data"] / "val_coco.json").read_text())["images"][:2]
    jpegs = [demo_run.paths["synthetic images"] / entry["file_name"] for entry in entries]
    png = tmp_path_factory.mktemp("serve-images") / "wide.png"
    with Image.open(jpegs[0]) as image:
        image.convert("RGB").resize((200, 150), Image.BILINEAR).save(png)
    return [*jpegs, png]


@pytest.fixture(scope="session")
def expected(export, images) -> dict[Path, list]:
    """What ``predict`` finds on each image (score >= 0.3), through the export's uint8 signature."""
    from jobs.runtime.predict import Predictor

    predictor = Predictor(export)
    return {path: predictor.predict(path)[0] for path in images}
