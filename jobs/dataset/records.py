"""The detection record: one ``tf.train.Example`` per image with the keys that Model Garden's ``TfExampleDecoder`` and
the old OD API read, serialized here without protobuf or TensorFlow.

Every record has the same fifteen features in the same order, so what depends only on the keys, the number of boxes
or a class name is built once and cached; per image, what is left is hashing and packing its values. The image bytes
are never copied: a record is returned as pieces (head, image, tail) for ``os.writev`` and a chained CRC.

Wire format: ``Example.features`` (field 1) -> ``Features.feature`` map entries (field 1: key 1, value 2) ->
``Feature`` oneof ``bytes_list`` 1 / ``float_list`` 2 / ``int64_list`` 3 -> the list's ``value`` (field 1, numbers
packed).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from functools import cache

from jobs.dataset.annotations import Box

BYTES, FLOATS, INTS = b"\x0a", b"\x12", b"\x1a"  # Feature's oneof fields
FLOAT_KEYS = ("image/object/bbox/xmin", "image/object/bbox/xmax", "image/object/bbox/ymin",
              "image/object/bbox/ymax", "image/object/area")
_SMALL = [bytes((value,)) for value in range(0x80)]


def varint(value: int) -> bytes:
    """Protobuf base-128 varint; a negative int64 as its two's complement, as protobuf does."""
    if 0 <= value < 0x80:
        return _SMALL[value]
    value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(payload: bytes, tag: bytes = b"\x0a") -> bytes:
    """A length-delimited field."""
    return tag + varint(len(payload)) + payload


@cache
def _key_field(key: str) -> bytes:
    return _field(key.encode())


def _entry_head(key: str, kind: bytes, length: int) -> bytes:
    """A ``Features.feature`` map entry up to its values, ``length`` bytes that follow: the tagged items of a bytes
    list, or the packed numbers of a float or int64 list (which sit in one field of their own)."""
    prefix = b"\x0a" + varint(length) if kind != BYTES and length else b""
    feature = kind + varint(len(prefix) + length) + prefix
    value = b"\x12" + varint(len(feature) + length) + feature
    key_field = _key_field(key)
    return b"\x0a" + varint(len(key_field) + len(value) + length) + key_field + value


def _entry(key: str, kind: bytes, values: bytes) -> bytes:
    return _entry_head(key, kind, len(values)) + values


class RecordEncoder:
    """Serializes detection records for one label map (``classes``: name -> id)."""

    def __init__(self, classes: dict[str, int]):
        self._classes = classes
        self._texts = {name: _field(name.encode()) for name in classes}  # class/text items
        self._constants: dict[tuple[str, str | int], bytes] = {}
        self._per_count: dict[int, tuple[struct.Struct, list[bytes], bytes, bytes]] = {}

    def encode(self, image: bytes, fmt: str, width: int, height: int, filename: str, source_id: int,
               boxes: Sequence[Box]) -> tuple[bytes, bytes, bytes]:
        """The Example as (head, image, tail): its bytes are their concatenation."""
        count = len(boxes)
        floats, float_heads, label_head, crowd_head = self._count_heads(count)
        packed = floats.pack(*[b.xmin / width for b in boxes], *[b.xmax / width for b in boxes],
                             *[b.ymin / height for b in boxes], *[b.ymax / height for b in boxes],
                             *[(b.xmax - b.xmin) * (b.ymax - b.ymin) for b in boxes])
        ids = [self._classes[b.label] for b in boxes]
        parts = [self._constant("image/format", fmt), self._constant("image/height", height),
                 self._constant("image/width", width),
                 _entry("image/filename", BYTES, _field(filename.encode())),
                 _entry("image/source_id", BYTES, _field(str(source_id).encode())),
                 _entry("image/key/sha256", BYTES, _field(hashlib.sha256(image).hexdigest().encode()))]
        size = 4 * count
        parts += [head + packed[index * size:(index + 1) * size] for index, head in enumerate(float_heads[:4])]
        parts.append(_entry("image/object/class/text", BYTES, b"".join([self._texts[b.label] for b in boxes])))
        parts.append(label_head + bytes(ids) if max(ids, default=0) < 0x80 else
                     _entry("image/object/class/label", INTS, b"".join(map(varint, ids))))
        parts.append(float_heads[4] + packed[4 * size:])
        parts.append(crowd_head + bytes([b.crowd for b in boxes]))
        tail = b"".join(parts)
        item = b"\x0a" + varint(len(image))
        head = _entry_head("image/encoded", BYTES, len(item) + len(image)) + item
        return b"\x0a" + varint(len(head) + len(image) + len(tail)) + head, image, tail

    def _constant(self, key: str, value: str | int) -> bytes:
        """The entry of a value that repeats from image to image (format, width, height)."""
        entry = self._constants.get((key, value))
        if entry is None:
            entry = self._constants[key, value] = (_entry(key, INTS, varint(value)) if isinstance(value, int)
                                                   else _entry(key, BYTES, _field(value.encode())))
        return entry

    def _count_heads(self, count: int) -> tuple[struct.Struct, list[bytes], bytes, bytes]:
        """For ``count`` boxes: the struct of the five float lists, their entries' heads, and the heads of the label
        and crowd entries when each value takes one byte."""
        heads = self._per_count.get(count)
        if heads is None:
            heads = self._per_count[count] = (struct.Struct(f"<{5 * count}f"),
                                              [_entry_head(key, FLOATS, 4 * count) for key in FLOAT_KEYS],
                                              _entry_head("image/object/class/label", INTS, count),
                                              _entry_head("image/object/is_crowd", INTS, count))
        return heads
