"""TFRecord files of ``tf.train.Example`` protos, written without TensorFlow.

A TFRecord is a framing (length, masked CRC32C, bytes, masked CRC32C) around serialized protos; the Example
proto is three nested messages. Encoding both here keeps ``data prepare`` free of the TensorFlow import
(several seconds) and lets every worker process write its own shard.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import BinaryIO

import crc32c


class Bytes(tuple):
    """A ``bytes_list`` feature (str items are UTF-8 encoded)."""


class Floats(tuple):
    """A ``float_list`` feature (stored as float32)."""


class Ints(tuple):
    """An ``int64_list`` feature."""


def _masked_crc(data: bytes) -> int:
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


_SMALL = [bytes((value,)) for value in range(0x80)]


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL[value]
    value &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf does
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


@lru_cache(maxsize=256)
def _entry_key(key: str) -> bytes:
    return _field(1, key.encode())


def _feature(values: Bytes | Floats | Ints) -> list[bytes]:
    """The parts of a ``Feature`` message; large byte strings are kept as their own part (never copied)."""
    if isinstance(values, Bytes):
        parts = []
        for value in values:
            data = value.encode() if isinstance(value, str) else value
            parts += (b"\x0a" + _varint(len(data)), data)
        return [b"\x0a" + _varint(sum(map(len, parts))), *parts]
    if isinstance(values, Floats):
        packed = _field(1, struct.pack(f"<{len(values)}f", *values)) if values else b""
        return [b"\x12" + _varint(len(packed)) + packed]
    if isinstance(values, Ints):
        packed = _field(1, b"".join(map(_varint, values))) if values else b""
        return [b"\x1a" + _varint(len(packed)) + packed]
    raise TypeError(f"feature values must be Bytes, Floats or Ints, not {type(values).__name__}")


def encode_example(features: Mapping[str, Bytes | Floats | Ints]) -> bytes:
    """Serialize a ``tf.train.Example`` (``Example.features`` -> ``Features.feature`` map -> ``Feature``)."""
    parts: list[bytes] = []
    for key, values in features.items():
        feature = _feature(values)
        feature_size = sum(map(len, feature))
        value_header = b"\x12" + _varint(feature_size)
        entry_key = _entry_key(key)
        parts += (b"\x0a" + _varint(len(entry_key) + len(value_header) + feature_size), entry_key, value_header,
                  *feature)
    return b"".join((b"\x0a", _varint(sum(map(len, parts))), *parts))


def write_record(stream: BinaryIO, data: bytes) -> None:
    length = struct.pack("<Q", len(data))
    stream.write(length + struct.pack("<I", _masked_crc(length)))
    stream.write(data)
    stream.write(struct.pack("<I", _masked_crc(data)))


def read_records(stream: BinaryIO) -> Iterator[bytes]:
    """Yield each record's bytes, checking both CRCs."""
    while header := stream.read(12):
        length_bytes, (length_crc,) = header[:8], struct.unpack("<I", header[8:])
        if len(header) < 12 or _masked_crc(length_bytes) != length_crc:
            raise ValueError("corrupt TFRecord length")
        (length,) = struct.unpack("<Q", length_bytes)
        data = stream.read(length)
        (data_crc,) = struct.unpack("<I", stream.read(4))
        if len(data) != length or _masked_crc(data) != data_crc:
            raise ValueError("corrupt TFRecord data")
        yield data
