"""Bucket names derived from any project id and stack name follow every Cloud Storage bucket naming rule.

The rules, written here from "About Cloud Storage buckets" (https://cloud.google.com/storage/docs/buckets#naming)
independently of `naming.py`: 3-63 characters of lower-case letters, digits, dashes, underscores and dots (dots
only for verified domains, longer names only with dots); a letter or digit at both ends; not an IP address in
dotted-decimal notation; not beginning with "goog"; not containing "google" or a close misspelling ("g00gle").
"""

from __future__ import annotations

import random
import re

import pytest
from pulumi_harness import naming

MISSPELLINGS = ("google", "g00gle", "go0gle", "g0ogle", "gooogle", "goog1e", "googie")
PIECES = ("goog", "google", "G00GLE", "gOoGlE", "g0", "ogle", "-", "_", ".", ":", " ", "é", "exp", "x" * 40, "7", "")


def valid_bucket_name(name: str) -> bool:
    return (
        re.fullmatch(r"[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]", name) is not None  # no dots: they need verification
        and not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name)
        and not name.startswith("goog")
        and not any(word in name for word in MISSPELLINGS)
    )


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 8)))


@pytest.mark.parametrize("name", ["goog-x", "my-google", "a-g00gle-b", "ab", "-ab-", "a" * 64, "1.2.3.4"])
def test_the_rule_check_itself_rejects_what_the_documentation_forbids(name: str) -> None:
    assert not valid_bucket_name(name)


def test_fuzzed_project_ids_and_stack_names_give_valid_distinct_bucket_names() -> None:
    rng = random.Random(13)
    projects = ["acme-ml", "googly-eyes-1", "example.com:acme", "a" * 30, "goog"]
    seen: dict[str, tuple[str, str]] = {}
    checked = 0
    for _ in range(3000):
        project, stack = rng.choice(projects), random_text(rng)
        bucket = naming.StackNames(project=project, stack=stack).bucket
        assert valid_bucket_name(bucket), (project, stack, bucket)
        assert seen.setdefault(bucket, (project, stack)) == (project, stack), (bucket, seen[bucket], stack)
        checked += 1
    assert checked == 3000 and len(seen) > 1000


@pytest.mark.parametrize(("stack", "bucket"), [
    ("exp-coco", "acme-ml-detector-exp-coco"),  # an ordinary name is kept as it is
    ("exp-google", "acme-ml-detector-exp-ggle-"),
    ("goog", "acme-ml-detector-gg-"),
])
def test_google_like_stack_names_are_rewritten_and_hashed(stack: str, bucket: str) -> None:
    name = naming.StackNames(project="acme-ml", stack=stack).bucket
    assert name.startswith(bucket) and valid_bucket_name(name)
