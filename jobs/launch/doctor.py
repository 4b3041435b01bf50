"""Will a launch on this experiment stack work? Each check says ✓ or ✗ and, for ✗, the command that fixes it.

``diagnose`` runs every check (``python -m jobs doctor``); ``preflight`` runs the cheap ones that a Vertex AI
launch needs (credentials, the launch permissions, the image, the data) and raises ``PreflightError`` listing
what failed. Every call goes through google-auth's ``AuthorizedSession`` or google-cloud-storage; the REST
endpoints are ``Endpoints`` fields, which ``DETECTOR_<FIELD>_ENDPOINT`` overrides (tests: local servers).

IAM ``testIamPermissions`` answers which of the listed permissions the caller holds on one resource; each list
below is what the launcher does there, with the Google document that names the permissions.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.dataset.gcs import split_uri
from jobs.launch.launcher import PreflightError
from jobs.launch.registry import Registry, RegistryError, access_token
from jobs.stack import StackError, StackOutputs

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud.storage import Client

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
PLATFORM_STACK = Path(__file__).resolve().parents[2] / "infra" / "platform_stack.py"
TIMEOUT_S = 20

# On the project: submit, follow and cancel custom jobs. Vertex AI "IAM permissions" page
# (cloud.google.com/vertex-ai/docs/general/iam-permissions), rows customJobs create/get/list/cancel.
LAUNCH_PROJECT_PERMISSIONS = ("aiplatform.customJobs.create", "aiplatform.customJobs.get",
                              "aiplatform.customJobs.list", "aiplatform.customJobs.cancel")
# On the project: `images build` when the tag is missing (create a build, poll it). Cloud Build "IAM roles and
# permissions" (cloud.google.com/build/docs/iam-roles-permissions), roles/cloudbuild.builds.editor.
BUILD_PROJECT_PERMISSIONS = ("cloudbuild.builds.create", "cloudbuild.builds.get")
# On the bucket: read dataset.json and run records, list runs, write run.json and build sources. Replacing an
# object (run.json is rewritten) needs create and delete: Cloud Storage "IAM permissions for XML methods"
# (cloud.google.com/storage/docs/access-control/iam-xml), POST/PUT object rows and note 4.
BUCKET_PERMISSIONS = ("storage.objects.create", "storage.objects.delete", "storage.objects.get",
                      "storage.objects.list")
# On the repository: the tag check is a manifest HEAD (a pull). IAM "Artifact Registry roles and permissions"
# (cloud.google.com/iam/docs/roles-permissions/artifactregistry), roles/artifactregistry.reader.
REPOSITORY_PERMISSIONS = ("artifactregistry.repositories.downloadArtifacts",)
# On the job service account: run a job as it. Vertex AI ServiceAccountSpec reference ("users must have
# iam.serviceAccounts.actAs permission on this service account"); tested with IAM
# projects.serviceAccounts.testIamPermissions (cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts).
SERVICE_ACCOUNT_PERMISSIONS = ("iam.serviceAccounts.actAs",)

# Vertex AI's quota metric of each training accelerator (aiplatform AcceleratorType name, and ct5lp-hightpu: TPU
# v5e), from Google's own code, GoogleCloudPlatform/vertex-ai-samples
# community-content/vertex_model_garden/model_oss/notebook_util/common_util.py (get_resource_id and check_quota;
# last changed by commit e563a661 of 2025-06-17, read at cc0d791 of 2026-08-19 on 2026-12-06), which asks Service
# Usage for "aiplatform.googleapis.com/custom_model_training_<suffix>" and compares its regional effectiveLimit
# with the accelerator count (TPU v5e: chips; ct5lp-hightpu-4t needs 4). It names none for TPU v2 or machines
# alone (CPUs); its "custom_model_training_preemptible_" metrics are for Dynamic Workload Scheduler, not Spot.
QUOTA_SERVICE = "aiplatform.googleapis.com"
TRAINING_QUOTA_METRICS = {"NVIDIA_TESLA_T4": "custom_model_training_nvidia_t4_gpus",
                          "NVIDIA_L4": "custom_model_training_nvidia_l4_gpus",
                          "NVIDIA_TESLA_A100": "custom_model_training_nvidia_a100_gpus",
                          "NVIDIA_H100_80GB": "custom_model_training_nvidia_h100_gpus",
                          "TPU_V3": "custom_model_training_tpu_v3",
                          "TPU_V5e": "custom_model_training_tpu_v5e"}


def training_quota_metric(accelerator_type: str | None, machine_type: str) -> str | None:
    """The custom-training quota metric (without the service prefix) of a worker, None when no document names
    one; Vertex takes TPU v5e by its ct5lp-hightpu machine type, with no accelerator type."""
    return TRAINING_QUOTA_METRICS.get("TPU_V5e" if machine_type.startswith("ct5lp-hightpu-")
                                      else accelerator_type or "")


# Roles the fix commands grant, from the same documents.
PROJECT_ROLE = "roles/aiplatform.user"
BUILD_ROLE = "roles/cloudbuild.builds.editor"
BUCKET_ROLE = "roles/storage.objectAdmin"
REPOSITORY_ROLE = "roles/artifactregistry.reader"
SERVICE_ACCOUNT_ROLE = "roles/iam.serviceAccountUser"


class Status(Enum):
    OK = "✓"
    FAILED = "✗"
    NOT_CHECKED = "-"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""  # for FAILED: the command that fixes it

    @property
    def failed(self) -> bool:
        return self.status is Status.FAILED


def ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.FAILED, detail, fix)


def not_checked(name: str, why: str) -> Check:
    return Check(name, Status.NOT_CHECKED, why)


@dataclass(frozen=True)
class Endpoints:
    """Roots of the REST APIs the checks call; ``registry`` replaces ``https://HOST`` of image references."""

    service_usage: str = "https://serviceusage.googleapis.com"
    resource_manager: str = "https://cloudresourcemanager.googleapis.com"
    iam: str = "https://iam.googleapis.com"
    artifact_registry: str = "https://artifactregistry.googleapis.com"
    registry: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Endpoints:
        """``DETECTOR_SERVICE_USAGE_ENDPOINT=http://127.0.0.1:PORT`` and the like override the defaults."""
        given = {f.name: environ.get(f"DETECTOR_{f.name.upper()}_ENDPOINT") for f in fields(cls)}
        return cls(**{name: value.rstrip("/") for name, value in given.items() if value})


@dataclass
class Caller:
    """The application-default credentials, refreshed, and the account they name (None when they do not)."""

    credentials: Credentials
    account: str | None

    @property
    def member(self) -> str:
        """The IAM principal of the caller for a grant command."""
        if not self.account:
            return "user:YOUR_EMAIL"
        kind = "serviceAccount" if self.account.endswith(".gserviceaccount.com") else "user"
        return f"{kind}:{self.account}"


def check_credentials() -> tuple[Check, Caller | None]:
    """google.auth.default(), refreshed once so that an expired login fails here and not halfway through."""
    import google.auth
    import google.auth.transport.requests
    from google.auth.exceptions import DefaultCredentialsError, RefreshError, TransportError

    name, fix = "credentials", "gcloud auth application-default login"
    try:
        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
        credentials.refresh(google.auth.transport.requests.Request())
    except DefaultCredentialsError as error:
        return failed(name, f"no application-default credentials: {error}", fix), None
    except (RefreshError, TransportError) as error:
        return failed(name, f"the credentials were found but cannot get a token: {error}", fix), None
    account = (getattr(credentials, "service_account_email", None) or getattr(credentials, "account", None)
               or None)
    kind = type(credentials).__module__.removeprefix("google.").replace(".", " ")
    return ok(name, f"{account or 'an account the credentials do not name'} ({kind})"), Caller(credentials, account)


def check_stack(load: Callable[[], StackOutputs], rebuild: str) -> tuple[Check, StackOutputs | None]:
    try:
        stack = load()
    except StackError as error:
        return failed("stack outputs", str(error), rebuild), None
    return ok("stack outputs", f"project {stack.project}, region {stack.region}, bucket {stack.bucket}"), stack


def required_apis(source: Path = PLATFORM_STACK) -> tuple[str, ...]:
    """The APIs the platform stack enables: the keys of its ``REQUIRED_APIS`` literal, read without importing
    Pulumi (the one list; the doctor mirrors nothing)."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    value: ast.expr | None
    for node in tree.body:
        if isinstance(node, ast.Assign):
            target, value = node.targets[0], node.value
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == "REQUIRED_APIS" and value is not None:
            return tuple(ast.literal_eval(value))
    raise ValueError(f"{source} has no REQUIRED_APIS")


class Doctor:
    """The checks of one stack for one caller. ``storage`` and ``registry`` default to the real clients."""

    def __init__(self, stack: StackOutputs, caller: Caller, endpoints: Endpoints | None = None,
                 storage: Client | None = None, registry: Registry | None = None, stack_args: str | None = None):
        from google.auth.transport.requests import AuthorizedSession

        self.stack = stack
        self.caller = caller
        self.endpoints = endpoints or Endpoints.from_env()
        self.http = AuthorizedSession(caller.credentials)
        self._storage = storage
        self.registry = registry or Registry(token=lambda: access_token(caller.credentials),
                                             base_url=self.endpoints.registry)
        self.stack_args = stack_args or f"--stack {stack.experiment}"

    @property
    def storage(self) -> Client:
        if self._storage is None:
            from google.cloud.storage import Client

            self._storage = Client(project=self.stack.project, credentials=self.caller.credentials)
        return self._storage

    def _call(self, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        response = self.http.request(method, url, timeout=TIMEOUT_S, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = {}
        return response.status_code, body

    def apis(self) -> Check:
        """Service Usage v1 services.batchGet (cloud.google.com/service-usage/docs/reference/rest/v1/services):
        every API the platform stack enables must be ENABLED."""
        name, project = "APIs enabled", self.stack.project
        try:
            wanted = required_apis()
        except (OSError, ValueError, SyntaxError) as error:
            return not_checked(name, f"the platform stack's API list is not readable here: {error}")
        status, body = self._call("GET", f"{self.endpoints.service_usage}/v1/projects/{project}/services:batchGet",
                                  params={"names": [f"projects/{project}/services/{api}" for api in wanted]})
        if status != 200:
            return failed(name, f"Service Usage answered {status}: {_message(body)}",
                          f"gcloud projects add-iam-policy-binding {project} --member={self.caller.member} "
                          "--role=roles/serviceusage.serviceUsageConsumer")
        enabled = {service["name"].rsplit("/", 1)[-1] for service in body.get("services", [])
                   if service.get("state") == "ENABLED"}
        missing = [api for api in wanted if api not in enabled]
        if missing:
            return failed(name, f"not enabled: {', '.join(missing)}",
                          f"gcloud services enable {' '.join(missing)} --project={project}")
        return ok(name, f"{len(wanted)} APIs of the platform stack")

    def _permissions(self, name: str, url: str, wanted: tuple[str, ...], fix: str, missing_fix: str) -> Check:
        status, body = self._call("POST", url, json={"permissions": list(wanted)})
        if status == 404:
            return failed(name, f"not found: {_message(body)}", missing_fix)
        if status != 200:
            return failed(name, f"testIamPermissions answered {status}: {_message(body)}", fix)
        lacking = [permission for permission in wanted if permission not in body.get("permissions", [])]
        if lacking:
            return failed(name, f"{self.caller.account or 'the caller'} lacks {', '.join(lacking)}", fix)
        return ok(name, ", ".join(wanted))

    def project_permissions(self) -> Check:
        return self._project_permissions("permissions: Vertex AI jobs", LAUNCH_PROJECT_PERMISSIONS, PROJECT_ROLE)

    def build_permissions(self) -> Check:
        return self._project_permissions("permissions: Cloud Build", BUILD_PROJECT_PERMISSIONS, BUILD_ROLE)

    def _project_permissions(self, name: str, wanted: tuple[str, ...], role: str) -> Check:
        """Resource Manager v3 projects.testIamPermissions
        (cloud.google.com/resource-manager/reference/rest/v3/projects/testIamPermissions)."""
        project = self.stack.project
        return self._permissions(
            name, f"{self.endpoints.resource_manager}/v3/projects/{project}:testIamPermissions", wanted,
            f"gcloud projects add-iam-policy-binding {project} --member={self.caller.member} --role={role}",
            f"gcloud projects describe {project}")

    def repository_permissions(self) -> Check:
        """Artifact Registry v1 projects.locations.repositories.testIamPermissions
        (cloud.google.com/artifact-registry/docs/reference/rest/v1/projects.locations.repositories)."""
        host, project, repository = self.stack.repository_url.split("/")[:3]
        location = host.removesuffix("-docker.pkg.dev")
        resource = f"projects/{project}/locations/{location}/repositories/{repository}"
        return self._permissions(
            "permissions: image repository",
            f"{self.endpoints.artifact_registry}/v1/{resource}:testIamPermissions", REPOSITORY_PERMISSIONS,
            f"gcloud artifacts repositories add-iam-policy-binding {repository} --location={location} "
            f"--project={project} --member={self.caller.member} --role={REPOSITORY_ROLE}",
            "pulumi -C infra up --stack PLATFORM_STACK")

    def service_account_permissions(self) -> Check:
        return self._act_as("permissions: act as the job account", self.stack.job_service_account,
                            self.stack.experiment)

    def build_account_permissions(self) -> Check:
        """Starting a build that runs as a user-specified service account needs actAs on it (Cloud Build
        "Configure user-specified service accounts"); `images build` names the platform's build account."""
        name = "permissions: act as the build account"
        if not self.stack.build_service_account:
            return not_checked(name, "the stack names no build account (made before it was exported): builds run "
                                     "as Cloud Build's default account")
        return self._act_as(name, self.stack.build_service_account, "PLATFORM_STACK")

    def _act_as(self, name: str, account: str, stack: str) -> Check:
        """IAM v1 projects.serviceAccounts.testIamPermissions."""
        return self._permissions(
            name, f"{self.endpoints.iam}/v1/projects/-/serviceAccounts/{account}:testIamPermissions",
            SERVICE_ACCOUNT_PERMISSIONS,
            f"gcloud iam service-accounts add-iam-policy-binding {account} --member={self.caller.member} "
            f"--role={SERVICE_ACCOUNT_ROLE}",
            f"pulumi -C infra up --stack {stack}")

    def bucket_permissions(self) -> Check:
        """Cloud Storage buckets.testIamPermissions, through google-cloud-storage's Bucket.test_iam_permissions."""
        from google.api_core import exceptions

        name, bucket = "permissions: bucket", self.stack.bucket
        fix = (f"gcloud storage buckets add-iam-policy-binding gs://{bucket} --member={self.caller.member} "
               f"--role={BUCKET_ROLE}")
        try:
            granted = self.storage.bucket(bucket).test_iam_permissions(list(BUCKET_PERMISSIONS), timeout=TIMEOUT_S)
        except exceptions.NotFound:
            return failed(name, f"bucket gs://{bucket} does not exist",
                          f"pulumi -C infra up --stack {self.stack.experiment}")
        except exceptions.GoogleAPICallError as error:
            return failed(name, f"gs://{bucket}: {error.message}", fix)
        lacking = [permission for permission in BUCKET_PERMISSIONS if permission not in granted]
        if lacking:
            return failed(name, f"{self.caller.account or 'the caller'} lacks {', '.join(lacking)}", fix)
        return ok(name, ", ".join(BUCKET_PERMISSIONS))

    def image(self, image: str, missing_ok: bool = False) -> Check:
        """The content-hash tag of the current source in the registry (the launcher builds it when missing,
        so ``missing_ok`` reports a missing tag as ✓ before a launch)."""
        from jobs.launch.context import build_context

        name = f"image: {image}"
        ref = self.stack.image(image, build_context(image).tag)
        try:
            digest = self.registry.digest(ref)
        except RegistryError as error:
            return failed(name, str(error),
                          f"grant {REPOSITORY_ROLE} (see the repository permissions check) and retry")
        if digest is None:
            if missing_ok:
                return ok(name, f"{ref} not built yet: the launch builds it")
            return failed(name, f"{ref} is not in the registry",
                          f"python -m jobs images build {self.stack_args} --image {image}")
        return ok(name, ref)

    def data(self, data_uri: str | None = None) -> Check:
        """``dataset.json`` of the prepared data under the stack's data prefix (or ``data_uri``)."""
        from google.api_core import exceptions

        data_uri = data_uri or self.stack.data_uri()
        bucket, prefix = split_uri(data_uri)
        fix = f"python -m jobs data prepare --input LABELS --images IMAGES --out {data_uri}"
        try:
            blob = self.storage.bucket(bucket).get_blob(f"{prefix}/dataset.json".lstrip("/"), timeout=TIMEOUT_S)
        except exceptions.NotFound:
            return failed("dataset", f"bucket gs://{bucket} does not exist", fix)
        except exceptions.GoogleAPICallError as error:
            return failed("dataset", f"{data_uri}: {error.message}", fix)
        if blob is None:
            return failed("dataset", f"no prepared data at {data_uri} (dataset.json missing)", fix)
        return ok("dataset", f"{data_uri}/dataset.json")

    def quota(self, accelerator_name: str) -> Check:
        """The region's Vertex AI custom-training quota of the accelerator against what one replica needs, on
        demand: Service Usage v1beta1 services.consumerQuotaMetrics.get
        (cloud.google.com/service-usage/docs/reference/rest/v1beta1/services.consumerQuotaMetrics, the
        discovery document of the pinned google-api-python-client, revision 20260921), which gives each limit's
        ``effectiveLimit`` per ``region`` bucket (-1 read as unlimited, as the API documents for overrides), not
        current usage. Not checked where no metric is known (``TRAINING_QUOTA_METRICS``) or the API has none.
        Spot is not told apart: no document names the quota a Spot training job uses."""
        from jobs.launch.accelerators import get_accelerator

        accelerator = get_accelerator(accelerator_name)
        name, project, region = f"quota: {accelerator_name}", self.stack.project, self.stack.region
        metric = training_quota_metric(accelerator.accelerator_type, accelerator.machine_type)
        console = f"https://console.cloud.google.com/iam-admin/quotas?project={project}"
        if metric is None:
            return not_checked(name, f"not checked: no documented Vertex AI training quota metric for "
                                     f"{accelerator_name}; see {console} (service Vertex AI API, region {region})")
        need = accelerator.accelerator_count or accelerator.cores  # v5e: chips, which its machine type names
        status, body = self._call(
            "GET", f"{self.endpoints.service_usage}/v1beta1/projects/{project}/services/{QUOTA_SERVICE}/"
                   f"consumerQuotaMetrics/{QUOTA_SERVICE}%2F{metric}")
        if status != 200:
            return not_checked(name, f"not checked: Service Usage answered {status} for {metric}: {_message(body)}")
        limit = _regional_limit(body, region)
        if limit is None:
            return not_checked(name, f"not checked: {metric} has no limit for {region}")
        if 0 <= limit < need:
            return failed(name, f"{metric} in {region}: limit {limit}, one replica needs {need}",
                          f"request more at {console}&metric={QUOTA_SERVICE}%2F{metric} (region {region}); "
                          "see cloud.google.com/docs/quotas/view-manage#requesting_higher_quota")
        return ok(name, f"{metric} in {region}: limit {'unlimited' if limit < 0 else limit} >= {need}")


def diagnose(load: Callable[[], StackOutputs], stack_args: str, accelerator: str,
             endpoints: Endpoints | None = None, storage: Client | None = None,
             registry: Registry | None = None) -> list[Check]:
    """Every check, in the order a launch meets them; those that need what an earlier one failed to give are
    reported as not checked."""
    from jobs.launch.accelerators import get_accelerator
    from jobs.launch.jobspec import image_for

    credentials, caller = check_credentials()
    given, _, value = stack_args.partition(" ")
    stack_check, stack = check_stack(load, f"pulumi -C infra up --stack {value}" if given == "--stack"
                                     else f"pulumi -C infra stack output --json --stack exp-NAME > {value}")
    checks = [credentials, stack_check]
    if caller is None or stack is None:
        needs = " and ".join(n for n, given in (("credentials", caller), ("stack outputs", stack)) if not given)
        return [*checks, not_checked("the other checks", f"they need the {needs}")]
    doctor = Doctor(stack, caller, endpoints, storage, registry, stack_args)
    images = dict.fromkeys((image_for("train", get_accelerator(accelerator)), "evaluator"))
    return [*checks, doctor.apis(), doctor.project_permissions(), doctor.build_permissions(),
            doctor.build_account_permissions(), doctor.bucket_permissions(), doctor.repository_permissions(),
            doctor.service_account_permissions(), *(doctor.image(image) for image in images), doctor.data(),
            doctor.quota(accelerator)]


def quick_checks(doctor: Doctor, image: str, data_uri: str | None) -> list[Check]:
    """What a launch needs, cheaply: the launch permissions, the registry reachable for the image, the data."""
    return [doctor.project_permissions(), doctor.bucket_permissions(), doctor.repository_permissions(),
            doctor.service_account_permissions(), doctor.image(image, missing_ok=True), doctor.data(data_uri)]


def preflight(stack: StackOutputs, image: str, data_uri: str | None, endpoints: Endpoints | None = None,
              storage: Client | None = None, registry: Registry | None = None) -> list[Check]:
    """The quick form, run by the Vertex AI launcher before it submits: PreflightError when a check fails."""
    credentials, caller = check_credentials()
    require([credentials])
    assert caller is not None  # the credentials check passed
    checks = [credentials, *quick_checks(Doctor(stack, caller, endpoints, storage, registry), image, data_uri)]
    require(checks)
    return checks


def require(checks: list[Check]) -> None:
    """Raise PreflightError naming every failed check and its fix."""
    problems = [check for check in checks if check.failed]
    if problems:
        lines = "\n".join(f"  ✗ {c.name}: {c.detail}\n    fix: {c.fix}" for c in problems)
        raise PreflightError(f"not launched, {len(problems)} check(s) failed:\n{lines}\n"
                             "(`python -m jobs doctor` runs every check)")


def _regional_limit(body: dict[str, Any], region: str) -> int | None:
    """The smallest effectiveLimit over a ConsumerQuotaMetric's limits that applies in ``region``: its bucket
    whose dimensions name the region, else its global bucket (no dimensions); -1 (unlimited) when every one that
    applies is; None when none applies."""
    limits = []
    for quota_limit in body.get("consumerQuotaLimits", []):
        buckets = quota_limit.get("quotaBuckets", [])
        regional = [b for b in buckets if b.get("dimensions", {}).get("region") == region]
        bucket = next(iter(regional or [b for b in buckets if not b.get("dimensions")]), None)
        if bucket is not None and "effectiveLimit" in bucket:
            limits.append(int(bucket["effectiveLimit"]))
    bounded = [limit for limit in limits if limit >= 0]
    return min(bounded) if bounded else (-1 if limits else None)


def _message(body: dict[str, Any]) -> str:
    error = body.get("error")
    return error.get("message", "") if isinstance(error, dict) else str(body)[:200]
