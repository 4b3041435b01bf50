"""Run an exported model (any format) on images, folders of images and videos (frames sampled).

Gives detections as data, annotated copies of the images (or frames), and ``detections.csv`` / ``.json``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from jobs.dataset import label_map as label_maps
from jobs.errors import DataError, UsageError
from jobs.io import staged_dir
from jobs.report.drawing import Detection, draw

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["Detection", "Detector", "Picture", "Predictions", "Predictor", "UnreadableFile", "draw", "predict_paths",
           "video_frames", "write_detections"]

KIND = "predictions"  # the kind of output folder (jobs.io): --out replaces only earlier predictions
OWN_FILES = {"detections.csv", "detections.json"}
# What prediction looks for in a folder (batch prediction in a bucket); data prepare also takes TIFF
# (jobs.dataset.locate.IMAGE_SUFFIXES).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
CHUNK = 16  # pictures held in memory and handed to the detector at once


class UnreadableFile(DataError):
    """An input image or video that cannot be decoded: ``predict`` reports it and goes on with the others."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class Predictions:
    detections: list[Detection]
    files: int  # image and video files tried
    unreadable: list[UnreadableFile]  # skipped, the others predicted


@dataclass(frozen=True)
class Picture:
    """An image, or a video's frame, to detect on."""

    source: Path
    image: Image.Image
    frame: int | None = None


class Detector(Protocol):
    """Detections on pictures, in their pixels: a local export (``Predictor``) or a Vertex AI endpoint
    (``jobs.launch.predictions.EndpointPredictor``)."""

    def detect_all(self, pictures: list[Picture], score_threshold: float) -> list[list[Detection]]: ...


class Predictor:
    def __init__(self, model: Path):
        from jobs.runtime.inference import load_detector  # TensorFlow: not for the endpoint's users

        self.detector = load_detector(str(model))
        self.classes = {class_id: name for name, class_id in label_maps.load(model / "label_map.pbtxt").items()}

    def predict(self, path: Path, score_threshold: float = 0.3) -> tuple[list[Detection], Image.Image]:
        image = read_image(path)
        return self.detect(image, str(path), score_threshold), image

    def detect(self, image: Image.Image, name: str, score_threshold: float = 0.3,
               frame: int | None = None) -> list[Detection]:
        """Detections at or above the threshold on a PIL RGB image, in its pixels."""
        found = self.detector(np.asarray(image))
        width, height = image.size
        return [
            Detection(name, self.classes.get(int(c), f"class {int(c)}"), int(c), float(s),
                      float(b[1]) * width, float(b[0]) * height, float(b[3]) * width, float(b[2]) * height, frame)
            for b, s, c in zip(found.boxes, found.scores, found.classes, strict=True) if s >= score_threshold
        ]

    def detect_all(self, pictures: list[Picture], score_threshold: float) -> list[list[Detection]]:
        return [self.detect(p.image, str(p.source), score_threshold, p.frame) for p in pictures]


def video_frames(path: Path, every_s: float = 1.0) -> Iterator[tuple[int, Image.Image]]:
    """(frame index, PIL RGB image) of one frame every ``every_s`` seconds."""
    import cv2
    from PIL import Image

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UnreadableFile(path, "cannot read this video (OpenCV could not open it)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 1.0
    step = max(1, round(fps * every_s))
    index = 0
    try:
        while capture.grab():
            if index % step == 0:
                ok, frame = capture.retrieve()
                if ok:
                    yield index, Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        capture.release()


def predict_paths(predictor: Detector, inputs: list[Path], out: Path | None = None,
                  score_threshold: float = 0.3, every_s: float = 1.0) -> Predictions:
    """Detect on image files, folders (their images and videos) and videos; with ``out``, write annotated
    copies (``<video stem>-frame<index>.jpg`` for frames) and ``detections.csv`` / ``detections.json`` into
    ``out``, a folder that is new, empty or earlier predictions and holds no input, replaced as a whole.
    A file that cannot be decoded is skipped and listed in the result; no file to read at all is a DataError."""
    paths = list(_expand(inputs))
    if not paths:
        raise DataError(f"no images or videos in {', '.join(str(path) for path in inputs)} "
                        f"(looked for {', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))})")
    if out is None:
        return _predict(predictor, paths, None, score_threshold, every_s)
    with staged_dir(out, KIND, inputs) as stage:
        return _predict(predictor, paths, stage, score_threshold, every_s)


def _predict(predictor: Detector, paths: list[Path], out: Path | None, score_threshold: float,
             every_s: float) -> Predictions:
    detections: list[Detection] = []
    unreadable: list[UnreadableFile] = []
    names: set[str] = set()
    pending: list[tuple[str, Picture]] = []

    def flush() -> None:
        if not pending:
            return
        found = predictor.detect_all([picture for _, picture in pending], score_threshold)
        for (name, picture), boxes in zip(pending, found, strict=True):
            detections.extend(boxes)
            if out:
                draw(picture.image, boxes).save(out / _unique(name, names))
        pending.clear()

    for path in paths:
        try:
            for name, image, frame in _pictures(path, every_s):
                pending.append((name, Picture(path, image, frame)))
                if len(pending) >= CHUNK:
                    flush()
        except UnreadableFile as err:
            unreadable.append(err)
    flush()
    if out:
        write_detections(detections, out)
    return Predictions(detections, len(paths), unreadable)


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``stem-2.ext``, ``stem-3.ext``… when images of several folders share it."""
    stem, dot, suffix = name.rpartition(".")
    candidate, number = name, 1
    while candidate in taken or candidate in OWN_FILES:
        number += 1
        candidate = f"{stem}-{number}{dot}{suffix}"
    taken.add(candidate)
    return candidate


def write_detections(detections: list[Detection], out: Path) -> tuple[Path, Path]:
    csv_path, json_path = out / "detections.csv", out / "detections.json"
    with csv_path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=[f.name for f in fields(Detection)])
        writer.writeheader()
        writer.writerows(asdict(d) for d in detections)
    json_path.write_text(json.dumps([asdict(d) for d in detections], indent=1), encoding="utf-8")
    return csv_path, json_path


def _pictures(path: Path, every_s: float) -> Iterator[tuple[str, Image.Image, int | None]]:
    """(name of the annotated copy, PIL RGB image, frame index or None) of an image or a video's frames."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        for index, frame in video_frames(path, every_s):
            yield f"{path.stem}-frame{index:06d}.jpg", frame, index
    else:
        yield path.name, read_image(path), None


def read_image(path: Path) -> Image.Image:
    """The PIL RGB image of an image file; an UnreadableFile where Pillow cannot decode it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            return opened.convert("RGB")
    except UnidentifiedImageError:
        raise UnreadableFile(path, "not an image that Pillow can read") from None
    except OSError as err:  # truncated or corrupt data, no permission
        raise UnreadableFile(path, err.strerror or str(err)) from None
    except (SyntaxError, ValueError, Image.DecompressionBombError) as err:  # broken headers, oversized images
        raise UnreadableFile(path, str(err) or type(err).__name__) from None


def _expand(inputs: list[Path]) -> Iterator[Path]:
    for path in inputs:
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        elif path.exists():
            yield path
        else:
            raise UsageError(f"{path} not found: give image files, folders of images or video files")
