"""Training into an existing model dir resumes only with the run's own data, classes, preset and batch size.

No training here: a model dir is an ``experiment.json`` written by hand, and every mismatch fails before the
trainer trains (the CLI's check, before TensorFlow loads; the trainer's own, as a Vertex container runs it).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace

import pytest

from jobs.errors import UsageError
from jobs.launch.context import REPO_ROOT
from jobs.runtime.spec import SPEC_FILE, TrainSpec, preflight_resume, resume, spec_from_dataset

PRESET = "retinanet-tiny-128"


def _prepare(synthetic, out, keep=lambda row: True, rename=None):
    from jobs.dataset.pipeline import CheckOptions
    from jobs.dataset.prepare import PrepareOptions, prepare

    with synthetic.labels_csv.open(newline="", encoding="utf-8") as stream:
        header, *rows = list(csv.reader(stream))
    rows = [[*row[:5], (rename or {}).get(row[5], row[5])] for row in rows if keep(row)]
    labels = out.parent / f"{out.name}.csv"
    with labels.open("w", newline="", encoding="utf-8") as stream:
        csv.writer(stream).writerows([header, *rows])
    prepare(PrepareOptions(CheckOptions(labels, synthetic.images_dir), out))
    return out


@pytest.fixture(scope="module")
def datasets(synthetic, tmp_path_factory):
    """The run's data; the same classes with one image fewer; a class renamed."""
    root = tmp_path_factory.mktemp("resume-checks")
    with synthetic.labels_csv.open(newline="", encoding="utf-8") as stream:
        first_image = min(row[0] for row in list(csv.reader(stream))[1:])
    return {"data": _prepare(synthetic, root / "data"),
            "fewer": _prepare(synthetic, root / "fewer", keep=lambda row: row[0] != first_image),
            "renamed": _prepare(synthetic, root / "renamed", rename={"triangle": "star"})}


def _spec(data, batch_size=4, preset=PRESET) -> TrainSpec:
    dataset = json.loads((data / "dataset.json").read_text())
    return spec_from_dataset(preset, str(data), dataset, 100, batch_size, None)


def _model_dir(tmp_path, spec: TrainSpec):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / SPEC_FILE).write_text(spec.to_json())
    return model_dir


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_the_same_run_resumes_with_more_steps_and_the_data_where_it_is_now(datasets, tmp_path):
    saved = _spec(datasets["data"])
    assert saved.data_hash == json.loads((datasets["data"] / "dataset.json").read_text())["content_hash"]
    moved = replace(saved, steps=300, data_dir=str(tmp_path / "moved"))  # same content hash, another folder
    resumed = resume(saved, moved, "model")
    assert resumed == replace(saved, steps=300, data_dir=moved.data_dir)
    assert resume(saved, replace(saved, steps=50), "model").steps == 100  # --steps may only extend the run
    preflight_resume(PRESET, str(datasets["data"]), str(_model_dir(tmp_path, saved)), 4)


@pytest.mark.parametrize(("change", "expected"), [
    ("batch", ["batch size was 4, now 8", "--batch-size 4"]),
    ("fewer", ["data content hash was", "now", "--data {data}"]),
    ("renamed", ["only in the run: triangle", "only in {renamed}: star", "--data {data}"]),
    ("preset", ["preset was retinanet-tiny-128, now retinanet-mobilenet-256", f"--preset {PRESET}"]),
])
def test_a_difference_is_a_usage_error_saying_what_differs_and_the_ways_out(datasets, change, expected):
    saved = _spec(datasets["data"])
    wanted = {"batch": lambda: _spec(datasets["data"], batch_size=8),
              "fewer": lambda: _spec(datasets["fewer"]),
              "renamed": lambda: _spec(datasets["renamed"]),
              "preset": lambda: _spec(datasets["data"], preset="retinanet-mobilenet-256")}[change]()
    with pytest.raises(UsageError) as raised:
        resume(saved, wanted, "runs/first")
    message = str(raised.value)
    assert "\n" not in message and raised.value.exit_code == 2
    assert message.startswith("runs/first holds a run with other settings")
    assert "train into a new --model-dir, or resume with the original values" in message
    for text in expected:
        assert text.format(**{name: str(path) for name, path in datasets.items()}) in message, message


def test_runs_from_before_content_hashes_compare_class_counts_and_data_folders(datasets):
    old = replace(_spec(datasets["data"]), classes=(), data_hash="")
    with pytest.raises(UsageError, match="classes were 3, now 4"):
        resume(old, replace(_spec(datasets["data"]), num_classes=5), "model")
    with pytest.raises(UsageError, match=f"data was {datasets['data']}, now {datasets['fewer']}"):
        resume(old, _spec(datasets["fewer"]), "model")
    assert resume(old, _spec(datasets["data"]), "model") == old


def test_cli_refuses_another_batch_size_before_starting_the_trainer(datasets, tmp_path):
    model_dir = _model_dir(tmp_path, _spec(datasets["data"], batch_size=8))
    result = subprocess.run(
        [sys.executable, "-m", "jobs", "train", "--preset", PRESET, "--data", str(datasets["data"]),
         "--model-dir", str(model_dir), "--batch-size", "4"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    message = _one_line(result.stderr)
    assert f"error: {model_dir} holds a run with other settings (batch size was 8, now 4)" in message
    assert "--batch-size 8" in message and "Traceback" not in message
    assert result.stdout == ""  # the trainer (whose output the CLI shows on stdout) never started
    assert json.loads((model_dir / SPEC_FILE).read_text())["batch_size"] == 8


def test_trainer_entrypoint_refuses_other_classes_with_exit_2_through_the_local_backend(datasets, tmp_path):
    from jobs.launch.backends import LocalBackend, Watch
    from jobs.launch.jobspec import JobSpec
    from jobs.runtime.spec import TrainArgs

    model_dir = _model_dir(tmp_path, _spec(datasets["data"]))
    lines: list[str] = []
    backend = LocalBackend()
    args = TrainArgs(PRESET, str(datasets["renamed"]), str(model_dir), 10, 4, device="cpu")
    started = backend.submit(JobSpec(args), image_uri="", base_output_dir="")
    info = backend.follow(started.name, Watch(line=lines.append, error=lines.append))
    assert info.exit_code == 2 and info.state == "JOB_STATE_FAILED"
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    assert "only in the run: triangle" in errors[0] and f"--data {datasets['data']}" in errors[0]
    assert not any("Traceback" in line or line.startswith(("starting at", "resuming from")) for line in lines)
    assert sorted(p.name for p in model_dir.iterdir()) == [SPEC_FILE]


def test_a_model_dir_of_other_files_or_holding_the_data_is_refused(datasets, tmp_path):
    from jobs.io import OutputRefused
    from jobs.runtime.spec import check_model_dir

    data = str(datasets["data"])
    check_model_dir(str(tmp_path / "new"), data)
    (tmp_path / "empty").mkdir()
    check_model_dir(str(tmp_path / "empty"), data)
    check_model_dir(str(_model_dir(tmp_path, _spec(datasets["data"]))), data)  # a run's own: resumed
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("mine")
    with pytest.raises(OutputRefused, match="holds files and no experiment.json"):
        check_model_dir(str(tmp_path / "thesis"), data)
    with pytest.raises(OutputRefused, match="contains the input"):
        check_model_dir(str(datasets["data"].parent), data)
    result = subprocess.run(
        [sys.executable, "-m", "jobs", "train", "--preset", PRESET, "--data", data, "--model-dir",
         str(tmp_path / "thesis")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "not a model dir of this tool" in _one_line(result.stderr)
    assert sorted(p.name for p in (tmp_path / "thesis").iterdir()) == ["chapter1.tex"]
