"""``data check``, ``data stats`` and ``data rules`` run as a user runs them (a real ``python -m jobs`` process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from image_kinds import make_image

from jobs.cli.data import FORMATS
from jobs.dataset.findings import RULES
from jobs.dataset.readers import READERS

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = os.environ | {"COLUMNS": "1000", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "jobs", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def labelled(tmp_path) -> Path:
    """Three images, one box clipped at the border (a warning), one row with a bad number (an error, dropped)."""
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        make_image(tmp_path / "images" / name, "jpeg")
    (tmp_path / "labels.csv").write_text('image,xmin,ymin,xmax,ymax,label\na.jpg,8,8,40,40,cat\n'
                                         'b.jpg,-1,8,40,40,cat\nc.jpg,8,8,40,40,cat\nc.jpg,x,8,40,40,cat\n')
    return tmp_path


def test_rules_lists_every_rule_with_severity_and_action():
    result = run("data", "rules")
    assert result.returncode == 0
    for rule in RULES.values():
        line = next(line for line in result.stdout.splitlines() if f" {rule.code} " in line)
        assert rule.name in line and rule.severity.value in line and rule.action.value in line


def test_the_format_help_names_every_reader():
    assert set(FORMATS) == set(READERS)


def test_check_reports_and_writes_nothing_but_the_report(labelled):
    before = sorted(p.relative_to(labelled) for p in labelled.rglob("*"))
    result = run("data", "check", "--input", "labels.csv", "--images", "images", "--report", "report.json",
                 cwd=labelled)
    assert result.returncode == 0, result.stderr
    assert "labels.csv:5: F003 bad-field: xmin='x' is not a number" in result.stderr
    assert "rows in 4 = written 3 + reported 1" in result.stdout
    assert "usable (with warnings)" in result.stdout
    report = json.loads((labelled / "report.json").read_text())
    assert report["rows"] == {"in": 4, "written": 3, "reported": 1}
    assert report["counts"]["B004"] == 1 and report["counts"]["F003"] == 1
    assert sorted(p.relative_to(labelled) for p in labelled.rglob("*")) == sorted([*before, Path("report.json")])


def test_check_strict_fails_on_a_warning_and_still_writes_the_report(labelled):
    result = run("data", "check", "--input", "labels.csv", "--images", "images", "--strict", "--report", "r.json",
                 cwd=labelled)
    assert result.returncode == 1
    assert "--strict: every finding is an error" in result.stderr
    assert "labels.csv:3: B004 box-clipped" in result.stderr
    report = json.loads((labelled / "r.json").read_text())
    assert report["rows"] is None and {f["code"] for f in report["findings"]} >= {"B004", "F003"}


def test_check_of_fatal_data_exits_1_and_bad_usage_exits_2(labelled):
    (labelled / "map.pbtxt").write_text("item { id: 1 name: 'dog' }\n")
    fatal = run("data", "check", "--input", "labels.csv", "--images", "images", "--label-map", "map.pbtxt",
                cwd=labelled)
    assert fatal.returncode == 1
    assert "C001 unknown-class: classes not in the label map (dog): 'cat' at labels.csv:2" in fatal.stderr
    usage = run("data", "check", "--input", "labels.csv", "--images", "nowhere", cwd=labelled)
    assert usage.returncode == 2 and "the images folder nowhere does not exist" in usage.stderr
    verify = run("data", "check", "--input", "labels.csv", "--images", "images", "--verify", "pixels", cwd=labelled)
    assert verify.returncode == 2 and "--verify must be one of header, full" in verify.stderr


def test_stats_writes_the_charts(labelled):
    result = run("data", "stats", "--input", "labels.csv", "--images", "images", "--out", "charts", cwd=labelled)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (labelled / "charts").iterdir())
    assert names == [".detector-output.json", "box_sizes.png", "boxes_per_image.png", "classes.png", "samples.png"]
    assert all((labelled / "charts" / n).read_bytes().startswith(b"\x89PNG") for n in names[1:])
    again = run("data", "stats", "--input", "labels.csv", "--images", "images", "--out", "charts", cwd=labelled)
    assert again.returncode == 0, again.stderr  # its own earlier charts are replaced
    assert sorted(p.name for p in labelled.iterdir() if p.name.startswith(".")) == []  # no temporary or lock left


def test_data_help_does_not_import_tensorflow_or_pillow():
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from typer.testing import CliRunner; from jobs.cli import app; "
         "r = CliRunner().invoke(app, ['data', 'check', '--help']); assert r.exit_code == 0, r.output; "
         "print(sorted(m for m in ('tensorflow', 'PIL', 'matplotlib') if m in sys.modules))"],
        cwd=REPO, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]"
