import pytest

from jobs.dataset.findings import Report
from jobs.dataset.readers import detect_format, read_labels
from jobs.errors import DataError, UsageError


def write(tmp_path, text: str | bytes, name="labels.csv"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_vott_with_bom_quotes_and_commas_in_labels(tmp_path):
    path = write(tmp_path, '\ufeff"image","xmin","ymin","xmax","ymax","label"\n'
                           '"a b.jpg","1.5","2","30.25","40","failed, spaghetti"\n"a b.jpg","3","4","5","6","ok"\n')
    fmt, labels = read_labels(path, "auto", Report())
    assert fmt == "vott-csv" and labels.rows_in == 2
    boxes = labels.images["a b.jpg"].boxes
    assert [(b.label, b.xmin, b.xmax, b.location) for b in boxes] == [
        ("failed, spaghetti", 1.5, 30.25, "labels.csv:2"), ("ok", 3.0, 5.0, "labels.csv:3")]


def test_datitran_keeps_stated_size(tmp_path):
    path = write(tmp_path, "filename,width,height,class,xmin,ymin,xmax,ymax\nr.jpg,275,183,raccoon,4,4,271,180\n")
    fmt, labels = read_labels(path, "auto", Report())
    assert fmt == "datitran-csv"
    assert labels.images["r.jpg"].stated_size == (275, 183)


def test_bad_size_is_a_bad_field(tmp_path):
    path = write(tmp_path, "filename,width,height,class,xmin,ymin,xmax,ymax\nr.jpg,27.5,183,raccoon,4,4,271,180\n"
                           "s.jpg,275,183,raccoon,4,4,271,180\n")
    report = Report()
    _, labels = read_labels(path, "datitran-csv", report)
    assert [str(f) for f in report.findings] == [
        "labels.csv:2: F003 bad-field: width/height 27.5x183 is not a positive integer"]
    assert labels.rows_dropped == 1 and list(labels.images) == ["s.jpg"]


def test_unknown_header_names_the_known_formats(tmp_path):
    path = write(tmp_path, "path,x1,y1,x2,y2,cls\n")
    with pytest.raises(UsageError, match=r"labels.csv:1: the header 'path,x1,y1,x2,y2,cls' matches no known format"):
        detect_format(path)


def test_missing_column_for_an_explicit_format(tmp_path):
    path = write(tmp_path, "image,xmin,ymin,xmax,label\na.jpg,1,2,3,x\n")
    with pytest.raises(DataError, match=r"labels.csv:1: missing column\(s\) ymax"):
        read_labels(path, "vott-csv", Report())


def test_empty_and_header_only_files(tmp_path):
    with pytest.raises(DataError, match="the file is empty"):
        read_labels(write(tmp_path, ""), "vott-csv", Report())
    with pytest.raises(DataError, match="header but no rows"):
        read_labels(write(tmp_path, "image,xmin,ymin,xmax,ymax,label\n"), "vott-csv", Report())


def test_non_utf8_is_fatal_with_the_byte_offset(tmp_path):
    report = Report()
    with pytest.raises(DataError, match="not UTF-8 text"):
        read_labels(write(tmp_path, b"image,xmin,ymin,xmax,ymax,label\n\xe9t\xe9.jpg,1,2,3,4,x\n"), "vott-csv",
                    report)
    assert report.findings[0].code == "F004"


def test_unknown_format_name(tmp_path):
    with pytest.raises(UsageError, match="unknown format .labelme."):
        read_labels(write(tmp_path, "x\n"), "labelme", Report())
