"""The jobs' interface: their arguments as argv and back (every field), and the progress events they print."""

from __future__ import annotations

import json
from dataclasses import fields, replace

import jsonschema
import pytest

from jobs.errors import UsageError
from jobs.runtime.spec import DEVICES, EvalArgs, ProgressEvent, TrainArgs, flag

# A value other than the default for each type of field.
SAMPLES = {str: "gs://bucket/some path", int: 7, float: 0.25, bool: True}
BASE = {TrainArgs: TrainArgs("retinanet-tiny-128", "data", "model"), EvalArgs: EvalArgs("model")}


def cases() -> list[tuple[type, str]]:
    return [(cls, item.name) for cls in (TrainArgs, EvalArgs) for item in fields(cls)]


def sample(cls: type, name: str) -> object:
    if name == "device":
        return "cpu"
    if name == "model":  # an export instead of a model dir: the two exclude each other
        return "exported"
    annotation = next(item.type for item in fields(cls) if item.name == name)
    return next(value for kind, value in SAMPLES.items() if kind.__name__ in annotation)


@pytest.mark.parametrize(("cls", "name"), cases(), ids=[f"{c.__name__}.{n}" for c, n in cases()])
def test_every_field_survives_argv_and_back(cls, name):
    args = replace(BASE[cls], **{name: sample(cls, name)}, **({"model_dir": None} if name == "model" else {}))
    argv = args.to_argv()
    assert flag(name) in argv
    assert cls.from_argv(argv) == args
    assert all(isinstance(item, str) for item in argv)


def test_all_fields_at_once_and_flags_named_as_typer_names_them():
    args = TrainArgs("retinanet-tiny-128", "gs://b/data", "gs://b/ckpt", 300, 16, "gs://b/init.tar.gz", 3, "tpu")
    assert args.to_argv() == ["--preset", "retinanet-tiny-128", "--data", "gs://b/data", "--model-dir", "gs://b/ckpt",
                              "--steps", "300", "--batch-size", "16", "--init-checkpoint", "gs://b/init.tar.gz",
                              "--seed", "3", "--device", "tpu"]
    assert TrainArgs.from_argv(args.to_argv()) == args
    evaluation = EvalArgs("m", data="d", split="test", score_threshold=0.5, continuous=True, timeout=60.0)
    assert EvalArgs.from_argv(evaluation.to_argv()) == evaluation


def test_model_dir_defaults_to_vertex_ai_s_aip_model_dir(monkeypatch):
    monkeypatch.setenv("AIP_MODEL_DIR", "gs://bucket/runs/r/model/")
    assert TrainArgs.from_argv(["--preset", "p", "--data", "d"]).model_dir == "gs://bucket/runs/r/model/"
    assert TrainArgs.from_argv(["--preset", "p", "--data", "d", "--model-dir", "m"]).model_dir == "m"


@pytest.mark.parametrize(("argv", "message"), [
    (["--preset", "p", "--data", "d"], "training needs --model-dir (on Vertex AI, $AIP_MODEL_DIR"),
    (["--preset", "p", "--model-dir", "m"], "training needs --data"),
])
def test_a_trainer_without_its_folders_is_a_usage_error(monkeypatch, argv, message):
    monkeypatch.delenv("AIP_MODEL_DIR", raising=False)
    with pytest.raises(UsageError, match=message.replace("$", r"\$").replace("(", r"\(")):
        TrainArgs.from_argv(argv)


@pytest.mark.parametrize(("args", "message"), [
    (EvalArgs(), "give --model-dir (a training run) or --model (an export)"),
    (EvalArgs("m", "exported"), "give --model-dir (a training run) or --model (an export)"),
    (EvalArgs(model="exported", continuous=True), "--continuous follows a training run"),
    (TrainArgs("p", "d", "m", device="npu"), f"--device npu: choose one of {', '.join(DEVICES)}"),
])
def test_arguments_a_job_cannot_run_with(args, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        args.check()


def test_a_malformed_flag_exits_2_like_the_cli(capsys):
    with pytest.raises(SystemExit) as raised:
        TrainArgs.from_argv(["--preset", "p", "--steps", "many"])
    assert raised.value.code == 2 and "--steps: invalid int value" in capsys.readouterr().err


# The wire form of a progress event, as a local launcher and a Vertex AI job's log read it. A change here is a
# change of the interface between the job containers and the CLI: both sides must change together.
EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "stage", "done", "total", "loss", "path", "message"],
    "additionalProperties": False,
    "properties": {
        "event": {"const": "detector.progress"},
        "stage": {"enum": ["train", "evaluate", "evaluated"]},
        "done": {"type": "integer", "minimum": 0},
        "total": {"type": "integer", "minimum": 0},
        "loss": {"type": ["number", "null"]},
        "path": {"type": ["string", "null"]},
        "message": {"type": "string"},
    },
}


@pytest.mark.parametrize("event", [
    ProgressEvent("train", 50, 600, 0.8765432), ProgressEvent("train", 0, 600, float("nan")),
    ProgressEvent("evaluate", 12, 75), ProgressEvent("evaluated", 600, 600, path="runs/first/eval"),
], ids=["train", "train-no-loss-yet", "evaluate", "evaluated"])
def test_progress_events_are_one_json_line_of_the_schema_and_read_back(event):
    line = event.to_line()
    assert "\n" not in line
    jsonschema.validate(json.loads(line), EVENT_SCHEMA)
    assert ProgressEvent.from_line(line) == event
    assert json.loads(line)["message"] == event.message


def test_progress_messages_read_as_sentences():
    assert ProgressEvent("train", 50, 600, 0.5).message == "step 50/600 loss 0.50000"
    assert ProgressEvent("train", 50, 600).message == "step 50/600"
    assert ProgressEvent("evaluate", 3, 9).message == "evaluated 3/9 images"
    assert ProgressEvent("evaluated", 9, 9, path="m/eval").message == "evaluated step 9: m/eval/report.html"


@pytest.mark.parametrize("line", ["starting at step 0 of 600 in runs/first", "{not json", '{"event": "other"}',
                                  '["detector.progress"]', "", "progress: step=50 total=600 loss=0.5"])
def test_other_output_lines_are_not_events(line):
    assert ProgressEvent.from_line(line) is None


def test_an_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="progress stage 'done' is not one of train, evaluate, evaluated"):
        ProgressEvent("done", 1, 1)
