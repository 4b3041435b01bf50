"""COCO object detection JSON (``images``, ``annotations``, ``categories``; ``bbox`` is ``[x, y, width, height]``).

Class names come from ``categories`` (their COCO ids are not kept: ids follow the label map rules). Images that no
annotation names are negatives. Images are looked for beside the JSON file unless ``--images`` says otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jobs.dataset.annotations import Box, Labels
from jobs.dataset.findings import (
    BAD_FIELD,
    BAD_HEADER,
    CROWD_BOX,
    EMPTY_INPUT,
    MALFORMED_FILE,
    TOO_DEEP,
    UNKNOWN_CLASS_ID,
    Report,
)
from jobs.dataset.readers.base import fatal, number, positive_int, read_text, register_reader, shown

FORMAT = "coco-json"


def _looks_like_coco(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".json"


def _id(value: object, key: str) -> object:
    """An id as COCO writes it, a number or a string: lists and objects are not ids (nor hashable)."""
    if type(value) not in (int, float, str):
        raise ValueError(f"{key} {shown(value)} is not an id (a number or a string)")
    return value


def _categories(data: dict[str, Any], name: str, report: Report) -> dict[object, str]:
    names: dict[object, str] = {}
    for index, category in enumerate(data["categories"]):
        if (not isinstance(category, dict) or type(category.get("id")) not in (int, float, str)
                or type(category.get("name")) not in (int, str) or not str(category["name"]).strip()):
            raise fatal(report, BAD_HEADER, f"{name}:categories[{index}]",
                        f"every category needs an id and a name (numbers or strings), got {shown(category)}")
        if category["id"] in names:
            raise fatal(report, BAD_HEADER, f"{name}:categories[{index}]",
                        f"category id {category['id']!r} is used twice")
        names[category["id"]] = str(category["name"]).strip()
    return names


def _images(data: dict[str, Any], name: str, labels: Labels, report: Report
            ) -> dict[object, tuple[str, tuple[int, int] | None]]:
    images: dict[object, tuple[str, tuple[int, int] | None]] = {}
    for index, image in enumerate(data["images"]):
        location = f"{name}:images[{index}]"
        try:
            if not isinstance(image, dict) or "id" not in image:
                raise ValueError(f"an image needs an id and a file_name, got {shown(image)}")
            if _id(image["id"], "image id") in images:
                raise ValueError(f"image id {image['id']!r} is used twice")
            if type(image.get("file_name")) not in (int, str, type(None)):
                raise ValueError(f"file_name {shown(image['file_name'])} is not a string")
            filename = str(image.get("file_name") or "").strip()
            if not filename:
                raise ValueError("file_name is empty")
            size = None
            if image.get("width") and image.get("height"):
                size = (positive_int(image["width"], "width"), positive_int(image["height"], "height"))
        except ValueError as err:
            report.add(BAD_FIELD, location, str(err))
            named = image.get("file_name") if isinstance(image, dict) else None
            labels.drop_row(named if isinstance(named, str) else None)
            continue
        images[image["id"]] = (filename, size)
    return images


def _location(name: str, index: int, annotation: object) -> str:
    """``file:annotation ID`` by its id when it has a short one, else ``file:annotations[INDEX]``."""
    key = annotation.get("id") if isinstance(annotation, dict) else None
    if type(key) in (int, float, str) and len(str(key)) <= 64:
        return f"{name}:annotation {key}"
    return f"{name}:annotations[{index}]"


@register_reader(
    FORMAT, "COCO object detection JSON: bbox [x, y, width, height] in pixels", "a .json file",
    _looks_like_coco,
)
def read_coco(path: Path, report: Report) -> Labels:
    name = path.name
    text = read_text(path, report)
    if not text.strip():
        raise fatal(report, EMPTY_INPUT, name, "the file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise fatal(report, MALFORMED_FILE, f"{name}:{err.lineno}", f"not valid JSON: {err.msg}") from err
    except RecursionError:
        raise fatal(report, TOO_DEEP, name, "arrays or objects nest deeper than the JSON parser follows; a COCO "
                                            "file nests four levels") from None
    missing = [key for key in ("images", "annotations", "categories")
               if not isinstance(data, dict) or not isinstance(data.get(key), list)]
    if missing:
        raise fatal(report, BAD_HEADER, name,
                    f"a COCO file is an object with the lists images, annotations and categories; "
                    f"missing or not a list: {', '.join(missing)}")
    categories = _categories(data, name, report)
    labels = Labels(sources=[path], images_dir=path.parent)
    images = _images(data, name, labels, report)
    annotated = set()
    for index, annotation in enumerate(data["annotations"]):
        location = _location(name, index, annotation)
        try:
            if not isinstance(annotation, dict):
                raise ValueError(f"an annotation is an object, got {shown(annotation)}")
            if _id(annotation.get("image_id"), "image_id") not in images:
                raise ValueError(f"image_id {shown(annotation.get('image_id'))} is not in images")
            annotated.add(annotation["image_id"])
            _id(annotation.get("category_id"), "category_id")
            bbox = annotation.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise ValueError(f"bbox must be [x, y, width, height], got {shown(bbox)}")
            x, y, width, height = (number(v, key) for v, key in zip(bbox, ("x", "y", "width", "height"),
                                                                    strict=True))
        except ValueError as err:
            report.add(BAD_FIELD, location, str(err))
            image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
            image = images.get(image_id) if type(image_id) in (int, float, str) else None
            labels.drop_row(image[0] if image else None)
            continue
        filename = images[annotation["image_id"]][0]
        label = categories.get(annotation.get("category_id"))
        if label is None:
            report.add(UNKNOWN_CLASS_ID, location, f"category_id {annotation.get('category_id')!r} is not in "
                                                   f"categories ({', '.join(map(repr, categories))})")
            labels.drop_row(filename)
        else:
            crowd = bool(annotation.get("iscrowd"))
            if crowd:
                report.add(CROWD_BOX, location, f"crowd box of '{label}' in '{filename}': kept as a crowd region "
                                                "(not trained on, detections on it not counted)")
            labels.add_box(filename, Box(label, x, y, x + width, y + height, location, crowd=crowd))
    for image_id, (filename, size) in images.items():
        if image_id not in annotated:
            labels.add_negative(filename, f"{name}:image {image_id}")
        if filename in labels.images:
            labels.images[filename].stated_size = size
    if labels.rows_in == 0:
        raise fatal(report, EMPTY_INPUT, name, "the file lists no images")
    return labels
