"""COCO ground truth and detections drawn at random, with the shapes real evaluations have."""

from __future__ import annotations

import random


def synthetic_case(seed: int, classes: int = 3, images: int = 25) -> tuple[dict, list[dict]]:
    """Integer image ids that are neither contiguous nor from 0; boxes of every COCO area range."""
    rng = random.Random(seed)
    ground_truth = {"images": [], "annotations": [],
                    "categories": [{"id": c, "name": f"class{c}"} for c in range(1, classes + 1)]}
    detections = []
    for index in range(images):
        image_id = 1_000_003 + 17 * index
        ground_truth["images"].append({"id": image_id, "width": 640, "height": 480, "file_name": f"{index}.jpg"})
        for _ in range(rng.randint(0, 4)):
            side = rng.choice([12, 40, 120, 200])
            box = [rng.uniform(0, 400), rng.uniform(0, 250), side * rng.uniform(0.7, 1.3), side]
            category = rng.randint(1, classes)
            ground_truth["annotations"].append({"id": len(ground_truth["annotations"]) + 1, "image_id": image_id,
                                                "category_id": category, "bbox": box, "area": box[2] * box[3],
                                                "iscrowd": 0})
            if rng.random() < 0.8:  # found, more or less well, sometimes as the wrong class
                jitter = [v + rng.gauss(0, side * 0.12) for v in box]
                found = category if rng.random() < 0.85 else rng.randint(1, classes)
                detections.append({"image_id": image_id, "category_id": found, "bbox": jitter,
                                   "score": round(rng.random(), 4)})
        for _ in range(rng.randint(0, 3)):  # false detections
            detections.append({"image_id": image_id, "category_id": rng.randint(1, classes),
                               "bbox": [rng.uniform(0, 500), rng.uniform(0, 400), 30, 30],
                               "score": round(rng.random() * 0.6, 4)})
    return ground_truth, detections
