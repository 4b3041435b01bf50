"""Image checks: the direct header reader agrees with Pillow on every kind of image, truncation and corruption are
told apart, and the default check decodes a sample while ``--verify full`` decodes everything."""

from __future__ import annotations

import io

import pytest
from image_kinds import image_bytes, make_image
from PIL import Image

from jobs.dataset.check import check
from jobs.dataset.images import ImageProblem, _inspect_with_pillow, inspect
from jobs.dataset.pipeline import CheckOptions

KINDS = ("jpeg", "png", "truncated", "corrupt", "text", "gif", "tiff", "bmp", "webp", "rgba", "gray", "cmyk",
         "png16", "exif6")


def _outcome(fn):
    try:
        return fn()
    except ImageProblem as problem:
        return problem.rule.code


def _pillow(path, decode):
    with open(path, "rb") as stream:
        return _inspect_with_pillow(stream, decode)


def _extra_pngs(tmp_path):
    """PNG variants the kinds do not cover: 1-bit, palette with a transparent colour, 16-bit RGB, grey+alpha."""
    paths = []
    for name, image, options in [
        ("bits1.png", Image.new("1", (40, 30), 1), {}),
        ("palette.png", Image.new("RGB", (40, 30), (9, 9, 9)).convert("P"), {"transparency": 0}),
        ("rgb16.png", None, {}),
        ("la.png", Image.new("LA", (40, 30), (90, 200)), {}),
    ]:
        path = tmp_path / name
        if image is None:  # Pillow cannot write 16-bit RGB; a minimal one by hand
            import struct
            import zlib

            def chunk(kind, data):
                return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
            raw = b"".join(b"\0" + b"\x12\x34" * 3 * 4 for _ in range(3))
            path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 3, 16, 2, 0, 0, 0))
                             + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
        else:
            image.save(path, **options)
        paths.append(path)
    return paths


@pytest.mark.parametrize("decode", [False, True])
def test_the_header_reader_agrees_with_pillow(tmp_path, decode):
    paths = []
    for kind in KINDS:
        paths.append(tmp_path / f"{kind}.img")
        make_image(paths[-1], f"{kind}:300x200")
    for path in paths + _extra_pngs(tmp_path):
        expected = _outcome(lambda p=path: _pillow(p, decode))
        assert _outcome(lambda p=path: inspect(p, decode)) == expected, path.name
        assert _outcome(lambda p=path: inspect(p, decode, p.read_bytes())) == expected, path.name


def test_the_header_reader_agrees_with_pillow_on_real_photos(raccoon):
    for path in sorted((raccoon / "images").iterdir())[:60]:
        assert inspect(path) == _pillow(path, False), path.name


def test_a_header_beyond_the_first_64_kb_is_still_read(tmp_path):
    image = Image.new("RGB", (50, 40), (1, 2, 3))
    out = io.BytesIO()
    image.save(out, "JPEG", icc_profile=bytes(200_000))  # ICC segments before the frame header
    path = tmp_path / "big-header.jpg"
    path.write_bytes(out.getvalue())
    info = inspect(path)
    assert (info.width, info.height, info.format) == (50, 40, "jpeg")


def test_data_after_the_end_marker_is_not_truncation(tmp_path):
    path = tmp_path / "motion.jpg"
    path.write_bytes(image_bytes("jpeg") + bytes(10_000))  # e.g. a motion photo's video after the JPEG
    info = inspect(path)
    assert info.decoded, "no end marker in the tail: decoded to be sure"


def _corpus(tmp_path, kinds: list[str]):
    images = tmp_path / "images"
    rows = ['"image","xmin","ymin","xmax","ymax","label"']
    for index, kind in enumerate(kinds):
        make_image(images / f"img{index:03d}.jpg", kind)
        rows.append(f'"img{index:03d}.jpg","8","8","40","40","cat"')
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return labels, images


def test_the_default_check_decodes_a_sample_and_full_decodes_everything(tmp_path):
    labels, images = _corpus(tmp_path, ["jpeg", "corrupt"] + ["jpeg"] * 198)
    header = check(CheckOptions(labels, images, val_fraction=0.0))
    assert header.verify == {"mode": "header", "images": 200, "sample_every": 3, "decoded": 67}
    assert header.rows["reported"] == 0, "a corrupt image outside the sample passes the header check"
    full = check(CheckOptions(labels, images, val_fraction=0.0, verify="full"))
    assert full.verify["decoded"] == 199
    assert [str(f) for f in full.report.findings if f.code == "I002"] == [
        "labels.csv:3: I002 unreadable-image: image 'img001.jpg': corrupt image data, cannot decode: broken data "
        "stream when reading image file (1 row(s) dropped)"]
    small, small_images = _corpus(tmp_path / "small", ["jpeg", "corrupt", "jpeg"])
    assert check(CheckOptions(small, small_images, val_fraction=0.0)).rows["reported"] == 1, "small: all decoded"
