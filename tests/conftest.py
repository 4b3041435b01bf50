"""Shared fixtures: the shared real datasets (skipped where absent) and small synthetic ones."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
RACCOON = SHARED_DATASETS / "raccoon"


@pytest.fixture(scope="session")
def raccoon() -> Path:
    if not (RACCOON / "data" / "test_labels.csv").exists():
        pytest.skip(f"the shared raccoon dataset is not at {RACCOON} (a fresh clone has no ../shared)")
    return RACCOON


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    from jobs.dataset.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("synthetic"), count=60, seed=1)
