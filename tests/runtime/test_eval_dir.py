"""``evaluate`` writes ``eval/`` only where it is new, empty or an earlier evaluation, and never over its data."""

from __future__ import annotations

import pytest

from jobs.io import OUTPUT_MARKER, OutputRefused


def test_eval_dir_is_claimed_only_when_it_may_be_written(tmp_path):
    from jobs.runtime.evaluate import claim_eval_dir

    model_dir = tmp_path / "model"
    claim_eval_dir(str(model_dir / "eval"), str(tmp_path / "data"))
    assert (model_dir / "eval" / OUTPUT_MARKER).is_file()
    (model_dir / "eval" / "metrics.json").write_text("{}")
    claim_eval_dir(str(model_dir / "eval"), str(tmp_path / "data"))  # an earlier evaluation: written again

    theirs = tmp_path / "export" / "eval"
    theirs.mkdir(parents=True)
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match="the evaluation folder .* holds files that this tool did not write"):
        claim_eval_dir(str(theirs), str(tmp_path / "data"))
    with pytest.raises(OutputRefused, match="contains the input"):
        claim_eval_dir(str(tmp_path / "other" / "eval"), str(tmp_path / "other" / "eval" / "data"))
    assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt"]
