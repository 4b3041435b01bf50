import pytest

from jobs.dataset import label_map
from jobs.errors import UsageError


def test_ids_from_one_in_sorted_order_whatever_the_input_order():
    assert label_map.build(["zebra", "ant", "zebra", "moth"]) == {"ant": 1, "moth": 2, "zebra": 3}


AWKWARD = ['say "hi"', "back\\slash", "two\nlines", "it's", "tab\there", "ünïcode", "bell\x07" + "7", "del\x7f",
           "cr\rlf"]


@pytest.mark.parametrize("name", AWKWARD)
def test_awkward_names_round_trip(name):
    mapping = {name: 1, "plain": 2}
    assert label_map.loads(label_map.dumps(mapping)) == mapping


@pytest.mark.parametrize("name", AWKWARD)
def test_quoted_names_parse_with_protobuf_text_format(name):
    """What the OD API's label_map_util does with the file (text_format.Merge into a proto)."""
    from google.protobuf import descriptor_pb2, text_format

    parsed = text_format.Parse(f"name: {label_map.quote(name)}", descriptor_pb2.FileDescriptorProto())
    assert parsed.name == name


def test_reads_od_api_style_with_single_quotes_and_display_names():
    text = """# comment
item {
  name: 'raccoon'
  id: 1
  display_name: 'Raccoon'
}
item { id: 2 name: "dog" }
"""
    assert label_map.loads(text) == {"raccoon": 1, "dog": 2}


def test_duplicate_ids_are_rejected():
    with pytest.raises(UsageError, match="ids must be unique"):
        label_map.loads("item { id: 1 name: 'a' }\nitem { id: 1 name: 'b' }")


def test_id_zero_is_rejected():
    with pytest.raises(UsageError, match=">= 1"):
        label_map.loads("item { id: 0 name: 'background' }")
