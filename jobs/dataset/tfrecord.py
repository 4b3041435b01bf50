"""TFRecord files, written and read without TensorFlow: each record is its length (little-endian uint64), the
length's masked CRC32C, the bytes, and their masked CRC32C.

Writing takes a record as pieces (a serialized proto and the image bytes it embeds, say) and sends them in one
``writev`` with a CRC chained over them, so the bytes are never joined into a copy.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import google_crc32c

from jobs.errors import DataError


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def write_record(fd: int, pieces: Sequence[bytes]) -> tuple[int, int]:
    """Append the record whose bytes are ``pieces`` concatenated to the file open as ``fd``; returns its length and
    its masked CRC32C."""
    framed, length, masked = frame(pieces)
    written = os.writev(fd, framed)
    if written != length + 16:
        raise OSError(f"short write: {written} of {length + 16} bytes")
    return length, masked


def frame(pieces: Sequence[bytes]) -> tuple[list[bytes], int, int]:
    """The record whose bytes are ``pieces`` concatenated, framed (as pieces, nothing copied); its length and its
    masked CRC32C."""
    crc = 0
    for piece in pieces:
        crc = google_crc32c.extend(crc, piece)
    length = sum(map(len, pieces))
    length_bytes = struct.pack("<Q", length)
    masked = _mask(crc)
    return ([length_bytes, struct.pack("<I", _mask(google_crc32c.value(length_bytes))), *pieces,
             struct.pack("<I", masked)], length, masked)


def read_records(stream: BinaryIO) -> Iterator[bytes]:
    """Yield each record's bytes, checking both CRCs."""
    while header := stream.read(12):
        length_bytes, (length_crc,) = header[:8], struct.unpack("<I", header[8:])
        if len(header) < 12 or _mask(google_crc32c.value(length_bytes)) != length_crc:
            raise DataError(f"{_name(stream)}: corrupt TFRecord length (a truncated or damaged file): prepare the "
                            "data again")
        (length,) = struct.unpack("<Q", length_bytes)
        data = stream.read(length)
        (data_crc,) = struct.unpack("<I", stream.read(4))
        if len(data) != length or _mask(google_crc32c.value(data)) != data_crc:
            raise DataError(f"{_name(stream)}: corrupt TFRecord data (a truncated or damaged file): prepare the "
                            "data again")
        yield data


def _name(stream: BinaryIO) -> str:
    return str(getattr(stream, "name", "TFRecord"))
