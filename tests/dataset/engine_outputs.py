"""What two engines (or two image locations) must agree on, read from a prepared output folder, and the synthetic
dataset with images of every kind and bad rows added that they are compared on."""

from __future__ import annotations

import json
from pathlib import Path

from image_kinds import make_image

from jobs.dataset.tfrecord import read_records

BAD_IMAGES = {"cut-short.jpg": "truncated", "not-an-image.jpg": "text", "animated.gif": "gif", "scan.tiff": "tiff",
              "rotated.jpg": "exif6", "alpha.png": "rgba", "depth.png": "png16"}
BAD_ROWS = [  # appended to the synthetic VoTT CSV
    '"missing.jpg","1","1","5","5","circle"',  # I001
    '"cut-short.jpg","2","2","20","20","square"',  # I006: no end marker, dropped
    '"not-an-image.jpg","2","2","20","20","square"',  # I002: not an image
    '"animated.gif","2","2","20","20","square"',  # I007: re-encoded as PNG in the record
    '"scan.tiff","2","2","20","20","circle"',
    '"rotated.jpg","2","2","20","20","triangle"',  # EXIF rotation reported
    '"alpha.png","2","2","20","20","triangle"',
    '"depth.png","2","2","20","20","circle"',
    '"alpha.png","30","2","10","20","triangle"',  # inverted box
    '"rotated.jpg","2","2","20","20","triangle"',  # duplicate box
    '"scan.tiff","2","2","900","20","circle"',  # outside the image
    '"scan.tiff","x","2","20","20","circle"',  # not a number
]


def examples(out: Path) -> dict[str, list[bytes]]:
    """Per split, every serialized example in the output's shards, sorted (the shards' boundaries ignored)."""
    found: dict[str, list[bytes]] = {}
    for shard in sorted(out.glob("*.tfrecord")):
        with shard.open("rb") as stream:
            found.setdefault(shard.name.partition("-")[0], []).extend(read_records(stream))
    return {split: sorted(records) for split, records in found.items()}


def outcome(out: Path) -> dict[str, object]:
    """What both engines must agree on, read from the output folder."""
    summary = json.loads((out / "dataset.json").read_text())
    report = json.loads((out / "report.json").read_text())
    return {"examples": examples(out), "label_map": (out / "label_map.pbtxt").read_text(),
            "ground truth": {p.name: p.read_text() for p in sorted(out.glob("*_coco.json"))},
            "splits": {name: {key: value for key, value in split.items() if key != "shards"}
                       for name, split in summary["splits"].items()},
            "rows": summary["rows"], "findings": report["findings"], "counts": summary["findings"],
            "content_hash": summary["content_hash"], "verify": summary["verify"]}


def with_bad_rows(synthetic, folder: Path) -> tuple[Path, Path]:
    """The synthetic dataset (60 images) with images of every kind and bad rows added: (labels, images folder)."""
    images = folder / "images"
    images.mkdir()
    for path in synthetic.images_dir.iterdir():
        (images / path.name).write_bytes(path.read_bytes())
    for name, kind in BAD_IMAGES.items():
        make_image(images / name, kind)
    labels = folder / "labels.csv"
    labels.write_text(synthetic.labels_csv.read_text().rstrip("\n") + "\n" + "\n".join(BAD_ROWS) + "\n")
    return labels, images
