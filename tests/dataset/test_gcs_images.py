"""Vertex AI labels that name gs:// images: ``--download-to`` fetches them from GCS (gcp-storage-emulator here) into
a local folder once, and the checks report the objects that do not exist."""

from __future__ import annotations

import pytest
from gcs_emulator import BUCKET, emulated_storage
from image_kinds import image_bytes

from jobs.dataset.pipeline import CheckOptions
from jobs.dataset.prepare import PrepareOptions, prepare
from jobs.errors import UsageError

OBJECTS = {"photos/a.jpg": "jpeg", "photos/b.jpg": "jpeg", "photos/sub/c.png": "png"}


@pytest.fixture
def vertex(monkeypatch, tmp_path):
    with emulated_storage(monkeypatch) as (proxy, client):
        bucket = client.bucket(BUCKET)
        for name, kind in OBJECTS.items():
            bucket.blob(name).upload_from_string(image_bytes(kind))
        labels = tmp_path / "vertex.csv"
        labels.write_text(f"TRAIN,gs://{BUCKET}/photos/a.jpg,cat,0.1,0.1,,,0.6,0.6,,\n"
                          f"VALIDATION,gs://{BUCKET}/photos/b.jpg,cat,0.1,0.1,,,0.6,0.6,,\n"
                          f"TRAIN,gs://{BUCKET}/photos/sub/c.png\n"
                          f"TEST,gs://{BUCKET}/photos/gone.jpg,cat,0.1,0.1,,,0.6,0.6,,\n")
        yield proxy, labels


def test_images_are_downloaded_once_checked_and_written(vertex, tmp_path):
    proxy, labels = vertex
    cache = tmp_path / "cache"
    result = prepare(PrepareOptions(CheckOptions(labels, None, download_to=cache), tmp_path / "out", stats=False))
    assert proxy.downloads == dict.fromkeys(OBJECTS, 1)
    assert {name: (cache / name).read_bytes() for name in OBJECTS} == {
        name: image_bytes(kind) for name, kind in OBJECTS.items()}
    assert not [p for p in cache.rglob(".*")], "no partial downloads left"
    assert [str(f) for f in result.report.findings if f.code == "I001"] == [
        f"vertex.csv:4: I001 missing-image: image 'photos/gone.jpg' not found in {cache} as photos/gone.jpg or "
        f"gone.jpg (gs://{BUCKET}/photos/gone.jpg) (1 row(s) dropped)"]
    assert result.summary["rows"] == {"in": 4, "written": 3, "reported": 1}
    assert {s: v["images"] for s, v in result.summary["splits"].items()} == {"train": 2, "val": 1}

    prepare(PrepareOptions(CheckOptions(labels, None, download_to=cache), tmp_path / "again", stats=False))
    assert proxy.downloads == dict.fromkeys(OBJECTS, 1), "what the folder holds is not downloaded again"
    (cache / "photos/b.jpg").write_bytes(b"half")
    prepare(PrepareOptions(CheckOptions(labels, None, download_to=cache), tmp_path / "third", stats=False))
    assert proxy.downloads["photos/b.jpg"] == 2 and (cache / "photos/b.jpg").read_bytes() == image_bytes("jpeg")


def test_download_to_is_for_gs_images_only(vertex, tmp_path):
    _, labels = vertex
    with pytest.raises(UsageError, match="--images and --download-to exclude each other"):
        prepare(PrepareOptions(CheckOptions(labels, tmp_path, download_to=tmp_path / "cache"), tmp_path / "out"))
    local = tmp_path / "local.csv"
    local.write_text("TRAIN,photos/a.jpg,cat,0.1,0.1,,,0.6,0.6,,\n")
    with pytest.raises(UsageError, match="--download-to is for labels that name gs:// images"):
        prepare(PrepareOptions(CheckOptions(local, None, fmt="vertex-csv", download_to=tmp_path / "cache"),
                               tmp_path / "out"))
