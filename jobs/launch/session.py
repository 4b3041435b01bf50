"""The cloud side of one experiment stack: Vertex AI, its bucket, the registry, the image builder.

``CloudSession.connect`` is the one place that builds the real clients; tests build a session whose clients
point at local servers. ``jobs.launch.vertex.VertexLauncher`` launches and follows runs through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobs.launch.backends import Backend, VertexBackend
from jobs.launch.builders import Builder, CloudBuilder, ImageRef, LocalDockerBuilder, ensure_image
from jobs.launch.registry import Registry
from jobs.launch.runs import BucketRunStore, RunStore
from jobs.stack import StackOutputs

if TYPE_CHECKING:
    from google.cloud.storage import Client


@dataclass
class CloudSession:
    stack: StackOutputs
    backend: Backend
    store: RunStore
    storage: Client
    registry: Registry
    builder: Builder
    # (image, data URI or None for the stack's data) -> None, or PreflightError: the quick doctor checks before a
    # launch (None: skipped)
    preflight: Callable[[str, str | None], object] | None = None

    @classmethod
    def connect(cls, stack: StackOutputs, local_docker: bool = False) -> CloudSession:
        from google.cloud.storage import Client

        from jobs.launch.doctor import preflight

        client = Client(project=stack.project)
        builder = LocalDockerBuilder() if local_docker else CloudBuilder(stack, storage_client=client)
        return cls(stack, VertexBackend(stack), BucketRunStore(stack.runs_prefix, client), client, Registry(),
                   builder, lambda image, data_uri: preflight(stack, image, data_uri, storage=client))

    def image(self, name: str) -> ImageRef:
        return ensure_image(self.stack, name, self.builder, self.registry)
