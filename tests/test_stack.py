"""jobs.stack reads an experiment stack's outputs from a JSON file or from a real `pulumi` process."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from jobs.stack import OUTPUT_NAMES, StackError, StackOutputs, load_stack_outputs, output_names

EXPECTED = StackOutputs(
    project="acme-ml",
    region="us-central1",
    bucket="acme-ml-detector-exp-coco",
    data_prefix="gs://acme-ml-detector-exp-coco/data",
    runs_prefix="gs://acme-ml-detector-exp-coco/runs",
    job_service_account="detector-exp-coco@acme-ml.iam.gserviceaccount.com",
    repository_url="us-central1-docker.pkg.dev/acme-ml/detector-platform",
    tensorboard="",
    experiment="exp-coco",
    checkpoints_prefix="gs://acme-ml-detector-exp-coco/checkpoints",
)
OUTPUTS = EXPECTED.to_outputs() | {"platformStack": "organization/detector/platform"}  # as `pulumi stack output`


def write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value, indent=2))
    return path


def fake_pulumi(bin_dir: Path, stdout: str, exit_code: int = 0, stderr: str = "") -> Path:
    """A `pulumi` executable that records its arguments and answers like the CLI would."""
    bin_dir.mkdir(exist_ok=True)
    calls = bin_dir / "calls.json"
    script = bin_dir / "pulumi"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(calls)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        f"sys.stdout.write({stdout!r})\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({exit_code})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return calls


def test_reads_a_stack_outputs_file(tmp_path: Path) -> None:
    outputs = load_stack_outputs(outputs_file=write_json(tmp_path / "exp.json", OUTPUTS))
    assert outputs == EXPECTED
    assert outputs.data_uri("train-00000-of-00004.tfrecord") == (
        "gs://acme-ml-detector-exp-coco/data/train-00000-of-00004.tfrecord")
    assert outputs.run_uri("r1", "export") == "gs://acme-ml-detector-exp-coco/runs/r1/export"
    assert outputs.checkpoint_uri("r1") == "gs://acme-ml-detector-exp-coco/checkpoints/r1"
    assert outputs.image("train", "abc123") == "us-central1-docker.pkg.dev/acme-ml/detector-platform/train:abc123"


def test_outputs_without_a_checkpoints_prefix_use_the_bucket_layout(tmp_path: Path) -> None:
    optional = (OUTPUT_NAMES["checkpoints_prefix"], "role", "platformStack")
    minimal = {k: v for k, v in OUTPUTS.items() if k not in optional}
    outputs = load_stack_outputs(outputs_file=write_json(tmp_path / "exp.json", minimal))
    assert outputs.checkpoints_prefix == "gs://acme-ml-detector-exp-coco/checkpoints"


def test_reads_a_stack_with_the_pulumi_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_pulumi(tmp_path / "bin", json.dumps(OUTPUTS))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert load_stack_outputs(stack="exp-coco") == EXPECTED
    assert json.loads(calls.read_text()) == ["stack", "output", "--json", "--stack", "exp-coco"]


def test_a_failing_pulumi_cli_reports_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pulumi(tmp_path / "bin", "", exit_code=255, stderr="error: no stack named 'exp-nope' found\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(StackError, match="no stack named 'exp-nope' found") as error:
        load_stack_outputs(stack="exp-nope")
    assert "pulumi stack ls" in str(error.value)


def test_without_the_pulumi_cli_says_to_install_it_or_pass_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError) as error:
        load_stack_outputs(stack="exp-coco")
    message = str(error.value)
    assert "Pulumi CLI" in message
    assert "--stack-outputs FILE" in message
    assert "pulumi stack output --json --stack exp-coco" in message


def test_a_platform_stack_is_refused(tmp_path: Path) -> None:
    platform = {"role": "platform", "project": "acme-ml", "region": "us-central1", "repositoryUrl": "x"}
    with pytest.raises(StackError, match="platform stack"):
        load_stack_outputs(outputs_file=write_json(tmp_path / "platform.json", platform))


def test_missing_outputs_are_listed(tmp_path: Path) -> None:
    gone = [OUTPUT_NAMES["bucket"], OUTPUT_NAMES["job_service_account"]]
    partial = {k: v for k, v in OUTPUTS.items() if k not in gone}
    with pytest.raises(StackError, match=f"lacks the stack outputs {', '.join(gone)}"):
        load_stack_outputs(outputs_file=write_json(tmp_path / "partial.json", partial))


def test_the_pulumi_program_must_export_every_output_a_launch_reads() -> None:
    fields = {field: field.upper() for field in OUTPUT_NAMES}
    assert output_names(fields) == {name: field.upper() for field, name in OUTPUT_NAMES.items()}
    with pytest.raises(ValueError, match="missing tensorboard, unknown tensorboard_url"):
        output_names({k: v for k, v in fields.items() if k != "tensorboard"} | {"tensorboard_url": ""})


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "is not the JSON of `pulumi stack output --json`"),
        ("[1, 2]", "is not the JSON object"),
        (json.dumps(OUTPUTS | {OUTPUT_NAMES["bucket"]: 3}), "bucket must be strings"),
    ],
)
def test_bad_files_are_explained(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(content)
    with pytest.raises(StackError, match=says):
        load_stack_outputs(outputs_file=path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="Cannot read the stack outputs file"):
        load_stack_outputs(outputs_file=tmp_path / "nope.json")


@pytest.mark.parametrize(("stack", "outputs_file"), [(None, None), ("exp-coco", Path("exp.json"))])
def test_exactly_one_source(stack: str | None, outputs_file: Path | None) -> None:
    with pytest.raises(StackError, match="--stack NAME .* or --stack-outputs FILE"):
        load_stack_outputs(stack=stack, outputs_file=outputs_file)


def test_stacks_made_before_the_optional_outputs_still_load(tmp_path: Path) -> None:
    old = {key: value for key, value in OUTPUTS.items() if key not in ("checkpointsPrefix", "buildServiceAccount")}
    outputs = load_stack_outputs(outputs_file=write_json(tmp_path / "old.json", old))
    assert outputs.build_service_account == ""
    assert outputs.checkpoints_prefix == "gs://acme-ml-detector-exp-coco/checkpoints"
    assert outputs.build_source("trainer-abc.tar.gz") == "builds/trainer-abc.tar.gz"
    builder = "detector-build-platform@acme-ml.iam.gserviceaccount.com"
    new = OUTPUTS | {"buildServiceAccount": builder}
    current = load_stack_outputs(outputs_file=write_json(tmp_path / "new.json", new))
    assert current.build_service_account == builder
