"""``prepare --out gs://…`` against gcp-storage-emulator (a real HTTP server started here), behind a small proxy
that injects failures: a dropped connection, and a corrupted body whose checksum the server cannot see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gcs_emulator import BUCKET, emulated_storage

from jobs.dataset import gcs
from jobs.dataset.pipeline import CheckOptions
from jobs.dataset.prepare import PrepareOptions, prepare
from jobs.io import OUTPUT_MARKER, OutputRefused


@pytest.fixture
def storage(monkeypatch):
    with emulated_storage(monkeypatch) as proxy_and_client:
        yield proxy_and_client


def _objects(client, prefix: str) -> dict[str, bytes]:
    return {b.name.removeprefix(prefix + "/"): b.download_as_bytes() for b in client.list_blobs(BUCKET, prefix=prefix)}


def _local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_upload_retries_a_dropped_connection_and_a_corrupted_body(synthetic, storage, tmp_path):
    proxy, client = storage
    proxy.faults = {"data/label_map.pbtxt": ["drop"], "data/train_coco.json": ["corrupt"]}
    given = CheckOptions(synthetic.labels_csv, synthetic.images_dir)
    options = PrepareOptions(given, f"gs://{BUCKET}/data", stats=False)
    result = prepare(options)
    assert proxy.uploads["data/label_map.pbtxt"] == 2 and proxy.uploads["data/train_coco.json"] == 2
    assert proxy.uploads["data/dataset.json"] == 1
    local = prepare(PrepareOptions(given, tmp_path / "local", stats=False))
    stored = _objects(client, "data")
    expected = _local_files(tmp_path / "local")
    assert stored.keys() == expected.keys()
    for name in expected.keys() - {"dataset.json"}:  # dataset.json differs only in its creation time
        assert stored[name] == expected[name], name
    assert json.loads(stored["dataset.json"])["content_hash"] == local.summary["content_hash"]
    assert result.summary["content_hash"] == local.summary["content_hash"]
    again = prepare(options)
    assert again.unchanged and proxy.uploads["data/dataset.json"] == 1


def test_a_failed_upload_leaves_nothing_that_reads_as_a_dataset(synthetic, storage):
    proxy, client = storage
    proxy.faults = {"data/train_coco.json": ["drop"] * gcs.ATTEMPTS}
    given = CheckOptions(synthetic.labels_csv, synthetic.images_dir)
    options = PrepareOptions(given, f"gs://{BUCKET}/data", stats=False)
    with pytest.raises(gcs.UploadFailed, match=r"data/train_coco.json: .*\(5 attempts\).*dataset.json was not"):
        prepare(options)
    assert _objects(client, "data").keys() == {OUTPUT_MARKER}  # nothing reads as a dataset; a rerun may write
    proxy.faults = {}
    assert prepare(options).summary["content_hash"]


def test_a_prefix_holding_other_objects_is_refused(synthetic, storage):
    _, client = storage
    client.bucket(BUCKET).blob("thesis/chapter1.txt").upload_from_string(b"mine")
    with pytest.raises(OutputRefused, match="holds objects that this tool did not write"):
        prepare(PrepareOptions(CheckOptions(synthetic.labels_csv, synthetic.images_dir), f"gs://{BUCKET}/thesis",
                               stats=False))
    assert _objects(client, "thesis") == {"chapter1.txt": b"mine"}


def test_a_new_upload_replaces_the_old_dataset_and_its_stale_shards(synthetic, storage):
    _, client = storage
    out = f"gs://{BUCKET}/data"
    prepare(PrepareOptions(CheckOptions(synthetic.labels_csv, synthetic.images_dir), out, num_shards=3, stats=False))
    assert sum(1 for name in _objects(client, "data") if name.startswith("train-")) == 3
    prepare(PrepareOptions(CheckOptions(synthetic.labels_csv, synthetic.images_dir), out, num_shards=2, stats=False))
    stored = _objects(client, "data")
    assert sorted(n for n in stored if n.endswith(".tfrecord")) == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord", "val-00000-of-00002.tfrecord",
        "val-00001-of-00002.tfrecord"]
    assert json.loads(stored["dataset.json"])["splits"]["train"]["shards"][0]["file"] == "train-00000-of-00002.tfrecord"


def test_one_object_is_replaced_whole_and_a_dropped_upload_is_sent_again(storage):
    """``jobs.io.write_atomic`` on gs:// (what an evaluation writes into runs/RUN/eval/): one upload per object, no
    temporary object; a connection lost during the upload leaves the previous object until the upload is retried."""
    from jobs.io import write_atomic

    proxy, client = storage
    name = "runs/first/eval/metrics.json"
    write_atomic(f"gs://{BUCKET}/{name}", b"first")
    write_atomic(f"gs://{BUCKET}/{name}", b"second")
    assert client.bucket(BUCKET).blob(name).download_as_bytes() == b"second"
    assert proxy.uploads == {name: 2}
    proxy.faults[name] = ["drop"]
    write_atomic(f"gs://{BUCKET}/{name}", b"third")
    assert proxy.uploads == {name: 4}  # the dropped one, and the one that replaced the object
    assert _objects(client, "runs/first/eval") == {"metrics.json": b"third"}


def test_a_local_file_is_replaced_whole_and_no_temporary_file_stays(tmp_path):
    from jobs.io import write_atomic

    path = tmp_path / "eval" / "metrics.json"
    write_atomic(path, b"first")
    write_atomic(str(path), b"second")
    assert _local_files(tmp_path) == {"eval/metrics.json": b"second"}
