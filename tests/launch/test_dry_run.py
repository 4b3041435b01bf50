"""``train --dry-run`` as a user runs it: prints the exact request, contacts nothing, needs no Pulumi CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from google.cloud.aiplatform_v1 import types

from jobs.launch.context import REPO_ROOT, build_context

OUTPUTS = {
    "project": "acme-ml", "region": "us-central1", "bucket": "acme-exp", "dataPrefix": "gs://acme-exp/data",
    "runsPrefix": "gs://acme-exp/runs", "checkpointsPrefix": "gs://acme-exp/checkpoints",
    "jobServiceAccount": "job@acme-ml.iam.gserviceaccount.com",
    "repositoryUrl": "us-central1-docker.pkg.dev/acme-ml/detector", "tensorboard": "", "experiment": "exp-a",
}


def test_dry_run_prints_the_custom_job_request_offline(tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(OUTPUTS))
    env = dict(os.environ, PATH=os.path.dirname(sys.executable), HTTPS_PROXY="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", COLUMNS="200")  # any network use would fail
    done = subprocess.run(
        [sys.executable, "-m", "jobs", "train", "--stack-outputs", str(outputs), "--preset",
         "retinanet-spinenet-mobile-384", "--accelerator", "tpu-v5e-4", "--spot", "--run-id", "dry", "--dry-run"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
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
