"""What ``prepare`` needs to know about an image file, read from its header without decoding pixels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXIF_ORIENTATION_TAG = 0x0112
FORMATS = {"JPEG": "jpeg", "PNG": "png"}  # what Model Garden's decoder (tf.io.decode_image) reads


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str  # "jpeg" or "png"
    mode: str  # PIL mode: RGB, L, RGBA, CMYK, I;16 ...
    orientation: int  # EXIF orientation, 1 = as stored
    size_bytes: int


class ImageProblem(Exception):
    """The file cannot be used as a training image; the message says why."""


def inspect(path: Path) -> ImageInfo:
    """Read the header (PIL opens lazily); raises ImageProblem for anything unusable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            fmt = FORMATS.get(image.format or "")
            if fmt is None:
                raise ImageProblem(f"format {image.format} is not JPEG or PNG; convert it")
            orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1) if fmt == "jpeg" else 1
            return ImageInfo(image.width, image.height, fmt, image.mode, int(orientation),
                             path.stat().st_size)
    except FileNotFoundError:
        raise
    except UnidentifiedImageError:
        raise ImageProblem("not an image PIL can identify (corrupt or unsupported)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageProblem(f"cannot read the header: {err}") from None


def decode_check(path: Path) -> None:
    """Decode every pixel (``--verify full``): catches truncated and corrupt image data."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageProblem(f"cannot decode: {err}") from None
