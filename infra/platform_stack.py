"""The shared platform stack: project APIs, the image repository, its build account, Vertex AI service agents,
optional TensorBoard.

One per project and region. Experiment stacks read its outputs through a StackReference and add their own
non-authoritative grants to what it owns; nothing here is specific to one experiment.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
from naming import StackNames

from jobs.stack import PLATFORM_ROLE, ROLE_OUTPUT

# Every API the project needs, and why. Disabling an API on destroy would break whatever else uses it in the
# project (and other stacks), so `disable_on_destroy` is always false.
REQUIRED_APIS: dict[str, str] = {
    "aiplatform.googleapis.com": "Vertex AI: custom training jobs (GPU and TPU VMs) and the TensorBoard instance.",
    "artifactregistry.googleapis.com": "Artifact Registry: the Docker repository of the training images.",
    "cloudbuild.googleapis.com": "Cloud Build: builds and pushes the training image without a local Docker.",
    "compute.googleapis.com": "Compute Engine: the Dataflow workers' VMs, network, subnetwork and firewall rule. "
    "Left out before, when nothing needed it (Vertex AI and Cloud Build do without); Dataflow runs its workers "
    "on Compute Engine and its setup enables this API with it.",
    "dataflow.googleapis.com": "Dataflow: `data prepare --engine dataflow` jobs.",
    "cloudresourcemanager.googleapis.com": "Resource Manager: the project number and the project IAM policy "
    "that every project-level IAMMember edits.",
    "iam.googleapis.com": "IAM: the build and job service accounts and the TensorBoard writer role.",
    "iamcredentials.googleapis.com": "IAM Service Account Credentials: short-lived tokens, so that Vertex AI "
    "and launchers act as a job service account without any key.",
    "logging.googleapis.com": "Cloud Logging: the logs of the training jobs.",
    "storage.googleapis.com": "Cloud Storage: the experiment buckets (data, checkpoints, runs).",
}
RESOURCE_MANAGER = "cloudresourcemanager.googleapis.com"
COMPUTE = "compute.googleapis.com"
DATAFLOW_SUBNET_RANGE = "10.128.0.0/20"  # the workers' private addresses; nothing else lives in this network
# Dataflow workers exchange data (shuffle, streaming) with each other on TCP 12345 and 12346; a network of one's
# own must allow it between the workers, which carry the network tag `dataflow` ("Configure internet access and
# firewall rules", Dataflow docs).
DATAFLOW_WORKER_PORTS = ["12345-12346"]
DATAFLOW_TAG = "dataflow"

# The permissions the TensorBoard uploader of a Vertex AI custom job uses, as the job's service account: find the
# instance (and its blob storage prefix), create and find the experiment, its runs and time series, and write data
# points (the IAM permissions of each method in the Vertex AI REST reference, projects.locations.tensorboards.*).
# "Set up Vertex AI TensorBoard" grants that account roles/aiplatform.user and roles/storage.admin on the project
# instead: aiplatform.user would also let a job start other jobs (as the Vertex AI Custom Code Service Agent, which
# can read every bucket of the project), storage.admin would open every experiment's bucket. The blob data (images,
# graphs) is written to the instance's blob storage prefix; experiments grant that write on the prefix alone.
TENSORBOARD_WRITER_PERMISSIONS: tuple[str, ...] = (
    "aiplatform.tensorboards.get",
    "aiplatform.tensorboards.list",
    "aiplatform.tensorboardExperiments.create",
    "aiplatform.tensorboardExperiments.get",
    "aiplatform.tensorboardExperiments.list",
    "aiplatform.tensorboardExperiments.update",
    "aiplatform.tensorboardExperiments.write",
    "aiplatform.tensorboardRuns.batchCreate",
    "aiplatform.tensorboardRuns.create",
    "aiplatform.tensorboardRuns.get",
    "aiplatform.tensorboardRuns.list",
    "aiplatform.tensorboardRuns.update",
    "aiplatform.tensorboardRuns.write",
    "aiplatform.tensorboardTimeSeries.batchCreate",
    "aiplatform.tensorboardTimeSeries.create",
    "aiplatform.tensorboardTimeSeries.get",
    "aiplatform.tensorboardTimeSeries.list",
    "aiplatform.tensorboardTimeSeries.update",
)


@dataclass(frozen=True)
class PlatformArgs:
    """Inputs of the platform: where it lives and the repository, TensorBoard and Cloud Build options."""

    project: str
    region: str
    names: StackNames
    tensorboard: bool
    keep_image_versions: int
    image_retention_days: int
    untagged_image_days: int
    cloud_build_service_account: str | None = None


class Platform(pulumi.ComponentResource):
    """The shared resources of all experiments in one project and region."""

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("detector:infra:Platform", name, None, opts)
        labels = args.names.labels

        self.apis = {
            api: gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=args.project,
                service=api,
                disable_on_destroy=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for api in REQUIRED_APIS
        }

        self.project_number = gcp.organizations.get_project_output(
            project_id=args.project,
            opts=pulumi.InvokeOutputOptions(parent=self, depends_on=[self.apis[RESOURCE_MANAGER]]),
        ).number

        self.repository = gcp.artifactregistry.Repository(
            f"{name}-images",
            project=args.project,
            location=args.region,
            repository_id=args.names.repository,
            format="DOCKER",
            description="Training images of the detector.",
            labels=labels,
            cleanup_policy_dry_run=False,
            # A keep policy only exempts versions from the delete policies, and a version that matches both is
            # kept ("Artifact Registry cleanup policies" overview). Every build is tagged (by content hash), so
            # old tagged versions need a delete policy of their own; tag state ANY matches them.
            cleanup_policies=[
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-newest-versions",
                    action="KEEP",
                    most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        keep_count=args.keep_image_versions,
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-old-versions",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="ANY",
                        older_than=f"{args.image_retention_days * 86400}s",
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-old-untagged",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="UNTAGGED",
                        older_than=f"{args.untagged_image_days * 86400}s",
                    ),
                ),
            ],
            opts=self._needs("artifactregistry.googleapis.com"),
        )
        self.repository_url = pulumi.Output.concat(
            args.region, "-docker.pkg.dev/", args.project, "/", self.repository.repository_id
        )

        # The Vertex AI service agent provisions job VMs (GPU and TPU) and pulls the job images: a custom service
        # account cannot be used to pull them ("Use a custom service account", Vertex AI docs); it reads the
        # repository through a grant of its own. Creating the agent here lets its grants exist before the first
        # job. Google grants its role when the agent is first created by use, not always when it is generated
        # through the API, so it is granted explicitly; retain_on_delete keeps `pulumi destroy` from stripping
        # Vertex AI of its own role.
        self.vertex_agent = gcp.projects.ServiceIdentity(
            f"{name}-vertex-agent",
            project=args.project,
            service="aiplatform.googleapis.com",
            opts=self._needs("aiplatform.googleapis.com"),
        )
        self.vertex_agent_role = gcp.projects.IAMMember(
            f"{name}-vertex-agent-role",
            project=args.project,
            role="roles/aiplatform.serviceAgent",
            member=self.vertex_agent.member,
            opts=self._needs(RESOURCE_MANAGER, retain_on_delete=True),
        )
        self.vertex_agent_pull = gcp.artifactregistry.RepositoryIamMember(
            f"{name}-vertex-agent-pull",
            project=args.project,
            location=args.region,
            repository=self.repository.repository_id,
            role="roles/artifactregistry.reader",
            member=self.vertex_agent.member,
            opts=self._needs("artifactregistry.googleapis.com"),
        )

        # Vertex AI trains on TPU VMs whose training container runs as the job's service account, so the Cloud
        # TPU service agent needs no grant (roles/ml.serviceAgent served the TPU Nodes of the retired ML Engine).
        # ServiceIdentity cannot generate this legacy agent, so its email is built from the number.
        self.tpu_agent = self.project_number.apply(lambda number: f"service-{number}@cloud-tpu.iam.gserviceaccount.com")

        # Cloud Build runs as an account of this stack (or the one configured), never the project's default:
        # that is the Compute Engine default account in newer projects, and the legacy Cloud Build account does
        # not exist in every project ("Cloud Build service account" and "Configure user-specified service
        # accounts", Cloud Build docs). It pushes to this repository and writes its logs to Cloud Logging; each
        # experiment lets it read its build sources.
        self.build_account: gcp.serviceaccount.Account | None = None
        if args.cloud_build_service_account:
            self.cloud_build_account = pulumi.Output.from_input(args.cloud_build_service_account)
        else:
            self.build_account = gcp.serviceaccount.Account(
                f"{name}-build",
                project=args.project,
                account_id=args.names.build_account,
                display_name="Detector image builds",
                description="Cloud Build runs `images build` as this account: it pushes to the detector repository.",
                opts=self._needs("iam.googleapis.com"),
            )
            self.cloud_build_account = self.build_account.email
        build_member = self.cloud_build_account.apply(lambda email: f"serviceAccount:{email}")
        self.cloud_build_push = gcp.artifactregistry.RepositoryIamMember(
            f"{name}-cloudbuild-push",
            project=args.project,
            location=args.region,
            repository=self.repository.repository_id,
            role="roles/artifactregistry.writer",
            member=build_member,
            opts=self._needs("artifactregistry.googleapis.com", "cloudbuild.googleapis.com"),
        )
        # A user-specified build account must send its logs to Cloud Logging (or a bucket of its own) and needs
        # roles/logging.logWriter for it ("Configure user-specified service accounts", Cloud Build docs).
        self.cloud_build_logs = gcp.projects.IAMMember(
            f"{name}-cloudbuild-logs",
            project=args.project,
            role="roles/logging.logWriter",
            member=build_member,
            opts=self._needs(RESOURCE_MANAGER, "logging.googleapis.com"),
        )

        # A network for Dataflow workers of its own, so that no project's `default` network (with its rules open
        # to the internet) is assumed: a subnetwork in the region with Private Google Access (workers without
        # public IPs reach Cloud Storage and the Dataflow service), and one rule, between the workers. The
        # network's implied rules deny every other ingress.
        self.network = gcp.compute.Network(
            f"{name}-dataflow-network",
            project=args.project,
            name=args.names.network,
            auto_create_subnetworks=False,
            description="Dataflow workers of `data prepare --engine dataflow`: no public access.",
            opts=self._needs(COMPUTE),
        )
        self.subnetwork = gcp.compute.Subnetwork(
            f"{name}-dataflow-subnet",
            project=args.project,
            name=args.names.network,
            region=args.region,
            network=self.network.id,
            ip_cidr_range=DATAFLOW_SUBNET_RANGE,
            private_ip_google_access=True,
            opts=self._needs(COMPUTE),
        )
        self.worker_firewall = gcp.compute.Firewall(
            f"{name}-dataflow-workers",
            project=args.project,
            name=f"{args.names.network}-workers",
            network=self.network.id,
            direction="INGRESS",
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=DATAFLOW_WORKER_PORTS)],
            source_tags=[DATAFLOW_TAG],
            target_tags=[DATAFLOW_TAG],
            description="Dataflow workers to Dataflow workers (shuffle and streaming), nothing else.",
            opts=self._needs(COMPUTE),
        )

        self.tensorboard: gcp.vertex.AiTensorboard | None = None
        self.tensorboard_writer: gcp.projects.IAMCustomRole | None = None
        if args.tensorboard:
            self.tensorboard = gcp.vertex.AiTensorboard(
                f"{name}-tensorboard",
                project=args.project,
                region=args.region,
                display_name=args.names.tensorboard,
                description="Training curves of the detector's Vertex AI jobs.",
                labels=labels,
                opts=self._needs("aiplatform.googleapis.com"),
            )
            self.tensorboard_writer = gcp.projects.IAMCustomRole(
                f"{name}-tensorboard-writer",
                project=args.project,
                role_id=self.tensorboard.name.apply(args.names.tensorboard_writer_role),
                title="Detector TensorBoard writer",
                description="Lets a job service account upload its training curves to Vertex AI TensorBoard.",
                permissions=list(TENSORBOARD_WRITER_PERMISSIONS),
                opts=self._needs("iam.googleapis.com"),
            )

        self.outputs: dict[str, pulumi.Input[str]] = {
            ROLE_OUTPUT: PLATFORM_ROLE,
            "project": args.project,
            "projectNumber": self.project_number,
            "region": args.region,
            "repositoryId": self.repository.repository_id,
            "repositoryUrl": self.repository_url,
            "vertexServiceAgent": self.vertex_agent.email,
            "tpuServiceAgent": self.tpu_agent,
            "cloudBuildServiceAccount": self.cloud_build_account,
            "tensorboard": self.tensorboard.id if self.tensorboard else "",
            "tensorboardWriterRole": self.tensorboard_writer.name if self.tensorboard_writer else "",
            "tensorboardBlobStoragePrefix": self.tensorboard.blob_storage_path_prefix if self.tensorboard else "",
            "dataflowSubnetwork": self.subnetwork.self_link,
        }
        self.register_outputs(self.outputs)

    def _needs(self, *apis: str, retain_on_delete: bool = False) -> pulumi.ResourceOptions:
        """Options of a child that must wait for `apis` to be enabled."""
        return pulumi.ResourceOptions(
            parent=self,
            depends_on=[self.apis[api] for api in apis],
            retain_on_delete=retain_on_delete or None,
        )
