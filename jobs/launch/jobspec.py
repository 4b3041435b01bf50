"""What a job runs (a backend-neutral spec) and its Vertex AI ``CustomJob`` form."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobs.launch.accelerators import Accelerator
from jobs.runtime.spec import EvalArgs, TrainArgs
from jobs.stack import StackOutputs

if TYPE_CHECKING:
    from google.cloud.aiplatform_v1.types import CustomJob

RUN_ID = re.compile(r"^[a-z][a-z0-9-]{0,49}$")


@dataclass(frozen=True)
class JobSpec:
    """One job: an entrypoint's arguments, and (on Vertex AI) which image runs them on what, for how long."""

    args: TrainArgs | EvalArgs
    image: str = ""  # "trainer" (TPU) or "evaluator" (GPU and CPU; it trains there too); "" on this machine
    accelerator: Accelerator | None = None  # None on this machine
    replicas: int = 1
    spot: bool = False
    timeout_s: int = 24 * 3600
    labels: dict[str, str] = field(default_factory=dict)
    display_name: str = ""

    @property
    def kind(self) -> str:
        return self.args.KIND

    @property
    def command(self) -> list[str]:
        """What the container (or the local subprocess, with this interpreter) runs."""
        return ["python", "-m", self.args.ENTRYPOINT, *self.args.to_argv()]


def image_for(kind: str, accelerator: Accelerator) -> str:
    """TPU training needs the TPU build of TensorFlow; everything else runs in the CUDA image."""
    return "trainer" if kind == "train" and accelerator.device == "tpu" else "evaluator"


def regional_endpoint(stack: StackOutputs) -> str:
    """The Vertex AI API host of the stack's region: a request uses the locational endpoint of the region its
    resources are in ("Vertex AI locations", docs.cloud.google.com/vertex-ai/docs/general/locations)."""
    return f"{stack.region}-aiplatform.googleapis.com"


def vertex_parent(stack: StackOutputs) -> str:
    """The location that custom jobs are created in."""
    return f"projects/{stack.project}/locations/{stack.region}"


def label_value(text: str) -> str:
    """GCP label values: lowercase letters, digits, '-' and '_', at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def custom_job(spec: JobSpec, stack: StackOutputs, image_uri: str, base_output_dir: str) -> CustomJob:
    """The ``aiplatform_v1.CustomJob`` Vertex AI is asked to create."""
    from google.cloud.aiplatform_v1 import types

    accelerator = spec.accelerator
    if accelerator is None:
        raise ValueError(f"{spec.display_name}: a Vertex AI job needs an accelerator")
    machine = types.MachineSpec(machine_type=accelerator.machine_type)
    if accelerator.accelerator_type:
        # proto-plus ships no types: mypy does not see that its enums are Enums (indexed by member name, members
        # of the enum rather than ints)
        machine.accelerator_type = types.AcceleratorType[accelerator.accelerator_type]  # type: ignore[misc]
        machine.accelerator_count = accelerator.accelerator_count
    if accelerator.tpu_topology:
        machine.tpu_topology = accelerator.tpu_topology
    program, module, entrypoint, *args = spec.command
    container = types.ContainerSpec(image_uri=image_uri, command=[program, module, entrypoint], args=args)
    # Several GPU replicas: one chief pool and one worker pool; Vertex writes TF_CONFIG for
    # MultiWorkerMirroredStrategy. TPUs and single machines have exactly one pool with one replica.
    pools = [types.WorkerPoolSpec(machine_spec=machine, replica_count=1, container_spec=container)]
    if spec.replicas > 1:
        pools.append(types.WorkerPoolSpec(machine_spec=machine, replica_count=spec.replicas - 1,
                                          container_spec=container))
    scheduling = types.Scheduling(timeout=f"{spec.timeout_s}s", restart_job_on_worker_restart=True)
    if spec.spot:
        scheduling.strategy = types.Scheduling.Strategy.SPOT  # type: ignore[assignment]  # as above
    job_spec = types.CustomJobSpec(
        worker_pool_specs=pools, scheduling=scheduling, service_account=stack.job_service_account,
        base_output_directory=types.GcsDestination(output_uri_prefix=base_output_dir),
    )
    if stack.tensorboard:
        job_spec.tensorboard = stack.tensorboard
    return types.CustomJob(display_name=spec.display_name, job_spec=job_spec,
                           labels={key: label_value(value) for key, value in spec.labels.items()})
