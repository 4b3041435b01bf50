"""One experiment stack: its bucket and its job service account, isolated from every other experiment.

The job service account can write to its own bucket only (bucket-level grants) and, when TensorBoard is on,
upload training curves. Nothing it can write belongs to another experiment, except the curves it adds to the
platform's shared TensorBoard instance. The platform's build account may read the bucket's build sources only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp
from naming import StackNames

from jobs.stack import BUILD_SOURCES, EXPERIMENT_ROLE, ROLE_OUTPUT, output_names

DATA = "data"
RUNS = "runs"
# Training checkpoints: the only prefix the bucket expires on its own (exported models and metrics under
# `runs/` are kept). A GCS lifecycle condition can only match literal name prefixes, and TensorFlow checkpoints
# and SavedModel variables share their suffixes (`.index`, `.data-00000-of-00001`), hence a prefix of their own.
CHECKPOINTS = "checkpoints"

# The platform outputs an experiment reads, by StackReference output name.
PLATFORM_OUTPUTS = ("project", "region", "repositoryId", "repositoryUrl", "cloudBuildServiceAccount", "tensorboard",
                    "tensorboardWriterRole", "tensorboardBlobStoragePrefix")


@dataclass(frozen=True)
class ExperimentArgs:
    """Inputs of an experiment: where it lives, the platform it uses, bucket retention and who may launch."""

    project: str
    region: str
    names: StackNames
    platform_stack: str
    protect_bucket: bool
    noncurrent_version_days: int
    checkpoint_retention_days: int
    soft_delete_days: int
    tensorboard: bool
    launcher: str | None = None


class Experiment(pulumi.ComponentResource):
    """A bucket, a job service account and the grants that tie them to the platform."""

    def __init__(self, name: str, args: ExperimentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("detector:infra:Experiment", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.platform = pulumi.StackReference(f"{name}-platform", stack_name=args.platform_stack, opts=child)
        platform = {key: _platform_output(self.platform, key, args.platform_stack) for key in PLATFORM_OUTPUTS}
        # Every resource takes its project from this check, so none is created in the wrong project.
        self.project = platform["project"].apply(lambda project: _same_project(args, project))

        self.bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            name=args.names.bucket,
            project=self.project,
            location=args.region.upper(),
            storage_class="STANDARD",
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            lifecycle_rules=[
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        with_state="ARCHIVED",
                        days_since_noncurrent_time=args.noncurrent_version_days,
                    ),
                ),
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        with_state="LIVE",
                        age=args.checkpoint_retention_days,
                        matches_prefixes=[f"{CHECKPOINTS}/"],
                    ),
                ),
            ],
            # Soft delete keeps deleted and overwritten objects for 7 days unless set ("Soft delete", Cloud Storage
            # docs): on top of the noncurrent versions, for checkpoints that rotate all day. 0 turns it off.
            soft_delete_policy=gcp.storage.BucketSoftDeletePolicyArgs(
                retention_duration_seconds=args.soft_delete_days * 86400,
            ),
            labels=args.names.labels,
            # Protected by default: `pulumi destroy` forgets the bucket and leaves it, with its data, in GCP.
            force_destroy=not args.protect_bucket,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.protect_bucket),
        )

        self.job_account = gcp.serviceaccount.Account(
            f"{name}-job",
            project=self.project,
            account_id=args.names.job_account,
            display_name=f"Detector jobs of {args.names.stack}",
            description=f"Runs the Vertex AI jobs of experiment {args.names.stack}; writes only its own bucket.",
            opts=child,
        )
        member = self.job_account.member

        self.bucket_grants = [
            # objectAdmin: read data, write and delete checkpoints and runs. legacyBucketReader adds
            # storage.buckets.get, which TensorFlow's GCS filesystem calls when it creates directories.
            gcp.storage.BucketIAMMember(
                f"{name}-job-{role.split('.')[-1]}", bucket=self.bucket.name, role=role, member=member, opts=child
            )
            for role in ("roles/storage.objectAdmin", "roles/storage.legacyBucketReader")
        ]
        # Vertex AI pulls the job images as its service agent, never as the job's account ("Use a custom service
        # account", Vertex AI docs): the platform grants the agent; the job account gets no repository role.
        build_account = platform["cloudBuildServiceAccount"]
        self.build_source_read = gcp.storage.BucketIAMMember(
            f"{name}-build-sources",
            bucket=self.bucket.name,
            role="roles/storage.objectViewer",
            member=build_account.apply(lambda email: f"serviceAccount:{email}"),
            condition=gcp.storage.BucketIAMMemberConditionArgs(
                title="build-sources-only",
                description=f"Only the Cloud Build sources under {BUILD_SOURCES}/.",
                expression=self.bucket.name.apply(
                    lambda bucket: f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/{BUILD_SOURCES}/")'
                ),
            ),
            opts=child,
        )

        self.tensorboard = pulumi.Output.all(platform["tensorboard"], platform["region"]).apply(
            lambda values: _tensorboard(args, *values)
        )
        self.tensorboard_writer: gcp.projects.IAMMember | None = None
        self.tensorboard_blobs: gcp.storage.BucketIAMMember | None = None
        if args.tensorboard:
            # The role waits for the TensorBoard check, so a misconfigured stack grants nothing.
            self.tensorboard_writer = gcp.projects.IAMMember(
                f"{name}-job-tensorboard",
                project=self.project,
                role=pulumi.Output.all(self.tensorboard, platform["tensorboardWriterRole"]).apply(
                    lambda values: values[1]
                ),
                member=member,
                opts=child,
            )
            # The uploader writes blob data (images, graphs) as the job's account under the instance's blob
            # storage prefix, `BUCKET/FOLDER` (Vertex AI `Tensorboard.blobStoragePathPrefix`; the aiplatform
            # uploader uploads there with the job's credentials). Creating objects there is all it needs.
            blob_prefix = platform["tensorboardBlobStoragePrefix"].apply(lambda prefix: (prefix + "/").split("/", 1))
            self.tensorboard_blobs = gcp.storage.BucketIAMMember(
                f"{name}-job-tensorboard-blobs",
                bucket=blob_prefix.apply(lambda parts: parts[0]),
                role="roles/storage.objectCreator",
                member=member,
                condition=gcp.storage.BucketIAMMemberConditionArgs(
                    title="tensorboard-blobs-only",
                    description="Only the blob data of the platform's TensorBoard instance.",
                    expression=blob_prefix.apply(
                        lambda parts: f'resource.name.startsWith("projects/_/buckets/{parts[0]}/objects/{parts[1]}")'
                    ),
                ),
                opts=child,
            )

        # Dataflow workers of `data prepare --engine dataflow` run as an account of their own: the worker role on
        # the project (what a worker VM needs to run its share of a job), and objects of this bucket. The worker
        # role holds storage.buckets.get, storage.objects.create and storage.objects.get ("Dataflow roles and
        # permissions", IAM docs) and can only be granted on the project, so these workers can read objects of
        # the project's other buckets by name and add new ones there (not list, replace or delete: no
        # storage.objects.list or .delete). A custom role without that part is not an option: Dataflow checks
        # before a job starts that the account holds "All permissions in IAM role roles/dataflow.worker"
        # ("Troubleshoot Dataflow permissions").
        self.dataflow_account = gcp.serviceaccount.Account(
            f"{name}-dataflow",
            project=self.project,
            account_id=args.names.dataflow_account,
            display_name=f"Detector Dataflow workers of {args.names.stack}",
            description=f"Runs the Dataflow workers of experiment {args.names.stack}.",
            opts=child,
        )
        self.dataflow_worker = gcp.projects.IAMMember(
            f"{name}-dataflow-worker",
            project=self.project,
            role="roles/dataflow.worker",
            member=self.dataflow_account.member,
            opts=child,
        )
        self.dataflow_bucket = gcp.storage.BucketIAMMember(
            f"{name}-dataflow-objects",
            bucket=self.bucket.name,
            role="roles/storage.objectAdmin",
            member=self.dataflow_account.member,
            opts=child,
        )
        # The workers pull the worker image (--sdk_container_image) from the platform's repository ("Use custom
        # containers in Dataflow": "Dataflow launches workers that pull the specified image"), as this account: a
        # user-managed account gets no Artifact Registry access by itself ("Deploy to ...", Artifact Registry docs:
        # "You must configure or modify permissions yourself if ... using a custom service account"). Reader is what
        # pulling takes (artifactregistry.repositories.downloadArtifacts), not the Writer that Dataflow's security
        # page suggests for uploads.
        self.dataflow_images = gcp.artifactregistry.RepositoryIamMember(
            f"{name}-dataflow-images",
            project=self.project,
            location=platform["region"],
            repository=platform["repositoryId"],
            role="roles/artifactregistry.reader",
            member=self.dataflow_account.member,
            opts=child,
        )

        self.launcher_grants: list[pulumi.CustomResource] = []
        if args.launcher:
            # Creating a job or a build that runs as an account needs iam.serviceAccounts.actAs on it ("Use a
            # custom service account", Vertex AI docs; "Configure user-specified service accounts", Cloud Build
            # docs). The launcher checks image tags with its own credentials, hence read on the repository.
            build_account_name = pulumi.Output.all(self.project, build_account).apply(
                lambda values: f"projects/{values[0]}/serviceAccounts/{values[1]}"
            )
            self.launcher_grants = [
                gcp.serviceaccount.IAMMember(
                    f"{name}-launcher",
                    service_account_id=self.job_account.name,
                    role="roles/iam.serviceAccountUser",
                    member=args.launcher,
                    opts=child,
                ),
                gcp.serviceaccount.IAMMember(
                    f"{name}-launcher-build",
                    service_account_id=build_account_name,
                    role="roles/iam.serviceAccountUser",
                    member=args.launcher,
                    opts=child,
                ),
                # Submitting a Dataflow job needs roles/dataflow.developer, and actAs on its worker account.
                gcp.projects.IAMMember(
                    f"{name}-launcher-dataflow",
                    project=self.project,
                    role="roles/dataflow.developer",
                    member=args.launcher,
                    opts=child,
                ),
                gcp.serviceaccount.IAMMember(
                    f"{name}-launcher-dataflow-workers",
                    service_account_id=self.dataflow_account.name,
                    role="roles/iam.serviceAccountUser",
                    member=args.launcher,
                    opts=child,
                ),
                gcp.artifactregistry.RepositoryIamMember(
                    f"{name}-launcher-images",
                    project=self.project,
                    location=platform["region"],
                    repository=platform["repositoryId"],
                    role="roles/artifactregistry.reader",
                    member=args.launcher,
                    opts=child,
                ),
            ]

        # What a launch reads (jobs.stack.StackOutputs, by field; the output names are defined there).
        launch: dict[str, pulumi.Input[str]] = {
            "experiment": args.names.stack,
            "project": self.project,
            "region": args.region,
            "bucket": self.bucket.name,
            "data_prefix": self.bucket.name.apply(lambda bucket: f"gs://{bucket}/{DATA}"),
            "runs_prefix": self.bucket.name.apply(lambda bucket: f"gs://{bucket}/{RUNS}"),
            "checkpoints_prefix": self.bucket.name.apply(lambda bucket: f"gs://{bucket}/{CHECKPOINTS}"),
            "job_service_account": self.job_account.email,
            "repository_url": platform["repositoryUrl"],
            "tensorboard": self.tensorboard,
            "build_service_account": build_account,
            "dataflow_service_account": self.dataflow_account.email,
            # "" from a platform made before it had one: `data prepare --engine dataflow` then asks for `pulumi up`
            "dataflow_subnetwork": self.platform.get_output("dataflowSubnetwork").apply(lambda link: link or ""),
        }
        self.outputs: dict[str, pulumi.Input[str]] = {
            ROLE_OUTPUT: EXPERIMENT_ROLE,
            **output_names(launch),
            "platformStack": args.platform_stack,
        }
        self.register_outputs(self.outputs)


def _platform_output(platform: pulumi.StackReference, key: str, stack: str) -> pulumi.Output[Any]:
    """An output of the platform stack, or an error that says what to do: a platform made by an older version of
    this program lacks the output, and one made with another passphrase cannot be read (pulumi/examples#752)."""

    def present(value: Any) -> Any:
        if value is None:
            raise pulumi.RunError(
                f"platform stack {stack} has no output {key!r}: run `pulumi up --stack {stack}` first (a platform "
                "made by an older version of this program lacks it). If it has the output, this experiment cannot "
                "read it: give every stack of the project the same PULUMI_CONFIG_PASSPHRASE or secrets provider "
                "(infra/README.md).")
        return value

    return platform.get_output(key).apply(present)


def _same_project(args: ExperimentArgs, platform_project: str) -> str:
    if platform_project != args.project:
        raise pulumi.RunError(
            f"This experiment is configured for project {args.project!r}, but platform stack "
            f"{args.platform_stack} is in {platform_project!r}: pulumi config set gcp:project {platform_project}"
        )
    return args.project


def _tensorboard(args: ExperimentArgs, platform_tensorboard: str, platform_region: str) -> str:
    """The TensorBoard instance jobs of this experiment upload to, or "" when TensorBoard is off."""
    if not args.tensorboard:
        return ""
    if not platform_tensorboard:
        raise pulumi.RunError(
            f"detector:tensorboard is on, but platform stack {args.platform_stack} has no TensorBoard: "
            "pulumi config set detector:tensorboard false (or turn it on in the platform stack)"
        )
    if platform_region != args.region:
        raise pulumi.RunError(
            f"Vertex AI TensorBoard must be in the job's region: this experiment is in {args.region}, the "
            f"platform's TensorBoard in {platform_region}. Use gcp:region {platform_region}, or "
            "pulumi config set detector:tensorboard false"
        )
    return platform_tensorboard
