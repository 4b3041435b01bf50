"""GCP names and labels of one stack, derived in one place from the GCP project and the Pulumi stack name.

Every name embeds the stack, so two stacks in one project never collide. A stack name that had to be changed
to fit GCP's alphabet or length gets a short hash of the original, so distinct stacks keep distinct names.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

APP = "detector"


def slug(text: str) -> str:
    """Lower-case `text`; every run of characters outside [a-z0-9] becomes one dash."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def fit(prefix: str, stack: str, limit: int, minimum: int = 1) -> str:
    """`prefix-<stack>` within `limit` characters; a cut or rewritten stack name gets a hash suffix."""
    stack_slug = slug(stack)
    name = "-".join(part for part in (prefix, stack_slug) if part)
    if stack_slug == stack and minimum <= len(name) <= limit:
        return name
    suffix = _digest(stack)
    room = limit - len(suffix) - (len(prefix) + 2 if prefix else 1)
    return "-".join(part for part in (prefix, stack_slug[:room].strip("-"), suffix) if part)


@dataclass(frozen=True)
class StackNames:
    """The GCP names and labels of the resources of stack `stack` in project `project`."""

    project: str
    stack: str

    @property
    def bucket(self) -> str:
        """Globally unique: bucket names are shared by all of GCP, hence the project id (3-63 characters)."""
        return fit(f"{self.project}-{APP}", self.stack, 63)

    @property
    def job_account(self) -> str:
        """Service account id: 6-30 characters, [a-z][a-z0-9-]*[a-z0-9]."""
        return fit(APP, self.stack, 30, minimum=6)

    @property
    def repository(self) -> str:
        """Artifact Registry repository id: up to 63 characters, starting with a letter."""
        return fit(APP, self.stack, 63)

    @property
    def tensorboard(self) -> str:
        return fit(APP, self.stack, 128)

    @property
    def tensorboard_writer_role(self) -> str:
        """Custom role id: [a-zA-Z0-9_.], 3-64 characters."""
        return fit(f"{APP}TensorboardWriter", self.stack, 64).replace("-", "_")

    @property
    def experiment_label(self) -> str:
        """Label values: up to 63 characters of [a-z0-9_-]."""
        return fit("", self.stack, 63)

    @property
    def labels(self) -> dict[str, str]:
        """Labels of every labellable resource: billing reports group costs by the `experiment` label."""
        return {"app": APP, "experiment": self.experiment_label, "managed-by": "pulumi"}
