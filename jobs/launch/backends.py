"""Where jobs run: Vertex AI custom jobs, or this machine (the same container entrypoint as a subprocess).

Both take a :class:`JobSpec`; ``make_backend`` is the one place that chooses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from jobs.launch.jobspec import JobSpec, custom_job
from jobs.stack import StackOutputs

LIVE_STATES = frozenset({"JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING",
                         "JOB_STATE_PAUSED", "JOB_STATE_UPDATING"})


@dataclass(frozen=True)
class JobInfo:
    name: str
    state: str  # Vertex JobState name, e.g. JOB_STATE_RUNNING
    console_url: str = ""
    error: str = ""
    exit_code: int | None = None  # a local job's process exit status (2: the trainer refused the arguments)

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


class Backend(Protocol):
    def submit(self, spec: JobSpec, image_uri: str, base_output_dir: str) -> JobInfo: ...

    def get(self, name: str) -> JobInfo: ...

    def cancel(self, name: str) -> None: ...


class VertexBackend:
    """Vertex AI custom jobs through google-cloud-aiplatform's JobServiceClient (REST transport)."""

    def __init__(self, stack: StackOutputs, api_endpoint: str | None = None, credentials=None):
        from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

        self.stack = stack
        self.parent = f"projects/{stack.project}/locations/{stack.region}"
        self.client = JobServiceClient(
            credentials=credentials, transport="rest",
            client_options={"api_endpoint": api_endpoint or f"{stack.region}-aiplatform.googleapis.com"})

    def request(self, spec: JobSpec, image_uri: str, base_output_dir: str):
        return custom_job(spec, self.stack, image_uri, base_output_dir)

    def submit(self, spec: JobSpec, image_uri: str, base_output_dir: str) -> JobInfo:
        job = self.client.create_custom_job(parent=self.parent, custom_job=self.request(spec, image_uri,
                                                                                         base_output_dir))
        return self._info(job)

    def get(self, name: str) -> JobInfo:
        return self._info(self.client.get_custom_job(name=name))

    def cancel(self, name: str) -> None:
        self.client.cancel_custom_job(name=name)

    def list(self, label_filter: str) -> list[JobInfo]:
        return [self._info(job) for job in self.client.list_custom_jobs(parent=self.parent, filter=label_filter)]

    def _info(self, job) -> JobInfo:
        job_id = job.name.rsplit("/", 1)[-1]
        url = (f"https://console.cloud.google.com/vertex-ai/locations/{self.stack.region}/training/{job_id}/cpu"
               f"?project={self.stack.project}")
        return JobInfo(job.name, job.state.name, url, job.error.message if job.error else "")


class LocalBackend:
    """Runs the image's entrypoint module here, in a subprocess, and waits for it.

    ``on_line`` sees every output line (the CLI turns progress lines into a progress bar).
    """

    def __init__(self, on_line: Callable[[str], None] = print):
        self.on_line = on_line
        self._done: dict[str, JobInfo] = {}

    def submit(self, spec: JobSpec, image_uri: str, base_output_dir: str) -> JobInfo:
        command = [sys.executable, "-m", spec.entrypoint, *spec.args]
        env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              bufsize=1, env=env) as process:
            for line in process.stdout:
                self.on_line(line.rstrip("\n"))
            code = process.wait()
        name = f"local/{spec.kind}/{process.pid}"
        state = "JOB_STATE_SUCCEEDED" if code == 0 else "JOB_STATE_FAILED"
        info = JobInfo(name, state, error="" if code == 0 else f"{spec.entrypoint} exited with {code}",
                       exit_code=code)
        self._done[name] = info
        return info

    def get(self, name: str) -> JobInfo:
        return self._done.get(name, JobInfo(name, "JOB_STATE_UNSPECIFIED"))

    def cancel(self, name: str) -> None:
        """A local job has finished by the time ``submit`` returns: nothing to cancel."""
