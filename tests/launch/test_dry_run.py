"""``train|evaluate --dry-run`` as a user runs them: print the exact request, contact nothing, need no Pulumi CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from google.cloud.aiplatform_v1 import types
from launch_servers import free_port

from jobs.launch.context import REPO_ROOT, build_context
from jobs.runtime.spec import EvalArgs

OUTPUTS = {
    "project": "acme-ml", "region": "us-central1", "bucket": "acme-exp", "dataPrefix": "gs://acme-exp/data",
    "runsPrefix": "gs://acme-exp/runs", "checkpointsPrefix": "gs://acme-exp/checkpoints",
    "jobServiceAccount": "job@acme-ml.iam.gserviceaccount.com",
    "repositoryUrl": "us-central1-docker.pkg.dev/acme-ml/detector", "tensorboard": "", "experiment": "exp-a",
}


def dry_run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """The CLI with no server reachable: proxies and the storage emulator's host are a closed port."""
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(OUTPUTS))
    closed = f"http://127.0.0.1:{free_port()}"
    env = dict(os.environ, PATH=os.path.dirname(sys.executable), HTTPS_PROXY=closed, HTTP_PROXY=closed,
               STORAGE_EMULATOR_HOST=closed, COLUMNS="400")  # any network use would fail
    return subprocess.run([sys.executable, "-m", "jobs", *args, "--stack-outputs", str(outputs), "--dry-run"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_dry_run_prints_the_custom_job_request_offline(tmp_path):
    done = dry_run(tmp_path, "train", "--preset", "retinanet-spinenet-mobile-384", "--accelerator", "tpu-v5e-4",
                   "--spot", "--run-id", "dry")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    body = json.loads(text[text.index("{"):])
    assert body["parent"] == "projects/acme-ml/locations/us-central1"
    assert body["customJob"]["jobSpec"]["scheduling"]["strategy"] == "SPOT"  # enum names, REST field names
    job = types.CustomJob.from_json(json.dumps(body["customJob"]))
    (pool,) = job.job_spec.worker_pool_specs
    assert (pool.machine_spec.machine_type, pool.machine_spec.tpu_topology) == ("ct5lp-hightpu-4t", "2x2")
    assert pool.container_spec.image_uri.endswith(f"/trainer:{build_context('trainer').tag}")
    assert "$" in text.split("{", 1)[0]  # the cost estimate precedes the request
    assert "price unknown (no price kept for: Vertex AI ct5lp-hightpu-4t machine (Spot)" in text


def test_evaluate_dry_run_plans_from_the_stack_alone_and_says_what_it_would_read(tmp_path):
    done = dry_run(tmp_path, "evaluate", "--run", "first", "--accelerator", "gpu-l4-1")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    plan = text.split("{", 1)[0]
    assert ("following gs://acme-exp/checkpoints/first into gs://acme-exp/runs/first/eval (the launch first reads "
            "gs://acme-exp/runs/first/run.json)") in plan
    body = json.loads(text[text.index("{"):])
    job = types.CustomJob.from_json(json.dumps(body["customJob"]))
    (pool,) = job.job_spec.worker_pool_specs
    assert EvalArgs.from_argv(list(pool.container_spec.args)) == EvalArgs(
        "gs://acme-exp/checkpoints/first", continuous=True, eval_dir="gs://acme-exp/runs/first/eval",
        timeout=24 * 3600.0)
    assert job.job_spec.base_output_directory.output_uri_prefix == "gs://acme-exp/runs/first"
