"""Run records: a write-once claim that two racing launchers cannot both win."""

from __future__ import annotations

import pytest
from google.api_core.exceptions import PreconditionFailed

from jobs.launch.runs import RunConflict, RunRecord, RunStore


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


def test_second_launcher_with_a_stale_read_loses():
    store = RunStore("gs://b/runs", client=GenerationStore())
    seen_by_a = store.load("r")
    seen_by_b = store.load("r")
    assert seen_by_a == seen_by_b == (None, 0)
    generation = store.save(RunRecord("r", "exp", "p", "tpu-v3-8"), seen_by_a[1])
    with pytest.raises(RunConflict, match="run r was changed by another launcher"):
        store.save(RunRecord("r", "exp", "p", "gpu-t4-1"), seen_by_b[1])
    record, stored_generation = store.load("r")
    assert record.accelerator == "tpu-v3-8" and stored_generation == generation
    store.save(record, generation)  # the winner goes on updating its own record
    assert [r.run_id for r in store.list()] == ["r"]
