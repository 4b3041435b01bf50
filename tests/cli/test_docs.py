"""Every command is shown in the README the way a user types it, and every option says what it does in --help."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.main import get_command

from jobs.cli import app

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def commands(group=None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, object]]:
    """Every leaf command of the CLI with its words (``data prepare``)."""
    group = group or get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


COMMANDS = dict(commands())


def test_the_walk_finds_every_command_group():
    assert {"train", "evaluate", "data prepare", "runs cancel", "images build"} <= set(COMMANDS)


@pytest.mark.parametrize("words", sorted(COMMANDS))
def test_a_command_is_in_the_readme_and_says_what_it_does(words):
    assert COMMANDS[words].help, f"`{words}` has no docstring for --help"
    assert re.search(rf"-m jobs {re.escape(words)}(?![\w-])", README), \
        f"the README never shows `python -m jobs {words}`"


@pytest.mark.parametrize("words", sorted(COMMANDS))
def test_every_option_has_help(words):
    options = [param for param in COMMANDS[words].params if param.param_type_name == "option"]
    assert [option.opts[0] for option in options if not option.help] == []
