"""TFRecord files of ``tf.train.Example`` protos, written without TensorFlow.

A TFRecord is a framing (length, masked CRC32C, bytes, masked CRC32C) around serialized protos; the Example
proto is three nested messages. Encoding both here keeps ``data prepare`` free of the TensorFlow import
(several seconds) and lets every worker process write its own shard.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
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


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf does
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(values: Bytes | Floats | Ints) -> bytes:
    if isinstance(values, Bytes):
        return _field(1, b"".join(_field(1, v.encode() if isinstance(v, str) else v) for v in values))
    if isinstance(values, Floats):
        return _field(2, _field(1, struct.pack(f"<{len(values)}f", *values)) if values else b"")
    if isinstance(values, Ints):
        return _field(3, _field(1, b"".join(_varint(v) for v in values)) if values else b"")
    raise TypeError(f"feature values must be Bytes, Floats or Ints, not {type(values).__name__}")


def encode_example(features: Mapping[str, Bytes | Floats | Ints]) -> bytes:
    """Serialize a ``tf.train.Example``."""
    entries = b"".join(_field(1, _field(1, key.encode()) + _field(2, _feature(value)))
                       for key, value in features.items())
    return _field(1, entries)


def write_record(stream: BinaryIO, data: bytes) -> None:
    length = struct.pack("<Q", len(data))
    stream.write(length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data)))


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
