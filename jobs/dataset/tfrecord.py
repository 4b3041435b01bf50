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
LARGE = 4096  # bytes: a value this long is kept out of the concatenations


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


@lru_cache(maxsize=64)
def _floats(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}f")


def _feature(values: Bytes | Floats | Ints) -> tuple[bytes, bytes]:
    """A ``Feature`` message as (head, tail): a large byte string is the tail, so it is never copied but once."""
    kind = type(values)
    if kind is Bytes:
        if len(values) == 1:
            item = values[0]
            if type(item) is str:
                item = item.encode()
            inner = b"\x0a" + _varint(len(item))
            if len(item) > LARGE:
                return b"\x0a" + _varint(len(inner) + len(item)) + inner, item
            return b"\x0a" + _varint(len(inner) + len(item)) + inner + item, b""
        payload = b"".join([b"\x0a" + _varint(len(item)) + item
                            for item in (v.encode() if type(v) is str else v for v in values)])
        return b"\x0a" + _varint(len(payload)) + payload, b""
    if kind is Floats:
        if not values:
            return b"\x12\x00", b""
        packed = _floats(len(values)).pack(*values)
        return b"\x12" + _varint(len(packed) + 1 + len(_varint(len(packed)))) + b"\x0a" + _varint(len(packed)) + \
            packed, b""
    if kind is Ints:
        if not values:
            return b"\x1a\x00", b""
        packed = b"".join(map(_varint, values))
        return b"\x1a" + _varint(len(packed) + 1 + len(_varint(len(packed)))) + b"\x0a" + _varint(len(packed)) + \
            packed, b""
    raise TypeError(f"feature values must be Bytes, Floats or Ints, not {type(values).__name__}")


def encode_example(features: Mapping[str, Bytes | Floats | Ints]) -> bytes:
    """Serialize a ``tf.train.Example`` (``Example.features`` -> ``Features.feature`` map -> ``Feature``)."""
    parts: list[bytes] = []
    size = 0
    for key, values in features.items():
        head, tail = _feature(values)
        entry_key = _entry_key(key)
        value_header = b"\x12" + _varint(len(head) + len(tail))
        piece = b"\x0a" + _varint(len(entry_key) + len(value_header) + len(head) + len(tail)) + entry_key + \
            value_header + head
        parts.append(piece)
        size += len(piece)
        if tail:
            parts.append(tail)
            size += len(tail)
    return b"".join([b"\x0a", _varint(size), *parts])


def frame(data: bytes) -> tuple[bytes, bytes]:
    """What goes before a record (its length and the length's masked CRC32C) and after it (its masked CRC32C)."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)), struct.pack("<I", _masked_crc(data))


def write_record(stream: BinaryIO, data: bytes) -> None:
    header, footer = frame(data)
    stream.write(header)
    stream.write(data)
    stream.write(footer)


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
