"""The CLI as a user runs it: a real ``python -m jobs`` process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_help_lists_the_commands_without_importing_tensorflow_or_pulumi():
    result = run("--help")
    assert result.returncode == 0
    for command in ("data", "train", "evaluate", "export", "predict", "demo", "presets"):
        assert command in result.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from jobs.cli import app; "
         "from typer.main import get_command; get_command(app); "
         "print(sorted(m for m in ('tensorflow', 'pulumi', 'official', 'PIL', 'apache_beam') if m in sys.modules))"],
        cwd=REPO, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]"


def test_prepare_command_writes_outputs_and_exit_0(synthetic, tmp_path):
    out = tmp_path / "data"
    result = run("data", "prepare", "--input", str(synthetic.labels_csv), "--images", str(synthetic.images_dir),
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "dataset.json").read_text())
    assert summary["rows"]["in"] == summary["rows"]["written"] == synthetic.boxes
    assert f"rows in {synthetic.boxes} = written {synthetic.boxes} + reported 0" in result.stdout
    assert "tensorflow" not in result.stderr.lower()


def test_prepare_with_fatal_errors_exits_1_and_names_the_row(tmp_path):
    (tmp_path / "images").mkdir()
    labels = tmp_path / "labels.csv"
    labels.write_text("image,xmin,ymin,xmax,ymax,label\nnothere.jpg,1,1,5,5,cat\n")
    result = run("data", "prepare", "--input", str(labels), "--images", str(tmp_path / "images"), "--out",
                 str(tmp_path / "out"))
    assert result.returncode == 1
    assert "nothing was written" in result.stderr
    assert "labels.csv:2: I001 missing-image: image 'nothere.jpg' not found" in " ".join(result.stderr.split())
    assert not (tmp_path / "out").exists()


def test_bad_usage_exits_2(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("a,b\n1,2\n")
    result = run("data", "prepare", "--input", str(labels), "--images", str(tmp_path), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "matches no known format" in result.stderr
    assert run("train", "--bogus").returncode == 2


def test_presets_table_lists_the_required_presets():
    result = run("presets")
    assert result.returncode == 0
    for name in ("retinanet-mobilenet-256", "retinanet-mobilenet-640", "retinanet-resnet50fpn-640",
                 "retinanet-spinenet-mobile-384"):
        assert name in result.stdout
