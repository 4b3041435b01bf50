"""`doctor` on a healthy local fake project: seconds for every check. Goal: under 3 s.

The project is the local servers of tests/launch (a key whose token endpoint is local, the storage emulator, the
Service Usage, Resource Manager, IAM, Artifact Registry and Docker registry stand-ins), reached through the real
client libraries. Timed twice: `python -m jobs doctor` as a user runs it (a fresh process, imports included),
and `diagnose` alone in a warm process.
Run: .venv/bin/python bench/doctor.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "launch"))

from launch_servers import FakeProject, free_port  # noqa: E402

GOAL_S = 3.0


def main() -> None:
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    port = free_port()
    emulator = create_server("127.0.0.1", port, in_memory=True)
    emulator.start()
    storage_url = f"http://127.0.0.1:{port}"
    os.environ["STORAGE_EMULATOR_HOST"] = storage_url
    project = FakeProject(Path(tempfile.mkdtemp()), storage_url)
    try:
        project.make_healthy(storage.Client(project="bench", credentials=AnonymousCredentials()))
        env = dict(os.environ, **project.env)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "jobs", "doctor", "--stack-outputs", str(project.outputs)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        cli_s = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"doctor failed on the healthy project:\n{done.stdout}{done.stderr}")

        os.environ.update(project.env)
        from jobs.launch.doctor import diagnose
        from jobs.stack import load_stack_outputs

        diagnose(lambda: load_stack_outputs(outputs_file=project.outputs), "--stack-outputs x", "tpu-v5e-4")
        start = time.perf_counter()
        checks = diagnose(lambda: load_stack_outputs(outputs_file=project.outputs), "--stack-outputs x",
                          "tpu-v5e-4")
        warm_s = time.perf_counter() - start
    finally:
        project.close()
        emulator.stop()
    print(f"python -m jobs doctor (fresh process): {cli_s:.2f} s  (goal < {GOAL_S:g} s: "
          f"{'met' if cli_s < GOAL_S else 'NOT met'})")
    print(f"diagnose, warm process, {len(checks)} checks: {warm_s:.3f} s")


if __name__ == "__main__":
    main()
