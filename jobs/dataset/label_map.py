"""The label map (``label_map.pbtxt``): class names to ids from 1, in the text format of the OD API."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from jobs.errors import UsageError

_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|([{}:])|("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|([A-Za-z0-9_.+-]+))')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}
_QUOTED = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.DOTALL)


def quote(name: str) -> str:
    """A protobuf text-format string literal for ``name``: quotes, backslashes and control characters escaped."""
    return '"' + "".join(_QUOTED.get(c) or (f"\\{ord(c):03o}" if ord(c) < 32 or ord(c) == 127 else c)
                         for c in name) + '"'


def _unquote(literal: str) -> str:
    def unescape(match: re.Match[str]) -> str:
        octal, hexadecimal, other = match.groups()
        if octal or hexadecimal:
            return chr(int(octal, 8) if octal else int(hexadecimal, 16))
        return _ESCAPES.get(other, other)

    return _ESCAPE.sub(unescape, literal[1:-1])


def build(names: Iterable[str]) -> dict[str, int]:
    """Ids from 1 in sorted name order: stable whatever order the rows come in."""
    return {name: index for index, name in enumerate(sorted(set(names)), start=1)}


def dumps(label_map: dict[str, int]) -> str:
    return "".join(
        f"item {{\n  id: {class_id}\n  name: {quote(name)}\n}}\n"
        for name, class_id in sorted(label_map.items(), key=lambda item: item[1])
    )


def loads(text: str, source: str = "label map") -> dict[str, int]:
    """Parse ``item { id: N name: '...' }`` entries; display_name is accepted and ignored."""
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            if text[pos:].strip():
                line = text.count("\n", 0, pos) + 1
                raise UsageError(f"{source}:{line}: cannot parse {text[pos:pos + 20]!r}")
            break
        pos = match.end()
        if not match.group(1):
            tokens.append(match.group(0).strip())
    items, index = [], 0
    while index < len(tokens):
        if tokens[index:index + 2] != ["item", "{"]:
            raise UsageError(f"{source}: expected 'item {{', found {tokens[index]!r}")
        index += 2
        fields: dict[str, str] = {}
        while index < len(tokens) and tokens[index] != "}":
            key, colon, value = tokens[index:index + 3]
            if colon != ":":
                raise UsageError(f"{source}: expected ':' after {key!r}")
            fields[key] = _unquote(value) if value[0] in "\"'" else value
            index += 3
        index += 1
        items.append(fields)
    label_map: dict[str, int] = {}
    for fields in items:
        if "name" not in fields or "id" not in fields or not fields["id"].isdigit():
            raise UsageError(f"{source}: every item needs a name and an integer id, got {fields}")
        class_id = int(fields["id"])
        if class_id < 1 or class_id in label_map.values() or fields["name"] in label_map:
            raise UsageError(f"{source}: ids must be unique and >= 1, names unique (item {fields})")
        label_map[fields["name"]] = class_id
    if not label_map:
        raise UsageError(f"{source}: no items")
    return label_map


def load(path: Path) -> dict[str, int]:
    try:
        return loads(path.read_text(encoding="utf-8"), str(path))
    except OSError as err:
        raise UsageError(f"cannot read label map {path}: {err.strerror}") from err
