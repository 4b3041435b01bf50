"""Validation findings: every problem names a rule, where it was found and what was done about it.

Codes are stable (F: input files, I: images, B: boxes, C: classes, S: splits); ``python -m jobs data rules`` prints
the table. ``--strict`` makes every finding fatal.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


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


E, W = Severity.ERROR, Severity.WARNING

# Input files.
EMPTY_INPUT = _rule("F001", "empty-input", E, Action.FATAL, "The label file has no rows.")
BAD_HEADER = _rule(
    "F002", "bad-header", E, Action.FATAL,
    "The header (CSV) or the top-level structure (JSON, YAML) does not match the chosen format.",
)
BAD_FIELD = _rule("F003", "bad-field", E, Action.DROP_ROW, "A field is missing or not of the expected type.")
NOT_UTF8 = _rule("F004", "not-utf8", E, Action.FATAL, "The label file is not UTF-8 text.")
MALFORMED_FILE = _rule(
    "F005", "malformed-file", E, Action.FATAL, "The label file is not well-formed JSON, YAML or CSV (syntax error)."
)
MALFORMED_ANNOTATION = _rule(
    "F006", "malformed-annotation", E, Action.DROP_IMAGE,
    "A per-image annotation file (VOC XML, YOLO txt) cannot be parsed; its image is not written.",
)
SPLIT_CONFLICT = _rule(
    "F007", "split-conflict", W, Action.FIX, "Rows give one image different splits (ML_USE); the first one is used."
)
NEGATIVE_CONFLICT = _rule(
    "F008", "negative-conflict", W, Action.DROP_ROW,
    "An image is listed without a label (a negative) and also with boxes; the boxes win, the empty row is dropped.",
)
UNCLOSED_QUOTE = _rule(
    "F009", "unclosed-quote", E, Action.DROP_ROW,
    "A CSV row runs over several lines: a quoted field holds line breaks, nearly always a quote left open that "
    "swallows the lines after it. None of its lines is used and each counts as a reported row; close the quote.",
)
YAML_ALIAS = _rule(
    "F010", "yaml-alias", E, Action.FATAL,
    "The YAML uses an alias (*name): aliases can expand exponentially (an alias bomb), so they are refused; write "
    "the values out.",
)
TOO_DEEP = _rule(
    "F011", "too-deep", E, Action.FATAL,
    "The JSON or YAML nests deeper than its parser follows (over about a thousand levels): a broken or hostile "
    "file, no dataset format needs more than a few.",
)
# Images.
MISSING_IMAGE = _rule(
    "I001", "missing-image", E, Action.DROP_IMAGE, "The image named by a row does not exist."
)
UNREADABLE_IMAGE = _rule(
    "I002", "unreadable-image", E, Action.DROP_IMAGE,
    "The image cannot be read or decoded: not an image, or corrupt data.",
)
SIZE_MISMATCH = _rule(
    "I003", "size-mismatch", W, Action.WARN,
    "The label file states another width/height than the image has; boxes are kept in image pixels.",
)
EXIF_ORIENTATION = _rule(
    "I004", "exif-orientation", W, Action.WARN,
    "The JPEG carries an EXIF rotation. Training decodes the stored pixels without rotating them, so the "
    "boxes are taken as drawn on the stored (unrotated) pixels.",
)
UNSAFE_PATH = _rule(
    "I005", "unsafe-path", E, Action.DROP_IMAGE,
    "The file name is absolute or leaves the images folder ('..').",
)
TRUNCATED_IMAGE = _rule(
    "I006", "truncated-image", E, Action.DROP_IMAGE,
    "The file ends before the image data does (an interrupted copy or download); TensorFlow cannot decode it.",
)
CONVERTED_FORMAT = _rule(
    "I007", "converted-format", W, Action.FIX,
    "Neither JPEG nor PNG (BMP, GIF, WebP, TIFF ...): re-encoded as lossless PNG in the record (the first frame "
    "of an animation); the file itself is left alone.",
)
ALPHA_CHANNEL = _rule(
    "I008", "alpha-channel", W, Action.WARN,
    "RGBA or transparent palette: the decoder drops alpha, so transparent areas train as the colours stored "
    "under them.",
)
GRAYSCALE = _rule(
    "I009", "grayscale", W, Action.WARN,
    "Single-channel image: decoded as three equal channels; fine if the images at inference are grayscale too.",
)
CMYK = _rule(
    "I010", "cmyk", W, Action.WARN,
    "CMYK/YCCK JPEG: TensorFlow converts it to RGB; colours may differ from what the labelling tool showed.",
)
HIGH_BIT_DEPTH = _rule(
    "I011", "16-bit", W, Action.WARN, "16 bits per channel: decoded to 8 bits per channel for training."
)
CASE_MISMATCH = _rule(
    "I012", "case-mismatch", W, Action.FIX,
    "The name differs from the file on disk only in letter case: the file on disk is used. Rename one of them: "
    "case-sensitive file systems and GCS would not find it.",
)
UNLABELED_IMAGES = _rule(
    "I013", "unlabeled-images", W, Action.WARN,
    "Images in the images folder that no label names are not used; --unlabeled-as-negatives keeps them as "
    "negatives (images without objects).",
)
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's MAX_IMAGE_PIXELS: 256 MiB decoded as RGB
TOO_MANY_PIXELS = _rule(
    "I014", "too-many-pixels", E, Action.DROP_IMAGE,
    f"The header declares more pixels than --max-pixels (default {DEFAULT_MAX_PIXELS:,}, Pillow's limit: 256 MiB "
    "decoded as RGB), checked for every image before any decode; raise --max-pixels if such images are real.",
)
NOT_A_FILE = _rule(
    "I015", "not-a-file", E, Action.DROP_IMAGE,
    "The path is not a regular file (a FIFO, socket or device): it is never opened, since reading it could block "
    "forever.",
)
SYMLINK_OUTSIDE = _rule(
    "I016", "symlink-outside", E, Action.DROP_IMAGE,
    "The path goes through a symbolic link that leads out of the images folder; --follow-symlinks uses it.",
)
# Boxes.
BOX_NOT_FINITE = _rule("B001", "box-not-finite", E, Action.DROP_ROW, "A coordinate is NaN or inf.")
BOX_INVERTED = _rule("B002", "box-inverted", E, Action.DROP_ROW, "xmax < xmin or ymax < ymin.")
BOX_ZERO_AREA = _rule("B003", "box-zero-area", E, Action.DROP_ROW, "The box has no width or height.")
BOX_CLIPPED = _rule(
    "B004", "box-clipped", W, Action.FIX,
    "The box crosses the image border by at most 2 % of the image size: clipped to the image (by under 0.01 px: "
    "float rounding, clipped without a finding).",
)
BOX_OUTSIDE = _rule(
    "B005", "box-outside-image", E, Action.DROP_ROW,
    "The box lies outside the image by more than 2 % of the image size (negative or too large coordinates).",
)
BOX_TOO_SMALL = _rule(
    "B006", "box-too-small", W, Action.DROP_ROW,
    "A side is under 2 px, or under 1/256 of the image's longer side (under 1 px at the smallest preset input): "
    "no anchor can learn it.",
)
DUPLICATE_BOX = _rule(
    "B007", "duplicate-box", W, Action.DROP_ROW, "The same class and coordinates as an earlier box of the image."
)
OVERLAPPING_DUPLICATE = _rule(
    "B008", "overlapping-duplicate", W, Action.DROP_ROW,
    "The same class as an earlier box of the image with IoU > 0.95: almost certainly labelled twice.",
)
TOO_MANY_BOXES = _rule(
    "B009", "too-many-boxes", W, Action.WARN,
    "More boxes in one image than Model Garden keeps by default (max_num_instances = 100), which it truncates "
    "silently; `train` raises the limit to the dataset's maximum (max_boxes_per_image in dataset.json).",
)
CROWD_BOX = _rule(
    "B010", "crowd-box", W, Action.WARN,
    "COCO iscrowd=1 marks a group of objects, not one. Written with is_crowd=1 (records) and iscrowd=1 (COCO "
    "ground truth): Model Garden's RetinaNet parser skips it in training and COCO evaluation ignores detections "
    "on it.",
)
# Classes.
UNKNOWN_CLASS = _rule("C001", "unknown-class", E, Action.FATAL, "A class is not in the given label map.")
NO_CLASSES = _rule("C002", "no-classes", E, Action.FATAL, "No usable box remains.")
ESCAPED_CLASS_NAME = _rule(
    "C003", "escaped-class-name", W, Action.FIX,
    "The class name holds quotes, backslashes or control characters (newline, tab): written escaped in "
    "label_map.pbtxt, which reads back to the same name.",
)
SIMILAR_CLASS_NAMES = _rule(
    "C004", "similar-class-names", W, Action.WARN,
    "Class names that differ only in letter case are separate classes; rename one if they are the same.",
)
UNKNOWN_CLASS_ID = _rule(
    "C005", "unknown-class-id", E, Action.DROP_ROW,
    "A numeric class (YOLO index, COCO category_id) has no name in the class list.",
)
LONG_CLASS_NAME = _rule(
    "C006", "long-class-name", E, Action.FATAL,
    "A class name is longer than 200 characters: a broken field (a quote left open, shifted columns) rather than "
    "a name.",
)
# Splits.
CLASS_MISSING_FROM_SPLIT = _rule(
    "S001", "class-missing-from-split", W, Action.WARN,
    "A class has no box in train (it cannot be learnt) or in val (it cannot be evaluated).",
)
CLASS_TOO_RARE = _rule(
    "S002", "class-too-rare", W, Action.WARN,
    "A class has fewer than 10 boxes in train: too few to learn; label more.",
)


class Finding(NamedTuple):
    code: str
    location: str  # "file:row", "file:object N" or "file"
    message: str

    @property
    def rule(self) -> Rule:
        return RULES[self.code]

    def __str__(self) -> str:
        return f"{self.location}: {self.code} {self.rule.name}: {self.message}"


@dataclass
class Report:
    """All findings of one run."""

    findings: list[Finding] = field(default_factory=list)

    def add(self, rule: Rule, location: str, message: str) -> None:
        self.findings.append(Finding(rule.code, location, message))

    def extend(self, other: Report) -> None:
        self.findings.extend(other.findings)

    @property
    def fatal(self) -> list[Finding]:
        return [f for f in self.findings if f.rule.action is Action.FATAL]

    def sort(self) -> None:
        """By file, then row or object number; findings about a whole file after its rows."""
        def key(finding: Finding) -> tuple[str, float, str]:
            file, _, rest = finding.location.partition(":")
            digits = "".join(c for c in rest.split(":")[0] if c.isdigit())
            return file, int(digits) if digits else math.inf, rest

        self.findings.sort(key=key)

    def counts(self) -> Counter[str]:
        return Counter(f.code for f in self.findings)

    def to_json(self) -> list[dict[str, str]]:
        return [f._asdict() | {"rule": f.rule.name, "severity": f.rule.severity.value,
                             "action": f.rule.action.value} for f in self.findings]

    @classmethod
    def from_json(cls, findings: list[dict[str, str]]) -> Report:
        return cls([Finding(f["code"], f["location"], f["message"]) for f in findings])
