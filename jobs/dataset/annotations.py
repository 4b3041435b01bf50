"""The format-independent form of labelled data that every reader produces."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Box:
    """One labelled box in image pixels, with the place it came from (for messages)."""

    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    location: str


@dataclass
class LabelledImage:
    """An image and its boxes; an image with no boxes is a negative example."""

    filename: str
    boxes: list[Box] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)  # every source row that named this image
    stated_size: tuple[int, int] | None = None  # (width, height) as the label file says, if it does


@dataclass
class Labels:
    """What a reader returns: images keyed by file name, how many input rows it saw and how many it dropped."""

    images: dict[str, LabelledImage] = field(default_factory=dict)
    rows_in: int = 0
    rows_dropped: int = 0

    def image(self, filename: str, location: str) -> LabelledImage:
        item = self.images.get(filename)
        if item is None:
            item = self.images[filename] = LabelledImage(filename)
        item.locations.append(location)
        return item
