"""Local stand-ins for the Google services a launch talks to, driven through the real client libraries.

- ``VertexServer``: the v1 REST paths of Vertex AI custom jobs (create, get, list, cancel); records requests.
- ``PredictionServer``: the v1 REST paths of the Vertex AI Model Registry (models:upload, get) and of endpoints
  (create, get, list, deployModel, undeployModel, delete) and of batch prediction jobs (create, get: each get moves
  the job to the next of ``batch_states``, and ``batch_output(job)`` writes the outputs when it succeeds); the
  changes are long-running operations that finish after ``polls`` reads; records requests. ``:predict`` runs
  ``serving`` (a real export's serving signature, jobs.runtime.serve.Model) and refuses bodies over Vertex's 1.5 MB
  payload limit, as Vertex does.
- ``RegistryServer``: Docker Registry v2 manifest HEADs, answering for the tags it holds.
- ``CloudBuildServer``: Cloud Build's v1 REST builds (create returns a finished operation; a build "pushes"
  its image tag into the registry).
- gcp-storage-emulator for Cloud Storage (a real HTTP server).
- ``TokenServer`` and ``service_account_key``: application-default credentials whose OAuth token endpoint is local.
- ``PermissionsServer``: ``testIamPermissions`` of Resource Manager v3, IAM v1 or Artifact Registry v1, answering
  with the permissions granted on each resource; ``ServiceUsageServer``: Service Usage v1 ``services:batchGet``
  and v1beta1 ``consumerQuotaMetrics.get``.
"""

from __future__ import annotations

import itertools
import json
import os
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from json_server import JsonServer, free_port


class VertexServer(JsonServer):
    def __init__(self):
        self.jobs: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self._ids = itertools.count(1000)
        super().__init__()

    def created(self) -> list[dict]:
        return [body for method, path, body in self.requests if method == "POST" and path.endswith("/customJobs")]

    def set_state(self, name: str, state: str) -> None:
        self.jobs[name]["state"] = state

    def handle(self, method, path, body):
        path = urlparse(path).path.removeprefix("/v1/")
        payload = json.loads(body) if body else {}
        self.requests.append((method, path, payload))
        if method == "POST" and path.endswith("/customJobs"):
            name = f"{path}/{next(self._ids)}"
            job = dict(payload, name=name, state="JOB_STATE_PENDING", createTime="2026-11-26T12:00:00Z")
            self.jobs[name] = job
            return 200, job, {}
        if method == "POST" and path.endswith(":cancel"):
            name = path.removesuffix(":cancel")
            self.jobs[name]["state"] = "JOB_STATE_CANCELLING"
            return 200, {}, {}
        if method == "GET" and path in self.jobs:
            return 200, self.jobs[path], {}
        if method == "GET" and path.endswith("/customJobs"):
            return 200, {"customJobs": list(self.jobs.values())}, {}
        return 404, {"error": {"code": 404, "message": f"{path} not found", "status": "NOT_FOUND"}}, {}


PREDICT_PAYLOAD_LIMIT = 1_500_000  # "currently, 1.5MB": gcloud ai endpoints predict reference


class PredictionServer(JsonServer):
    """Models and endpoints of one location, kept as the REST JSON Vertex AI answers with."""

    def __init__(self, polls: int = 0):
        self.models: dict[str, dict] = {}  # name -> the latest version
        self.versions: dict[str, list[dict]] = {}
        self.endpoints: dict[str, dict] = {}
        self.operations: dict[str, list] = {}  # name -> [reads left before done, response]
        self.requests: list[tuple[str, str, dict]] = []
        self.polls = polls
        self.serving = None  # a jobs.runtime.serve.Model answering :predict as the deployed model does
        self.predict_bodies: list[int] = []  # the byte size of each :predict body
        self.batch_jobs: dict[str, dict] = {}
        self.batch_states = ["JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]  # what the gets answer, the last one stays
        self.batch_output = None  # job -> completionStats: writes the job's outputs under its gcsOutputDirectory
        self._ids = itertools.count(7000)
        super().__init__()

    def posted(self, suffix: str) -> list[dict]:
        return [body for method, path, body in self.requests if method == "POST" and path.endswith(suffix)]

    def _operation(self, resource: str, kind: str, response: dict | None) -> dict:
        name = f"{resource}/operations/{next(self._ids)}"
        full = kind if "." in kind else f"google.cloud.aiplatform.v1.{kind}"
        body = {"@type": f"type.googleapis.com/{full}", **(response or {})}
        self.operations[name] = [self.polls, body]
        return self._read_operation(name)

    def _read_operation(self, name: str) -> dict:
        state = self.operations[name]
        if state[0] > 0:
            state[0] -= 1
            return {"name": name, "done": False}
        return {"name": name, "done": True, "response": state[1]}

    def handle(self, method, path, body):
        # the REST client reads operations under /ui/ (the first path of google.longrunning's HTTP rules it holds)
        path = urlparse(path).path.removeprefix("/v1/").removeprefix("/ui/")
        payload = json.loads(body) if body else {}
        self.requests.append((method, path, payload))
        if method == "GET" and path in self.operations:
            return 200, self._read_operation(path), {}
        if method == "POST" and path.endswith("/models:upload"):
            parent = payload.get("parentModel")
            if parent and parent not in self.models:
                return self._missing(parent)
            name = parent or f"{path.removesuffix(':upload')}/{next(self._ids)}"
            versions = self.versions.setdefault(name, [])
            aliases = set(payload["model"].get("versionAliases", []))
            for version in versions:  # an alias names one version: the new one takes it
                version["versionAliases"] = [a for a in version.get("versionAliases", []) if a not in aliases]
            model = dict(payload["model"], name=name, versionId=str(len(versions) + 1))
            model["versionAliases"] = ["default"] * (not versions) + model.get("versionAliases", [])
            versions.append(model)
            self.models[name] = model
            return 200, self._operation(name, "UploadModelResponse",
                                        {"model": name, "modelVersionId": model["versionId"]}), {}
        if method == "POST" and path.endswith("/batchPredictionJobs"):
            return self._create_batch(path, payload)
        if method == "GET" and path in self.batch_jobs:
            return 200, self._read_batch(path), {}
        if method == "GET" and path.partition("@")[0] in self.models:
            name, _, version = path.partition("@")
            found = [v for v in self.versions[name] if not version or version in (v["versionId"], *v["versionAliases"])]
            return (200, found[-1], {}) if found else self._missing(path)
        if method == "POST" and path.endswith("/endpoints"):
            name = f"{path}/{next(self._ids)}"
            self.endpoints[name] = dict(payload, name=name, deployedModels=[], trafficSplit={})
            return 200, self._operation(name, "Endpoint", self.endpoints[name]), {}
        if method == "GET" and path.endswith("/endpoints"):
            return 200, {"endpoints": list(self.endpoints.values())}, {}
        endpoint_name, _, verb = path.partition(":")
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            return self._missing(endpoint_name)
        if method == "GET" and not verb:
            return 200, endpoint, {}
        if method == "POST" and verb == "predict":
            return self._predict(endpoint, body)
        if method == "DELETE" and not verb:
            if endpoint["deployedModels"]:
                return 400, {"error": {"code": 400, "message": "the endpoint has deployed models",
                                       "status": "FAILED_PRECONDITION"}}, {}
            del self.endpoints[endpoint_name]
            return 200, self._operation(endpoint_name, "google.protobuf.Empty", None), {}
        if method == "POST" and verb == "deployModel":
            deployed = dict(payload["deployedModel"], id=str(next(self._ids)))
            endpoint["deployedModels"].append(deployed)
            split = payload.get("trafficSplit") or {"0": 100}
            endpoint["trafficSplit"] = {deployed["id"] if key == "0" else key: value for key, value in split.items()
                                        if value}
            return 200, self._operation(endpoint_name, "DeployModelResponse", {"deployedModel": deployed}), {}
        if method == "POST" and verb == "undeployModel":
            gone = payload["deployedModelId"]
            if gone not in [d["id"] for d in endpoint["deployedModels"]]:
                return self._missing(f"{endpoint_name} deployed model {gone}")
            endpoint["deployedModels"] = [d for d in endpoint["deployedModels"] if d["id"] != gone]
            endpoint["trafficSplit"] = payload.get("trafficSplit") or {
                key: value for key, value in endpoint["trafficSplit"].items() if key != gone}
            return 200, self._operation(endpoint_name, "UndeployModelResponse", {}), {}
        return self._missing(path)

    def _create_batch(self, path: str, payload: dict):
        if payload.get("model", "").partition("@")[0] not in self.models:
            return self._missing(payload.get("model", "(no model)"))
        name = f"{path}/{next(self._ids)}"
        self.batch_jobs[name] = dict(payload, name=name, state="JOB_STATE_PENDING", reads=0)
        return 200, self._public(self.batch_jobs[name]), {}

    def _read_batch(self, name: str) -> dict:
        job = self.batch_jobs[name]
        job["state"] = self.batch_states[min(job["reads"], len(self.batch_states) - 1)]
        job["reads"] += 1
        if job["state"] == "JOB_STATE_RUNNING":
            job["completionStats"] = {"successfulCount": "1"}
        if job["state"] == "JOB_STATE_SUCCEEDED" and "outputInfo" not in job:
            # "prediction-<model display name>-<time>" below the prefix, as Vertex AI names it
            prefix = job["outputConfig"]["gcsDestination"]["outputUriPrefix"]
            job["outputInfo"] = {"gcsOutputDirectory": f"{prefix}/prediction-model-2026-12-06T05:00:00.000000Z"}
            if self.batch_output is not None:
                job["completionStats"] = self.batch_output(self._public(job))
        return self._public(job)

    @staticmethod
    def _public(job: dict) -> dict:
        return {key: value for key, value in job.items() if key != "reads"}

    def _predict(self, endpoint: dict, body: bytes):
        from jobs.runtime.serve import BadRequest, Limits, parse_instances

        self.predict_bodies.append(len(body))
        if len(body) > PREDICT_PAYLOAD_LIMIT or not endpoint["deployedModels"] or self.serving is None:
            return 400, {"error": {"code": 400, "message": "request too large or no model deployed",
                                   "status": "INVALID_ARGUMENT"}}, {}
        try:
            answer = self.serving.predict(parse_instances(body, Limits()))
        except BadRequest as err:
            return 400, {"error": {"code": 400, "message": err.reason, "status": "INVALID_ARGUMENT"}}, {}
        return 200, dict(answer, deployedModelId=endpoint["deployedModels"][0]["id"]), {}

    @staticmethod
    def _missing(name: str):
        return 404, {"error": {"code": 404, "message": f"{name} not found", "status": "NOT_FOUND"}}, {}


class RegistryServer(JsonServer):
    def __init__(self):
        self.tags: set[str] = set()  # "PATH:TAG" below the host
        self.heads = 0
        super().__init__()

    def handle(self, method, path, body):
        self.heads += method == "HEAD"
        repository, _, tag = path.removeprefix("/v2/").partition("/manifests/")
        if f"{repository}:{tag}" in self.tags:
            return 200, None, {"Docker-Content-Digest": f"sha256:{abs(hash((repository, tag))):064x}"[:71]}
        return 404, None, {}

    def push(self, image_ref: str) -> None:
        self.tags.add(image_ref.split("/", 1)[1])


class CloudBuildServer(JsonServer):
    def __init__(self, registry: RegistryServer):
        self.registry = registry
        self.builds: dict[str, dict] = {}
        self._ids = itertools.count(1)
        super().__init__()

    def handle(self, method, path, body):
        path = urlparse(path).path
        if method == "POST" and path.endswith("/builds"):
            build = json.loads(body)
            build_id = f"build-{next(self._ids)}"
            build.update(id=build_id, status="SUCCESS", logUrl=f"https://console/{build_id}")
            self.builds[build_id] = build
            for image in build.get("images", []):
                self.registry.push(image)
            metadata = {"@type": "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata",
                        "build": build}
            return 200, {"name": f"operations/{build_id}", "metadata": metadata, "done": False}, {}
        build_id = path.rsplit("/", 1)[-1]
        if method == "GET" and build_id in self.builds:
            return 200, self.builds[build_id], {}
        return 404, {"error": {"code": 404, "message": "not found"}}, {}


class TokenServer(JsonServer):
    """The OAuth 2.0 token endpoint a service account key names: any signed assertion gets a token."""

    token = "local-access-token"

    def handle(self, method, path, body):
        if method == "POST" and urlparse(path).path == "/token":
            return 200, {"access_token": self.token, "expires_in": 3600, "token_type": "Bearer"}, {}
        return 404, {"error": "not_found"}, {}


def service_account_key(path, email: str, token_uri: str) -> str:
    """A service account key file (a fresh RSA key) whose tokens come from ``token_uri``; returns its path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": email.split("@")[1].split(".")[0], "private_key_id": "local",
        "private_key": pem, "client_email": email, "client_id": "1", "token_uri": token_uri}))
    return str(path)


class PermissionsServer(JsonServer):
    """``POST /vN/RESOURCE:testIamPermissions``: the asked permissions that ``granted[RESOURCE]`` holds; 404 for a
    resource it does not know. Requests without the bearer token are refused (401)."""

    def __init__(self, token: str = TokenServer.token):
        self.granted: dict[str, set[str]] = {}
        self.token = token
        self.requests: list[str] = []
        super().__init__()

    def handle(self, method, path, body):
        path = urlparse(path).path
        if self.last_headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": {"code": 401, "message": "no credentials", "status": "UNAUTHENTICATED"}}, {}
        resource = path.split("/", 2)[2].removesuffix(":testIamPermissions")
        self.requests.append(resource)
        if method != "POST" or not path.endswith(":testIamPermissions") or resource not in self.granted:
            return 404, {"error": {"code": 404, "message": f"{resource} not found", "status": "NOT_FOUND"}}, {}
        asked = json.loads(body).get("permissions", [])
        return 200, {"permissions": [p for p in asked if p in self.granted[resource]]}, {}


class ServiceUsageServer(JsonServer):
    """``GET /v1/projects/P/services:batchGet?names=…``: each named service, ENABLED when in ``enabled``;
    ``GET /v1beta1/projects/P/services/S/consumerQuotaMetrics/S%2FMETRIC``: a ConsumerQuotaMetric whose one limit
    has a global bucket (``effectiveLimit`` 0) and a bucket per region of ``quotas[METRIC]`` (404 for a metric
    not there); ``quota_requests`` records the metrics asked."""

    def __init__(self):
        self.enabled: set[str] = set()
        self.quotas: dict[str, dict[str, int]] = {}
        self.quota_requests: list[str] = []
        super().__init__()

    def handle(self, method, path, body):
        url = urlparse(path)
        if method == "GET" and "/consumerQuotaMetrics/" in url.path:
            return self._quota(unquote(url.path.rsplit("/", 1)[-1]))
        if method != "GET" or not url.path.endswith("/services:batchGet"):
            return 404, {"error": {"code": 404, "message": "not found"}}, {}
        services = [{"name": name, "config": {"name": name.rsplit("/", 1)[-1]},
                     "state": "ENABLED" if name.rsplit("/", 1)[-1] in self.enabled else "DISABLED"}
                    for name in parse_qs(url.query).get("names", [])]
        return 200, {"services": services}, {}

    def _quota(self, metric: str):
        self.quota_requests.append(metric)
        if metric not in self.quotas:
            return 404, {"error": {"code": 404, "message": f"metric {metric} not found", "status": "NOT_FOUND"}}, {}
        buckets = [{"effectiveLimit": "0", "defaultLimit": "0"},
                   *({"effectiveLimit": str(limit), "defaultLimit": "0", "dimensions": {"region": region}}
                     for region, limit in self.quotas[metric].items())]
        return 200, {"metric": metric, "consumerQuotaLimits": [
            {"metric": metric, "unit": "1/{project}/{region}", "quotaBuckets": buckets}]}, {}


LAUNCHER = "launcher@acme-ml.iam.gserviceaccount.com"
PROJECT, BUCKET, REGION = "acme-ml", "acme-exp-prints", "us-central1"
JOB_ACCOUNT = f"job-exp-prints@{PROJECT}.iam.gserviceaccount.com"
BUILD_ACCOUNT = f"detector-build-platform@{PROJECT}.iam.gserviceaccount.com"
REPOSITORY = f"projects/{PROJECT}/locations/{REGION}/repositories/detector"
# What launching needs, written out here (not read from jobs.launch.doctor) so that a change there shows.
HEALTHY_GRANTS = {
    "project": {"aiplatform.customJobs.create", "aiplatform.customJobs.get", "aiplatform.customJobs.list",
                "aiplatform.customJobs.cancel", "cloudbuild.builds.create", "cloudbuild.builds.get"},
    "repository": {"artifactregistry.repositories.downloadArtifacts"},
    "job account": {"iam.serviceAccounts.actAs"},
    "build account": {"iam.serviceAccounts.actAs"},
}
# Vertex AI custom-training quota metrics with room for one replica of each accelerator that has one in REGION.
HEALTHY_QUOTAS = {f"aiplatform.googleapis.com/custom_model_training_{suffix}": {REGION: 8}
                  for suffix in ("nvidia_t4_gpus", "nvidia_l4_gpus", "nvidia_a100_gpus", "nvidia_h100_gpus",
                                 "tpu_v3", "tpu_v5e")}


def experiment_outputs(bucket: str = BUCKET) -> dict[str, str]:
    """The stack outputs of experiment stack exp-prints in the fake project."""
    return {"role": "experiment", "project": PROJECT, "region": REGION, "bucket": bucket,
            "dataPrefix": f"gs://{bucket}/data", "runsPrefix": f"gs://{bucket}/runs",
            "checkpointsPrefix": f"gs://{bucket}/checkpoints", "jobServiceAccount": JOB_ACCOUNT,
            "repositoryUrl": f"{REGION}-docker.pkg.dev/{PROJECT}/detector", "tensorboard": "",
            "experiment": "exp-prints", "buildServiceAccount": BUILD_ACCOUNT}


class FakeProject:
    """Every service ``doctor`` asks, as local servers, and the environment that points the clients at them
    (``env``): application-default credentials of ``LAUNCHER``, the storage emulator, the REST endpoints."""

    def __init__(self, folder, storage_url: str, registry: RegistryServer | None = None):
        self.token = TokenServer()
        self.resource_manager, self.iam, self.artifact_registry = (PermissionsServer() for _ in range(3))
        self.service_usage = ServiceUsageServer()
        self.registry = registry or RegistryServer()
        self._servers = [self.token, self.resource_manager, self.iam, self.artifact_registry, self.service_usage,
                         *([] if registry else [self.registry])]
        self.outputs = folder / "outputs.json"
        self.outputs.write_text(json.dumps(experiment_outputs()))
        self.env = {
            "GOOGLE_APPLICATION_CREDENTIALS": service_account_key(folder / "key.json", LAUNCHER,
                                                                  f"{self.token.url}/token"),
            "STORAGE_EMULATOR_HOST": storage_url,
            "DETECTOR_SERVICE_USAGE_ENDPOINT": self.service_usage.url,
            "DETECTOR_RESOURCE_MANAGER_ENDPOINT": self.resource_manager.url,
            "DETECTOR_IAM_ENDPOINT": self.iam.url,
            "DETECTOR_ARTIFACT_REGISTRY_ENDPOINT": self.artifact_registry.url,
            "DETECTOR_REGISTRY_ENDPOINT": self.registry.url,
        }

    def make_healthy(self, storage_client) -> None:
        """APIs on, launch permissions granted, training quota, both images pushed, prepared data in the bucket."""
        from jobs.launch.context import build_context
        from jobs.launch.doctor import required_apis

        self.service_usage.enabled = set(required_apis())
        self.service_usage.quotas = {metric: dict(limits) for metric, limits in HEALTHY_QUOTAS.items()}
        self.resource_manager.granted[f"projects/{PROJECT}"] = set(HEALTHY_GRANTS["project"])
        self.artifact_registry.granted[REPOSITORY] = set(HEALTHY_GRANTS["repository"])
        self.iam.granted[f"projects/-/serviceAccounts/{JOB_ACCOUNT}"] = set(HEALTHY_GRANTS["job account"])
        self.iam.granted[f"projects/-/serviceAccounts/{BUILD_ACCOUNT}"] = set(HEALTHY_GRANTS["build account"])
        for image in ("trainer", "evaluator"):
            self.registry.push(f"{REGION}-docker.pkg.dev/{PROJECT}/detector/{image}:{build_context(image).tag}")
        bucket = storage_client.bucket(BUCKET)
        if not bucket.exists():
            bucket = storage_client.create_bucket(BUCKET)
        bucket.blob("data/dataset.json").upload_from_string(json.dumps(
            {"content_hash": "c0ffee", "classes": [{"id": 1, "name": "spaghetti"}]}))

    def close(self) -> None:
        for server in self._servers:
            server.close()


@pytest.fixture
def fake_project(tmp_path, storage_emulator, registry_server, monkeypatch):
    """A FakeProject with nothing granted (its registry: ``registry_server``), its environment set here."""
    project = FakeProject(tmp_path, os.environ["STORAGE_EMULATOR_HOST"], registry_server)
    for key, value in project.env.items():
        monkeypatch.setenv(key, value)
    yield project
    project.close()


@pytest.fixture
def storage_emulator(monkeypatch):
    """A gcp-storage-emulator server and a google-cloud-storage client talking to it."""
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    try:
        yield storage.Client(project="test", credentials=AnonymousCredentials())
    finally:
        server.stop()


@pytest.fixture
def vertex_server():
    server = VertexServer()
    yield server
    server.close()


@pytest.fixture
def prediction_server():
    server = PredictionServer()
    yield server
    server.close()


@pytest.fixture
def registry_server():
    server = RegistryServer()
    yield server
    server.close()


@pytest.fixture
def build_server(registry_server):
    server = CloudBuildServer(registry_server)
    yield server
    server.close()


def local_launcher(stack, storage, vertex_url: str, build_url: str, registry_url: str, preflight=None):
    """A VertexLauncher whose clients talk to the local servers (``preflight``: CloudSession's, None skips it)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.devtools import cloudbuild_v1

    from jobs.launch.backends import VertexBackend
    from jobs.launch.builders import CloudBuilder
    from jobs.launch.registry import Registry
    from jobs.launch.runs import BucketRunStore
    from jobs.launch.session import CloudSession
    from jobs.launch.vertex import VertexLauncher

    build_client = cloudbuild_v1.CloudBuildClient(credentials=AnonymousCredentials(), transport="rest",
                                                  client_options={"api_endpoint": build_url})
    return VertexLauncher(stack, CloudSession(
        stack=stack,
        backend=VertexBackend(stack, api_endpoint=vertex_url, credentials=AnonymousCredentials()),
        store=BucketRunStore(stack.runs_prefix, storage),
        storage=storage,
        registry=Registry(token=lambda: "test-token", base_url=registry_url),
        builder=CloudBuilder(stack, build_client=build_client, storage_client=storage, sleep=lambda s: None),
        preflight=preflight,
    ))
