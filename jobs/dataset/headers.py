"""JPEG and PNG headers read directly: size, channels, bit depth, EXIF orientation, transparency.

A few struct reads instead of Pillow's plugin machinery make the default check several times cheaper per image.
Anything unusual (other formats, 12-bit JPEG, a header that does not parse) returns None and Pillow decides.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_MODES = {(0, 1): "1", (0, 16): "I;16", 0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}
EXIF_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class Header:
    format: str  # "jpeg" or "png"
    width: int
    height: int
    mode: str  # as Pillow names it
    bits: int
    orientation: int = 1
    transparent: bool = False


def read_header(stream: BinaryIO) -> Header | None:
    start = stream.read(8)
    stream.seek(0)
    if start[:2] == b"\xff\xd8":
        return _jpeg(stream)
    if start == PNG_SIGNATURE:
        return _png(stream)
    return None


def _jpeg(stream: BinaryIO) -> Header | None:
    stream.seek(2)
    orientation = 1
    while True:
        marker = stream.read(2)
        while marker[:1] == b"\xff" and marker[1:] == b"\xff":  # fill bytes
            marker = marker[1:] + stream.read(1)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        code = marker[1]
        if 0xD0 <= code <= 0xD7 or code == 0x01:  # stand-alone markers
            continue
        length_bytes = stream.read(2)
        if len(length_bytes) < 2:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if code in SOF_MARKERS:
            data = stream.read(6)
            if len(data) < 6:
                return None
            precision, height, width, components = struct.unpack(">BHHB", data)
            if precision != 8 or components not in JPEG_MODES or not width or not height:
                return None
            return Header("jpeg", width, height, JPEG_MODES[components], 8, orientation)
        if code == 0xDA:  # start of scan before any frame header
            return None
        if code == 0xE1 and orientation == 1:
            segment = stream.read(length - 2)
            if segment.startswith(b"Exif\0\0"):
                orientation = _exif_orientation(segment[6:])
            continue
        stream.seek(length - 2, 1)


def _exif_orientation(tiff: bytes) -> int:
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (offset,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[offset:offset + 2])
        for index in range(count):
            entry = offset + 2 + 12 * index
            tag, kind = struct.unpack(order + "HH", tiff[entry:entry + 4])
            if tag == EXIF_ORIENTATION_TAG and kind == 3:
                return struct.unpack(order + "H", tiff[entry + 8:entry + 10])[0]
    except (KeyError, struct.error):
        pass
    return 1


def _png(stream: BinaryIO) -> Header | None:
    stream.seek(8)
    length, kind = struct.unpack(">I4s", stream.read(8))
    if kind != b"IHDR" or length != 13:
        return None
    width, height, bits, colour, _, _, _ = struct.unpack(">IIBBBBB", stream.read(13))
    mode = PNG_MODES.get((colour, bits)) or PNG_MODES.get(colour)
    if mode is None or not width or not height:
        return None
    stream.seek(4, 1)  # CRC
    transparent = colour in (4, 6)
    while not transparent:
        chunk = stream.read(8)
        if len(chunk) < 8:
            return None
        length, kind = struct.unpack(">I4s", chunk)
        if kind in (b"IDAT", b"IEND"):
            break
        transparent = kind == b"tRNS"
        stream.seek(length + 4, 1)
    return Header("png", width, height, mode, max(8, bits), 1, transparent)
