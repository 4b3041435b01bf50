"""Validation findings: every problem names a rule, where it was found and what was done about it."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"  # the row, box or whole input cannot be used
    WARNING = "warning"  # usable, but the user should know


class Action(StrEnum):
    FATAL = "fatal"  # nothing is written
    DROP_ROW = "drop-row"  # the row (box or image reference) is not written
    DROP_IMAGE = "drop-image"  # every row of the image is not written
    FIX = "fix"  # written after a documented correction
    WARN = "warn"  # written unchanged


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity
    action: Action
    doc: str


RULES: dict[str, Rule] = {}


def _rule(code: str, name: str, severity: Severity, action: Action, doc: str) -> Rule:
    rule = Rule(code, name, severity, action, doc)
    RULES[code] = rule
    return rule


# Input files.
EMPTY_INPUT = _rule("F001", "empty-input", Severity.ERROR, Action.FATAL, "The label file has no rows.")
BAD_HEADER = _rule(
    "F002", "bad-header", Severity.ERROR, Action.FATAL, "The header does not match the chosen format."
)
BAD_FIELD = _rule(
    "F003", "bad-field", Severity.ERROR, Action.DROP_ROW, "A field is missing or not of the expected type."
)
NOT_UTF8 = _rule("F004", "not-utf8", Severity.ERROR, Action.FATAL, "The label file is not UTF-8 text.")
# Images.
MISSING_IMAGE = _rule(
    "I001", "missing-image", Severity.ERROR, Action.DROP_IMAGE, "The image named by a row does not exist."
)
UNREADABLE_IMAGE = _rule(
    "I002", "unreadable-image", Severity.ERROR, Action.DROP_IMAGE,
    "The image cannot be read, or is neither JPEG nor PNG (Model Garden decodes only these).",
)
SIZE_MISMATCH = _rule(
    "I003", "size-mismatch", Severity.WARNING, Action.WARN,
    "The label file states another width/height than the image has; boxes are kept in image pixels.",
)
EXIF_ORIENTATION = _rule(
    "I004", "exif-orientation", Severity.WARNING, Action.WARN,
    "The JPEG carries an EXIF rotation. Training decodes the stored pixels without rotating them, so the "
    "boxes are taken as drawn on the stored (unrotated) pixels.",
)
UNSAFE_PATH = _rule(
    "I005", "unsafe-path", Severity.ERROR, Action.DROP_IMAGE,
    "The file name is absolute or leaves the images folder ('..').",
)
# Boxes.
BOX_NOT_FINITE = _rule("B001", "box-not-finite", Severity.ERROR, Action.DROP_ROW, "A coordinate is NaN or inf.")
BOX_INVERTED = _rule(
    "B002", "box-inverted", Severity.ERROR, Action.DROP_ROW, "xmax < xmin or ymax < ymin."
)
BOX_ZERO_AREA = _rule("B003", "box-zero-area", Severity.ERROR, Action.DROP_ROW, "The box has no width or height.")
BOX_CLIPPED = _rule(
    "B004", "box-clipped", Severity.WARNING, Action.FIX,
    "The box crosses the image border by at most 2 % of the image size: clipped to the image.",
)
BOX_OUTSIDE = _rule(
    "B005", "box-outside-image", Severity.ERROR, Action.DROP_ROW,
    "The box lies outside the image by more than 2 % of the image size.",
)
# Classes.
UNKNOWN_CLASS = _rule(
    "C001", "unknown-class", Severity.ERROR, Action.FATAL, "A class is not in the given label map."
)
NO_CLASSES = _rule("C002", "no-classes", Severity.ERROR, Action.FATAL, "No usable box remains.")


@dataclass(frozen=True)
class Finding:
    code: str
    location: str  # "file:row" or "file"
    message: str

    @property
    def rule(self) -> Rule:
        return RULES[self.code]

    def __str__(self) -> str:
        return f"{self.location}: {self.code} {self.rule.name}: {self.message}"


@dataclass
class Report:
    """All findings of one run, with the row reconciliation: rows in = rows written + rows reported."""

    findings: list[Finding] = field(default_factory=list)

    def add(self, rule: Rule, location: str, message: str) -> None:
        self.findings.append(Finding(rule.code, location, message))

    def extend(self, other: Report) -> None:
        self.findings.extend(other.findings)

    @property
    def fatal(self) -> list[Finding]:
        return [f for f in self.findings if f.rule.action is Action.FATAL]

    def counts(self) -> Counter[str]:
        return Counter(f.code for f in self.findings)

    def to_json(self) -> list[dict]:
        return [asdict(f) | {"rule": f.rule.name, "severity": f.rule.severity.value,
                             "action": f.rule.action.value} for f in self.findings]
