"""Small test images of every kind the checks tell apart, made at test time (no binary fixtures in git), and the
files that are not images at all: FIFOs and symbolic links."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

DEFAULT_SIZE = (64, 48)


def _picture(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    image = Image.new("RGB", size, (90, 140, 200))
    ImageDraw.Draw(image).rectangle((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=(220, 60, 40))
    return image.convert(mode)


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _declared_png(size: tuple[int, int]) -> bytes:
    """A well-formed PNG that declares ``size`` but holds one row of pixels: small on disk, huge decoded."""
    header = struct.pack(">IIBBBBB", *size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(bytes(1 + 3 * size[0]))) + _png_chunk(b"IEND", b""))


def _declared_jpeg(size: tuple[int, int]) -> bytes:
    """A small JPEG whose frame header declares ``size`` (at most 65535 a side)."""
    data = bytearray(_encoded(_picture(DEFAULT_SIZE), "JPEG", quality=90))
    frame = data.index(b"\xff\xc0")
    data[frame + 5: frame + 9] = struct.pack(">HH", size[1], size[0])
    return bytes(data)


def image_bytes(kind: str, size: tuple[int, int] = DEFAULT_SIZE) -> bytes:
    """``kind``: jpeg, png, truncated, corrupt, text, gif, tiff, bmp, webp, rgba, gray, cmyk, png16, exif6, cut
    (a JPEG cut in half with its end marker put back), png-declared and jpeg-declared (headers that declare
    ``size``, pixels that do not fill it)."""
    if kind == "jpeg":
        return _encoded(_picture(size), "JPEG", quality=90)
    if kind == "png":
        return _encoded(_picture(size), "PNG")
    if kind == "truncated":
        data = _encoded(Image.effect_noise(size, 60).convert("RGB"), "JPEG", quality=95)
        return data[: len(data) * 2 // 3]
    if kind == "corrupt":  # a bogus Huffman table: the header reads, the pixels do not decode
        data = bytearray(_encoded(Image.effect_noise(size, 60).convert("RGB"), "JPEG", quality=90))
        table = data.index(b"\xff\xc4")
        data[table + 5: table + 21] = b"\xff" * 16
        return bytes(data)
    if kind == "text":
        return b"this is not an image\n"
    if kind in {"gif", "tiff", "bmp", "webp"}:
        return _encoded(_picture(size), kind.upper())
    if kind == "rgba":
        return _encoded(_picture(size, "RGBA"), "PNG")
    if kind == "gray":
        return _encoded(_picture(size, "L"), "JPEG")
    if kind == "cmyk":
        return _encoded(_picture(size, "CMYK"), "JPEG")
    if kind == "png16":
        return _encoded(_picture(size, "L").convert("I;16"), "PNG")
    if kind == "cut":
        data = _encoded(Image.effect_noise(size, 60).convert("RGB"), "JPEG", quality=95)
        return data[: len(data) // 2] + b"\xff\xd9"
    if kind == "png-declared":
        return _declared_png(size)
    if kind == "jpeg-declared":
        return _declared_jpeg(size)
    if kind == "exif6":
        exif = Image.Exif()
        exif[0x0112] = 6
        return _encoded(_picture(size), "JPEG", exif=exif.tobytes())
    raise ValueError(f"unknown image kind {kind!r}")


def make_image(path: Path, spec: str) -> None:
    """``spec`` is a kind, optionally with a size: ``jpeg``, ``jpeg:400x300``; or ``fifo`` (a named pipe), or
    ``link:TARGET`` (a symbolic link to TARGET, as written)."""
    kind, _, size = spec.partition(":")
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link":
        path.symlink_to(size)
    else:
        width, height = (int(v) for v in size.split("x")) if size else DEFAULT_SIZE
        path.write_bytes(image_bytes(kind, (width, height)))
