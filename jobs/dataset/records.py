"""The detection record: one ``tf.train.Example`` per image with the keys that Model Garden's ``TfExampleDecoder`` and
the old OD API read, serialized here without protobuf or TensorFlow.

Every record has the same fifteen features in the same order, so what depends only on the keys, the length of a value,
the number of boxes or their classes is built once and cached; per image, what is left is hashing the image and
packing the coordinates. The image bytes are never copied: a record is returned as pieces (head, image, tail) for
``os.writev`` and a chained CRC.

Wire format: ``Example.features`` (field 1) -> ``Features.feature`` map entries (field 1: key 1, value 2) ->
``Feature`` oneof ``bytes_list`` 1 / ``float_list`` 2 / ``int64_list`` 3 -> the list's ``value`` (field 1, numbers
packed).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from functools import cache
from typing import TypeVar

from jobs.dataset.annotations import Box

BYTES, FLOATS, INTS = b"\x0a", b"\x12", b"\x1a"  # Feature's oneof fields
FLOAT_KEYS = ("image/object/bbox/xmin", "image/object/bbox/xmax", "image/object/bbox/ymin",
              "image/object/bbox/ymax", "image/object/area")
_SMALL = [bytes((value,)) for value in range(0x80)]
K = TypeVar("K")
T = TypeVar("T")


def varint(value: int) -> bytes:
    """Protobuf base-128 varint; a negative int64 as its two's complement, as protobuf does."""
    if 0 <= value < 0x80:
        return _SMALL[value]
    if 0 < value < 1 << 21:  # lengths of images and records: two or three bytes
        if value < 1 << 14:
            return bytes((value & 0x7F | 0x80, value >> 7))
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14))
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


def _single_bytes_head(key: str, length: int) -> bytes:
    """The head of a bytes entry that holds one item of ``length`` bytes, up to the item's bytes."""
    item = b"\x0a" + varint(length)
    return _entry_head(key, BYTES, len(item) + length) + item


class RecordEncoder:
    """Serializes detection records for one label map (``classes``: name -> id)."""

    CACHE_LIMIT = 4096  # entries per cache; a cache that grows past it (unusually varied data) starts again

    def __init__(self, classes: dict[str, int]):
        self._classes = classes
        self._texts = {name: _field(name.encode()) for name in classes}  # class/text items
        self._constants: dict[tuple[str, int, int], bytes] = {}  # (format, width, height) -> their entries
        self._heads: dict[tuple[str, int], bytes] = {}  # (key, length) -> head of a one-item bytes entry
        self._objects: dict[tuple[tuple[str, ...], tuple[bool, ...]], bytes] = {}  # class text, label, crowd
        self._floats: dict[int, tuple[struct.Struct, list[bytes]]] = {}  # box count -> struct, float entry heads

    def encode(self, image: bytes, fmt: str, width: int, height: int, filename: str, source_id: int,
               boxes: Sequence[Box]) -> tuple[bytes, bytes, bytes]:
        """The Example as (head, image, tail): its bytes are their concatenation."""
        name, source, key = filename.encode(), str(source_id).encode(), hashlib.sha256(image).hexdigest().encode()
        floats, float_heads = self._float_heads(len(boxes))
        tail = b"".join([
            self._constants.get((fmt, width, height)) or self._constant_entries(fmt, width, height),
            self._head("image/filename", len(name)), name,
            self._head("image/source_id", len(source)), source,
            self._head("image/key/sha256", len(key)), key,
            self._object_entries(tuple([b.label for b in boxes]), tuple([b.crowd for b in boxes])),
            floats.pack(float_heads[0], *[b.xmin / width for b in boxes], float_heads[1],
                        *[b.xmax / width for b in boxes], float_heads[2], *[b.ymin / height for b in boxes],
                        float_heads[3], *[b.ymax / height for b in boxes],
                        float_heads[4], *[(b.xmax - b.xmin) * (b.ymax - b.ymin) for b in boxes])])
        head = _single_bytes_head("image/encoded", len(image))  # lengths rarely repeat: not cached
        return b"\x0a" + varint(len(head) + len(image) + len(tail)) + head, image, tail

    def _constant_entries(self, fmt: str, width: int, height: int) -> bytes:
        """The format, height and width entries."""
        return self._remember(self._constants, (fmt, width, height), b"".join([
            _entry("image/format", BYTES, _field(fmt.encode())), _entry("image/height", INTS, varint(height)),
            _entry("image/width", INTS, varint(width))]))

    def _head(self, key: str, length: int) -> bytes:
        head = self._heads.get((key, length))
        if head is None:
            head = self._remember(self._heads, (key, length), _single_bytes_head(key, length))
        return head

    def _object_entries(self, labels: tuple[str, ...], crowds: tuple[bool, ...]) -> bytes:
        """The class text, class label and crowd entries of boxes with these labels and crowd flags."""
        entries = self._objects.get((labels, crowds))
        if entries is None:
            ids = b"".join([varint(self._classes[label]) for label in labels])
            entries = self._remember(self._objects, (labels, crowds), b"".join([
                _entry("image/object/class/text", BYTES, b"".join([self._texts[label] for label in labels])),
                _entry("image/object/class/label", INTS, ids),
                _entry("image/object/is_crowd", INTS, bytes([int(crowd) for crowd in crowds]))]))
        return entries

    def _float_heads(self, count: int) -> tuple[struct.Struct, list[bytes]]:
        """For ``count`` boxes: the five float entries' heads, and the struct that packs each head and its
        values."""
        heads = self._floats.get(count)
        if heads is None:
            entries = [_entry_head(key, FLOATS, 4 * count) for key in FLOAT_KEYS]
            layout = "".join(f"{len(head)}s{count}f" for head in entries)
            heads = self._remember(self._floats, count, (struct.Struct(f"<{layout}"), entries))
        return heads

    def _remember(self, cache: dict[K, T], key: K, value: T) -> T:
        if len(cache) >= self.CACHE_LIMIT:
            cache.clear()
        cache[key] = value
        return value
