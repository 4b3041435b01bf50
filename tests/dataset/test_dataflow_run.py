"""``data prepare --engine dataflow`` end to end against local stand-ins: Beam's real DataflowRunner submits to a local
Dataflow service (``dataflow_service.py``) that runs the staged pipeline as Dataflow's workers would, reading the
images from gcp-storage-emulator and writing the shards there; this machine follows the job, publishes the dataset
(shards copied within Cloud Storage, dataset.json last) and removes the job's work prefix. A failed or cancelled job
publishes nothing and leaves the previous output as it was."""

from __future__ import annotations

from pathlib import Path

import engine_outputs
import pytest
from dataflow_service import FakeDataflow
from engine_outputs import outcome
from gcs_emulator import BUCKET, emulated_storage
from test_dataflow_submit import STACK

from jobs.dataset.dataflow import DataflowJobCancelled, DataflowJobFailed, DataflowPlan
from jobs.dataset.pipeline import CheckOptions
from jobs.dataset.prepare import Declined, OnDataflow, PrepareOptions, prepare
from jobs.errors import UsageError

OUT = f"gs://{BUCKET}/data/coco"


@pytest.fixture(scope="module")
def with_bad_rows(synthetic, tmp_path_factory):
    return engine_outputs.with_bad_rows(synthetic, tmp_path_factory.mktemp("bad-rows"))


@pytest.fixture
def storage(with_bad_rows, monkeypatch):
    """The images under gs://BUCKET/photos/; yields (labels, local images folder, proxy, client). The pipeline's
    workers (here, in this process) connect to the emulator anonymously, as Beam does when it finds no credentials,
    without first spending half a minute retrying to find some (Dataflow's workers have the metadata server's)."""
    from apache_beam.internal.gcp import auth

    monkeypatch.setattr(auth._Credentials, "_credentials_init", True)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)
    labels, images = with_bad_rows
    with emulated_storage(monkeypatch) as (proxy, client):
        for path in sorted(images.iterdir()):
            client.bucket(BUCKET).blob(f"photos/{path.name}").upload_from_filename(str(path))
        proxy.downloads.clear()
        yield labels, images, proxy, client


def options(labels: Path, service: FakeDataflow, **dataflow) -> PrepareOptions:
    plan = DataflowPlan.make(STACK, OUT, max_workers=2, job_name="exp-coco-prepare-test")
    run = OnDataflow(plan, poll_s=0.05, overrides={"dataflow_endpoint": service.endpoint, "no_auth": True},
                     **dataflow)
    return PrepareOptions(CheckOptions(labels, f"gs://{BUCKET}/photos", seed=3), OUT, num_shards=2, stats=False,
                          dataflow=run)


def download(client, prefix: str, folder: Path) -> Path:
    for blob in client.list_blobs(BUCKET, prefix=f"{prefix}/"):
        target = folder / blob.name.removeprefix(f"{prefix}/")
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
    return folder


def objects(client) -> dict[str, bytes]:
    return {blob.name: blob.download_as_bytes() for blob in client.list_blobs(BUCKET, prefix="data/")}


def test_a_dataflow_job_writes_what_the_local_engine_writes_and_publishes_it(storage, tmp_path):
    labels, images, proxy, client = storage
    local = prepare(PrepareOptions(CheckOptions(labels, f"gs://{BUCKET}/photos", seed=3), tmp_path / "local",
                                   num_shards=2, stats=False))  # the local engine, on the same input
    proxy.downloads.clear()
    service = FakeDataflow()
    seen: list[tuple[str, int, int]] = []
    asked: list[tuple[int, int, str | None]] = []
    try:
        result = prepare(
            options(labels, service, confirm=lambda n, size, warning: asked.append((n, size, warning)) or True),
            lambda stage, done, total: seen.append((stage, done, total)))
    finally:
        service.close()
    assert service.error is None, service.error
    total = local.summary["verify"]["images"]  # every image the labels name that exists
    images_read = {name: count for name, count in proxy.downloads.items() if name.startswith("photos/")}
    assert len(images_read) == total and set(images_read.values()) == {1}, "each image read once, by a worker"
    assert asked == [(total, sum(path.stat().st_size for path in images.iterdir()), None)]  # in the stack's bucket

    got = outcome(download(client, "data/coco", tmp_path / "published"))
    expected = outcome(tmp_path / "local")
    assert got["examples"] == expected["examples"] and got["content_hash"] == expected["content_hash"]
    assert got["rows"] == expected["rows"] and got["findings"] == expected["findings"]
    assert got["splits"] == expected["splits"] and got["ground truth"] == expected["ground truth"]
    assert result.summary["files"]["train-00000-of-00002.tfrecord"]["bytes"] > 0
    assert sorted(p.name for p in (tmp_path / "published").glob("*.tfrecord")) == \
        sorted(p.name for p in (tmp_path / "local").glob("*.tfrecord"))

    followed = [(stage, done, of) for stage, done, of in seen if stage.startswith("dataflow")]
    image_findings = sum(1 for finding in local.report.findings  # I001: found missing before the job, by listing
                         if finding.code.startswith(("I", "B")) and finding.code != "I001")
    assert followed[0] == ("dataflow running, 0 findings", 0, total)
    assert followed[-1][1:] == (total, total), "the job's counters: every image read"
    assert followed[-1][0] == f"dataflow done, {image_findings} findings"
    assert not list(client.list_blobs(BUCKET, prefix="dataflow/temp/exp-coco-prepare-test/")), \
        "the work prefix is removed"


def test_a_failed_job_publishes_nothing_and_leaves_the_previous_output(storage, tmp_path):
    labels, _, _, client = storage
    prepare(PrepareOptions(CheckOptions(labels, f"gs://{BUCKET}/photos", seed=3), OUT, stats=False))
    before = objects(client)
    service = FakeDataflow(run=False, end="JOB_STATE_FAILED")
    try:
        with pytest.raises(DataflowJobFailed, match="ended FAILED; nothing was published"):
            prepare(options(labels, service, confirm=lambda n, size, warning: True))
    finally:
        service.close()
    assert objects(client) == before
    assert not list(client.list_blobs(BUCKET, prefix="dataflow/temp/exp-coco-prepare-test/"))


def test_ctrl_c_asks_and_cancels_the_job_and_publishes_nothing(storage):
    labels, _, _, client = storage
    service = FakeDataflow(run=False)  # runs until cancelled
    asked = []

    def interrupt(stage: str, done: int, total: int) -> None:
        if stage.startswith("dataflow"):
            raise KeyboardInterrupt

    try:
        with pytest.raises(DataflowJobCancelled, match="cancelled"):
            prepare(options(labels, service, cancel=lambda: asked.append(1) or True), interrupt)
    finally:
        service.close()
    assert asked == [1] and service.cancels() == 1
    assert objects(client) == {}
    assert not list(client.list_blobs(BUCKET, prefix="dataflow/temp/exp-coco-prepare-test/"))


def test_declined_or_local_images_submit_nothing(storage):
    labels, images, _, _ = storage
    service = FakeDataflow()
    try:
        with pytest.raises(Declined):
            prepare(options(labels, service, confirm=lambda n, size, warning: False))
        local = options(labels, service)
        local = PrepareOptions(CheckOptions(labels, images), OUT, dataflow=local.dataflow)
        with pytest.raises(UsageError, match="read the images in Cloud Storage"):
            prepare(local)
    finally:
        service.close()
    assert not [request for request in service.requests if request[0] == "POST"]


def test_the_command_shows_the_job_and_submits_nothing_unconfirmed(storage, tmp_path):
    import json
    import os
    import subprocess
    import sys

    labels, _, _, client = storage
    repo = Path(__file__).resolve().parents[2]
    outputs = tmp_path / "exp-coco.json"
    outputs.write_text(json.dumps(STACK.to_outputs()))
    args = ["data", "prepare", "--input", str(labels), "--images", f"gs://{BUCKET}/photos", "--out", OUT,
            "--engine", "dataflow", "--stack-outputs", str(outputs), "--no-stats"]
    env = os.environ | {"COLUMNS": "1000", "PYTHONPATH": str(repo)}
    shown = subprocess.run([sys.executable, "-m", "jobs", *args], cwd=repo, env=env, capture_output=True, text=True,
                           timeout=120, stdin=subprocess.DEVNULL)
    assert shown.returncode == 1, shown.stderr
    assert "Dataflow job exp-coco-prepare-" in shown.stdout and "67 images" in shown.stdout
    assert "pass --yes to submit the Dataflow job" in shown.stdout and "not submitted" in shown.stderr
    assert objects(client) == {}
