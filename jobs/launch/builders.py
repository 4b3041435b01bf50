"""Build and push a job image, once per content hash: with Cloud Build, or a local Docker engine."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from jobs.errors import DetectorError
from jobs.launch.context import BuildContext, build_context
from jobs.launch.registry import Registry
from jobs.stack import StackOutputs

if TYPE_CHECKING:
    from google.cloud.devtools.cloudbuild_v1 import CloudBuildClient
    from google.cloud.storage import Client

BUILD_TIMEOUT_S = 3600
DOCKER_BUILDER = "gcr.io/cloud-builders/docker"


class BuildError(DetectorError):
    """The image could not be built or pushed."""


@dataclass(frozen=True)
class ImageRef:
    name: str
    ref: str  # REPOSITORY/NAME:TAG
    digest: str
    built: bool  # False when the tag was already in the registry


class Builder(Protocol):
    def build(self, context: BuildContext, ref: str) -> None: ...


class CloudBuilder:
    """Uploads the context tarball to the experiment bucket and runs ``docker build`` + push on Cloud Build."""

    def __init__(self, stack: StackOutputs, build_client: CloudBuildClient | None = None,
                 storage_client: Client | None = None,
                 sleep: Callable[[float], None] = time.sleep, poll_s: float = 10):
        self.stack = stack
        self._build_client = build_client
        self._storage_client = storage_client
        self._sleep = sleep
        self._poll_s = poll_s

    def build(self, context: BuildContext, ref: str) -> None:
        from google.cloud.devtools import cloudbuild_v1
        from google.cloud.storage import Client

        storage_client = self._storage_client or Client(project=self.stack.project)
        client = self._build_client or cloudbuild_v1.CloudBuildClient(transport="rest")
        source = self.stack.build_source(f"{context.image}-{context.tag}.tar.gz")
        blob = storage_client.bucket(self.stack.bucket).blob(source)
        blob.upload_from_string(context.tarball, content_type="application/gzip", checksum="md5")
        build = cloudbuild_v1.Build(
            source=cloudbuild_v1.Source(storage_source=cloudbuild_v1.StorageSource(
                bucket=self.stack.bucket, object_=source, generation=blob.generation or 0)),
            steps=[cloudbuild_v1.BuildStep(name=DOCKER_BUILDER, args=[
                "build", "-f", f"images/{context.image}/Dockerfile", "-t", ref, "."])],
            images=[ref], timeout={"seconds": BUILD_TIMEOUT_S},
            tags=[f"detector-{context.image}", f"experiment-{self.stack.experiment}"],
            **self._identity(),
        )
        operation = client.create_build(project_id=self.stack.project, build=build)
        build_id = operation.metadata.build.id
        done = {cloudbuild_v1.Build.Status.SUCCESS}
        failed = {cloudbuild_v1.Build.Status.FAILURE, cloudbuild_v1.Build.Status.INTERNAL_ERROR,
                  cloudbuild_v1.Build.Status.TIMEOUT, cloudbuild_v1.Build.Status.CANCELLED,
                  cloudbuild_v1.Build.Status.EXPIRED}
        while True:
            current = client.get_build(project_id=self.stack.project, id=build_id)
            if current.status in done:
                return
            if current.status in failed:
                status = cloudbuild_v1.Build.Status(current.status).name
                raise BuildError(f"Cloud Build {build_id} ended {status}: {current.log_url}")
            self._sleep(self._poll_s)

    def _identity(self) -> dict[str, Any]:
        """The platform's build account, when the stack names one. A user-specified build account needs its logs
        in Cloud Logging or a bucket of its own ("Configure user-specified service accounts", Cloud Build docs);
        named `projects/PROJECT/serviceAccounts/EMAIL` (Cloud Build v1 `ServiceAccountName` reference)."""
        from google.cloud.devtools import cloudbuild_v1

        if not self.stack.build_service_account:
            return {}
        return {
            "service_account": f"projects/{self.stack.project}/serviceAccounts/{self.stack.build_service_account}",
            "options": cloudbuild_v1.BuildOptions(logging=cloudbuild_v1.BuildOptions.LoggingMode.CLOUD_LOGGING_ONLY),
        }


class LocalDockerBuilder:
    """``docker build`` from the same tarball on stdin, then ``docker push`` (needs a running Docker engine)."""

    def build(self, context: BuildContext, ref: str) -> None:
        docker = shutil.which("docker")
        if docker is None:
            raise BuildError("--local-docker needs the docker CLI and a running engine; or build with Cloud Build")
        for args, stdin in (([docker, "build", "-f", f"images/{context.image}/Dockerfile", "-t", ref, "-"],
                             context.tarball), ([docker, "push", ref], None)):
            done = subprocess.run(args, input=stdin, capture_output=True, check=False)
            if done.returncode != 0:
                raise BuildError(f"{' '.join(args[:2])} failed: {done.stderr.decode(errors='replace')[-2000:]}")


def ensure_image(stack: StackOutputs, image: str, builder: Builder, registry: Registry) -> ImageRef:
    """The image of the current source: reused when its tag exists, else built and pushed once."""
    context = build_context(image)
    ref = stack.image(image, context.tag)
    digest = registry.digest(ref)
    if digest is not None:
        return ImageRef(image, ref, digest, built=False)
    builder.build(context, ref)
    digest = registry.digest(ref)
    if digest is None:
        raise BuildError(f"{ref} was built but the registry does not list it")
    return ImageRef(image, ref, digest, built=True)
