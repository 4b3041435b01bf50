"""The build context tarball and its content-hash tag."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from jobs.launch.context import REPO_ROOT, build_context


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "repo"
    for name in ("requirements.txt", "pyproject.toml", "README.md", "images", "jobs", "tests"):
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, root / name)
    return root


def test_same_tree_same_bytes_and_tag(tree):
    first, second = build_context("trainer", tree), build_context("trainer", tree)
    assert first.tarball == second.tarball and first.tag == second.tag and len(first.tag) == 16


def test_times_and_pycache_do_not_matter(tree):
    before = build_context("trainer", tree)
    for path in (tree / "jobs").rglob("*.py"):
        os.utime(path, (1_000_000, 1_000_000))
    (tree / "jobs" / "__pycache__").mkdir(exist_ok=True)
    (tree / "jobs" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    assert build_context("trainer", tree).tag == before.tag


@pytest.mark.parametrize("changed", ["jobs/metrics.py", "requirements.txt", "images/trainer/Dockerfile",
                                     "jobs/runtime/train.py", "images/dev-only.txt"])
def test_a_change_to_what_goes_in_changes_the_tag(tree, changed):
    before = build_context("trainer", tree)
    with (tree / changed).open("a") as stream:
        stream.write("\n# changed\n")
    assert build_context("trainer", tree).tag != before.tag


@pytest.mark.parametrize("changed", ["tests/test_cli.py", "images/evaluator/Dockerfile", "pyproject.toml"])
def test_files_that_do_not_go_in_leave_the_tag_alone(tree, changed):
    before = build_context("trainer", tree)
    with (tree / changed).open("a") as stream:
        stream.write("\n# changed\n")
    (tree / "docs.md").write_text("notes")
    assert build_context("trainer", tree).tag == before.tag


def test_entries_are_sorted_with_fixed_owner_time_and_mode(tree):
    context = build_context("evaluator", tree)
    with tarfile.open(fileobj=io.BytesIO(context.tarball)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and "images/evaluator/Dockerfile" in names
    assert not any(n.startswith("tests/") or "__pycache__" in n for n in names)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
