"""What a launch needs from an experiment stack: its bucket, job service account, image repository, TensorBoard.

Read with `pulumi stack output --json --stack NAME`, or from a file holding that same JSON (`--stack-outputs
FILE`) on machines without the Pulumi CLI. The output names are defined here, once: `infra/` imports them to
export the outputs (the Pulumi program runs in the project's environment, where `jobs` is installed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from jobs.errors import DetectorError

# StackOutputs field -> the name of the experiment stack output that carries it.
OUTPUT_NAMES = {
    "project": "project",
    "region": "region",
    "bucket": "bucket",
    "data_prefix": "dataPrefix",
    "runs_prefix": "runsPrefix",
    "job_service_account": "jobServiceAccount",
    "repository_url": "repositoryUrl",
    "tensorboard": "tensorboard",
    "experiment": "experiment",
    "checkpoints_prefix": "checkpointsPrefix",
    "build_service_account": "buildServiceAccount",
    "dataflow_service_account": "dataflowServiceAccount",
    "dataflow_subnetwork": "dataflowSubnetwork",
}
# Outputs that stacks made before they were exported lack: the checkpoints prefix follows the bucket's own layout;
# without a build service account, Cloud Build runs as the project's default one; without the Dataflow worker
# account and subnetwork, `data prepare --engine dataflow` asks for a `pulumi up`.
OPTIONAL_FIELDS = {"checkpoints_prefix", "build_service_account", "dataflow_service_account", "dataflow_subnetwork"}
# Where `images build` stages the Cloud Build source in the experiment bucket; the build account may read only this.
BUILD_SOURCES = "builds"
ROLE_OUTPUT = "role"  # every stack exports which kind it is
PLATFORM_ROLE, EXPERIMENT_ROLE = "platform", "experiment"
V = TypeVar("V")
PULUMI_TIMEOUT_S = 120
_PROJECT_DIR = Path(__file__).resolve().parents[1]


class StackError(DetectorError):
    """The stack outputs cannot be read, or are not those of an experiment stack."""


@dataclass(frozen=True)
class StackOutputs:
    """The outputs of one experiment stack. `tensorboard` is "" when TensorBoard is off; `build_service_account`,
    `dataflow_service_account` and `dataflow_subnetwork` (a subnetwork's self link) are "" for stacks made before
    they were exported."""

    project: str
    region: str
    bucket: str
    data_prefix: str
    runs_prefix: str
    job_service_account: str
    repository_url: str
    tensorboard: str
    experiment: str
    checkpoints_prefix: str
    build_service_account: str = ""
    dataflow_service_account: str = ""
    dataflow_subnetwork: str = ""

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any], source: str) -> StackOutputs:
        """Validate the JSON object of `pulumi stack output --json`; `source` names it in errors."""
        if outputs.get(ROLE_OUTPUT) == PLATFORM_ROLE:
            raise StackError(f"{source} holds the outputs of the platform stack; jobs run in an experiment stack "
                             "(`pulumi stack ls` lists them; `pulumi stack init exp-NAME` creates one).")
        missing = [name for field, name in OUTPUT_NAMES.items()
                   if name not in outputs and field not in OPTIONAL_FIELDS]
        if missing:
            raise StackError(f"{source} lacks the stack outputs {', '.join(missing)}: is it an experiment stack "
                             "after `pulumi up`?")
        wrong = [name for name in OUTPUT_NAMES.values() if name in outputs and not isinstance(outputs[name], str)]
        if wrong:
            raise StackError(f"{source}: the stack outputs {', '.join(wrong)} must be strings.")
        values = {field: outputs.get(name, "") for field, name in OUTPUT_NAMES.items()}
        values["checkpoints_prefix"] = values["checkpoints_prefix"] or f"gs://{values['bucket']}/checkpoints"
        return cls(**values)

    def to_outputs(self) -> dict[str, str]:
        """The stack outputs these are read from (`from_outputs` inverted): a `--stack-outputs` file's JSON."""
        return {ROLE_OUTPUT: EXPERIMENT_ROLE, **output_names(asdict(self))}

    def data_uri(self, *parts: str) -> str:
        """gs:// URI under the experiment's data prefix."""
        return "/".join((self.data_prefix, *parts))

    def run_uri(self, run_id: str, *parts: str) -> str:
        """gs:// URI of a run's results (kept until deleted by hand)."""
        return "/".join((self.runs_prefix, run_id, *parts))

    def checkpoint_uri(self, run_id: str) -> str:
        """gs:// folder of a run's training checkpoints (the bucket deletes them after its retention days)."""
        return f"{self.checkpoints_prefix}/{run_id}"

    def build_source(self, name: str) -> str:
        """Object name, in the experiment bucket, of a Cloud Build source tarball."""
        return f"{BUILD_SOURCES}/{name}"

    def image(self, name: str, tag: str) -> str:
        """Full reference of an image in the platform's repository."""
        return f"{self.repository_url}/{name}:{tag}"


def output_names(values: Mapping[str, V]) -> dict[str, V]:
    """Values by StackOutputs field, keyed by their stack output names instead: what `infra/` exports. Every
    field must be given, so the Pulumi program cannot leave out anything a launch reads."""
    if set(values) != set(OUTPUT_NAMES):
        raise ValueError(f"the outputs of an experiment stack are {', '.join(OUTPUT_NAMES)}; "
                         f"missing {', '.join(sorted(set(OUTPUT_NAMES) - set(values))) or 'none'}, "
                         f"unknown {', '.join(sorted(set(values) - set(OUTPUT_NAMES))) or 'none'}")
    return {OUTPUT_NAMES[field]: value for field, value in values.items()}


def load_stack_outputs(stack: str | None = None, outputs_file: Path | None = None) -> StackOutputs:
    """The outputs of experiment stack `stack` (read with the Pulumi CLI), or of the JSON in `outputs_file`."""
    if outputs_file is not None and stack is None:
        source = str(outputs_file)
        try:
            text = outputs_file.read_text()
        except OSError as error:
            raise StackError(f"Cannot read the stack outputs file {outputs_file}: {error.strerror}.") from error
    elif stack is not None and outputs_file is None:
        source = f"stack {stack}"
        text = _pulumi_stack_output(stack)
    else:
        raise StackError("Give the experiment stack: --stack NAME (needs the Pulumi CLI) or --stack-outputs FILE "
                         "(the JSON of `pulumi stack output --json --stack NAME`).")
    try:
        outputs = json.loads(text)
    except ValueError as error:
        raise StackError(f"{source} is not the JSON of `pulumi stack output --json`: {error}.") from error
    if not isinstance(outputs, dict):
        raise StackError(f"{source} is not the JSON object of `pulumi stack output --json`.")
    return StackOutputs.from_outputs(outputs, source)


def _pulumi_stack_output(stack: str) -> str:
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise StackError(
            f"Reading stack {stack} needs the Pulumi CLI, which is not on PATH. Install it "
            "(https://www.pulumi.com/docs/iac/download-install/), or pass --stack-outputs FILE with the output of "
            f"`pulumi stack output --json --stack {stack}` from a machine that has it."
        )
    cwd = _PROJECT_DIR if (_PROJECT_DIR / "Pulumi.yaml").is_file() else None
    try:
        done = subprocess.run(
            [pulumi, "stack", "output", "--json", "--stack", stack],
            capture_output=True, text=True, timeout=PULUMI_TIMEOUT_S, cwd=cwd,
            env=os.environ | {"PULUMI_SKIP_UPDATE_CHECK": "true"}, check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise StackError(f"`pulumi stack output --stack {stack}` did not answer in {PULUMI_TIMEOUT_S} s; "
                         "is the Pulumi backend reachable (`pulumi whoami`)?") from error
    if done.returncode != 0:
        detail = done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}"
        raise StackError(f"`pulumi stack output --json --stack {stack}` failed: {detail}\n"
                         "Check `pulumi whoami` and `pulumi stack ls`.")
    return done.stdout
