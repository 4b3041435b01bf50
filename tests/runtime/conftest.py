"""Fixtures of the runtime tests: a small prepared dataset (from the shared ``synthetic`` fixture)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prepared(synthetic, tmp_path_factory):
    from jobs.dataset.pipeline import CheckOptions
    from jobs.dataset.prepare import PrepareOptions, prepare

    data = tmp_path_factory.mktemp("prepared") / "data"
    prepare(PrepareOptions(CheckOptions(synthetic.labels_csv, synthetic.images_dir), data))
    return data
