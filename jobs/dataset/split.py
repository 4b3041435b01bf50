"""Train/validation(/test) split by image, stratified by class, deterministic for a seed."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from operator import attrgetter

from jobs.dataset.annotations import SPLITS, LabelledImage

NEGATIVE = "\0negative"  # stratum of images without boxes
_BY_NAME = attrgetter("filename")


def split_images(
    images: Sequence[LabelledImage], val_fraction: float, seed: int, test_fraction: float = 0.0
) -> dict[str, list[LabelledImage]]:
    """Images keep the split their format assigned; the others go to the stratum of their rarest class, and each
    stratum is split at ``val_fraction`` (and ``test_fraction``).

    The result depends only on the file names, their boxes, splits, the fractions and the seed, never on row order.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"val and test fractions must be >= 0 and sum below 1, got {val_fraction}, {test_fraction}")
    result: dict[str, list[LabelledImage]] = {split: [] for split in SPLITS}
    frequency = Counter(box.label for image in images for box in image.boxes)
    strata: dict[str, list[LabelledImage]] = defaultdict(list)
    for image in sorted(images, key=_BY_NAME):
        if image.split:
            result[image.split].append(image)
            continue
        labels = {box.label for box in image.boxes}
        if len(labels) > 1:
            key = min(labels, key=lambda label: (frequency[label], label))
        else:
            key = labels.pop() if labels else NEGATIVE
        strata[key].append(image)
    rng = random.Random(seed)
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        val = _count(len(members), val_fraction)
        test = _count(len(members) - val, test_fraction * len(members) / max(1, len(members) - val))
        result["val"] += members[:val]
        result["test"] += members[val:val + test]
        result["train"] += members[val + test:]
    return {split: sorted(items, key=_BY_NAME) for split, items in result.items()}


def _count(members: int, fraction: float) -> int:
    """round(members * fraction), but at least 1 of 2 or more when the fraction is not 0."""
    count = round(members * fraction)
    return 1 if fraction > 0 and count == 0 and members >= 2 else min(count, members)
