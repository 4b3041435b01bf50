"""The platform stack, run as `pulumi up` runs it under mocks: APIs, repository, service agents, grants."""

from __future__ import annotations

import pytest
from pulumi_harness import (
    PLATFORM_STACK,
    PROJECT,
    PROJECT_NUMBER,
    REGION,
    TENSORBOARD_BUCKET,
    TENSORBOARD_ID,
    Deployment,
    deploy,
    experiment_config,
    platform_config,
    platform_stack,
    settings,
)

pytest_plugins = ["pulumi_fixtures"]

SERVICE = "gcp:projects/service:Service"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
IAM_TYPES = {
    "gcp:projects/iAMMember:IAMMember",
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
    "gcp:storage/bucketIAMMember:BucketIAMMember",
    "gcp:serviceaccount/iAMMember:IAMMember",
}
VERTEX_AGENT = f"service-{PROJECT_NUMBER}@gcp-sa-aiplatform.iam.gserviceaccount.com"
CLOUD_BUILD = f"detector-build-platform@{PROJECT}.iam.gserviceaccount.com"
ROLE = f"projects/{PROJECT}/roles/detectorTensorboardWriter_platform_{TENSORBOARD_ID}"


def grants(deployment: Deployment) -> set[tuple[str, str, str]]:
    return {(r.type.rsplit(":", 1)[-1], r.inputs["role"], r.inputs["member"]) for r in deployment.resources
            if r.type in IAM_TYPES}


def test_enables_every_api_with_a_reason_and_never_disables_one(platform: Deployment) -> None:
    services = platform.of_type(SERVICE)
    assert {s.inputs["service"] for s in services} == set(platform_stack.REQUIRED_APIS)
    assert {"aiplatform.googleapis.com", "storage.googleapis.com", "artifactregistry.googleapis.com",
            "cloudbuild.googleapis.com", "iam.googleapis.com", "iamcredentials.googleapis.com",
            "logging.googleapis.com"} <= set(platform_stack.REQUIRED_APIS)
    # Dataflow runs its workers on Compute Engine: both are enabled, with that reason written down.
    assert {"dataflow.googleapis.com", "compute.googleapis.com"} <= set(platform_stack.REQUIRED_APIS)
    assert "Dataflow" in platform_stack.REQUIRED_APIS["compute.googleapis.com"]
    assert all(reason.strip() for reason in platform_stack.REQUIRED_APIS.values())
    assert [s.inputs["disableOnDestroy"] for s in services] == [False] * len(platform_stack.REQUIRED_APIS)
    assert {s.inputs["project"] for s in services} == {PROJECT}


@pytest.mark.parametrize(
    ("name", "apis"),
    [
        ("platform-images", {"artifactregistry"}),
        ("platform-vertex-agent", {"aiplatform"}),
        ("platform-vertex-agent-role", {"cloudresourcemanager"}),
        ("platform-vertex-agent-pull", {"artifactregistry"}),
        ("platform-build", {"iam"}),
        ("platform-cloudbuild-push", {"artifactregistry", "cloudbuild"}),
        ("platform-cloudbuild-logs", {"cloudresourcemanager", "logging"}),
        ("platform-tensorboard", {"aiplatform"}),
        ("platform-tensorboard-writer", {"iam"}),
        ("platform-dataflow-network", {"compute"}),
        ("platform-dataflow-subnet", {"compute"}),
        ("platform-dataflow-workers", {"compute"}),
    ],
)
def test_every_resource_waits_for_the_apis_it_needs(platform: Deployment, name: str, apis: set[str]) -> None:
    api_urns = {platform.urn_of(SERVICE, service=f"{api}.googleapis.com") for api in apis}
    (resource,) = [r for r in platform.cloud if r.name == name]
    assert api_urns <= resource.dependencies


def test_every_cloud_resource_is_covered_by_an_api_dependency(platform: Deployment) -> None:
    others = [r for r in platform.cloud if r.type != SERVICE]
    service_urns = {s.urn for s in platform.of_type(SERVICE)}
    assert len(others) == 12
    assert all(r.dependencies & service_urns for r in others)
    assert platform.invokes == ["gcp:organizations/getProject:getProject"]


def test_repository_is_docker_with_a_cleanup_policy(platform: Deployment) -> None:
    repository = platform.one(REPOSITORY)
    assert repository.inputs | {"cleanupPolicies": None} == {
        "project": PROJECT,
        "location": REGION,
        "repositoryId": "detector-platform",
        "format": "DOCKER",
        "description": "Training images of the detector.",
        "labels": {"app": "detector", "experiment": "platform", "managed-by": "pulumi"},
        "cleanupPolicyDryRun": False,
        "cleanupPolicies": None,
    }
    assert repository.inputs["cleanupPolicies"] == [
        {"id": "keep-newest-versions", "action": "KEEP", "mostRecentVersions": {"keepCount": 10}},
        {"id": "delete-old-versions", "action": "DELETE", "condition": {"tagState": "ANY", "olderThan": "2592000s"}},
        {"id": "delete-old-untagged", "action": "DELETE",
         "condition": {"tagState": "UNTAGGED", "olderThan": "604800s"}},
    ]


def test_cleanup_policy_follows_config() -> None:
    config = platform_config(keepImageVersions="3", imageRetentionDays="14", untaggedImageDays="2")
    policies = deploy("platform", config).one(REPOSITORY).inputs["cleanupPolicies"]
    assert policies[0]["mostRecentVersions"] == {"keepCount": 3}
    assert policies[1]["condition"] == {"tagState": "ANY", "olderThan": f"{14 * 86400}s"}
    assert policies[2]["condition"]["olderThan"] == "172800s"


def test_grants_exactly_what_vertex_jobs_and_cloud_build_need(platform: Deployment) -> None:
    assert grants(platform) == {
        ("IAMMember", "roles/aiplatform.serviceAgent", f"serviceAccount:{VERTEX_AGENT}"),
        ("RepositoryIamMember", "roles/artifactregistry.reader", f"serviceAccount:{VERTEX_AGENT}"),
        ("RepositoryIamMember", "roles/artifactregistry.writer", f"serviceAccount:{CLOUD_BUILD}"),
        ("IAMMember", "roles/logging.logWriter", f"serviceAccount:{CLOUD_BUILD}"),
    }
    repository_grants = platform.of_type("gcp:artifactregistry/repositoryIamMember:RepositoryIamMember")
    assert {r.inputs["repository"] for r in repository_grants} == {"detector-platform"}
    account = platform.one("gcp:serviceaccount/account:Account")
    assert (account.inputs["accountId"], account.inputs["project"]) == ("detector-build-platform", PROJECT)
    assert platform.one("gcp:projects/serviceIdentity:ServiceIdentity").inputs["service"] == (
        "aiplatform.googleapis.com"
    )


def test_destroy_keeps_the_vertex_agent_role_that_google_manages(platform: Deployment) -> None:
    kept = [r.name for r in platform.cloud if r.retain_on_delete]
    assert kept == ["platform-vertex-agent-role"]


def test_tensorboard_and_its_least_privilege_writer_role(platform: Deployment) -> None:
    tensorboard = platform.one("gcp:vertex/aiTensorboard:AiTensorboard")
    assert tensorboard.inputs["region"] == REGION
    assert tensorboard.inputs["labels"]["experiment"] == "platform"
    role = platform.one("gcp:projects/iAMCustomRole:IAMCustomRole")
    # The role id ends in the instance id: a platform made again (new instance) never reuses a deleted role id.
    assert role.inputs["roleId"] == f"detectorTensorboardWriter_platform_{TENSORBOARD_ID}"
    assert role.inputs["permissions"] == list(platform_stack.TENSORBOARD_WRITER_PERMISSIONS)
    assert all(p.startswith("aiplatform.tensorboard") and "*" not in p for p in role.inputs["permissions"])
    assert not any(p.startswith("aiplatform.customJobs") for p in role.inputs["permissions"])


def test_outputs(platform: Deployment) -> None:
    assert platform.outputs == {
        "role": "platform",
        "project": PROJECT,
        "projectNumber": PROJECT_NUMBER,
        "region": REGION,
        "repositoryId": "detector-platform",
        "repositoryUrl": f"{REGION}-docker.pkg.dev/{PROJECT}/detector-platform",
        "vertexServiceAgent": VERTEX_AGENT,
        "tpuServiceAgent": f"service-{PROJECT_NUMBER}@cloud-tpu.iam.gserviceaccount.com",
        "cloudBuildServiceAccount": CLOUD_BUILD,
        "tensorboard": f"projects/{PROJECT}/locations/{REGION}/tensorboards/{TENSORBOARD_ID}",
        "tensorboardWriterRole": ROLE,
        "tensorboardBlobStoragePrefix": f"{TENSORBOARD_BUCKET}/tensorboard-{TENSORBOARD_ID}",
        "dataflowSubnetwork": f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/regions/{REGION}/"
                              "subnetworks/detector-dataflow-platform",
    }


def test_dataflow_workers_get_a_private_network_of_their_own(platform: Deployment) -> None:
    """A custom-mode VPC, a subnetwork with Private Google Access, one rule: workers to workers on 12345-12346."""
    (network,) = platform.of_type("gcp:compute/network:Network")
    assert network.inputs["autoCreateSubnetworks"] is False
    (subnet,) = platform.of_type("gcp:compute/subnetwork:Subnetwork")
    assert subnet.inputs["region"] == REGION
    assert subnet.inputs["privateIpGoogleAccess"] is True
    assert subnet.inputs["network"] == f"projects/{PROJECT}/global/networks/detector-dataflow-platform"
    rules = platform.of_type("gcp:compute/firewall:Firewall")
    assert [rule.inputs for rule in rules] == [{
        "project": PROJECT, "name": "detector-dataflow-platform-workers", "network": subnet.inputs["network"],
        "direction": "INGRESS", "allows": [{"protocol": "tcp", "ports": ["12345-12346"]}],
        "sourceTags": ["dataflow"], "targetTags": ["dataflow"],
        "description": "Dataflow workers to Dataflow workers (shuffle and streaming), nothing else."}]
    assert not any("sourceRanges" in rule.inputs for rule in rules)  # nothing open to any address range


def test_tensorboard_off(platform_without_tensorboard: Deployment) -> None:
    types = {r.type for r in platform_without_tensorboard.resources}
    assert "gcp:vertex/aiTensorboard:AiTensorboard" not in types
    assert "gcp:projects/iAMCustomRole:IAMCustomRole" not in types
    assert platform_without_tensorboard.outputs["tensorboard"] == ""
    assert platform_without_tensorboard.outputs["tensorboardWriterRole"] == ""
    assert platform_without_tensorboard.outputs["tensorboardBlobStoragePrefix"] == ""


def test_cloud_build_account_can_be_configured() -> None:
    account = f"{PROJECT_NUMBER}-compute@developer.gserviceaccount.com"
    deployment = deploy("platform", platform_config(cloudBuildServiceAccount=account))
    assert not deployment.of_type("gcp:serviceaccount/account:Account")
    push = deployment.one("gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
                          role="roles/artifactregistry.writer")
    logs = deployment.one("gcp:projects/iAMMember:IAMMember", role="roles/logging.logWriter")
    assert push.inputs["member"] == logs.inputs["member"] == f"serviceAccount:{account}"
    assert deployment.outputs["cloudBuildServiceAccount"] == account


def test_two_platform_stacks_use_distinct_names() -> None:
    staging = deploy("staging", platform_config())
    assert staging.one(REPOSITORY).inputs["repositoryId"] == "detector-staging"
    assert staging.one("gcp:projects/iAMCustomRole:IAMCustomRole").inputs["roleId"] == (
        f"detectorTensorboardWriter_staging_{TENSORBOARD_ID}"
    )
    assert staging.one("gcp:serviceaccount/account:Account").inputs["accountId"] == "detector-build-staging"


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"gcp:region": REGION, "detector:role": "platform"}, "pulumi config set gcp:project"),
        ({"gcp:project": PROJECT, "detector:role": "platform"}, "pulumi config set gcp:region"),
        (platform_config() | {"gcp:region": "us-central1-a"}, "pulumi config set gcp:region us-central1"),
        ({"gcp:project": PROJECT, "gcp:region": REGION}, "pulumi config set detector:role platform"),
        (platform_config(role="shared"), "pulumi config set detector:role experiment"),
        (platform_config(tensorboard="yes"), "pulumi config set detector:tensorboard true"),
        (platform_config(keepImageVersions="0"), "pulumi config set detector:keepImageVersions 10"),
        (platform_config(cloudBuildServiceAccount="builder"), "pulumi config set detector:cloudBuildServiceAccount"),
        (experiment_config() | {"detector:platformStack": "platform"}, "ORGANIZATION/detector/PLATFORM_STACK"),
        (experiment_config(launcher="ana@example.com"), "pulumi config set detector:launcher user:"),
        (experiment_config(launcher="allUsers"), "pulumi config set detector:launcher user:"),
        (experiment_config(protectBucket="no"), "pulumi config set detector:protectBucket true"),
        (experiment_config(checkpointRetentionDays="-3"), "pulumi config set detector:checkpointRetentionDays 30"),
        (experiment_config(softDeleteDays="3"), "pulumi config set detector:softDeleteDays 0"),
        (platform_config(imageRetentionDays="0"), "pulumi config set detector:imageRetentionDays 30"),
    ],
)
def test_configuration_errors_say_what_to_set(config: dict[str, str], says: str) -> None:
    with pytest.raises(settings.SettingsError) as error:
        deploy("broken", config, {PLATFORM_STACK: {}})
    assert says in str(error.value)


def test_a_second_pulumi_up_declares_the_same_resources(platform: Deployment) -> None:
    """The documented recovery from a propagation race on a new project is `pulumi up` again: the program must
    declare exactly the same resources and inputs the second time."""
    again = deploy("platform", platform_config())
    declared = {r.urn: r.inputs for r in platform.resources}
    assert {r.urn: r.inputs for r in again.resources} == declared
    assert len(declared) == len(platform.resources) == 23
