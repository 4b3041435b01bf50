"""The policy pack: every stack passes every policy, and each crafted violation is rejected with its message.

Every resource goes through pulumi_policy's own analyzer (`Analyze`, the gRPC method the engine calls), so the
rules see what they see under `pulumi preview --policy-pack`: read-only Mapping/Sequence proxies, not dicts.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import proto
from pulumi_harness import INFRA, Deployment, Resource, rules
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy
from pulumi_policy.policy import _PolicyAnalyzerServicer

pytest_plugins = ["pulumi_fixtures"]


def analyze(
    policies: list[ResourceValidationPolicy], resource_type: str, props: dict[str, Any]
) -> proto.AnalyzeResponse:
    """What the engine gets back for one resource from a pack of `policies`."""
    analyzer = _PolicyAnalyzerServicer("detector-security", "0.0.1", policies, EnforcementLevel.MANDATORY)
    request = proto.AnalyzeRequest(
        type=resource_type,
        properties=json_format.ParseDict(props, struct_pb2.Struct()),
        urn=f"urn:pulumi:test::detector::{resource_type}::resource",
        name="resource",
    )
    return analyzer.Analyze(request, None)


def violations(resource_type: str, props: dict[str, Any]) -> dict[str, list[str]]:
    """Run every policy on one resource, as the engine would; policy name -> messages it reported."""
    reported: dict[str, list[str]] = {}
    for diagnostic in analyze(rules.POLICIES, resource_type, props).diagnostics:
        reported.setdefault(diagnostic.policyName, []).append(diagnostic.message)
    return reported


def test_rules_receive_read_only_proxies_not_dicts_or_lists() -> None:
    """The premise of the tests below: a rule that only walked dict and list would see nothing here."""
    seen: list[Any] = []

    def probe(args: Any, report_violation: Any) -> None:
        seen.extend([args.props, args.props["bindings"], args.props["bindings"][0]])

    policy = ResourceValidationPolicy(name="probe", description="records its props", validate=probe)
    analyze([policy], "gcp:projects/iAMPolicy:IAMPolicy", {"bindings": [{"members": ["allUsers"]}]})
    props, bindings, binding = seen
    assert isinstance(props, Mapping) and not isinstance(props, dict)
    assert isinstance(bindings, Sequence) and not isinstance(bindings, list)
    assert isinstance(binding, Mapping) and not isinstance(binding, dict)


def test_pack_is_mandatory_and_names_are_unique() -> None:
    assert len(rules.POLICIES) == 7
    assert len({p.name for p in rules.POLICIES}) == len(rules.POLICIES)
    assert {p.enforcement_level for p in rules.POLICIES} == {EnforcementLevel.MANDATORY}


def test_pack_module_only_builds_the_pack() -> None:
    tree = ast.parse((INFRA / "policies" / "__main__.py").read_text())
    statements = [node for node in tree.body if not isinstance(node, (ast.Import, ast.ImportFrom))]
    assert len(statements) == 2  # the docstring and the PolicyPack(...) call
    call = statements[1].value
    assert isinstance(call, ast.Call) and call.func.id == "PolicyPack"
    assert {k.arg: getattr(k.value, "id", None) for k in call.keywords}["policies"] == "POLICIES"


def test_every_recorded_resource_of_every_stack_passes_every_policy(
    platform: Deployment, platform_without_tensorboard: Deployment, experiment: Deployment,
    other_experiment: Deployment,
) -> None:
    resources: list[Resource] = [
        r for d in (platform, platform_without_tensorboard, experiment, other_experiment) for r in d.resources
    ]
    checked = 0
    for resource in resources:
        assert violations(resource.type, resource.inputs) == {}, resource.name
        checked += 1
    assert checked == len(resources) == 23 + 21 + 13 + 18
    labelled = {r.type for r in resources if "labels" in r.inputs}
    assert labelled == {"gcp:storage/bucket:Bucket", "gcp:artifactregistry/repository:Repository",
                        "gcp:vertex/aiTensorboard:AiTensorboard"}


def _bucket(experiment: Deployment, **changes: Any) -> dict[str, Any]:
    return experiment.one("gcp:storage/bucket:Bucket").inputs | changes


MEMBER = "serviceAccount:detector-exp-coco@acme-ml.iam.gserviceaccount.com"
CRAFTED: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
    ("bucket with object ACLs", "gcp:storage/bucket:Bucket", {"uniformBucketLevelAccess": False},
     {"bucket-uniform-access-and-no-public-access": "uniformBucketLevelAccess"}),
    ("bucket open to the public", "gcp:storage/bucket:Bucket", {"publicAccessPrevention": "inherited"},
     {"bucket-uniform-access-and-no-public-access": 'publicAccessPrevention to "enforced"'}),
    ("bucket without labels", "gcp:storage/bucket:Bucket", {"labels": {"app": "detector"}},
     {"experiment-label": "must carry the `experiment` label"}),
    ("public object reader", "gcp:storage/bucketIAMMember:BucketIAMMember",
     {"bucket": "b", "role": "roles/storage.objectViewer", "member": "allUsers"},
     {"no-public-members": "allUsers"}),
    ("any signed-in user on the project", "gcp:projects/iAMMember:IAMMember",
     {"project": "p", "role": "roles/viewer", "member": "allAuthenticatedUsers"},
     {"no-public-members": "allAuthenticatedUsers"}),
    ("project binding", "gcp:projects/iAMBinding:IAMBinding",
     {"project": "p", "role": "roles/logging.logWriter", "members": [MEMBER]},
     {"no-authoritative-iam": "Use the matching IAMMember"}),
    ("public members nested in a binding list", "gcp:organizations/iAMBinding:IAMBinding",
     {"orgId": "1", "role": "roles/viewer", "members": [MEMBER, "allUsers"],
      "condition": {"title": "t", "expression": "true"}},
     {"no-authoritative-iam": "is authoritative", "no-public-members": "allUsers"}),
    ("public member in a condition-free grant list", "gcp:custom/grants:Grants",
     {"grants": [{"role": "roles/viewer", "member": "allAuthenticatedUsers"}]},
     {"no-public-members": "allAuthenticatedUsers"}),
    ("project policy with a public binding", "gcp:projects/iAMPolicy:IAMPolicy",
     {"project": "p", "policyData": '{"bindings": [{"role": "roles/viewer", "members": ["allUsers"]}]}'},
     {"no-authoritative-iam": "pulumi/pulumi#13799", "no-public-members": "allUsers"}),
    ("bucket policy", "gcp:storage/bucketIAMPolicy:BucketIAMPolicy", {"bucket": "b", "policyData": "{}"},
     {"no-authoritative-iam": "is authoritative"}),
    ("bucket binding", "gcp:storage/bucketIAMBinding:BucketIAMBinding",
     {"bucket": "b", "role": "roles/storage.objectAdmin", "members": [MEMBER]},
     {"no-authoritative-iam": "is authoritative"}),
    ("repository binding", "gcp:artifactregistry/repositoryIamBinding:RepositoryIamBinding",
     {"repository": "r", "role": "roles/artifactregistry.reader", "members": [MEMBER]},
     {"no-authoritative-iam": "is authoritative"}),
    ("repository policy", "gcp:artifactregistry/repositoryIamPolicy:RepositoryIamPolicy",
     {"repository": "r", "policyData": "{}"}, {"no-authoritative-iam": "is authoritative"}),
    ("service-account key", "gcp:serviceaccount/key:Key", {"serviceAccountId": "detector-exp-coco"},
     {"no-service-account-keys": "long-lived service-account credential"}),
    ("HMAC key", "gcp:storage/hmacKey:HmacKey", {"serviceAccountEmail": "detector-exp-coco@acme-ml.iam"},
     {"no-service-account-keys": "long-lived service-account credential"}),
    ("project-wide storage for a job", "gcp:projects/iAMMember:IAMMember",
     {"project": "p", "role": "roles/storage.objectAdmin", "member": MEMBER},
     {"no-project-storage-role-for-service-accounts": "grant it on the experiment's bucket"}),
    ("unlabelled repository", "gcp:artifactregistry/repository:Repository",
     {"repositoryId": "r", "format": "DOCKER"}, {"experiment-label": "must carry the `experiment` label"}),
    ("tensorboard with other labels", "gcp:vertex/aiTensorboard:AiTensorboard",
     {"displayName": "t", "labels": {"team": "vision"}}, {"experiment-label": "must carry the `experiment` label"}),
    ("any labelled resource", "gcp:pubsub/topic:Topic", {"name": "t", "labels": {}},
     {"experiment-label": "must carry the `experiment` label"}),
    ("firewall open to the internet", "gcp:compute/firewall:Firewall",
     {"network": "n", "allows": [{"protocol": "tcp", "ports": ["22"]}], "sourceRanges": ["0.0.0.0/0"]},
     {"no-ingress-from-the-internet": "0.0.0.0/0 opens the network"}),
    ("firewall from any source", "gcp:compute/firewall:Firewall",
     {"network": "n", "direction": "INGRESS", "allows": [{"protocol": "tcp", "ports": ["12345-12346"]}]},
     {"no-ingress-from-the-internet": "any source opens the network"}),
]


@pytest.mark.parametrize(("what", "type_", "props", "expected"), CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_violation_is_rejected_with_its_message(
    experiment: Deployment, what: str, type_: str, props: dict[str, Any], expected: dict[str, str]
) -> None:
    if type_ == "gcp:storage/bucket:Bucket":
        props = _bucket(experiment, **props)
    reported = violations(type_, props)
    assert set(reported) == set(expected), what
    for policy, message in expected.items():
        assert any(message in m for m in reported[policy]), (what, reported[policy])


def test_every_policy_rejects_at_least_one_crafted_resource() -> None:
    assert {policy for *_, expected in CRAFTED for policy in expected} == {p.name for p in rules.POLICIES}
