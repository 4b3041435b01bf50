"""The format-independent form of labelled data that every reader produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

SPLITS = ("train", "val", "test")


class Box(NamedTuple):
    """One labelled box with the place it came from (for messages); a tuple, cheap to pass between processes.

    Coordinates are image pixels, or fractions of the image size when ``normalized`` (Vertex AI, YOLO): those
    become pixels once the image's size is known.
    """

    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    location: str
    normalized: bool = False
    crowd: bool = False  # COCO iscrowd: a group of objects, skipped by training and ignored by evaluation


@dataclass
class LabelledImage:
    """An image and its boxes; an image with no boxes is a negative example."""

    filename: str  # relative to the images folder, "/"-separated
    boxes: list[Box] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)  # every source row that named this image
    stated_size: tuple[int, int] | None = None  # (width, height) as the label file says, if it does
    split: str | None = None  # "train", "val" or "test" where the format assigns it
    negative_rows: list[str] = field(default_factory=list)  # rows that list the image without a box
    uri: str | None = None  # the gs:// URI the label file gave, when it gave one


@dataclass
class Labels:
    """What a reader returns: images keyed by file name, how many input rows it saw and how many it dropped.

    A row is one box (CSV line, VOC object, COCO annotation, YOLO line) or one listing of an image without boxes.
    """

    images: dict[str, LabelledImage] = field(default_factory=dict)
    rows_in: int = 0
    rows_dropped: int = 0
    sources: list[Path] = field(default_factory=list)  # every file read (for the input fingerprint)
    mentioned: set[str] = field(default_factory=set)  # image names of dropped rows: labelled, not unlabeled
    images_dir: Path | None = None  # where the format keeps its images, if it says
    split_fractions: tuple[float, float] | None = None  # (val, test) for unassigned images, if the format says

    def image(self, filename: str, location: str) -> LabelledImage:
        item = self.images.get(filename)
        if item is None:
            item = self.images[filename] = LabelledImage(filename)
        item.locations.append(location)
        return item

    def add_box(self, filename: str, box: Box) -> LabelledImage:
        self.rows_in += 1
        item = self.image(filename, box.location)
        item.boxes.append(box)
        return item

    def add_negative(self, filename: str, location: str) -> LabelledImage:
        self.rows_in += 1
        item = self.image(filename, location)
        item.negative_rows.append(location)
        return item

    def drop_row(self, filename: str | None = None, rows: int = 1) -> None:
        """Count a reported row (or ``rows``); its image (if known) is not an unlabeled image, even with no row
        left."""
        self.rows_in += rows
        self.rows_dropped += rows
        if filename:
            self.mentioned.add(filename)
