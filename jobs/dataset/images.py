"""What ``prepare`` needs to know about an image file: its header, its end, and optionally its decoded pixels.

The header check reads the JPEG/PNG header (``headers.py``; Pillow for other formats) without decoding pixels,
refuses sizes over the pixel limit (``--max-pixels``) before anything is decoded, and looks for the end marker (JPEG
EOI, PNG IEND) in the last bytes; a file without one is decoded to tell trailing data from a truncated image.
Decoding every image (``--verify full``) also catches corrupt data inside a file.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from jobs.dataset.findings import (
    ALPHA_CHANNEL,
    CMYK,
    CONVERTED_FORMAT,
    DEFAULT_MAX_PIXELS,
    EXIF_ORIENTATION,
    GRAYSCALE,
    HIGH_BIT_DEPTH,
    NOT_A_FILE,
    TOO_MANY_PIXELS,
    TRUNCATED_IMAGE,
    UNREADABLE_IMAGE,
    Rule,
)
from jobs.dataset.headers import EXIF_ORIENTATION_TAG, HEAD_BYTES, read_header

if TYPE_CHECKING:
    from PIL.Image import Image

NATIVE_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png"}  # what records carry as they are
END_MARKERS = {"jpeg": b"\xff\xd9", "png": b"IEND"}
TAIL_BYTES = 4096
GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


class ImageInfo(NamedTuple):
    width: int
    height: int
    format: str  # lower-case Pillow format: "jpeg", "png", or one that is converted ("gif", "bmp" ...)
    mode: str  # Pillow mode: RGB, L, RGBA, CMYK, I;16 ...
    orientation: int  # EXIF orientation, 1 = as stored
    size_bytes: int
    bits: int = 8  # per channel
    transparent: bool = False
    decoded: bool = False  # every pixel was decoded

    @property
    def converted(self) -> bool:
        """The record carries a PNG re-encoding rather than the file's bytes."""
        return self.format not in END_MARKERS

    @property
    def record_format(self) -> str:
        return "png" if self.converted else self.format

    def notes(self) -> list[tuple[Rule, str]]:
        """Warnings about how training will see this image (see the rules' docs)."""
        notes = []
        if self.converted:
            notes.append((CONVERTED_FORMAT, f"{self.format.upper()} is re-encoded as PNG in the record"))
        if self.transparent:
            notes.append((ALPHA_CHANNEL, f"mode {self.mode} has transparency, which training ignores"))
        if self.mode in GRAYSCALE_MODES:
            notes.append((GRAYSCALE, f"mode {self.mode} is grayscale; training sees three equal channels"))
        if self.mode == "CMYK":
            notes.append((CMYK, "CMYK JPEG; TensorFlow converts it to RGB"))
        if self.bits > 8:
            notes.append((HIGH_BIT_DEPTH, f"{self.bits} bits per channel are decoded to 8"))
        if self.orientation != 1:
            notes.append((EXIF_ORIENTATION, f"EXIF orientation {self.orientation}; boxes are used as drawn on the "
                                            "stored pixels"))
        return notes


class ImageProblem(Exception):
    """The file cannot be used as a training image; ``rule`` says which check failed."""

    def __init__(self, rule: Rule, message: str):
        super().__init__(message)
        self.rule = rule


def inspect(path: str | Path, decode: bool = False, data: bytes | None = None,
            max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Check the header (at most ``max_pixels``) and the end of the file (or of ``data``, its bytes already read),
    and decode it when asked (or when needed to be sure)."""
    header = None
    tail: bytes | memoryview
    if data is None:
        head, tail, size = _head_and_tail(path)
        header = read_header(head)
        if header is None and size > len(head):  # a header beyond the first bytes (rare): read it all
            data = Path(path).read_bytes()
    if data is not None:
        tail, size = memoryview(data)[-TAIL_BYTES:], len(data)
        header = read_header(data)
    if header is None:
        with io.BytesIO(data) if data is not None else open(path, "rb") as stream:
            return _inspect_with_pillow(stream, decode, max_pixels)
    check_pixels(header.width, header.height, max_pixels)
    ended = _ends_with_marker(tail, END_MARKERS[header.format])
    if decode or not ended:
        with io.BytesIO(data) if data is not None else open(path, "rb") as stream:
            _open_and_decode(stream, truncated=not ended)
    return ImageInfo(header.width, header.height, header.format, header.mode, header.orientation, size,
                     header.bits, header.transparent, decode or not ended)


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """ImageProblem when the declared size is over the limit: decoding it could take gigabytes."""
    pixels = width * height
    if pixels > max_pixels:
        rgb = pixels * 3
        decoded = f"{rgb / 2**30:.1f} GiB" if rgb >= 2**30 else f"{rgb / 2**20:.1f} MiB"
        raise ImageProblem(TOO_MANY_PIXELS, f"{width}x{height} is {pixels:,} pixels ({decoded} decoded), over the "
                                            f"limit of {max_pixels:,}; pass --max-pixels N to allow more")


@contextmanager
def pillow_unlimited() -> Iterator[None]:
    """Pillow's own pixel limit off: sizes are checked here, against --max-pixels, before anything is decoded."""
    from PIL import Image

    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _ends_with_marker(tail: bytes | memoryview, marker: bytes) -> bool:
    """Whether the end marker is in the last bytes; searched from the end, where it nearly always is."""
    return tail[-len(marker):] == marker or marker in bytes(tail)


def _head_and_tail(path: str | Path) -> tuple[bytes, bytes, int]:
    """The first HEAD_BYTES, the last TAIL_BYTES and the size of a file, in two reads; ImageProblem for what is not
    a regular file (opened without waiting, so a FIFO cannot block)."""
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as stream:
        status = os.fstat(stream.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise ImageProblem(NOT_A_FILE, "not a regular file (a FIFO, socket or device); not read")
        head = stream.read(HEAD_BYTES)
        size = status.st_size
        if size <= len(head):
            return head, head[-TAIL_BYTES:], len(head)
        if size - TAIL_BYTES < len(head):
            return head, (head + stream.read())[-TAIL_BYTES:], size
        stream.seek(size - TAIL_BYTES)
        return head, stream.read(), size


def _ended(stream: BinaryIO, size: int, fmt: str) -> bool:
    stream.seek(max(0, size - TAIL_BYTES))
    found = END_MARKERS.get(fmt, b"") in stream.read()
    stream.seek(0)
    return found


def _open_and_decode(stream: BinaryIO, truncated: bool) -> None:
    from PIL import Image, UnidentifiedImageError

    stream.seek(0)
    try:
        with pillow_unlimited(), Image.open(stream) as image:
            _decode(image, truncated)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageProblem(UNREADABLE_IMAGE, f"cannot read the header: {err}") from None


def _inspect_with_pillow(stream: BinaryIO, decode: bool, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Formats the header reader does not handle, and headers it could not parse: Pillow decides."""
    from PIL import Image, UnidentifiedImageError

    try:
        with pillow_unlimited(), Image.open(stream) as image:
            check_pixels(image.width, image.height, max_pixels)
            fmt = NATIVE_FORMATS.get(image.format or "", (image.format or "unknown").lower())
            bits = 16 if image.mode.startswith("I;16") else 8
            if fmt == "png":  # Pillow reads 16-bit RGB as 8-bit RGB: the bit depth is in the IHDR chunk
                stream.seek(24)
                bits = max(8, stream.read(1)[0])
            size = stream.seek(0, io.SEEK_END)
            ended = _ended(stream, size, fmt)
            orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1) if fmt == "jpeg" else 1
            transparent = image.mode in {"RGBA", "LA", "PA"} or "transparency" in image.info
            must_decode = decode or not ended or fmt not in END_MARKERS
            if must_decode:
                _decode(image, truncated=not ended)
            return ImageInfo(image.width, image.height, fmt, image.mode, int(orientation), size, bits,
                             transparent, must_decode)
    except ImageProblem:
        raise
    except UnidentifiedImageError:
        raise ImageProblem(UNREADABLE_IMAGE, "not an image Pillow can identify (corrupt or unsupported)") from None
    except (OSError, SyntaxError, ValueError, IndexError) as err:
        raise ImageProblem(UNREADABLE_IMAGE, f"cannot read the header: {err}") from None


def _decode(image: Image, truncated: bool) -> None:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        if truncated:
            raise ImageProblem(TRUNCATED_IMAGE, f"the file ends early (no end marker) and does not decode: "
                                                f"{err}") from None
        raise ImageProblem(UNREADABLE_IMAGE, f"corrupt image data, cannot decode: {err}") from None


def record_bytes(data: bytes, info: ImageInfo) -> bytes:
    """The bytes a record carries: the file as it is, or a lossless PNG for formats TensorFlow cannot decode."""
    if not info.converted:
        return data
    from PIL import Image

    with pillow_unlimited(), Image.open(io.BytesIO(data)) as image:  # its size was checked
        image.seek(0)
        frame = image.convert("RGBA" if info.transparent else "RGB")
    out = io.BytesIO()
    frame.save(out, "PNG")
    return out.getvalue()
