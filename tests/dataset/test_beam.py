"""``data prepare --engine beam`` (Apache Beam's DirectRunner, worker processes) writes what the local engine writes:
the same serialized examples (compared one by one, whatever shard holds them), split, label map, findings and
reconciliation line; its workers import neither TensorFlow nor the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import engine_outputs
import pytest
from engine_outputs import outcome

from jobs.dataset.pipeline import CheckOptions
from jobs.dataset.prepare import PrepareOptions, prepare
from jobs.errors import UsageError

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"COLUMNS": "1000", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "jobs", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def with_bad_rows(synthetic, tmp_path_factory) -> tuple[Path, Path]:
    return engine_outputs.with_bad_rows(synthetic, tmp_path_factory.mktemp("bad-rows"))


def test_beam_engine_writes_the_local_engines_records_split_and_findings(with_bad_rows, tmp_path):
    labels, images = with_bad_rows
    local = prepare(PrepareOptions(CheckOptions(labels, images, seed=3, workers=2), tmp_path / "local",
                                   num_shards=3))
    result = run("data", "prepare", "--input", str(labels), "--images", str(images), "--seed", "3", "--workers", "2",
                 "--num-shards", "2", "--engine", "beam", "--out", str(tmp_path / "beam"))
    assert result.returncode == 0, result.stderr
    rows = local.summary["rows"]
    line = f"rows in {rows['in']} = written {rows['written']} + reported {rows['reported']}"
    assert rows == {"in": 133, "written": 126, "reported": 7} and line in result.stdout
    assert {finding.code for finding in local.report.findings} >= {"I001", "I002", "I004", "I006", "I007", "I008",
                                                                   "I009", "I011", "B002", "B005", "B007", "F003"}
    expected, got = outcome(tmp_path / "local"), outcome(tmp_path / "beam")
    assert len(expected["examples"]["train"]) > 40 and expected["examples"]["val"]
    assert got == expected  # the examples one by one, though local wrote 3 shards a split and beam 2
    assert len(list((tmp_path / "beam").glob("train-*-of-00002.tfrecord"))) == 2
    assert "apache_beam" not in result.stderr and "WARNING" not in result.stderr


def test_beam_engine_on_the_raccoon_data(raccoon, tmp_path):
    given = CheckOptions(raccoon / "data" / "test_labels.csv", raccoon / "images", seed=7, workers=2)
    prepare(PrepareOptions(given, tmp_path / "local", stats=False))
    prepare(PrepareOptions(given, tmp_path / "beam", stats=False, engine="beam"))
    expected, got = outcome(tmp_path / "local"), outcome(tmp_path / "beam")
    assert expected["examples"]["train"] and expected["examples"]["val"]
    assert got == expected
    for shard in (tmp_path / "local").glob("*.tfrecord"):  # same shard plan: each shard the same bytes
        assert (tmp_path / "beam" / shard.name).read_bytes() == shard.read_bytes()


def test_workers_import_neither_tensorflow_nor_the_cli():
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; import jobs.dataset.beam; "
         "print(sorted(m for m in sys.modules if m.partition('.')[0] in ('tensorflow', 'typer', 'rich', 'pulumi') "
         "or m.startswith('jobs.cli')))"],
        cwd=REPO, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]"


def test_an_unknown_engine_is_a_usage_error(synthetic, tmp_path):
    with pytest.raises(UsageError, match="--engine must be one of local, beam"):
        PrepareOptions(CheckOptions(synthetic.labels_csv, synthetic.images_dir), tmp_path / "out", engine="spark")
