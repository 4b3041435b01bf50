"""`endpoints deploy|list|undeploy|delete` through the real google-cloud-aiplatform client (REST) against the local
prediction stand-in; run records in the storage emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import types
from launch_servers import BUCKET, experiment_outputs, free_port

from jobs.errors import UsageError
from jobs.launch.context import REPO_ROOT
from jobs.launch.endpoints import EndpointError, Endpoints, plan_deploy, split_traffic
from jobs.launch.runs import BucketRunStore, RunRecord
from jobs.stack import StackOutputs

pytest_plugins = ["launch_servers"]

STACK = StackOutputs.from_outputs(experiment_outputs(), "test")
MODEL = "projects/acme-ml/locations/us-central1/models/77"


@pytest.fixture
def cloud(storage_emulator, prediction_server):
    storage_emulator.create_bucket(BUCKET)
    store = BucketRunStore(STACK.runs_prefix, storage_emulator)
    for run, version in (("first", "1"), ("second", "2")):
        store.save(RunRecord(run, STACK.experiment, "retinanet-mobilenet-256", "tpu-v5e-4",
                             model={"name": MODEL, "version": version}), 0)
    store.save(RunRecord("bare", STACK.experiment, "retinanet-mobilenet-256", "tpu-v5e-4"), 0)
    return Endpoints(STACK, api_endpoint=prediction_server.url, credentials=AnonymousCredentials()), store


def test_deploy_creates_the_experiments_endpoint_with_the_machine_and_replicas(cloud, prediction_server):
    endpoints, store = cloud
    plan = plan_deploy(STACK, "first", accelerator_type="NVIDIA_TESLA_T4", min_replicas=1, max_replicas=3)
    found, deployed_id = endpoints.deploy(plan, store)
    (created,) = prediction_server.posted("/endpoints")
    assert created["displayName"] == "exp-prints" and created["labels"] == {"experiment": "exp-prints"}
    (request,) = prediction_server.posted(":deployModel")
    deployed = request["deployedModel"]
    assert deployed["model"] == f"{MODEL}@1"
    spec = deployed["dedicatedResources"].pop("machineSpec")
    assert deployed["dedicatedResources"] == {"minReplicaCount": 1, "maxReplicaCount": 3}
    assert (spec["machineType"], spec["acceleratorCount"]) == ("n1-standard-2", 1)
    assert types.AcceleratorType(spec["acceleratorType"]).name == "NVIDIA_TESLA_T4"  # REST sends enums as numbers
    assert request["trafficSplit"] == {"0": 100}
    assert dict(found.traffic_split) == {deployed_id: 100}


def test_a_second_version_takes_its_share_and_undeploy_gives_it_back(cloud, prediction_server):
    endpoints, store = cloud
    _, first = endpoints.deploy(plan_deploy(STACK, "first"), store)
    found, second = endpoints.deploy(plan_deploy(STACK, "second", traffic=20), store)
    assert prediction_server.posted(":deployModel")[1]["trafficSplit"] == {"0": 20, first: 80}
    assert dict(found.traffic_split) == {second: 20, first: 80}
    assert len(prediction_server.posted("/endpoints")) == 1  # the same endpoint
    found = endpoints.undeploy("exp-prints", first)
    assert prediction_server.posted(":undeployModel")[0] == {"deployedModelId": first, "trafficSplit": {second: 100}}
    assert [d.id for d in found.deployed_models] == [second]
    with pytest.raises(EndpointError, match="undeploy"):
        endpoints.delete("exp-prints")
    endpoints.undeploy("exp-prints", second)
    assert endpoints.delete("exp-prints").startswith("projects/acme-ml/locations/us-central1/endpoints/")
    assert endpoints.list() == []


def test_an_endpoint_of_the_same_name_made_by_someone_else_is_left_alone(cloud, prediction_server):
    endpoints, store = cloud
    theirs = "projects/acme-ml/locations/us-central1/endpoints/theirs"
    prediction_server.endpoints[theirs] = {"name": theirs, "displayName": "exp-prints", "deployedModels": [],
                                           "trafficSplit": {}}
    with pytest.raises(UsageError, match="no endpoint exp-prints of experiment exp-prints"):
        endpoints.delete("exp-prints")
    found, _ = endpoints.deploy(plan_deploy(STACK, "first"), store)
    assert found.name != theirs and len(prediction_server.posted("/endpoints")) == 1  # a new one of its own
    assert prediction_server.endpoints[theirs]["deployedModels"] == []
    assert not any(theirs in path for method, path, _ in prediction_server.requests if method != "GET")


def test_what_cannot_be_deployed_is_refused_before_any_change(cloud, prediction_server):
    endpoints, store = cloud
    with pytest.raises(UsageError, match="no registered model"):
        endpoints.deploy(plan_deploy(STACK, "bare"), store)
    with pytest.raises(UsageError, match="no other model"):
        endpoints.deploy(plan_deploy(STACK, "first", traffic=50), store)
    with pytest.raises(UsageError, match="--accelerator-type"):
        plan_deploy(STACK, "first", accelerator_type="NVIDIA_GTX_1080")
    with pytest.raises(UsageError, match="replicas"):
        plan_deploy(STACK, "first", min_replicas=3, max_replicas=2)
    assert prediction_server.posted("/endpoints") == prediction_server.posted(":deployModel") == []


def test_traffic_splits_sum_to_100():
    assert split_traffic({"a": 50, "b": 50}, 10) == {"0": 10, "a": 45, "b": 45}
    assert split_traffic({"a": 1, "b": 1, "c": 1}, 0) == {"a": 34, "b": 33, "c": 33}
    assert sum(split_traffic({"a": 70, "b": 30}, 33).values()) == 100


def test_dry_run_shows_the_price_and_idle_billing_and_contacts_nothing(tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(experiment_outputs()))
    closed = f"http://127.0.0.1:{free_port()}"
    env = dict(os.environ, HTTPS_PROXY=closed, HTTP_PROXY=closed, STORAGE_EMULATOR_HOST=closed,
               DETECTOR_VERTEX_ENDPOINT=closed, COLUMNS="400")
    done = subprocess.run([sys.executable, "-m", "jobs", "endpoints", "deploy", "--stack-outputs", str(outputs),
                           "--run", "first", "--machine-type", "n1-standard-4", "--max-replicas", "2",
                           "--dry-run"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "price unknown" in done.stdout and "even when no request comes" in done.stdout
    body = json.loads(done.stdout[done.stdout.index("{"):])
    assert body["deployedModel"]["dedicatedResources"]["machineSpec"] == {"machineType": "n1-standard-4"}
    assert body["deployedModel"]["dedicatedResources"]["maxReplicaCount"] == 2
    assert body["trafficSplit"] == {"0": 100}
