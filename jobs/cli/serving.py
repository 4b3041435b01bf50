"""Vertex AI serving commands: ``models upload`` (the Model Registry) and ``endpoints deploy|list|undeploy|delete``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from jobs.cli.app import app
from jobs.cli.cloud import StackFile, StackName, agreed
from jobs.console import console, table

if TYPE_CHECKING:
    from jobs.launch.endpoints import Endpoints

models_app = typer.Typer(help="A run's export in the Vertex AI Model Registry.", no_args_is_help=True)
app.add_typer(models_app, name="models")

RunOption = Annotated[str, typer.Option("--run", help="the run of the stack (see `runs list`)")]
DryRun = Annotated[bool, typer.Option(help="print the request and contact nothing")]


@models_app.command("upload")
def models_upload(
    run: RunOption,
    export: Annotated[str, typer.Option(
        help="the run's export (`export --format saved_model`): a local folder, uploaded to "
             "gs://BUCKET/runs/RUN/exported/HASH/, or a gs:// folder")],
    stack: StackName = None,
    stack_outputs: StackFile = None,
    dry_run: DryRun = False,
) -> None:
    """Register a run's export as a new version of the run's model, served by the serving image."""
    from jobs.launch.models import ModelRegistry, plan_upload, upload_model
    from jobs.launch.session import CloudSession
    from jobs.stack import load_stack_outputs

    outputs = load_stack_outputs(stack, stack_outputs)
    plan = plan_upload(outputs, run, export)
    console.print(plan.summary(), highlight=False)
    if dry_run:
        console.print_json(json.dumps(plan.request()))
        return
    with console.status("uploading and registering (building the serving image if its tag is new)"):
        uploaded = upload_model(plan, CloudSession.connect(outputs), ModelRegistry(outputs))
    console.print(f"{'built' if uploaded.built else 'reused'} image {uploaded.image_ref}", highlight=False)
    console.print(f"registered {uploaded.name} version {uploaded.version_id} from {uploaded.artifact_uri}",
                  highlight=False)
    console.print(f"deploy: python -m jobs endpoints deploy --run {run} --stack …", highlight=False)




endpoints_app = typer.Typer(help="Vertex AI endpoints: deploy a run's model, list, undeploy, delete.",
                            no_args_is_help=True)
app.add_typer(endpoints_app, name="endpoints")

EndpointName = Annotated[str | None, typer.Option(
    "--endpoint", help="the endpoint's display name (default: the experiment's name)")]


def _endpoints(stack: str | None, stack_outputs: Path | None) -> Endpoints:
    from jobs.launch.endpoints import Endpoints
    from jobs.stack import load_stack_outputs

    return Endpoints(load_stack_outputs(stack, stack_outputs))


@endpoints_app.command("deploy")
def endpoints_deploy(
    run: RunOption,
    stack: StackName = None,
    stack_outputs: StackFile = None,
    endpoint: EndpointName = None,
    machine_type: Annotated[str, typer.Option(help="the prediction machine type")] = "n1-standard-2",
    accelerator_type: Annotated[str | None, typer.Option(
        help="a GPU for each replica, e.g. NVIDIA_TESLA_T4 (default: none)")] = None,
    accelerator_count: Annotated[int, typer.Option(min=1, help="GPUs per replica, with --accelerator-type")] = 1,
    min_replicas: Annotated[int, typer.Option(min=1, help="replicas always running")] = 1,
    max_replicas: Annotated[int | None, typer.Option(
        min=1, help="most replicas under load (autoscaling; default: --min-replicas)")] = None,
    traffic: Annotated[int, typer.Option(
        min=0, max=100, help="percent of the endpoint's traffic for this model; the others share the rest")] = 100,
    yes: Annotated[bool, typer.Option("--yes", help="deploy without asking")] = False,
    dry_run: DryRun = False,
) -> None:
    """Deploy the run's registered model to an endpoint (created if missing), after showing the hourly price."""
    from jobs.launch.endpoints import Endpoints, plan_deploy
    from jobs.launch.session import CloudSession
    from jobs.stack import load_stack_outputs

    outputs = load_stack_outputs(stack, stack_outputs)
    plan = plan_deploy(outputs, run, endpoint, machine_type, accelerator_type, accelerator_count, min_replicas,
                       max_replicas, traffic)
    console.print(plan.summary(), highlight=False)
    if dry_run:
        console.print_json(json.dumps(plan.request()))
        return
    if not agreed(yes, "deploy"):
        raise typer.Exit(1)
    with console.status("deploying (minutes)"):
        found, deployed_id = Endpoints(outputs).deploy(plan, CloudSession.connect(outputs).store)
    console.print(f"deployed model {deployed_id} on {found.name}; traffic {dict(found.traffic_split)}",
                  highlight=False)


@endpoints_app.command("list")
def endpoints_list(stack: StackName = None, stack_outputs: StackFile = None) -> None:
    """The endpoints of the stack's region with their deployed models, machines and traffic split."""
    rows: list[list[object]] = []
    for found in _endpoints(stack, stack_outputs).list():
        split = dict(found.traffic_split)
        if not found.deployed_models:
            rows.append([found.display_name, found.name, "-", "-", "-", "-", "-"])
        for deployed in found.deployed_models:
            resources = deployed.dedicated_resources
            replicas = f"{resources.min_replica_count}-{resources.max_replica_count}"
            rows.append([found.display_name, found.name, deployed.id, deployed.model,
                         resources.machine_spec.machine_type, replicas, f"{split.get(deployed.id, 0)}%"])
    console.print(table("endpoints", ["endpoint", "name", "deployed", "model", "machine", "replicas", "traffic"],
                        rows))


@endpoints_app.command("undeploy")
def endpoints_undeploy(
    deployed_model: Annotated[str, typer.Option(help="the deployed model's id (see `endpoints list`)")],
    stack: StackName = None,
    stack_outputs: StackFile = None,
    endpoint: EndpointName = None,
) -> None:
    """Take a deployed model off an endpoint (its traffic goes to the others): its machines stop billing."""
    from jobs.launch.endpoints import Endpoints
    from jobs.stack import load_stack_outputs

    outputs = load_stack_outputs(stack, stack_outputs)
    found = Endpoints(outputs).undeploy(endpoint or outputs.experiment, deployed_model)
    console.print(f"undeployed {deployed_model} from {found.name}; traffic {dict(found.traffic_split)}",
                  highlight=False)


@endpoints_app.command("delete")
def endpoints_delete(stack: StackName = None, stack_outputs: StackFile = None, endpoint: EndpointName = None) -> None:
    """Delete an endpoint that has no deployed model."""
    from jobs.launch.endpoints import Endpoints
    from jobs.stack import load_stack_outputs

    outputs = load_stack_outputs(stack, stack_outputs)
    console.print(f"deleted {Endpoints(outputs).delete(endpoint or outputs.experiment)}", highlight=False)
