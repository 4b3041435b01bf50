"""Train/validation split by image, stratified by class, deterministic for a seed."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence

from jobs.dataset.annotations import LabelledImage

NEGATIVE = "\0negative"  # stratum of images without boxes


def split_images(
    images: Sequence[LabelledImage], val_fraction: float, seed: int
) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """Each image goes to the stratum of its rarest class, then each stratum is split at ``val_fraction``.

    The result depends only on the file names, their boxes, the fraction and the seed, never on row order.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {val_fraction}")
    frequency = Counter(box.label for image in images for box in image.boxes)
    strata: dict[str, list[LabelledImage]] = defaultdict(list)
    for image in sorted(images, key=lambda item: item.filename):
        labels = {box.label for box in image.boxes}
        key = min(labels, key=lambda label: (frequency[label], label)) if labels else NEGATIVE
        strata[key].append(image)
    rng = random.Random(seed)
    train: list[LabelledImage] = []
    val: list[LabelledImage] = []
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        count = round(len(members) * val_fraction)
        if val_fraction > 0 and count == 0 and len(members) >= 2:
            count = 1
        val.extend(members[:count])
        train.extend(members[count:])
    return sorted(train, key=lambda i: i.filename), sorted(val, key=lambda i: i.filename)
