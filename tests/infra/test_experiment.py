"""Experiment stacks, run as `pulumi up` runs them under mocks, reading the platform stack's real outputs."""

from __future__ import annotations

import re

import pulumi
import pytest
from pulumi_harness import (
    PLATFORM_STACK,
    PROJECT,
    REGION,
    TENSORBOARD_BUCKET,
    TENSORBOARD_ID,
    Deployment,
    deploy,
    experiment_config,
    naming,
    platform_config,
)

from jobs.stack import StackOutputs

pytest_plugins = ["pulumi_fixtures"]

BUCKET = "gcp:storage/bucket:Bucket"
ACCOUNT = "gcp:serviceaccount/account:Account"
STACK_REFERENCE = "pulumi:pulumi:StackReference"
JOB = "serviceAccount:detector-exp-coco@acme-ml.iam.gserviceaccount.com"
BUILDER = "serviceAccount:detector-build-platform@acme-ml.iam.gserviceaccount.com"
WORKERS = "serviceAccount:detector-df-exp-coco@acme-ml.iam.gserviceaccount.com"
SUBNETWORK = ("https://www.googleapis.com/compute/v1/projects/acme-ml/regions/us-central1/subnetworks/"
              "detector-dataflow-platform")


def grants(deployment: Deployment) -> set[tuple[str, str, str, str]]:
    """(type, role, member, target) of every grant the stack makes."""
    found = set()
    for r in deployment.resources:
        target = r.inputs.get("bucket") or r.inputs.get("repository") or r.inputs.get("serviceAccountId")
        if "role" in r.inputs and "member" in r.inputs:
            found.add((r.type.rsplit(":", 1)[-1], r.inputs["role"], r.inputs["member"], target or r.inputs["project"]))
    return found


def test_bucket_is_regional_private_versioned_and_expires_old_data(experiment: Deployment) -> None:
    bucket = experiment.one(BUCKET)
    assert bucket.inputs == {
        "name": "acme-ml-detector-exp-coco",
        "project": PROJECT,
        "location": "US-CENTRAL1",
        "storageClass": "STANDARD",
        "uniformBucketLevelAccess": True,
        "publicAccessPrevention": "enforced",
        "versioning": {"enabled": True},
        "lifecycleRules": [
            {"action": {"type": "Delete"}, "condition": {"withState": "ARCHIVED", "daysSinceNoncurrentTime": 7}},
            {"action": {"type": "Delete"},
             "condition": {"withState": "LIVE", "age": 30, "matchesPrefixes": ["checkpoints/"]}},
        ],
        "softDeletePolicy": {"retentionDurationSeconds": 0},
        "labels": {"app": "detector", "experiment": "exp-coco", "managed-by": "pulumi"},
        "forceDestroy": False,
    }


def test_destroy_keeps_the_bucket_and_nothing_else(experiment: Deployment) -> None:
    assert [r.type for r in experiment.cloud if r.retain_on_delete] == [BUCKET]
    assert not any(r.protect for r in experiment.resources)


def test_unprotected_bucket_is_deleted_with_its_objects() -> None:
    platform = deploy("platform", platform_config())
    deployment = deploy("exp-tmp", experiment_config(protectBucket="false", noncurrentVersionDays="3",
                                                     checkpointRetentionDays="10", softDeleteDays="7"),
                        {PLATFORM_STACK: platform.outputs})
    bucket = deployment.one(BUCKET)
    assert bucket.inputs["forceDestroy"] is True
    assert bucket.inputs["softDeletePolicy"] == {"retentionDurationSeconds": 7 * 86400}
    assert not bucket.retain_on_delete
    assert [rule["condition"].get("daysSinceNoncurrentTime", rule["condition"].get("age"))
            for rule in bucket.inputs["lifecycleRules"]] == [3, 10]


def test_job_account_gets_exactly_its_bucket_and_tensorboard_the_builder_its_sources(
    experiment: Deployment,
) -> None:
    """No repository role (Vertex AI pulls images as its agent) and no project-wide log writing."""
    role = f"projects/acme-ml/roles/detectorTensorboardWriter_platform_{TENSORBOARD_ID}"
    assert grants(experiment) == {
        ("BucketIAMMember", "roles/storage.objectAdmin", JOB, "acme-ml-detector-exp-coco"),
        ("BucketIAMMember", "roles/storage.legacyBucketReader", JOB, "acme-ml-detector-exp-coco"),
        ("BucketIAMMember", "roles/storage.objectCreator", JOB, TENSORBOARD_BUCKET),
        ("IAMMember", role, JOB, PROJECT),
        ("BucketIAMMember", "roles/storage.objectViewer", BUILDER, "acme-ml-detector-exp-coco"),
        ("BucketIAMMember", "roles/storage.objectAdmin", WORKERS, "acme-ml-detector-exp-coco"),
        ("IAMMember", "roles/dataflow.worker", WORKERS, PROJECT),
        ("RepositoryIamMember", "roles/artifactregistry.reader", WORKERS, "detector-platform"),
    }
    accounts = {r.inputs["accountId"] for r in experiment.resources if r.type == ACCOUNT}
    assert accounts == {"detector-exp-coco", "detector-df-exp-coco"}


def test_conditional_grants_reach_one_prefix_only(experiment: Deployment) -> None:
    sources = experiment.one("gcp:storage/bucketIAMMember:BucketIAMMember", member=BUILDER)
    assert sources.inputs["condition"]["expression"] == (
        'resource.name.startsWith("projects/_/buckets/acme-ml-detector-exp-coco/objects/builds/")')
    blobs = experiment.one("gcp:storage/bucketIAMMember:BucketIAMMember", role="roles/storage.objectCreator")
    assert blobs.inputs["condition"]["expression"] == (
        f'resource.name.startsWith("projects/_/buckets/{TENSORBOARD_BUCKET}/objects/tensorboard-{TENSORBOARD_ID}/")')
    unconditional = [r for r in experiment.resources if "member" in r.inputs and "condition" not in r.inputs]
    assert {r.inputs["role"] for r in unconditional} == {
        "roles/storage.objectAdmin", "roles/storage.legacyBucketReader", "roles/dataflow.worker",
        "roles/artifactregistry.reader", f"projects/acme-ml/roles/detectorTensorboardWriter_platform_{TENSORBOARD_ID}"}


def test_launcher_may_act_as_the_job_and_build_accounts_and_read_the_images(other_experiment: Deployment) -> None:
    launcher = [r.inputs for r in other_experiment.resources if r.inputs.get("member") == "user:ana@example.com"]
    assert sorted(launcher, key=lambda grant: sorted(grant.items())) == sorted([
        {"serviceAccountId": "projects/acme-ml/serviceAccounts/detector-exp-voc@acme-ml.iam.gserviceaccount.com",
         "role": "roles/iam.serviceAccountUser", "member": "user:ana@example.com"},
        {"serviceAccountId": "projects/acme-ml/serviceAccounts/detector-build-platform@acme-ml.iam.gserviceaccount.com",
         "role": "roles/iam.serviceAccountUser", "member": "user:ana@example.com"},
        {"project": PROJECT, "location": REGION, "repository": "detector-platform",
         "role": "roles/artifactregistry.reader", "member": "user:ana@example.com"},
        {"project": PROJECT, "role": "roles/dataflow.developer", "member": "user:ana@example.com"},
        {"serviceAccountId": "projects/acme-ml/serviceAccounts/detector-df-exp-voc@acme-ml.iam.gserviceaccount.com",
         "role": "roles/iam.serviceAccountUser", "member": "user:ana@example.com"},
    ], key=lambda grant: sorted(grant.items()))


def test_reads_the_platform_through_one_stack_reference(experiment: Deployment, platform: Deployment) -> None:
    reference = experiment.one(STACK_REFERENCE)
    assert reference.inputs["name"] == PLATFORM_STACK
    assert experiment.outputs["repositoryUrl"] == platform.outputs["repositoryUrl"]
    assert experiment.outputs["buildServiceAccount"] == platform.outputs["cloudBuildServiceAccount"]
    assert experiment.outputs["tensorboard"] == platform.outputs["tensorboard"]
    writer = experiment.one("gcp:projects/iAMMember:IAMMember", role=platform.outputs["tensorboardWriterRole"])
    assert writer.inputs["project"] == platform.outputs["project"]


def test_outputs_are_everything_a_launch_needs(experiment: Deployment) -> None:
    """The launcher reads the outputs the program exports (the names are defined once, in jobs.stack)."""
    launch = StackOutputs.from_outputs(experiment.outputs, "exp-coco")
    assert launch == StackOutputs(
        experiment="exp-coco",
        project=PROJECT,
        region=REGION,
        bucket="acme-ml-detector-exp-coco",
        data_prefix="gs://acme-ml-detector-exp-coco/data",
        runs_prefix="gs://acme-ml-detector-exp-coco/runs",
        checkpoints_prefix="gs://acme-ml-detector-exp-coco/checkpoints",
        job_service_account="detector-exp-coco@acme-ml.iam.gserviceaccount.com",
        repository_url=f"{REGION}-docker.pkg.dev/{PROJECT}/detector-platform",
        tensorboard="projects/acme-ml/locations/us-central1/tensorboards/4242424242",
        build_service_account="detector-build-platform@acme-ml.iam.gserviceaccount.com",
        dataflow_service_account="detector-df-exp-coco@acme-ml.iam.gserviceaccount.com",
        dataflow_subnetwork=SUBNETWORK,
    )
    assert experiment.outputs == launch.to_outputs() | {"platformStack": PLATFORM_STACK}


def test_two_experiments_get_storage_roles_on_their_own_buckets_only(experiment: Deployment,
                                                                     other_experiment: Deployment) -> None:
    """Storage roles only: roles/dataflow.worker, granted on the project, also carries storage.objects.get and
    .create on every bucket (infra/README.md, Security: the documented exception)."""
    first, second = experiment.outputs, other_experiment.outputs
    assert first["bucket"] != second["bucket"]
    assert first["jobServiceAccount"] != second["jobServiceAccount"]
    for mine, theirs in ((experiment, other_experiment), (other_experiment, experiment)):
        writable = {target for _, role, _, target in grants(mine) if role.startswith("roles/storage.")}
        members = {member for _, _, member, _ in grants(mine)}
        # The one shared write surface: new blobs under the shared TensorBoard instance's prefix.
        assert writable == {mine.outputs["bucket"], TENSORBOARD_BUCKET}
        assert f"serviceAccount:{theirs.outputs['jobServiceAccount']}" not in members
    names = {(r.type, r.inputs.get("name") or r.inputs.get("accountId")) for r in experiment.cloud}
    other_names = {(r.type, r.inputs.get("name") or r.inputs.get("accountId")) for r in other_experiment.cloud}
    assert {n for n in names if n[1]} & {n for n in other_names if n[1]} == set()


def test_names_are_unique_within_a_stack(experiment: Deployment) -> None:
    urns = [r.urn for r in experiment.resources]
    assert len(urns) == len(set(urns)) == 13


def test_tensorboard_off_drops_its_grant() -> None:
    platform = deploy("platform", platform_config())
    deployment = deploy("exp-quiet", experiment_config(tensorboard="false"), {PLATFORM_STACK: platform.outputs})
    assert deployment.outputs["tensorboard"] == ""
    assert not any("TensorboardWriter" in r.inputs.get("role", "") for r in deployment.resources)


def test_experiment_may_run_in_another_region_without_tensorboard(platform: Deployment) -> None:
    config = experiment_config(tensorboard="false") | {"gcp:region": "us-west4"}
    deployment = deploy("exp-v5e", config, {PLATFORM_STACK: platform.outputs})
    assert deployment.one(BUCKET).inputs["location"] == "US-WEST4"
    assert deployment.outputs["region"] == "us-west4"
    assert not [r for r in deployment.resources if "tensorboard" in r.name]


@pytest.mark.parametrize(
    ("config", "platform_outputs", "says"),
    [
        (experiment_config() | {"gcp:project": "other-project"}, {}, "pulumi config set gcp:project acme-ml"),
        (experiment_config() | {"gcp:region": "europe-west4"}, {}, "Use gcp:region us-central1"),
        (experiment_config(), {"tensorboard": "", "tensorboardWriterRole": ""},
         "pulumi config set detector:tensorboard false"),
    ],
)
def test_mismatches_with_the_platform_fail_with_what_to_set(
    platform: Deployment, config: dict[str, str], platform_outputs: dict[str, str], says: str
) -> None:
    with pytest.raises(pulumi.RunError) as error:
        deploy("exp-wrong", config, {PLATFORM_STACK: platform.outputs | platform_outputs})
    assert says in str(error.value)


def test_a_platform_output_it_cannot_read_fails_saying_what_to_do(platform: Deployment) -> None:
    outputs = {k: v for k, v in platform.outputs.items() if k != "repositoryId"}
    with pytest.raises(pulumi.RunError) as error:
        deploy("exp-old", experiment_config(), {PLATFORM_STACK: outputs})
    message = str(error.value)
    assert f"platform stack {PLATFORM_STACK} has no output 'repositoryId'" in message
    assert f"pulumi up --stack {PLATFORM_STACK}" in message and "same PULUMI_CONFIG_PASSPHRASE" in message


@pytest.mark.parametrize(
    "stack", ["a", "exp-coco", "Exp_COCO.v2", "exp-" + "x" * 80, "exp-coco-retinanet-resnet50-fpn-640-bf16"]
)
def test_gcp_names_fit_gcp_rules_for_any_stack_name(stack: str) -> None:
    names = naming.StackNames(project="a-project-id-of-thirty-chars-x", stack=stack)
    assert re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", names.job_account), names.job_account
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", names.bucket), names.bucket
    assert re.fullmatch(r"[a-z][a-z0-9-]{0,62}", names.repository), names.repository
    role = names.tensorboard_writer_role("1234567890123456789")
    assert re.fullmatch(r"[a-zA-Z0-9_.]{3,64}", role), role
    assert re.fullmatch(r"[a-z0-9_-]{1,63}", names.labels["experiment"]), names.labels["experiment"]


def test_distinct_stack_names_never_share_a_gcp_name() -> None:
    stacks = ["exp-a", "exp_a", "Exp-A", "exp-" + "x" * 40, "exp-" + "x" * 41]
    for attribute in ("bucket", "job_account", "build_account", "repository", "experiment_label"):
        values = [getattr(naming.StackNames(project=PROJECT, stack=s), attribute) for s in stacks]
        assert len(set(values)) == len(stacks), (attribute, values)
    roles = {naming.StackNames(project=PROJECT, stack=s).tensorboard_writer_role("42") for s in stacks}
    assert len(roles) == len(stacks)


def test_an_older_platform_without_a_dataflow_subnetwork_still_deploys(platform: Deployment) -> None:
    older = {key: value for key, value in platform.outputs.items() if key != "dataflowSubnetwork"}
    deployed = deploy("exp-old", experiment_config(), {PLATFORM_STACK: older})
    assert StackOutputs.from_outputs(deployed.outputs, "exp-old").dataflow_subnetwork == ""
