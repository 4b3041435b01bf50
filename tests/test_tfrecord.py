import io
import math

import pytest

from jobs.dataset.tfrecord import Bytes, Floats, Ints, encode_example, read_records, write_record


def test_example_encoding_parses_with_tensorflow_protos():
    from tensorflow.core.example import example_pb2

    features = {
        "image/encoded": Bytes([b"\x00\xffbytes"]),
        "image/filename": Bytes(["naïve name.jpg"]),
        "image/object/bbox/xmin": Floats([0.25, 0.5]),
        "image/object/class/label": Ints([1, 300, 2**40]),
        "image/object/class/text": Bytes([]),
        "image/object/area": Floats([]),
        "image/object/is_crowd": Ints([]),
        "negative": Ints([-5]),
    }
    parsed = example_pb2.Example.FromString(encode_example(features)).features.feature
    assert parsed["image/encoded"].bytes_list.value == [b"\x00\xffbytes"]
    assert parsed["image/filename"].bytes_list.value == ["naïve name.jpg".encode()]
    assert list(parsed["image/object/bbox/xmin"].float_list.value) == [0.25, 0.5]
    assert list(parsed["image/object/class/label"].int64_list.value) == [1, 300, 2**40]
    assert parsed["image/object/class/text"].WhichOneof("kind") == "bytes_list"
    assert parsed["image/object/area"].WhichOneof("kind") == "float_list"
    assert parsed["image/object/is_crowd"].WhichOneof("kind") == "int64_list"
    assert list(parsed["negative"].int64_list.value) == [-5]


def test_records_round_trip_through_tensorflow_reader(tmp_path):
    import tensorflow as tf

    path = tmp_path / "x.tfrecord"
    payloads = [b"", b"a", bytes(range(256)) * 1000]
    with path.open("wb") as stream:
        for payload in payloads:
            write_record(stream, payload)
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(path))] == payloads
    with path.open("rb") as stream:
        assert list(read_records(stream)) == payloads


def test_corrupt_record_is_detected():
    stream = io.BytesIO()
    write_record(stream, b"hello world")
    data = bytearray(stream.getvalue())
    data[14] ^= 1
    with pytest.raises(ValueError, match="corrupt TFRecord data"):
        list(read_records(io.BytesIO(bytes(data))))


def test_float_features_are_float32():
    from tensorflow.core.example import example_pb2

    parsed = example_pb2.Example.FromString(encode_example({"v": Floats([1 / 3])})).features.feature
    assert math.isclose(parsed["v"].float_list.value[0], 1 / 3, rel_tol=1e-7)


def test_untyped_values_are_rejected():
    with pytest.raises(TypeError, match="Bytes, Floats or Ints"):
        encode_example({"v": [1, 2]})
