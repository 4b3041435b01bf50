"""Relaunching with unchanged code: builds started and seconds from process start to the job request.

Goal: 0 builds and <= 2 s. A first launch (which builds the image) runs first as the baseline; then the same
code launches again under a new run id. Each launch is a fresh ``python`` process, as a user's command is,
talking through the real client libraries to local stand-ins of Vertex AI, Cloud Build, Artifact Registry and
Cloud Storage (the servers of tests/launch).
Run: .venv/bin/python bench/relaunch.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "launch"))

from launch_servers import CloudBuildServer, RegistryServer, VertexServer, free_port  # noqa: E402

LAUNCH = """
import sys, time
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.devtools import cloudbuild_v1
from jobs.launch.backends import VertexBackend
from jobs.launch.builders import CloudBuilder
from jobs.launch.launcher import TrainOptions
from jobs.launch.registry import Registry
from jobs.launch.runs import BucketRunStore
from jobs.launch.session import CloudSession
from jobs.launch.vertex import VertexLauncher
from jobs.runtime.spec import TrainArgs
from jobs.stack import load_stack_outputs
from pathlib import Path

vertex, registry, build, outputs, run_id = sys.argv[1:]
stack = load_stack_outputs(outputs_file=Path(outputs))
client = storage.Client(project="bench", credentials=AnonymousCredentials())
builds = cloudbuild_v1.CloudBuildClient(credentials=AnonymousCredentials(), transport="rest",
                                        client_options={"api_endpoint": build})
launcher = VertexLauncher(stack, CloudSession(
    stack, VertexBackend(stack, api_endpoint=vertex, credentials=AnonymousCredentials()),
    BucketRunStore(stack.runs_prefix, client), client, Registry(lambda: "t", registry),
    CloudBuilder(stack, build_client=builds, storage_client=client, sleep=lambda s: None)))
plan = launcher.plan_training(TrainOptions(TrainArgs("retinanet-mobilenet-640"), "tpu-v5e-8", run_id=run_id))
launcher.launch(plan, lambda plan: True)
"""


def launch(vertex: VertexServer, registry: RegistryServer, build: CloudBuildServer, outputs: Path, run_id: str,
           env: dict) -> float:
    before = len(vertex.created())
    start = time.time()
    subprocess.run([sys.executable, "-c", LAUNCH, vertex.url, registry.url, build.url, str(outputs), run_id],
                   cwd=REPO, env=env, check=True)
    assert len(vertex.created()) == before + 1
    return vertex.request_times[-1] - start


def main() -> None:
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    port = free_port()
    emulator = create_server("127.0.0.1", port, in_memory=True)
    emulator.start()
    env = dict(os.environ, STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{port}")
    os.environ.update(env)
    vertex, registry = TimedVertexServer(), RegistryServer()
    build = CloudBuildServer(registry)
    try:
        bucket = storage.Client(project="bench", credentials=AnonymousCredentials()).create_bucket("bench-exp")
        bucket.blob("data/dataset.json").upload_from_string(json.dumps({"content_hash": "x", "classes": []}))
        outputs = REPO / "bench" / ".relaunch-outputs.json"
        outputs.write_text(json.dumps({
            "project": "bench", "region": "us-central1", "bucket": "bench-exp", "dataPrefix": "gs://bench-exp/data",
            "runsPrefix": "gs://bench-exp/runs", "checkpointsPrefix": "gs://bench-exp/checkpoints",
            "jobServiceAccount": "job@bench.iam.gserviceaccount.com",
            "repositoryUrl": "us-central1-docker.pkg.dev/bench/detector", "tensorboard": "", "experiment": "exp"}))
        first = launch(vertex, registry, build, outputs, "first", env)
        builds_first = len(build.builds)
        again = [launch(vertex, registry, build, outputs, f"again-{i}", env) for i in range(3)]
        outputs.unlink()
    finally:
        vertex.close(), registry.close(), build.close(), emulator.stop()
    relaunch = sorted(again)[1]
    print(f"first launch (baseline, builds the image): {first:.2f} s to the job request, {builds_first} build(s)")
    print(f"relaunch, unchanged code (median of 3): {relaunch:.2f} s to the job request, "
          f"{len(build.builds) - builds_first} build(s); {relaunch / first:.2f}x the first launch")
    print(f"goal 0 builds and <= 2 s: {'met' if relaunch <= 2 and len(build.builds) == builds_first else 'NOT met'}")


class TimedVertexServer(VertexServer):
    """Notes when each create request arrives."""

    def __init__(self):
        self.request_times: list[float] = []
        super().__init__()

    def handle(self, method, path, body):
        if method == "POST" and path.split("?")[0].endswith("/customJobs"):
            self.request_times.append(time.time())
        return super().handle(method, path, body)


if __name__ == "__main__":
    main()
