"""YOLO (Ultralytics, darknet) text labels: ``images/``, ``labels/``, one ``class cx cy w h`` line per box.

The input is a data YAML (``path``, ``train``/``val``/``test`` folders, lists or .txt lists of images, ``names``) or a
folder with ``images/`` and ``labels/`` and class names in a ``*.yaml``, ``classes.txt`` or ``*.names`` file. The
label of ``…/images/…/a.jpg`` is ``…/labels/…/a.txt``; like Ultralytics, an image with an empty or missing label
file is a negative, and a segment line (``class x1 y1 x2 y2 …``) counts as its bounding box. Splits come from the
YAML, or from ``images/train``, ``images/val`` and ``images/test`` folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.dataset.annotations import SPLITS, Box, Labels
from jobs.dataset.findings import (
    BAD_FIELD,
    BAD_HEADER,
    EMPTY_INPUT,
    MALFORMED_ANNOTATION,
    MALFORMED_FILE,
    SPLIT_CONFLICT,
    TOO_DEEP,
    UNKNOWN_CLASS_ID,
    YAML_ALIAS,
    Report,
)
from jobs.dataset.locate import IMAGE_SUFFIXES
from jobs.dataset.readers.base import display_name, fatal, number, read_text, register_reader, shown

YAML_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
LINE_HELP = "expected 'class x_center y_center width height' (fractions of the image size)"


def _looks_like_yolo(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() in {".yaml", ".yml"}
    return path.is_dir() and (path / "labels").is_dir()


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder becomes ``labels``, the suffix ``.txt``."""
    parts = list(image.parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _image_files(folder: Path) -> list[Path]:
    """Every image name below ``folder``; whatever is not a folder, so that a FIFO or a device named like an image
    is reported (I015) rather than skipped."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())


def _names(value: object, where: str, report: Report) -> list[str]:
    if isinstance(value, dict) and all(isinstance(k, int) for k in value) and \
            sorted(value) == list(range(len(value))):
        value = [value[k] for k in range(len(value))]
    if not isinstance(value, list) or not value or not all(str(v).strip() for v in value):
        raise fatal(report, BAD_HEADER, where, f"names must be a list of class names or a dict 0: name, "
                                               f"1: name ..., got {shown(value)}")
    return [str(v).strip() for v in value]


def _load_yaml(path: Path, report: Report) -> dict[Any, Any]:
    import yaml  # only here: every other command and format goes without it

    class NoAliasLoader(yaml.SafeLoader):
        """Refuses aliases (``*name``): each can repeat a whole subtree, nine nested ones a billion times."""

        def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()  # type: ignore[no-untyped-call]  # types-PyYAML leaves it unannotated
                raise fatal(report, YAML_ALIAS, f"{path.name}:{event.start_mark.line + 1}",
                            f"the alias *{event.anchor} is refused (aliases can expand exponentially); write the "
                            "values out")
            return super().compose_node(parent, index)

    try:
        data = yaml.load(read_text(path, report), Loader=NoAliasLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)  # a MarkedYAMLError's
        line = mark.line + 1 if mark else 1
        raise fatal(report, MALFORMED_FILE, f"{path.name}:{line}",
                    f"not valid YAML: {getattr(err, 'problem', None) or err}") from err
    except RecursionError:
        raise fatal(report, TOO_DEEP, path.name, "lists or mappings nest deeper than the YAML parser follows; a data "
                                                 "YAML nests two levels") from None
    if not isinstance(data, dict) or "names" not in data:
        raise fatal(report, BAD_HEADER, path.name, "a YOLO data YAML is a mapping with names (and train, val)")
    return data


def _split_images(entry: object, root: Path, where: str, report: Report) -> list[Path]:
    images: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        source = root / str(item)
        if source.is_dir():
            images += _image_files(source)
        elif source.is_file() and source.suffix == ".txt":
            for line in read_text(source, report).splitlines():
                if line.strip():
                    images.append((source.parent / line.strip()).resolve())
        else:
            raise fatal(report, BAD_HEADER, where, f"{item!r} is neither a folder nor a .txt list of images "
                                                   f"(looked for {source})")
    return images


def _class_names_file(folder: Path) -> Path | None:
    for pattern in ("classes.txt", "obj.names", "*.names"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def _layout(path: Path, report: Report) -> tuple[Path, list[str], dict[str | None, list[Path]], list[Path]]:
    """(root, class names, images by split, files read) for a YAML file or a dataset folder."""
    yaml_file = path if path.is_file() else next(
        iter(sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))), None)
    if yaml_file is not None:
        data = _load_yaml(yaml_file, report)
        root = (yaml_file.parent / str(data.get("path") or ".")).resolve()
        names = _names(data["names"], yaml_file.name, report)
        splits: dict[str | None, list[Path]] = {
            YAML_SPLITS[key]: _split_images(data[key], root, f"{yaml_file.name}: {key}", report)
            for key in YAML_SPLITS if data.get(key)}
        if splits:
            return root, names, splits, [yaml_file]
        return root, names, {None: _image_files(root / "images")}, [yaml_file]
    names_file = _class_names_file(path)
    if names_file is None:
        raise fatal(report, BAD_HEADER, display_name(path),
                    "no class names: add a data YAML with names, or classes.txt with one name per line")
    names = _names([n for n in read_text(names_file, report).splitlines() if n.strip()], names_file.name, report)
    folders = {split: path / "images" / split for split in SPLITS if (path / "images" / split).is_dir()}
    if folders:
        return path, names, {split: _image_files(folder) for split, folder in folders.items()}, [names_file]
    return path, names, {None: _image_files(path / "images")}, [names_file]


def _read_label_file(label: Path, filename: str, location: str, names: list[str], labels: Labels,
                     report: Report) -> None:
    try:
        text = label.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        report.add(MALFORMED_ANNOTATION, location, f"byte {err.start} is not UTF-8 text")
        labels.drop_row(filename)
        return
    lines = [(index, line.split()) for index, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        labels.add_negative(filename, location)
    for line_number, values in lines:
        where = f"{location}:{line_number}"
        try:
            if len(values) != 5 and (len(values) < 7 or len(values) % 2 == 0):
                raise ValueError(f"{len(values)} values; {LINE_HELP}")
            if not values[0].isdigit():
                raise ValueError(f"class {values[0]!r} is not a class index")
            numbers = [number(v, "coordinate") for v in values[1:]]
        except ValueError as err:
            report.add(BAD_FIELD, where, str(err))
            labels.drop_row(filename)
            continue
        index = int(values[0])
        if index >= len(names):
            report.add(UNKNOWN_CLASS_ID, where, f"class {index} has no name: the names list has {len(names)} "
                                                f"(0 to {len(names) - 1})")
            labels.drop_row(filename)
            continue
        if len(values) == 5:
            cx, cy, width, height = numbers
            box = (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)
        else:
            xs, ys = numbers[0::2], numbers[1::2]
            box = (min(xs), min(ys), max(xs), max(ys))
        labels.add_box(filename, Box(names[index], *box, where, normalized=True))


@register_reader(
    "yolo", "YOLO txt labels (Ultralytics, darknet): class x_center y_center width height, normalized",
    "a data .yaml file, or a folder holding labels/ (and images/)", _looks_like_yolo,
)
def read_yolo(path: Path, report: Report) -> Labels:
    root, names, splits, sources = _layout(path, report)
    labels = Labels(sources=list(sources), images_dir=root)
    for split, images in splits.items():
        for image in images:
            filename = image.relative_to(root).as_posix() if image.is_relative_to(root) else str(image)
            label = label_path(image)
            location = label.relative_to(root).as_posix() if label.is_relative_to(root) else str(label)
            existing = labels.images.get(filename)
            if existing is not None:
                if split != existing.split:
                    report.add(SPLIT_CONFLICT, location, f"'{filename}' is listed for {existing.split} and "
                                                         f"{split}; it stays in {existing.split}")
                continue
            if label.is_file():
                labels.sources.append(label)
                _read_label_file(label, filename, location, names, labels, report)
            elif label.exists():
                report.add(MALFORMED_ANNOTATION, location, "not a regular file (a FIFO, socket, device or folder); "
                                                           "not read, its image is not used")
                labels.drop_row(filename)
            else:
                labels.add_negative(filename, f"{location} (no label file)")
            if filename in labels.images:
                labels.images[filename].split = split
    if labels.rows_in == 0:
        raise fatal(report, EMPTY_INPUT, display_name(path), "no images found under the dataset's image folders")
    return labels
