import hashlib
import math
import os

import pytest

from jobs.dataset.annotations import Box
from jobs.dataset.records import RecordEncoder, varint
from jobs.dataset.tfrecord import read_records, write_record
from jobs.errors import DataError


def _parse(pieces):
    from tensorflow.core.example import example_pb2

    return example_pb2.Example.FromString(b"".join(pieces)).features.feature


def test_records_parse_with_tensorflow_protos():
    classes = {"naïve": 1, **{f"c{index}": index for index in range(2, 301)}}
    boxes = [Box("naïve", 10.0, 20.0, 30.5, 60.0, "r1"), Box("c300", 0.0, 0.0, 640.0, 480.0, "r2", crowd=True)]
    image = bytes(range(256)) * 3
    pieces = RecordEncoder(classes).encode(image, "jpeg", 640, 480, "dir/ü.jpg", 12345, boxes)
    parsed = _parse(pieces)
    assert pieces[1] is image, "the image bytes are passed through, not copied"
    assert parsed["image/encoded"].bytes_list.value == [image]
    assert parsed["image/format"].bytes_list.value == [b"jpeg"]
    assert (parsed["image/width"].int64_list.value, parsed["image/height"].int64_list.value) == ([640], [480])
    assert parsed["image/filename"].bytes_list.value == ["dir/ü.jpg".encode()]
    assert parsed["image/source_id"].bytes_list.value == [b"12345"]
    assert parsed["image/key/sha256"].bytes_list.value == [hashlib.sha256(image).hexdigest().encode()]
    assert list(parsed["image/object/bbox/xmin"].float_list.value) == pytest.approx([10 / 640, 0.0])
    assert list(parsed["image/object/bbox/xmax"].float_list.value) == pytest.approx([30.5 / 640, 1.0])
    assert list(parsed["image/object/bbox/ymin"].float_list.value) == pytest.approx([20 / 480, 0.0])
    assert list(parsed["image/object/bbox/ymax"].float_list.value) == pytest.approx([60 / 480, 1.0])
    assert parsed["image/object/class/text"].bytes_list.value == ["naïve".encode(), b"c300"]
    assert list(parsed["image/object/class/label"].int64_list.value) == [1, 300]  # 300 takes a 2-byte varint
    assert list(parsed["image/object/area"].float_list.value) == pytest.approx([20.5 * 40, 640 * 480])
    assert list(parsed["image/object/is_crowd"].int64_list.value) == [0, 1]
    assert math.isclose(parsed["image/object/bbox/xmax"].float_list.value[0], 30.5 / 640, rel_tol=1e-7)  # float32


def test_negative_image_has_every_key_with_empty_lists():
    encoder = RecordEncoder({"a": 1})
    parsed = _parse(encoder.encode(b"\xff\xd8", "png", 200, 100, "n.png", 7, []))
    assert len(parsed) == 15
    assert parsed["image/object/class/text"].WhichOneof("kind") == "bytes_list"
    assert parsed["image/object/area"].WhichOneof("kind") == "float_list"
    assert parsed["image/object/is_crowd"].WhichOneof("kind") == "int64_list"
    assert not parsed["image/object/bbox/xmin"].float_list.value
    assert parsed["image/format"].bytes_list.value == [b"png"]


def test_cached_heads_serve_every_box_count_and_size():
    """Heads are cached per box count and per (key, value): records of different shapes must not share them."""
    encoder = RecordEncoder({"a": 1, "b": 2})
    encoder.CACHE_LIMIT = 3  # caches fill and start again many times over
    for count in (0, 1, 31, 32, 33, 1, 0):
        for width in (127, 128, 20000):
            boxes = [Box("ab"[index % 2], 1.0, 2.0, 3.0 + index, 4.0, "r", crowd=index == 2) for index in range(count)]
            parsed = _parse(encoder.encode(b"x" * (count * 5), "jpeg", width, 99, "f.jpg", count + 1, boxes))
            labels = parsed["image/object/class/label"].int64_list.value
            assert list(labels) == [1 + index % 2 for index in range(count)]
            xmax = parsed["image/object/bbox/xmax"].float_list.value
            assert list(xmax) == pytest.approx([(3.0 + index) / width for index in range(count)])
            assert list(parsed["image/object/is_crowd"].int64_list.value) == [int(index == 2) for index in range(count)]
            assert parsed["image/width"].int64_list.value == [width]
            assert parsed["image/encoded"].bytes_list.value == [b"x" * (count * 5)]


def test_varint_matches_protobuf():
    from google.protobuf.internal.encoder import _VarintBytes

    for value in (0, 1, 127, 128, 300, 2**14 - 1, 2**14, 66000, 2**21 - 1, 2**21, 2**40, -5):
        assert varint(value) == _VarintBytes(value & (2**64 - 1))


def test_records_round_trip_through_tensorflow_reader(tmp_path):
    import tensorflow as tf

    path = tmp_path / "x.tfrecord"
    payloads = [(b"",), (b"a",), (b"head", bytes(range(256)) * 1000, b"tail")]
    with path.open("wb") as stream:
        lengths = [write_record(stream.fileno(), pieces)[0] for pieces in payloads]
    expected = [b"".join(pieces) for pieces in payloads]
    assert lengths == [len(data) for data in expected]
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(path))] == expected
    with path.open("rb") as stream:
        assert list(read_records(stream)) == expected


def test_corrupt_record_is_detected(tmp_path):
    path = tmp_path / "x.tfrecord"
    with path.open("wb") as stream:
        write_record(stream.fileno(), [b"hello ", b"world"])
    data = bytearray(path.read_bytes())
    data[14] ^= 1
    path.write_bytes(bytes(data))
    with path.open("rb") as stream, pytest.raises(DataError, match="corrupt TFRecord data"):
        list(read_records(stream))


def test_failed_write_raises(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)
    with pytest.raises(OSError):
        write_record(write_end, [b"data"])
    os.close(write_end)
