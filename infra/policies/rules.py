"""The security invariants of every detector stack, as Pulumi resource validation policies.

Each policy's `validate(args, report_violation)` reads only `args.resource_type` and `args.props` (the
resource's inputs, camelCase as the engine sends them). pulumi_policy hands the props over as read-only proxies
(`collections.abc.Mapping` and `Sequence`, never dict or list), so the rules test for those abstract types; the
tests run them through pulumi_policy's own analyzer with recorded or crafted resources.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

BUCKET = "gcp:storage/bucket:Bucket"
PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"
CREDENTIAL_TYPES = {"gcp:serviceaccount/key:Key", "gcp:storage/hmacKey:HmacKey"}
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
EXPERIMENT_LABEL = "experiment"
FIREWALL = "gcp:compute/firewall:Firewall"
ANYWHERE = {"0.0.0.0/0", "::/0"}
# Types that take labels; any other resource that has a `labels` input is checked as well.
LABELLED_TYPES = {
    BUCKET,
    "gcp:artifactregistry/repository:Repository",
    "gcp:vertex/aiTensorboard:AiTensorboard",
    "gcp:vertex/aiDataset:AiDataset",
    "gcp:vertex/aiEndpoint:AiEndpoint",
    "gcp:compute/instance:Instance",
    "gcp:compute/disk:Disk",
    "gcp:pubsub/topic:Topic",
    "gcp:secretmanager/secret:Secret",
    "gcp:bigquery/dataset:Dataset",
}


def _bucket_is_private(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != BUCKET:
        return
    if args.props.get("uniformBucketLevelAccess") is not True:
        report_violation("Buckets must set uniformBucketLevelAccess: object ACLs would bypass bucket IAM.", None)
    if args.props.get("publicAccessPrevention") != "enforced":
        report_violation('Buckets must set publicAccessPrevention to "enforced".', None)


def _members(props: Any, key: str = "") -> Iterator[str]:
    """Every IAM member in `props`: `member`, `members` and the bindings of a JSON `policyData`."""
    if isinstance(props, str):
        if key in ("member", "members"):
            yield props
        elif key == "policyData":
            yield from _policy_members(props)
    elif isinstance(props, Mapping):
        for name, value in props.items():
            yield from _members(value, name)
    elif isinstance(props, Sequence):
        for value in props:
            yield from _members(value, key)


def _policy_members(policy_data: str) -> Iterator[str]:
    """The members of the bindings of a JSON IAM policy."""
    try:
        policy = json.loads(policy_data)
    except ValueError:
        return
    yield from _members(policy)


def _no_public_member(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    public = sorted(PUBLIC_MEMBERS.intersection(_members(args.props)))
    if public:
        report_violation(f"IAM must not grant anything to {', '.join(public)}: nothing here is public.", None)


def _no_authoritative_iam(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    kind = args.resource_type.rsplit(":", 1)[-1].lower()
    if kind.endswith(("iambinding", "iampolicy")):
        report_violation(
            f"{args.resource_type} is authoritative: it replaces the members that other stacks granted "
            "(pulumi/pulumi#13799). Use the matching IAMMember resource.",
            None,
        )


def _no_service_account_key(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type in CREDENTIAL_TYPES:
        report_violation(
            f"{args.resource_type} creates a long-lived service-account credential; jobs get short-lived "
            "tokens from Vertex AI, people impersonate the account (roles/iam.serviceAccountTokenCreator).",
            None,
        )


def _no_project_storage_role_for_service_account(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    if args.resource_type != PROJECT_MEMBER:
        return
    role, member = args.props.get("role", ""), args.props.get("member", "")
    if role.startswith("roles/storage.") and member.startswith("serviceAccount:"):
        report_violation(
            f"{role} on the project would open every bucket of every experiment to {member}; "
            "grant it on the experiment's bucket (BucketIAMMember).",
            None,
        )


def _experiment_label(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in LABELLED_TYPES and "labels" not in args.props:
        return
    labels = args.props.get("labels") or {}
    if not labels.get(EXPERIMENT_LABEL):
        report_violation(
            f"{args.resource_type} must carry the `{EXPERIMENT_LABEL}` label, so that costs add up per stack.",
            None,
        )


def _no_ingress_from_anywhere(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != FIREWALL or args.props.get("direction", "INGRESS") != "INGRESS":
        return
    open_ranges = [r for r in args.props.get("sourceRanges") or [] if r in ANYWHERE]
    if open_ranges or not (args.props.get("sourceRanges") or args.props.get("sourceTags")
                           or args.props.get("sourceServiceAccounts")):
        report_violation(
            f"an ingress firewall rule from {', '.join(open_ranges) or 'any source'} opens the network to the "
            "internet; allow traffic from network tags (Dataflow workers: `dataflow`) or private ranges only.",
            None,
        )


def _policy(name: str, description: str, validate: Any) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=EnforcementLevel.MANDATORY
    )


POLICIES: list[ResourceValidationPolicy] = [
    _policy(
        "bucket-uniform-access-and-no-public-access",
        "Buckets use uniform bucket-level access and enforce public access prevention.",
        _bucket_is_private,
    ),
    _policy("no-public-members", "No IAM grant to allUsers or allAuthenticatedUsers.", _no_public_member),
    _policy(
        "no-authoritative-iam",
        "No IAMBinding or IAMPolicy resource (project, bucket, repository or any other level).",
        _no_authoritative_iam,
    ),
    _policy("no-service-account-keys", "No service-account keys or HMAC keys.", _no_service_account_key),
    _policy(
        "no-project-storage-role-for-service-accounts",
        "Service accounts get storage roles on their bucket, never on the project.",
        _no_project_storage_role_for_service_account,
    ),
    _policy(
        "no-ingress-from-the-internet",
        "No ingress firewall rule from 0.0.0.0/0, ::/0 or an unrestricted source.",
        _no_ingress_from_anywhere,
    ),
    _policy(
        "experiment-label",
        "Every labellable resource carries the experiment label.",
        _experiment_label,
    ),
]
