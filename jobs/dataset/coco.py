"""COCO ground truth, the form pycocotools and Model Garden's evaluator read."""

from __future__ import annotations

from collections.abc import Sequence

from jobs.dataset.pipeline import CheckedImage
from jobs.metrics import CocoAnnotation, CocoGroundTruth


def ground_truth(images: Sequence[CheckedImage], classes: dict[str, int]) -> CocoGroundTruth:
    """Images keep their record's ``source_id`` as id; boxes are in pixels, crowds marked ``iscrowd``."""
    annotations: list[CocoAnnotation] = []
    for image in images:
        for box in image.boxes:
            width, height = box.xmax - box.xmin, box.ymax - box.ymin
            annotations.append({
                "id": len(annotations) + 1, "image_id": image.source_id, "category_id": classes[box.label],
                "bbox": [box.xmin, box.ymin, width, height], "area": width * height, "iscrowd": int(box.crowd),
            })
    return {
        "info": {"description": "written by detector data prepare"},
        "images": [{"id": i.source_id, "file_name": i.filename, "width": i.info.width, "height": i.info.height}
                   for i in images],
        "annotations": annotations,
        "categories": [{"id": class_id, "name": name, "supercategory": "none"}
                       for name, class_id in sorted(classes.items(), key=lambda item: item[1])],
    }
