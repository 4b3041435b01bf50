"""GCP names and labels of one stack, derived in one place from the GCP project and the Pulumi stack name.

Every name embeds the stack, so two stacks in one project never collide. A stack name that had to be changed
to fit GCP's alphabet or length gets a short hash of the original, so distinct stacks keep distinct names.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

APP = "detector"


# Cloud Storage refuses bucket names that begin with "goog" or contain "google" or a close misspelling such as
# "g00gle" ("About Cloud Storage buckets", Bucket names: https://cloud.google.com/storage/docs/buckets#naming).
# Every g, run of o/0, g becomes "gg" until none is left (a replacement can make a new one), which covers the
# prefix, the word and its o/0 spellings.
GOOGLE_LIKE = re.compile(r"g[o0]+g")


def slug(text: str) -> str:
    """Lower-case `text`; every run of characters outside [a-z0-9] becomes one dash."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def bucket_slug(text: str) -> str:
    """`slug(text)` without anything Cloud Storage reserves for Google."""
    text = slug(text)
    while GOOGLE_LIKE.search(text):
        text = GOOGLE_LIKE.sub("gg", text)
    return text


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def fit(prefix: str, stack: str, limit: int, minimum: int = 1, clean=slug) -> str:
    """`prefix-<stack>` within `limit` characters; a cut or rewritten stack name gets a hash suffix (hex digits:
    it adds no letter that `clean` would have to take out)."""
    stack_slug = clean(stack)
    name = "-".join(part for part in (prefix, stack_slug) if part)
    if stack_slug == stack and minimum <= len(name) <= limit:
        return name
    suffix = _digest(stack)
    room = max(0, limit - len(suffix) - (len(prefix) + 2 if prefix else 1))
    return "-".join(part for part in (prefix, stack_slug[:room].strip("-"), suffix) if part)


@dataclass(frozen=True)
class StackNames:
    """The GCP names and labels of the resources of stack `stack` in project `project`."""

    project: str
    stack: str

    @property
    def bucket(self) -> str:
        """Globally unique: bucket names are shared by all of GCP, hence the project id. 3-63 characters of
        [a-z0-9-], a letter or digit at both ends, no dots (so never an IP address), nothing Google-like."""
        project = bucket_slug(self.project)[: 63 - len(APP) - 9].strip("-")  # room for -detector and a hash
        return fit(f"{project}-{APP}", self.stack, 63, clean=bucket_slug)

    @property
    def job_account(self) -> str:
        """Service account id: 6-30 characters, [a-z][a-z0-9-]*[a-z0-9]."""
        return fit(APP, self.stack, 30, minimum=6)

    @property
    def dataflow_account(self) -> str:
        """Service account id of an experiment's Dataflow workers (same rules as `job_account`)."""
        return fit(f"{APP}-df", self.stack, 30, minimum=6)

    @property
    def network(self) -> str:
        """The platform's VPC network and subnetwork for Dataflow workers: 1-63 characters, [a-z][-a-z0-9]*."""
        return fit(f"{APP}-dataflow", self.stack, 63)

    @property
    def build_account(self) -> str:
        """Service account id of the platform's Cloud Build account (same rules as `job_account`)."""
        return fit(f"{APP}-build", self.stack, 30, minimum=6)

    @property
    def repository(self) -> str:
        """Artifact Registry repository id: up to 63 characters, starting with a letter."""
        return fit(APP, self.stack, 63)

    @property
    def tensorboard(self) -> str:
        return fit(APP, self.stack, 128)

    def tensorboard_writer_role(self, tensorboard_id: str) -> str:
        """Custom role id, [a-zA-Z0-9_.] and 3-64 characters, ending in the id of the TensorBoard instance it
        writes to. A deleted role id cannot be reused for up to 37 days (Pulumi `gcp.projects.IAMCustomRole`
        docs), so a platform destroyed and made again, with a new instance, gets a new role id."""
        room = 64 - len(tensorboard_id) - 1
        return f"{fit(f'{APP}TensorboardWriter', self.stack, room)}_{tensorboard_id}".replace("-", "_")

    @property
    def experiment_label(self) -> str:
        """Label values: up to 63 characters of [a-z0-9_-]."""
        return fit("", self.stack, 63)

    @property
    def labels(self) -> dict[str, str]:
        """Labels of every labellable resource: billing reports group costs by the `experiment` label."""
        return {"app": APP, "experiment": self.experiment_label, "managed-by": "pulumi"}
