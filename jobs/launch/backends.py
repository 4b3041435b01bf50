"""Where a job runs: a Vertex AI custom job, or a subprocess on this machine (the same entrypoint and arguments).

Both are a :class:`Backend` (submit, get, cancel by job name); the launchers (``jobs.launch.launcher``) use them
through it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from jobs.console import NoiseFilter
from jobs.launch.jobspec import JobSpec, custom_job, regional_endpoint, vertex_parent
from jobs.runtime.spec import ProgressEvent, job_log
from jobs.stack import StackOutputs

if TYPE_CHECKING:
    import psutil
    from google.auth.credentials import Credentials
    from google.cloud.aiplatform_v1.types import CustomJob

LIVE_STATES = frozenset({"JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING",
                         "JOB_STATE_PAUSED", "JOB_STATE_UPDATING"})


@dataclass(frozen=True)
class JobInfo:
    name: str
    state: str  # Vertex JobState name, e.g. JOB_STATE_RUNNING (local jobs use the same names)
    console_url: str = ""
    error: str = ""
    exit_code: int | None = None  # a local job's process exit status (2: the entrypoint refused the arguments)

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "JOB_STATE_SUCCEEDED"


class Backend(Protocol):
    def submit(self, spec: JobSpec, image_uri: str, base_output_dir: str) -> JobInfo: ...

    def get(self, name: str) -> JobInfo: ...

    def cancel(self, name: str) -> JobInfo:
        """Ask the job to stop; its state once asked."""
        ...


class VertexBackend:
    """Vertex AI custom jobs through google-cloud-aiplatform's JobServiceClient (REST transport)."""

    def __init__(self, stack: StackOutputs, api_endpoint: str | None = None, credentials: Credentials | None = None):
        from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

        self.stack = stack
        self.parent = vertex_parent(stack)
        self.client = JobServiceClient(
            credentials=credentials, transport="rest",
            client_options={"api_endpoint": api_endpoint or regional_endpoint(stack)})

    def submit(self, spec: JobSpec, image_uri: str, base_output_dir: str) -> JobInfo:
        job = custom_job(spec, self.stack, image_uri, base_output_dir)
        return self._info(self.client.create_custom_job(parent=self.parent, custom_job=job))

    def get(self, name: str) -> JobInfo:
        return self._info(self.client.get_custom_job(name=name))

    def cancel(self, name: str) -> JobInfo:
        self.client.cancel_custom_job(name=name)
        return self.get(name)

    def _info(self, job: CustomJob) -> JobInfo:
        job_id = job.name.rsplit("/", 1)[-1]
        url = (f"https://console.cloud.google.com/vertex-ai/locations/{self.stack.region}/training/{job_id}/cpu"
               f"?project={self.stack.project}")
        return JobInfo(job.name, job.state.name, url, job.error.message if job.error else "")


@dataclass(frozen=True)
class Watch:
    """Where a local job's output goes while it runs: its progress events, its other stdout lines, its stderr."""

    event: Callable[[ProgressEvent], None] = field(default=lambda event: None)
    line: Callable[[str], None] = print
    error: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr))


class LocalBackend:
    """The job's entrypoint module in a subprocess of this interpreter (this checkout's code; there is no image).

    ``submit`` starts it, ``follow`` streams its output to a :class:`Watch` until it ends. The output is also kept
    in ``<base_output_dir>/<kind>-job.log`` when that is a local folder. A job is named ``local/KIND/PID@START``
    (the process's start time tells it from a later process with the same pid), so another process (``runs
    show``, ``runs cancel``) finds it while it runs.
    """

    def __init__(self) -> None:
        self._processes: dict[str, tuple[subprocess.Popen[str], Path | None]] = {}

    def submit(self, spec: JobSpec, image_uri: str, base_output_dir: str) -> JobInfo:
        """``image_uri`` is unused: a local job runs the code of this checkout."""
        import psutil

        log = Path(base_output_dir) / job_log(spec.kind) if base_output_dir and "://" not in base_output_dir \
            else None
        env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        process = subprocess.Popen([sys.executable, *spec.command[1:]], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        name = f"local/{spec.kind}/{process.pid}@{psutil.Process(process.pid).create_time():.2f}"
        self._processes[name] = (process, log)
        return JobInfo(name, "JOB_STATE_RUNNING")

    def follow(self, name: str, watch: Watch) -> JobInfo:
        """Stream the job's output until it ends (its stderr read by a second thread). Interrupted here (Ctrl-C,
        SIGTERM), the job is stopped too."""
        process, log = self._processes.pop(name)
        assert process.stdout is not None and process.stderr is not None  # submit opened both as pipes
        stdout, stderr = process.stdout, process.stderr
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
        lock = threading.Lock()
        noise = NoiseFilter()  # the log keeps every line; the user is shown those that matter

        def read(stream: IO[str], show: Callable[[str], None]) -> None:
            for line in stream:
                with lock:
                    kept.write(line)
                    kept.flush()
                show(line.rstrip("\n"))

        def show_stderr(text: str) -> None:
            if noise.keep(text):
                watch.error(text)

        def show_stdout(text: str) -> None:
            event = ProgressEvent.from_line(text)
            if event is None:
                watch.line(text)
            else:
                watch.event(event)

        try:
            with open(log or os.devnull, "a", encoding="utf-8") as kept:
                errors = threading.Thread(target=read, args=(stderr, show_stderr), daemon=True)
                errors.start()
                read(stdout, show_stdout)
                errors.join()
            code = process.wait()
        except BaseException:
            process.terminate()  # Ctrl-C reached it already; a SIGTERM to this process did not
            process.wait()
            raise
        finally:
            stdout.close()
            stderr.close()
        return _ended(name, code)

    def get(self, name: str) -> JobInfo:
        """A job started by any process: running while its process lives; once it has ended, its launcher has
        recorded how (the run record), and this says only that it is gone."""
        if _process(name) is not None:
            return JobInfo(name, "JOB_STATE_RUNNING")
        return JobInfo(name, "JOB_STATE_FAILED", error="the process is gone and nothing recorded how it ended "
                                                       "(its launcher was killed?)")

    def cancel(self, name: str) -> JobInfo:
        process = _process(name)
        if process is None:
            return self.get(name)
        process.send_signal(signal.SIGTERM)
        return JobInfo(name, "JOB_STATE_CANCELLING")


def _ended(name: str, code: int) -> JobInfo:
    """A local job's state from its exit status (negative: the signal that stopped it)."""
    if code == 0:
        return JobInfo(name, "JOB_STATE_SUCCEEDED", exit_code=0)
    if code in (-signal.SIGTERM, -signal.SIGINT):
        return JobInfo(name, "JOB_STATE_CANCELLED", error=f"stopped by {signal.Signals(-code).name}",
                       exit_code=code)
    return JobInfo(name, "JOB_STATE_FAILED", error=f"exited with {code}", exit_code=code)


def _process(name: str) -> psutil.Process | None:
    """The running process of a local job name, or None when it has ended."""
    import psutil

    pid, _, started = name.rsplit("/", 1)[-1].partition("@")
    try:
        process = psutil.Process(int(pid))
        alive = f"{process.create_time():.2f}" == started and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, ValueError):
        return None
    return process if alive else None
