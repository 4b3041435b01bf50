"""Runs `infra/` under Pulumi mocks the way `pulumi up` runs it, and records every resource it registers.

No Pulumi CLI, engine or cloud is involved: the mock monitor answers every registration and invoke, and
`deploy` returns plain data (types, inputs, options, resolved stack outputs), so the tests assert on values
that exist, never inside apply callbacks that might silently not run.

Test modules import the infra modules under test from here (it puts `infra/` on sys.path, as Pulumi does for
`main: infra/`) and load the session fixtures with `pytest_plugins = ["pulumi_fixtures"]`: a conftest.py in
this folder would take the module name `conftest` from the one in tests/.
"""

from __future__ import annotations

import gc
import importlib
import runpy
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

INFRA = Path(__file__).resolve().parents[2] / "infra"
sys.path[:0] = [str(INFRA), str(INFRA / "policies")]
naming, platform_stack, settings, rules = (
    importlib.import_module(name) for name in ("naming", "platform_stack", "settings", "rules")
)

PROJECT = "acme-ml"
PROJECT_NUMBER = "123456789012"
REGION = "us-central1"
PLATFORM_STACK = "organization/detector/platform"
TENSORBOARD_ID = "4242424242"
TENSORBOARD_BUCKET = "cloud-ai-platform-0a1b2c3d"


@dataclass(frozen=True)
class Resource:
    """One registered resource: its type token, logical name, inputs (camelCase) and options."""

    type: str
    name: str
    inputs: dict[str, Any]
    urn: str
    custom: bool
    dependencies: frozenset[str]
    retain_on_delete: bool
    protect: bool


@dataclass(frozen=True)
class Deployment:
    stack: str
    resources: list[Resource]
    outputs: dict[str, Any]
    invokes: list[str]

    @property
    def cloud(self) -> list[Resource]:
        """The GCP resources (no components, no StackReference)."""
        return [r for r in self.resources if r.type.startswith("gcp:")]

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, **inputs: Any) -> Resource:
        found = [r for r in self.of_type(type_) if all(r.inputs.get(k) == v for k, v in inputs.items())]
        assert len(found) == 1, f"expected one {type_} with {inputs}, found {len(found)}"
        return found[0]

    def urn_of(self, type_: str, **inputs: Any) -> str:
        return self.one(type_, **inputs).urn


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like GCP would: computed attributes (emails, names, ids) from the inputs."""

    def __init__(self, stacks: dict[str, dict[str, Any]]) -> None:
        self.stacks = stacks
        self.inputs: dict[tuple[str, str], dict[str, Any]] = {}
        self.invokes: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        self.inputs[(args.typ, args.name)] = inputs
        state = dict(inputs)
        resource_id = f"{args.name}-id"
        if args.typ == "pulumi:pulumi:StackReference":
            if args.resource_id not in self.stacks:
                raise Exception(f"no stack named {args.resource_id}")
            state = {"name": args.resource_id, "outputs": self.stacks[args.resource_id], "secretOutputNames": []}
            resource_id = args.resource_id
        elif args.typ == "gcp:storage/bucket:Bucket":
            state["url"] = f"gs://{inputs['name']}"
        elif args.typ == "gcp:serviceaccount/account:Account":
            email = f"{inputs['accountId']}@{inputs['project']}.iam.gserviceaccount.com"
            state |= {"email": email, "member": f"serviceAccount:{email}",
                      "name": f"projects/{inputs['project']}/serviceAccounts/{email}"}
        elif args.typ == "gcp:projects/serviceIdentity:ServiceIdentity":
            agent = inputs["service"].split(".")[0]
            email = f"service-{PROJECT_NUMBER}@gcp-sa-{agent}.iam.gserviceaccount.com"
            state |= {"email": email, "member": f"serviceAccount:{email}"}
        elif args.typ == "gcp:vertex/aiTensorboard:AiTensorboard":
            resource_id = f"projects/{inputs['project']}/locations/{inputs['region']}/tensorboards/{TENSORBOARD_ID}"
            state |= {"name": TENSORBOARD_ID,
                      "blobStoragePathPrefix": f"{TENSORBOARD_BUCKET}/tensorboard-{TENSORBOARD_ID}"}
        elif args.typ == "gcp:compute/network:Network":
            resource_id = f"projects/{inputs['project']}/global/networks/{inputs['name']}"
        elif args.typ == "gcp:compute/subnetwork:Subnetwork":  # as GCP reports it
            state["selfLink"] = (f"https://www.googleapis.com/compute/v1/projects/{inputs['project']}/regions/"
                                 f"{inputs['region']}/subnetworks/{inputs['name']}")
        elif args.typ == "gcp:projects/iAMCustomRole:IAMCustomRole":
            state["name"] = f"projects/{inputs['project']}/roles/{inputs['roleId']}"
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.invokes.append(args.token)
        if args.token == "gcp:organizations/getProject:getProject":
            return {"number": PROJECT_NUMBER, "projectId": args.args["projectId"]}
        raise AssertionError(f"unexpected invoke {args.token}")


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Keeps the registration options (dependencies, retainOnDelete, protect) the mocks API does not pass on."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.registered: list[tuple[Any, str, bool]] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registered.append((request, response.urn, request.custom))
        return response

    def ReadResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().ReadResource(request)
        self.registered.append((request, response.urn, True))
        return response


def _discard_pending() -> None:
    """Drop what a failed run left scheduled, so that its unawaited coroutines do not warn in later tests."""
    for task in pulumi_settings.SETTINGS.outputs:
        task.cancel()
    pulumi_settings.SETTINGS.outputs.clear()
    pulumi_settings.SETTINGS.rpc_manager.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gc.collect()


def _resolve(value: Any) -> Any:
    return _sync_await(pulumi.Output.from_input(value).future())


def deploy(stack: str, config: dict[str, str], stacks: dict[str, dict[str, Any]] | None = None) -> Deployment:
    """Run `infra/__main__.py` as stack `stack` of project `detector` with `config`; return what it declared."""
    mocks = RecordingMocks(stacks or {})
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_all_config(config)
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="detector", stack=stack, preview=False, monitor=monitor)
    # A run that failed leaves its pending RPCs and outputs behind; the next run must not await them.
    pulumi_settings.SETTINGS.rpc_manager.clear()
    pulumi_settings.SETTINGS.outputs.clear()
    root = pulumi_settings.get_root_resource()
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(INFRA), run_name="__main__")))
    except BaseException:
        _discard_pending()
        raise
    resources = [
        Resource(
            type=request.type,
            name=request.name,
            inputs=mocks.inputs[(request.type, request.name)],
            urn=urn,
            custom=custom,
            dependencies=frozenset(getattr(request, "dependencies", ())),
            retain_on_delete=bool(getattr(request, "retainOnDelete", False)),
            protect=bool(getattr(request, "protect", False)),
        )
        for request, urn, custom in monitor.registered
    ]
    outputs = _resolve(root.outputs)
    assert not any(isinstance(v, pulumi.Output) for v in outputs.values())
    return Deployment(stack=stack, resources=resources, outputs=outputs, invokes=list(mocks.invokes))


def platform_config(**options: str) -> dict[str, str]:
    return {"gcp:project": PROJECT, "gcp:region": REGION, "detector:role": "platform"} | {
        f"detector:{key}": value for key, value in options.items()
    }


def experiment_config(**options: str) -> dict[str, str]:
    return {
        "gcp:project": PROJECT,
        "gcp:region": REGION,
        "detector:role": "experiment",
        "detector:platformStack": PLATFORM_STACK,
    } | {f"detector:{key}": value for key, value in options.items()}
