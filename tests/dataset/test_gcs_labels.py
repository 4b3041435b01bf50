"""Label files in Cloud Storage (gcp-storage-emulator): ``--input gs://…`` is mirrored into the local cache (only
changed objects downloaded again, objects gone from the bucket removed from the mirror), and images the format keeps
beside its labels are read at the bucket's folder, not downloaded."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from format_writers import write_coco, write_voc
from gcs_emulator import BUCKET, emulated_storage
from PIL import Image

from jobs.dataset.gcs_labels import fetch_labels
from jobs.dataset.pipeline import CheckOptions, load
from jobs.dataset.prepare import PrepareOptions, prepare
from jobs.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
ITEMS = [(f"img{i}.jpg", 64, 48, "train" if i < 4 else "val", [("cat", 4.0, 4.0, 30.0, 30.0)]) for i in range(6)]


def jpeg() -> bytes:
    stream = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(stream, "JPEG")
    return stream.getvalue()


@pytest.fixture
def bucket(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with emulated_storage(monkeypatch) as (proxy, client):
        yield proxy, client.bucket(BUCKET)


def test_a_coco_file_is_mirrored_once_and_its_images_read_in_the_bucket(bucket, tmp_path):
    proxy, store = bucket
    labels = write_coco(tmp_path, ITEMS)
    store.blob("coco/instances.json").upload_from_filename(str(labels))
    for name, *_ in ITEMS:
        store.blob(f"coco/{name}").upload_from_string(jpeg())

    local = fetch_labels(f"gs://{BUCKET}/coco/instances.json")
    assert local == tmp_path / "cache" / "detector" / "gcs" / BUCKET / "coco" / "instances.json"
    assert local.read_bytes() == labels.read_bytes()
    loaded = load(CheckOptions(local))
    assert loaded.images_dir == f"gs://{BUCKET}/coco", "the images beside the labels, in the bucket"
    assert not any(name.endswith(".jpg") for name in proxy.downloads)
    result = prepare(PrepareOptions(CheckOptions(local, seed=1), tmp_path / "out", stats=False))
    assert result.summary["rows"]["written"] == 6

    mirrored = local.stat().st_ino
    fetch_labels(f"gs://{BUCKET}/coco/instances.json")
    assert local.stat().st_ino == mirrored, "an unchanged object is not downloaded again"
    store.blob("coco/instances.json").upload_from_string(b'{"images": [], "annotations": [], "categories": []}')
    assert fetch_labels(f"gs://{BUCKET}/coco/instances.json").read_text().startswith('{"images": []')


def test_a_label_folder_is_mirrored_without_its_images_and_follows_the_bucket(bucket, tmp_path):
    _, store = bucket
    annotations = write_voc(tmp_path, ITEMS)
    for xml in sorted(annotations.glob("*.xml")):
        store.blob(f"voc/annotations/{xml.name}").upload_from_filename(str(xml))
    store.blob("voc/annotations/img0.jpg").upload_from_string(jpeg())  # an image among the labels: not mirrored
    folder = fetch_labels(f"gs://{BUCKET}/voc/annotations/")
    assert not (folder / "img0.jpg").exists()
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == \
        sorted(xml.name for xml in annotations.glob("*.xml"))
    store.blob("voc/annotations/img5.xml").delete()
    folder = fetch_labels(f"gs://{BUCKET}/voc/annotations")
    assert not (folder / "img5.xml").exists() and (folder / "img4.xml").is_file()


def test_missing_labels_say_so(bucket):
    with pytest.raises(UsageError, match="no such object, and no label files below it"):
        fetch_labels(f"gs://{BUCKET}/nothing.csv")
    with pytest.raises(UsageError, match="bucket gs://nowhere does not exist"):
        fetch_labels("gs://nowhere/labels.csv")


def test_the_command_takes_gs_labels(bucket, tmp_path, synthetic):
    _, store = bucket
    store.blob("labels/labels.csv").upload_from_filename(str(synthetic.labels_csv))
    env = os.environ | {"COLUMNS": "1000", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "jobs", "data", "check", "--input",
                             f"gs://{BUCKET}/labels/labels.csv", "--images", str(synthetic.images_dir)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usable" in result.stdout
