"""Small test images of every kind the checks tell apart, made at test time (no binary fixtures in git)."""

from __future__ import annotations

import io
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


def image_bytes(kind: str, size: tuple[int, int] = DEFAULT_SIZE) -> bytes:
    """``kind``: jpeg, png, truncated, corrupt, text, gif, tiff, bmp, webp, rgba, gray, cmyk, png16, exif6."""
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
    if kind == "exif6":
        exif = Image.Exif()
        exif[0x0112] = 6
        return _encoded(_picture(size), "JPEG", exif=exif.tobytes())
    raise ValueError(f"unknown image kind {kind!r}")


def make_image(path: Path, spec: str) -> None:
    """``spec`` is a kind, optionally with a size: ``jpeg``, ``jpeg:400x300``."""
    kind, _, size = spec.partition(":")
    width, height = (int(v) for v in size.split("x")) if size else DEFAULT_SIZE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(kind, (width, height)))
