"""Policy pack entry point (`pulumi preview --policy-pack infra/policies`); the rules live in rules.py."""

from pulumi_policy import EnforcementLevel, PolicyPack
from rules import POLICIES

PolicyPack(name="detector-security", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
