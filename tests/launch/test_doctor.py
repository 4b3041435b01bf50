"""`doctor` and the pre-launch checks, through google-auth, google-cloud-storage and the CLI, against local servers:
a key whose token endpoint is local, the storage emulator, and stand-ins of Service Usage, Resource Manager, IAM,
Artifact Registry (testIamPermissions) and the Docker registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from launch_servers import local_launcher

from jobs.launch.doctor import Status, diagnose, required_apis
from jobs.launch.launcher import PreflightError, TrainOptions
from jobs.launch.vertex import VertexLauncher
from jobs.runtime.spec import TrainArgs
from jobs.stack import load_stack_outputs

pytest_plugins = ["launch_servers"]

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_MEMBER = "serviceAccount:launcher@acme-ml.iam.gserviceaccount.com"


def run_doctor(project, accelerator: str = "gpu-t4-1") -> dict:
    checks = diagnose(lambda: load_stack_outputs(outputs_file=project.outputs), f"--stack-outputs {project.outputs}",
                      accelerator)
    return {check.name: check for check in checks}


def run_cli(project, *args: str) -> subprocess.CompletedProcess:
    """``python -m jobs doctor`` as a user runs it: a fresh process; only loopback is reachable."""
    env = dict(os.environ, **project.env, COLUMNS="400", HTTPS_PROXY="http://127.0.0.1:9",
               NO_PROXY="127.0.0.1,localhost")
    return subprocess.run([sys.executable, "-m", "jobs", "doctor", "--stack-outputs", str(project.outputs), *args],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_healthy_project_passes_every_check(fake_project, storage_emulator):
    fake_project.make_healthy(storage_emulator)
    checks = run_doctor(fake_project)
    assert checks["credentials"].status is Status.OK
    assert "launcher@acme-ml.iam.gserviceaccount.com" in checks["credentials"].detail
    assert [c.name for c in checks.values() if c.status is not Status.OK] == []
    assert checks["quota: gpu-t4-1"].detail == "custom_model_training_nvidia_t4_gpus in us-central1: limit 8 >= 1"
    assert set(checks) >= {"stack outputs", "APIs enabled", "permissions: Vertex AI jobs", "permissions: Cloud Build",
                           "permissions: bucket", "permissions: image repository",
                           "permissions: act as the job account", "permissions: act as the build account",
                           "image: evaluator", "dataset"}
    # every stand-in was asked, with the caller's token (they refuse requests without it)
    assert fake_project.resource_manager.requests == ["projects/acme-ml", "projects/acme-ml"]
    assert fake_project.iam.requests == [
        "projects/-/serviceAccounts/detector-build-platform@acme-ml.iam.gserviceaccount.com",
        "projects/-/serviceAccounts/job-exp-prints@acme-ml.iam.gserviceaccount.com"]
    assert fake_project.artifact_registry.requests == ["projects/acme-ml/locations/us-central1/repositories/detector"]
    assert fake_project.service_usage.quota_requests == [
        "aiplatform.googleapis.com/custom_model_training_nvidia_t4_gpus"]


@pytest.mark.parametrize(("accelerator", "metric", "need"), [
    ("gpu-l4-1", "nvidia_l4_gpus", 1), ("gpu-a100-1", "nvidia_a100_gpus", 1), ("gpu-h100-1", "nvidia_h100_gpus", 1),
    ("tpu-v3-8", "tpu_v3", 8), ("tpu-v5e-1", "tpu_v5e", 1), ("tpu-v5e-8", "tpu_v5e", 8)])
def test_the_quota_check_asks_the_accelerators_training_metric(fake_project, storage_emulator, accelerator, metric,
                                                                need):
    fake_project.make_healthy(storage_emulator)
    check = run_doctor(fake_project, accelerator)[f"quota: {accelerator}"]
    assert check.status is Status.OK, check
    assert check.detail == f"custom_model_training_{metric} in us-central1: limit 8 >= {need}"


def test_a_regional_quota_below_the_need_fails_with_where_to_ask(fake_project, storage_emulator):
    fake_project.make_healthy(storage_emulator)
    fake_project.service_usage.quotas["aiplatform.googleapis.com/custom_model_training_tpu_v5e"] = {
        "us-central1": 4, "us-west4": 8}
    check = run_doctor(fake_project, "tpu-v5e-8")["quota: tpu-v5e-8"]
    assert check.status is Status.FAILED
    assert check.detail == "custom_model_training_tpu_v5e in us-central1: limit 4, one replica needs 8"
    assert check.fix.startswith(
        "request more at https://console.cloud.google.com/iam-admin/quotas?project=acme-ml"
        "&metric=aiplatform.googleapis.com%2Fcustom_model_training_tpu_v5e (region us-central1)")
    # no regional bucket: the global one (0) applies
    fake_project.service_usage.quotas["aiplatform.googleapis.com/custom_model_training_tpu_v5e"] = {"us-west4": 8}
    assert run_doctor(fake_project, "tpu-v5e-8")["quota: tpu-v5e-8"].detail.endswith("limit 0, one replica needs 8")


def test_a_quota_without_a_known_or_exposed_metric_is_not_checked(fake_project, storage_emulator):
    fake_project.make_healthy(storage_emulator)
    for accelerator in ("tpu-v2-8", "cpu"):  # no document names their metric: nothing is asked
        check = run_doctor(fake_project, accelerator)[f"quota: {accelerator}"]
        assert check.status is Status.NOT_CHECKED and "no documented Vertex AI training quota metric" in check.detail
    assert fake_project.service_usage.quota_requests == []
    del fake_project.service_usage.quotas["aiplatform.googleapis.com/custom_model_training_nvidia_l4_gpus"]
    check = run_doctor(fake_project, "gpu-l4-1")["quota: gpu-l4-1"]
    assert check.status is Status.NOT_CHECKED and "Service Usage answered 404" in check.detail


def test_a_tpu_accelerator_checks_the_trainer_image_too(fake_project, storage_emulator):
    fake_project.make_healthy(storage_emulator)
    checks = run_doctor(fake_project, "tpu-v5e-4")
    assert checks["image: trainer"].status is Status.OK and checks["image: evaluator"].status is Status.OK


def test_each_check_fails_with_the_command_that_fixes_it(fake_project):
    apis = set(required_apis())
    fake_project.service_usage.enabled = apis - {"aiplatform.googleapis.com", "iamcredentials.googleapis.com"}
    fake_project.resource_manager.granted["projects/acme-ml"] = {"aiplatform.customJobs.get",
                                                                  "aiplatform.customJobs.list"}
    fake_project.artifact_registry.granted["projects/acme-ml/locations/us-central1/repositories/detector"] = set()
    for account in ("job-exp-prints", "detector-build-platform"):
        fake_project.iam.granted[f"projects/-/serviceAccounts/{account}@acme-ml.iam.gserviceaccount.com"] = set()
    # no bucket, no image pushed
    checks = run_doctor(fake_project)

    def fails(name: str, detail: str, fix: str) -> None:
        check = checks[name]
        assert check.status is Status.FAILED, check
        assert detail in check.detail, check.detail
        assert fix in check.fix, check.fix

    assert checks["credentials"].status is Status.OK and checks["stack outputs"].status is Status.OK
    fails("APIs enabled", "not enabled: aiplatform.googleapis.com, iamcredentials.googleapis.com",
          "gcloud services enable aiplatform.googleapis.com iamcredentials.googleapis.com --project=acme-ml")
    fails("permissions: Vertex AI jobs", "lacks aiplatform.customJobs.create, aiplatform.customJobs.cancel",
          f"gcloud projects add-iam-policy-binding acme-ml --member={ACCOUNT_MEMBER} --role=roles/aiplatform.user")
    fails("permissions: Cloud Build", "lacks cloudbuild.builds.create, cloudbuild.builds.get",
          "--role=roles/cloudbuild.builds.editor")
    fails("permissions: bucket", "gs://acme-exp-prints does not exist", "pulumi -C infra up --stack exp-prints")
    fails("permissions: image repository", "lacks artifactregistry.repositories.downloadArtifacts",
          "gcloud artifacts repositories add-iam-policy-binding detector --location=us-central1 --project=acme-ml "
          f"--member={ACCOUNT_MEMBER} --role=roles/artifactregistry.reader")
    fails("permissions: act as the job account", "lacks iam.serviceAccounts.actAs",
          "gcloud iam service-accounts add-iam-policy-binding job-exp-prints@acme-ml.iam.gserviceaccount.com "
          f"--member={ACCOUNT_MEMBER} --role=roles/iam.serviceAccountUser")
    fails("permissions: act as the build account", "lacks iam.serviceAccounts.actAs",
          "gcloud iam service-accounts add-iam-policy-binding detector-build-platform@acme-ml.iam.gserviceaccount.com "
          f"--member={ACCOUNT_MEMBER} --role=roles/iam.serviceAccountUser")
    fails("image: evaluator", "is not in the registry",
          f"python -m jobs images build --stack-outputs {fake_project.outputs} --image evaluator")
    fails("dataset", "no prepared data at gs://acme-exp-prints/data (dataset.json missing)",
          "python -m jobs data prepare --input LABELS --images IMAGES --out gs://acme-exp-prints/data")


def test_a_stack_made_before_the_build_account_leaves_it_unchecked(fake_project, storage_emulator):
    fake_project.make_healthy(storage_emulator)
    outputs = json.loads(fake_project.outputs.read_text())
    del outputs["buildServiceAccount"]
    fake_project.outputs.write_text(json.dumps(outputs))
    check = run_doctor(fake_project)["permissions: act as the build account"]
    assert check.status is Status.NOT_CHECKED and "Cloud Build's default account" in check.detail
    assert fake_project.iam.requests == ["projects/-/serviceAccounts/job-exp-prints@acme-ml.iam.gserviceaccount.com"]


def test_an_unknown_repository_or_account_is_reported_missing(fake_project, storage_emulator):
    fake_project.make_healthy(storage_emulator)
    fake_project.artifact_registry.granted.clear()
    fake_project.iam.granted.clear()
    checks = run_doctor(fake_project)
    assert "not found" in checks["permissions: image repository"].detail
    assert checks["permissions: image repository"].fix == "pulumi -C infra up --stack PLATFORM_STACK"
    assert checks["permissions: act as the job account"].fix == "pulumi -C infra up --stack exp-prints"


def test_the_data_check_fails_without_dataset_json(fake_project, storage_emulator):
    fake_project.make_healthy(storage_emulator)
    storage_emulator.bucket("acme-exp-prints").blob("data/dataset.json").delete()
    check = run_doctor(fake_project)["dataset"]
    assert check.status is Status.FAILED and "dataset.json missing" in check.detail


def test_without_credentials_only_that_is_said(fake_project, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    checks = run_doctor(fake_project)
    assert checks["credentials"].status is Status.FAILED
    assert checks["credentials"].fix == "gcloud auth application-default login"
    assert checks["the other checks"].status is Status.NOT_CHECKED
    assert fake_project.resource_manager.requests == []


def test_a_token_endpoint_that_refuses_fails_the_credentials_check(fake_project, monkeypatch):
    monkeypatch.setattr(fake_project.token, "handle", lambda method, path, body: (400, {"error": "invalid_grant"}, {}))
    check = run_doctor(fake_project)["credentials"]
    assert check.status is Status.FAILED and "cannot get a token" in check.detail


def test_unreadable_stack_outputs_fail_their_check(fake_project, tmp_path):
    checks = diagnose(lambda: load_stack_outputs(outputs_file=tmp_path / "none.json"),
                      f"--stack-outputs {tmp_path / 'none.json'}", "gpu-t4-1")
    by_name = {check.name: check for check in checks}
    assert by_name["stack outputs"].status is Status.FAILED
    assert "Cannot read the stack outputs file" in by_name["stack outputs"].detail
    assert by_name["stack outputs"].fix.startswith("pulumi -C infra stack output --json --stack exp-NAME > ")
    assert by_name["the other checks"].detail == "they need the stack outputs"


def test_cli_exits_0_on_a_healthy_project(fake_project, storage_emulator):
    fake_project.make_healthy(storage_emulator)
    done = run_cli(fake_project, "--accelerator", "gpu-t4-1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("✓") == 12 and "✗" not in done.stdout
    assert "launcher@acme-ml.iam.gserviceaccount.com" in done.stdout


def test_cli_exits_1_and_shows_the_fixes(fake_project):
    done = run_cli(fake_project)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "✗" in done.stdout
    assert "gcloud services enable" in done.stdout
    assert "gcloud auth" not in done.stdout and "python -m jobs images build" in done.stdout


# The quick form, run by VertexLauncher.launch before it submits.

@pytest.fixture
def launcher(fake_project, storage_emulator, vertex_server, build_server):
    from jobs.launch.doctor import preflight

    stack = load_stack_outputs(outputs_file=fake_project.outputs)
    return local_launcher(stack, storage_emulator, vertex_server.url, build_server.url, fake_project.registry.url,
                          lambda image, data_uri: preflight(stack, image, data_uri, storage=storage_emulator))


def train(launcher: VertexLauncher):
    options = TrainOptions(TrainArgs("retinanet-mobilenet-256", None), "gpu-t4-1", run_id="first")
    return launcher.launch(launcher.plan_training(options), lambda plan: True)


def test_a_launch_on_a_healthy_project_passes_the_preflight(launcher, fake_project, storage_emulator, vertex_server):
    fake_project.make_healthy(storage_emulator)
    train(launcher)
    assert len(vertex_server.created()) == 1


def test_a_launch_is_refused_listing_every_failed_check(launcher, fake_project, storage_emulator, vertex_server):
    fake_project.make_healthy(storage_emulator)
    fake_project.iam.granted["projects/-/serviceAccounts/job-exp-prints@acme-ml.iam.gserviceaccount.com"] = set()
    fake_project.resource_manager.granted["projects/acme-ml"].discard("aiplatform.customJobs.create")
    with pytest.raises(PreflightError) as refused:
        train(launcher)
    message = str(refused.value)
    assert "2 check(s) failed" in message
    assert "aiplatform.customJobs.create" in message and "roles/aiplatform.user" in message
    assert "gcloud iam service-accounts add-iam-policy-binding" in message
    assert vertex_server.created() == []


def test_a_missing_image_does_not_stop_a_launch(launcher, fake_project, storage_emulator, vertex_server):
    fake_project.make_healthy(storage_emulator)
    fake_project.registry.tags.clear()  # the launch builds it
    train(launcher)
    assert len(vertex_server.created()) == 1
