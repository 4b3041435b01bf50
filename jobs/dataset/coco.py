"""COCO ground truth, the form pycocotools and Model Garden's evaluator read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GroundTruthImage:
    image_id: int
    filename: str
    width: int
    height: int
    boxes: Sequence[tuple[int, float, float, float, float, bool]]  # (class id, xmin, ymin, xmax, ymax, crowd), pixels


def ground_truth(images: Sequence[GroundTruthImage], label_map: dict[str, int]) -> dict:
    annotations = []
    for image in images:
        for class_id, xmin, ymin, xmax, ymax, crowd in image.boxes:
            width, height = xmax - xmin, ymax - ymin
            annotations.append({
                "id": len(annotations) + 1, "image_id": image.image_id, "category_id": class_id,
                "bbox": [xmin, ymin, width, height], "area": width * height, "iscrowd": int(crowd),
            })
    return {
        "info": {"description": "written by detector data prepare"},
        "images": [{"id": i.image_id, "file_name": i.filename, "width": i.width, "height": i.height}
                   for i in images],
        "annotations": annotations,
        "categories": [{"id": class_id, "name": name, "supercategory": "none"}
                       for name, class_id in sorted(label_map.items(), key=lambda item: item[1])],
    }
