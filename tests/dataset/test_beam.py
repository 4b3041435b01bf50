"""``data prepare --engine beam`` (Apache Beam's DirectRunner, worker processes) writes what the local engine writes:
the same serialized examples (compared one by one, whatever shard holds them), split, label map, findings and
reconciliation line; its workers import neither TensorFlow nor the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from image_kinds import make_image

from jobs.dataset.pipeline import CheckOptions
from jobs.dataset.prepare import PrepareOptions, prepare
from jobs.dataset.tfrecord import read_records
from jobs.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
BAD_IMAGES = {"cut-short.jpg": "truncated", "not-an-image.jpg": "text", "animated.gif": "gif", "scan.tiff": "tiff",
              "rotated.jpg": "exif6", "alpha.png": "rgba", "depth.png": "png16"}
BAD_ROWS = [  # appended to the synthetic VoTT CSV
    '"missing.jpg","1","1","5","5","circle"',  # I001
    '"cut-short.jpg","2","2","20","20","square"',  # I006: no end marker, dropped
    '"not-an-image.jpg","2","2","20","20","square"',  # I002: not an image
    '"animated.gif","2","2","20","20","square"',  # I007: re-encoded as PNG in the record
    '"scan.tiff","2","2","20","20","circle"',
    '"rotated.jpg","2","2","20","20","triangle"',  # EXIF rotation reported
    '"alpha.png","2","2","20","20","triangle"',
    '"depth.png","2","2","20","20","circle"',
    '"alpha.png","30","2","10","20","triangle"',  # inverted box
    '"rotated.jpg","2","2","20","20","triangle"',  # duplicate box
    '"scan.tiff","2","2","900","20","circle"',  # outside the image
    '"scan.tiff","x","2","20","20","circle"',  # not a number
]


def run(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"COLUMNS": "1000", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "jobs", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def examples(out: Path) -> dict[str, list[bytes]]:
    """Per split, every serialized example in the output's shards, sorted (the shards' boundaries ignored)."""
    found: dict[str, list[bytes]] = {}
    for shard in sorted(out.glob("*.tfrecord")):
        with shard.open("rb") as stream:
            found.setdefault(shard.name.partition("-")[0], []).extend(read_records(stream))
    return {split: sorted(records) for split, records in found.items()}


def outcome(out: Path) -> dict[str, object]:
    """What both engines must agree on, read from the output folder."""
    summary = json.loads((out / "dataset.json").read_text())
    report = json.loads((out / "report.json").read_text())
    return {"examples": examples(out), "label_map": (out / "label_map.pbtxt").read_text(),
            "ground truth": {p.name: p.read_text() for p in sorted(out.glob("*_coco.json"))},
            "splits": {name: {key: value for key, value in split.items() if key != "shards"}
                       for name, split in summary["splits"].items()},
            "rows": summary["rows"], "findings": report["findings"], "counts": summary["findings"],
            "content_hash": summary["content_hash"], "verify": summary["verify"]}


@pytest.fixture(scope="module")
def with_bad_rows(synthetic, tmp_path_factory) -> tuple[Path, Path]:
    """The synthetic dataset (60 images) with images of every kind and bad rows added."""
    folder = tmp_path_factory.mktemp("bad-rows")
    images = folder / "images"
    images.mkdir()
    for path in synthetic.images_dir.iterdir():
        (images / path.name).write_bytes(path.read_bytes())
    for name, kind in BAD_IMAGES.items():
        make_image(images / name, kind)
    labels = folder / "labels.csv"
    labels.write_text(synthetic.labels_csv.read_text().rstrip("\n") + "\n" + "\n".join(BAD_ROWS) + "\n")
    return labels, images


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
