"""Run records: a write-once claim that two racing launchers cannot both win, in a bucket or a model dir."""

from __future__ import annotations

import json

import pytest
from google.api_core.exceptions import PreconditionFailed

from jobs.launch.runs import BucketRunStore, ModelDirRunStore, RunConflict, RunRecord


class GenerationStore:
    """A test double of the google-cloud-storage surface RunStore uses, honouring ``if_generation_match``
    as Cloud Storage does (gcp-storage-emulator ignores it)."""

    def __init__(self):
        self.objects: dict[str, tuple[str, int]] = {}

    def bucket(self, name):
        return _Bucket(self)

    def list_blobs(self, bucket, prefix):
        return [_Blob(self, name) for name in sorted(self.objects) if name.startswith(prefix)]


class _Bucket:
    def __init__(self, store):
        self.store = store

    def blob(self, name):
        return _Blob(self.store, name)

    def get_blob(self, name):
        return _Blob(self.store, name) if name in self.store.objects else None


class _Blob:
    def __init__(self, store, name):
        self.store, self.name = store, name

    @property
    def generation(self):
        return self.store.objects.get(self.name, (None, None))[1]

    def download_as_text(self):
        return self.store.objects[self.name][0]

    def upload_from_string(self, data, content_type=None, if_generation_match=None):
        current = self.generation or 0
        if if_generation_match is not None and if_generation_match != current:
            raise PreconditionFailed("generation mismatch")
        self.store.objects[self.name] = (data, current + 1)


@pytest.mark.parametrize("where", ["bucket", "model dir"])
def test_second_launcher_with_a_stale_read_loses(where, tmp_path):
    store = BucketRunStore("gs://b/runs", client=GenerationStore()) if where == "bucket" \
        else ModelDirRunStore(tmp_path)
    run = "r" if where == "bucket" else str(tmp_path / "r")
    seen_by_a = store.load(run)
    seen_by_b = store.load(run)
    assert seen_by_a == seen_by_b == (None, 0)
    generation = store.save(RunRecord(run, "exp", "p", "tpu-v3-8"), seen_by_a[1])
    with pytest.raises(RunConflict, match=f"run {run} was changed by another launcher"):
        store.save(RunRecord(run, "exp", "p", "gpu-t4-1"), seen_by_b[1])
    record, stored_generation = store.load(run)
    assert record.accelerator == "tpu-v3-8" and stored_generation == generation
    store.save(record, generation)  # the winner goes on updating its own record
    assert [r.run_id for r in store.list()] == [run]


def test_a_local_run_is_named_by_where_its_model_dir_is_now(tmp_path):
    store = ModelDirRunStore(tmp_path)
    store.save(RunRecord(str(tmp_path / "old-name"), "local", "p", "this machine (cpu)"), 0)
    (tmp_path / "old-name").rename(tmp_path / "new-name")
    (record,) = store.list()
    assert record.run_id == str(tmp_path / "new-name") == store.load(record.run_id)[0].run_id


def test_a_local_run_s_evaluations_stay_in_its_model_dir(tmp_path):
    from jobs.launch.local import LocalLauncher

    model_dir = tmp_path / "first"
    ModelDirRunStore(tmp_path).save(RunRecord(str(model_dir), "local", "p", "this machine (cpu)"), 0)
    evaluation = {"step": 20, "summary": {"AP": 0.25}}
    (model_dir / "eval").mkdir()
    (model_dir / "eval" / "metrics.json").write_text(json.dumps(evaluation))
    launcher = LocalLauncher(tmp_path)
    status = launcher.status(str(model_dir))
    assert (status.metrics, status.model_dir, status.eval_dir) == (evaluation, str(model_dir),
                                                                   str(model_dir / "eval"))
    assert launcher.store.load(str(model_dir))[0].metrics == evaluation  # copied into the record
    assert [run.eval_dir for run in launcher.runs()] == [str(model_dir / "eval")]
