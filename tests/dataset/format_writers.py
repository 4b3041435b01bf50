"""Write one set of labelled images in every supported format (for round trips and the GCS test).

An item is ``(filename, width, height, split, boxes)`` with boxes ``(label, xmin, ymin, xmax, ymax)`` in pixels and
split ``train``/``val``/``test``; an item without boxes is a negative image.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from defusedxml.ElementTree import parse

Item = tuple[str, int, int, str, list[tuple[str, float, float, float, float]]]
VERTEX_ML_USE = {"train": "TRAIN", "val": "VALIDATION", "test": "TEST"}


def read_voc(xml: Path) -> tuple[str, int, int, list[tuple[str, float, float, float, float]]]:
    root = parse(xml).getroot()
    size = root.find("size")
    boxes = [(o.findtext("name"), *(float(o.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")))
             for o in root.findall("object")]
    return root.findtext("filename"), int(size.findtext("width")), int(size.findtext("height")), boxes


def _csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def write_vott(folder: Path, items: list[Item]) -> Path:
    rows = [[name, *box[1:], box[0]] for name, _, _, _, boxes in items for box in boxes]
    return _csv(folder / "vott.csv", ["image", "xmin", "ymin", "xmax", "ymax", "label"], rows)


def write_datitran(folder: Path, items: list[Item]) -> Path:
    rows = [[name, w, h, box[0], *box[1:]] for name, w, h, _, boxes in items for box in boxes]
    return _csv(folder / "datitran.csv", ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"],
                rows)


def write_vertex(folder: Path, items: list[Item], bucket: str = "my-bucket/raccoon/images") -> Path:
    rows = []
    for name, w, h, split, boxes in items:
        uri = f"gs://{bucket}/{name}"
        if not boxes:
            rows.append([VERTEX_ML_USE[split], uri])
        for label, xmin, ymin, xmax, ymax in boxes:
            rows.append([VERTEX_ML_USE[split], uri, label, repr(xmin / w), repr(ymin / h), "", "", repr(xmax / w),
                         repr(ymax / h), "", ""])
    return _csv(folder / "vertex.csv", [], rows)


def write_voc(folder: Path, items: list[Item]) -> Path:
    annotations = folder / "annotations"
    annotations.mkdir(parents=True, exist_ok=True)
    for name, w, h, _, boxes in items:
        objects = "".join(
            f"<object><name>{label}</name><difficult>0</difficult><bndbox><xmin>{xmin:g}</xmin><ymin>{ymin:g}</ymin>"
            f"<xmax>{xmax:g}</xmax><ymax>{ymax:g}</ymax></bndbox></object>" for label, xmin, ymin, xmax, ymax in boxes)
        (annotations / f"{Path(name).stem}.xml").write_text(
            f"<annotation><folder>images</folder><filename>{name}</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size>{objects}</annotation>\n", encoding="utf-8")
    return annotations


def write_coco(folder: Path, items: list[Item]) -> Path:
    names = sorted({box[0] for *_, boxes in items for box in boxes})
    data = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in enumerate(names, 10)]}
    for image_id, (name, w, h, _, boxes) in enumerate(items, start=100):
        data["images"].append({"id": image_id, "file_name": name, "width": w, "height": h})
        for label, xmin, ymin, xmax, ymax in boxes:
            data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": image_id,
                                        "category_id": 10 + names.index(label), "iscrowd": 0,
                                        "bbox": [xmin, ymin, xmax - xmin, ymax - ymin]})
    path = folder / "instances.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_yolo(folder: Path, items: list[Item], images: Path) -> Path:
    """An Ultralytics dataset: images copied into images/<split>/, labels/<split>/, data.yaml with the splits."""
    names = sorted({box[0] for *_, boxes in items for box in boxes})
    splits = sorted({item[3] for item in items})
    for name, w, h, split, boxes in items:
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
        shutil.copy(images / name, folder / "images" / split / name)
        lines = [f"{names.index(label)} {(xmin + xmax) / 2 / w!r} {(ymin + ymax) / 2 / h!r} {(xmax - xmin) / w!r} "
                 f"{(ymax - ymin) / h!r}\n" for label, xmin, ymin, xmax, ymax in boxes]
        (folder / "labels" / split / f"{Path(name).stem}.txt").write_text("".join(lines), encoding="utf-8")
    names_yaml = "".join(f"  {i}: {n}\n" for i, n in enumerate(names))
    splits_yaml = "".join(f"{split}: images/{split}\n" for split in splits)
    path = folder / "data.yaml"
    path.write_text(f"path: .\n{splits_yaml}names:\n{names_yaml}", encoding="utf-8")
    return path
