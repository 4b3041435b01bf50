"""Images read where they are in Cloud Storage (gcp-storage-emulator here): ``--images gs://bucket/prefix`` and
Vertex AI CSV labels naming gs:// URIs are listed once (nothing downloaded while loading), each image is read once in
the pass that writes it, by both engines, and the output is the one a local copy of the images gives."""

from __future__ import annotations

import engine_outputs
import pytest
from engine_outputs import outcome
from gcs_emulator import BUCKET, emulated_storage

from jobs.dataset.annotations import Labels
from jobs.dataset.findings import Report
from jobs.dataset.locate import ObjectTree, locate
from jobs.dataset.pipeline import CheckOptions, load
from jobs.dataset.prepare import PrepareOptions, prepare
from jobs.errors import UsageError


@pytest.fixture(scope="module")
def with_bad_rows(synthetic, tmp_path_factory):
    return engine_outputs.with_bad_rows(synthetic, tmp_path_factory.mktemp("bad-rows"))


@pytest.fixture
def uploaded(with_bad_rows, monkeypatch):
    """The images under gs://BUCKET/photos/, with a hidden object, a folder placeholder, a prepared output's chart
    and an image that no label names beside them."""
    labels, images = with_bad_rows
    with emulated_storage(monkeypatch) as (proxy, storage):
        bucket = storage.bucket(BUCKET)
        for path in sorted(images.iterdir()):
            bucket.blob(f"photos/{path.name}").upload_from_filename(str(path))
        bucket.blob("photos/.hidden.jpg").upload_from_string(b"x")
        bucket.blob("photos/empty-folder/").upload_from_string(b"")
        bucket.blob("photos/old/.detector-output.json").upload_from_string(b'{"tool": "detector"}')
        bucket.blob("photos/old/stats/samples.png").upload_from_string(b"x")
        bucket.blob("photos/extra/unlabelled.jpg").upload_from_filename(str(next(images.glob("img_*.jpg"))))
        proxy.downloads.clear()
        yield labels, images, proxy


def test_both_engines_read_gs_images_once_each_and_write_what_a_local_copy_gives(uploaded, tmp_path):
    labels, images, proxy = uploaded
    local = prepare(PrepareOptions(CheckOptions(labels, images, seed=3, workers=2), tmp_path / "folder",
                                   num_shards=2, stats=False))

    loaded = load(CheckOptions(labels, f"gs://{BUCKET}/photos", seed=3))
    assert proxy.downloads == {}, "loading lists the objects, it downloads none"
    assert loaded.images_dir == f"gs://{BUCKET}/photos"
    assert set(loaded.paths.values()) <= {f"gs://{BUCKET}/photos/{name}" for name in loaded.paths}
    assert all(generation > 0 for _, generation in loaded.sizes.values())

    for engine in ("local", "beam"):
        out = tmp_path / engine
        given = CheckOptions(labels, f"gs://{BUCKET}/photos", seed=3, workers=2)
        result = prepare(PrepareOptions(given, out, num_shards=2, stats=engine == "local", engine=engine))
        read = {name: count for name, count in proxy.downloads.items() if not name.startswith("photos/old/")}
        assert set(read) == {f"photos/{name}" for name in loaded.paths}
        assert all(count <= 2 for count in read.values()), read  # the write pass (+ the sample grid)
        proxy.downloads.clear()
        expected, got = outcome(tmp_path / "folder"), outcome(out)
        assert got["examples"] == expected["examples"] and got["content_hash"] == expected["content_hash"]
        assert got["rows"] == expected["rows"] == local.summary["rows"]
        assert got["ground truth"] == expected["ground truth"] and got["splits"] == expected["splits"]
        codes = sorted(finding["code"] for finding in got["findings"])
        assert codes == sorted([finding["code"] for finding in expected["findings"]] + ["I013"])
        unlabelled = [f for f in result.report.findings if f.code == "I013"]
        assert len(unlabelled) == 1 and "extra/unlabelled.jpg" in unlabelled[0].message
        assert "samples.png" not in unlabelled[0].message and ".hidden" not in unlabelled[0].message
        assert result.summary["images_dir"] == f"gs://{BUCKET}/photos"
    assert (tmp_path / "local" / "stats" / "samples.png").is_file()


def test_an_unchanged_bucket_is_not_prepared_again_and_a_replaced_object_is(uploaded, tmp_path, monkeypatch):
    labels, _, proxy = uploaded
    given = CheckOptions(labels, f"gs://{BUCKET}/photos", seed=3, workers=1)
    prepare(PrepareOptions(given, tmp_path / "out", stats=False))
    assert prepare(PrepareOptions(given, tmp_path / "out", stats=False)).unchanged
    from google.cloud.storage import Client

    name = next(name for name in proxy.downloads if name.endswith(".jpg"))
    blob = Client().bucket(BUCKET).blob(name)
    blob.upload_from_string(blob.download_as_bytes())  # same bytes, a new generation
    assert not prepare(PrepareOptions(given, tmp_path / "out", stats=False)).unchanged


def test_object_tree_finds_names_as_a_folder_does():
    tree = ObjectTree("gs://b/p", dict.fromkeys(["a/Cat.JPG", "a/dog.jpg", ".x/y.jpg", "z.txt"], (1, 1)))
    assert tree.find("a/dog.jpg") == "a/dog.jpg"
    assert tree.find("a/cat.jpg") == "a/Cat.JPG"
    assert tree.find("a/cow.jpg") is None
    assert list(tree.files()) == ["a/Cat.JPG", "a/dog.jpg", "z.txt"]  # not in hidden folders
    assert list(ObjectTree("gs://b", {"a.jpg": (1, 1)}, scan=False).files()) == []
    labels = Labels()
    labels.add_negative("a/cat.jpg", "labels.csv:2")
    report = Report()
    found = locate(tree, labels, report, unlabeled_as_negatives=False)
    assert [image.filename for image in found.images] == ["a/Cat.JPG"]
    assert [f.code for f in report.findings] == ["I012", "I013"]  # the case differs; dog.jpg is named by no label


def test_gs_images_without_access_or_bucket_say_so(with_bad_rows, monkeypatch):
    labels, _ = with_bad_rows
    with emulated_storage(monkeypatch):
        with pytest.raises(UsageError, match="--images gs://nowhere/photos: bucket gs://nowhere does not exist"):
            load(CheckOptions(labels, "gs://nowhere/photos"))
        with pytest.raises(UsageError, match="a folder, or gs://BUCKET/PREFIX"):
            load(CheckOptions(labels, "s3://bucket/photos"))


def test_a_denied_read_ends_the_run_naming_the_permission_instead_of_reporting_every_image(uploaded, tmp_path):
    labels, _, proxy = uploaded
    proxy.forbidden.add("photos/img_0003.jpg")
    with pytest.raises(UsageError, match="no access to read gs://bucket/photos/img_0003.jpg .*storage.objects.get"):
        prepare(PrepareOptions(CheckOptions(labels, f"gs://{BUCKET}/photos", workers=1), tmp_path / "out",
                               stats=False))
    assert not (tmp_path / "out" / "dataset.json").exists()
