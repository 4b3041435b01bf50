"""JPEG and PNG headers read from the first bytes of a file: size, channels, bit depth, EXIF orientation,
transparency.

Index arithmetic on bytes instead of Pillow's plugin machinery makes the default check several times cheaper per
image. Anything unusual (other formats, 12-bit JPEG, a header that needs more bytes than given or does not parse)
returns None and Pillow decides.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_MODES = {(0, 1): "1", (0, 16): "I;16", 0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}
EXIF_ORIENTATION_TAG = 0x0112
HEAD_BYTES = 1 << 16  # enough for the headers of nearly every file; more is read when not


class Header(NamedTuple):
    format: str  # "jpeg" or "png"
    width: int
    height: int
    mode: str  # as Pillow names it
    bits: int
    orientation: int = 1
    transparent: bool = False


def read_header(data: bytes) -> Header | None:
    """The header of a JPEG or PNG file from its first bytes (``data`` may be the whole file)."""
    try:
        if data[:2] == b"\xff\xd8":
            return _jpeg(data)
        if data[:8] == PNG_SIGNATURE:
            return _png(data)
    except (struct.error, IndexError):
        pass
    return None


def _jpeg(data: bytes) -> Header | None:
    position, orientation = 2, 1
    while True:
        while data[position] == 0xFF and data[position + 1] == 0xFF:  # fill bytes
            position += 1
        if data[position] != 0xFF:
            return None
        code = data[position + 1]
        if 0xD0 <= code <= 0xD7 or code == 0x01:  # stand-alone markers
            position += 2
            continue
        (length,) = struct.unpack_from(">H", data, position + 2)
        if code in SOF_MARKERS:
            precision, height, width, components = struct.unpack_from(">BHHB", data, position + 4)
            if precision != 8 or components not in JPEG_MODES or not width or not height:
                return None
            return Header("jpeg", width, height, JPEG_MODES[components], 8, orientation)
        if code == 0xDA:  # start of scan before any frame header
            return None
        if code == 0xE1 and orientation == 1 and data[position + 4:position + 10] == b"Exif\0\0":
            orientation = _exif_orientation(data[position + 10:position + 2 + length])
        position += 2 + length


def _exif_orientation(tiff: bytes) -> int:
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (offset,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, offset)
        for index in range(count):
            tag, kind = struct.unpack_from(order + "HH", tiff, offset + 2 + 12 * index)
            if tag == EXIF_ORIENTATION_TAG and kind == 3:
                orientation: int = struct.unpack_from(order + "H", tiff, offset + 10 + 12 * index)[0]
                return orientation
    except (KeyError, struct.error):
        pass
    return 1


def _png(data: bytes) -> Header | None:
    length, kind = struct.unpack_from(">I4s", data, 8)
    if kind != b"IHDR" or length != 13:
        return None
    width, height, bits, colour = struct.unpack_from(">IIBB", data, 16)
    mode = PNG_MODES.get((colour, bits)) or PNG_MODES.get(colour)
    if mode is None or not width or not height:
        return None
    position, transparent = 33, colour in (4, 6)
    while not transparent:
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind in (b"IDAT", b"IEND"):
            break
        transparent = kind == b"tRNS"
        position += 12 + length
    return Header("png", width, height, mode, max(8, bits), 1, transparent)
