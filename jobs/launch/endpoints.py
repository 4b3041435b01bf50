"""Vertex AI endpoints of an experiment (``endpoints deploy|list|undeploy|delete``): a run's registered model
deployed on dedicated machines, with a traffic split between the models deployed there.

An endpoint is found by its display name (the experiment's name unless ``--endpoint`` names another) and created on
the first deploy. Machine types and GPUs are those of "Configure compute resources for prediction"
(https://cloud.google.com/vertex-ai/docs/predictions/configure-compute); the fields are those of the
``DeployedModel`` and ``DedicatedResources`` REST references. A deployed model bills for every node hour, idle or
not, until it is undeployed ("Vertex AI pricing": "You pay for each model deployed to an endpoint, even if no
prediction is made").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.errors import DetectorError, UsageError
from jobs.launch.jobspec import vertex_parent
from jobs.launch.models import vertex_endpoint
from jobs.launch.runs import RunStore, require
from jobs.stack import StackOutputs

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud.aiplatform_v1 import types

# A choice of this tool (the smallest standard machine): the machine types a deployment may use are listed in
# Vertex AI "Configure compute resources for prediction"; --machine-type picks another.
DEFAULT_MACHINE = "n1-standard-2"
OPERATION_TIMEOUT_S = 3600
IDLE_BILLING = ("An endpoint bills for its machines every hour a model is deployed on it, even when no request "
                "comes: undeploy (`endpoints undeploy`) to stop paying.")
# USD per node hour of Vertex AI prediction, by machine type (us-central1). Source: "Vertex AI pricing",
# https://cloud.google.com/vertex-ai/pricing, looked up 2026-12-06 with the search tool: the stored copies hold the
# AutoML tables but not the custom-trained prediction tables, so no price is known, and the plan says "price
# unknown". Fill them in from that page, with its date.
PREDICTION_PRICES: dict[str, float | None] = {}
PRICES_AS_OF = "Vertex AI pricing page, looked up 2026-12-06: no prediction machine price in its stored copies"


class EndpointError(DetectorError):
    """The endpoint is not in a state that allows the change."""


@dataclass(frozen=True)
class DeployPlan:
    stack: StackOutputs
    run_id: str
    endpoint: str  # display name
    machine_type: str = DEFAULT_MACHINE
    accelerator_type: str = ""  # aiplatform_v1 AcceleratorType name, "" for none
    accelerator_count: int = 0
    min_replicas: int = 1
    max_replicas: int = 1
    traffic: int = 100  # percent for the new deployment

    def hourly(self) -> tuple[float | None, float | None]:
        """USD per hour at the minimum and maximum replicas; None when the price is unknown."""
        price = None if self.accelerator_type else PREDICTION_PRICES.get(self.machine_type)
        return (None, None) if price is None else (price * self.min_replicas, price * self.max_replicas)

    def price(self) -> str:
        low, high = self.hourly()
        if low is None or high is None:
            return f"price unknown ({PRICES_AS_OF})"
        return f"${low:.2f}/h" + (f" to ${high:.2f}/h" if high != low else "")

    def summary(self) -> str:
        gpu = f" + {self.accelerator_count} x {self.accelerator_type}" if self.accelerator_type else ""
        return (f"deploy run {self.run_id}'s model to endpoint {self.endpoint} on {self.machine_type}{gpu}, "
                f"{self.min_replicas} to {self.max_replicas} replica(s), {self.traffic}% of the traffic; "
                f"{self.price()}. {IDLE_BILLING}")

    def deployed_model(self, model: str) -> types.DeployedModel:
        from google.cloud.aiplatform_v1 import types

        spec = types.MachineSpec(machine_type=self.machine_type)
        if self.accelerator_type:
            spec.accelerator_type = types.AcceleratorType.__members__[self.accelerator_type]
            spec.accelerator_count = self.accelerator_count
        return types.DeployedModel(
            model=model, display_name=f"{self.stack.experiment}-{self.run_id}"[:128],
            dedicated_resources=types.DedicatedResources(machine_spec=spec, min_replica_count=self.min_replicas,
                                                         max_replica_count=self.max_replicas))

    def request(self) -> dict[str, Any]:
        """The ``DeployModel`` request ``--dry-run`` shows: the endpoint and model named as the deploy finds them."""
        from google.cloud.aiplatform_v1 import types

        model = f"(the model of {self.stack.run_uri(self.run_id, 'run.json')})"
        request = types.DeployModelRequest(
            endpoint=f"(the endpoint named {self.endpoint} in {vertex_parent(self.stack)}, created if missing)",
            deployed_model=self.deployed_model(model), traffic_split={"0": self.traffic})
        body: dict[str, Any] = json.loads(types.DeployModelRequest.to_json(
            request, use_integers_for_enums=False, always_print_fields_with_no_presence=False))
        return body


def plan_deploy(stack: StackOutputs, run_id: str, endpoint: str | None = None, machine_type: str = DEFAULT_MACHINE,
                accelerator_type: str | None = None, accelerator_count: int = 1, min_replicas: int = 1,
                max_replicas: int | None = None, traffic: int = 100) -> DeployPlan:
    from google.cloud.aiplatform_v1 import types

    if accelerator_type and accelerator_type not in types.AcceleratorType.__members__:
        names = [n for n in types.AcceleratorType.__members__ if n.startswith("NVIDIA")]
        raise UsageError(f"--accelerator-type {accelerator_type}: use one of {', '.join(names)}")
    max_replicas = max_replicas or min_replicas
    if not 1 <= min_replicas <= max_replicas:
        raise UsageError(f"replicas: need 1 <= --min-replicas ({min_replicas}) <= --max-replicas ({max_replicas})")
    if not 0 <= traffic <= 100:
        raise UsageError(f"--traffic {traffic}: a percentage, 0 to 100")
    return DeployPlan(stack, run_id, endpoint or stack.experiment, machine_type, accelerator_type or "",
                      accelerator_count if accelerator_type else 0, min_replicas, max_replicas, traffic)


def split_traffic(current: dict[str, int], new_share: int) -> dict[str, int]:
    """The endpoint's split with the new deployment (key "0") at ``new_share`` percent and the others scaled to
    the rest, in whole percents that sum to 100 (largest remainders first)."""
    rest, total = 100 - new_share, sum(current.values())
    if not total:
        if rest:
            raise UsageError(f"--traffic {new_share}: the endpoint has no other model to send the other {rest}% to")
        return {"0": 100}
    exact = {key: value * rest / total for key, value in current.items()}
    split = {key: int(share) for key, share in exact.items()}
    for key in sorted(exact, key=lambda k: exact[k] - split[k], reverse=True)[:rest - sum(split.values())]:
        split[key] += 1
    return {key: value for key, value in {"0": new_share, **split}.items() if value}


class Endpoints:
    """The stack region's endpoints, through google-cloud-aiplatform's EndpointServiceClient (REST)."""

    def __init__(self, stack: StackOutputs, api_endpoint: str | None = None, credentials: Credentials | None = None,
                 timeout_s: float = OPERATION_TIMEOUT_S):
        from google.cloud.aiplatform_v1.services.endpoint_service import EndpointServiceClient

        self.stack = stack
        self.client = EndpointServiceClient(credentials=credentials, transport="rest",
                                            client_options={"api_endpoint": api_endpoint or vertex_endpoint(stack)})
        self.timeout_s = timeout_s

    def list(self) -> list[types.Endpoint]:
        return list(self.client.list_endpoints(parent=vertex_parent(self.stack)))

    def find(self, display_name: str) -> types.Endpoint | None:
        """The experiment's endpoint of that name: one this tool created (its ``experiment`` label). An endpoint of
        the same name that someone else made is never deployed to, undeployed from or deleted."""
        found = [e for e in self.list()
                 if e.display_name == display_name and e.labels.get("experiment") == self.stack.experiment]
        return found[0] if found else None

    def get(self, display_name: str) -> types.Endpoint:
        endpoint = self.find(display_name)
        if endpoint is None:
            raise UsageError(f"no endpoint {display_name} of experiment {self.stack.experiment} in "
                             f"{vertex_parent(self.stack)}: see `endpoints list`")
        return endpoint

    def deploy(self, plan: DeployPlan, store: RunStore) -> tuple[types.Endpoint, str]:
        """Deploy the run's model (the version its record names) to the plan's endpoint, created if missing.
        Returns the endpoint and the deployed model's id."""
        from google.cloud.aiplatform_v1 import types

        record, _ = require(store, plan.run_id)
        if not record.model.get("name"):
            raise UsageError(f"run {plan.run_id} has no registered model: run `python -m jobs models upload "
                             f"--run {plan.run_id} --export …` first")
        model = f"{record.model['name']}@{record.model['version']}"
        found = self.find(plan.endpoint)
        traffic = split_traffic(dict(found.traffic_split) if found else {}, plan.traffic)
        endpoint = found or self._wait(self.client.create_endpoint(
            parent=vertex_parent(self.stack), endpoint=types.Endpoint(
                display_name=plan.endpoint, labels={"experiment": self.stack.experiment})))
        response = self._wait(self.client.deploy_model(
            endpoint=endpoint.name, deployed_model=plan.deployed_model(model), traffic_split=traffic))
        return self.client.get_endpoint(name=endpoint.name), str(response.deployed_model.id)

    def undeploy(self, display_name: str, deployed_model_id: str) -> types.Endpoint:
        """Take one deployed model off the endpoint; its traffic goes to the others in proportion."""
        endpoint = self.get(display_name)
        current = dict(endpoint.traffic_split)
        if deployed_model_id not in {d.id for d in endpoint.deployed_models}:
            ids = ", ".join(d.id for d in endpoint.deployed_models) or "none"
            raise UsageError(f"endpoint {display_name} has no deployed model {deployed_model_id} (it has: {ids})")
        others = {key: value for key, value in current.items() if key != deployed_model_id}
        if not sum(others.values()) and len(endpoint.deployed_models) > 1:
            others = {d.id: 1 for d in endpoint.deployed_models if d.id != deployed_model_id}
        traffic = split_traffic(others, 0) if others else {}
        self._wait(self.client.undeploy_model(endpoint=endpoint.name, deployed_model_id=deployed_model_id,
                                              traffic_split=traffic))
        return self.client.get_endpoint(name=endpoint.name)

    def delete(self, display_name: str) -> str:
        endpoint = self.get(display_name)
        if endpoint.deployed_models:
            raise EndpointError(f"endpoint {display_name} still has {len(endpoint.deployed_models)} deployed "
                                "model(s): `endpoints undeploy` them first")
        self._wait(self.client.delete_endpoint(name=endpoint.name))
        return str(endpoint.name)

    def _wait(self, operation: Any) -> Any:
        return operation.result(timeout=self.timeout_s)
