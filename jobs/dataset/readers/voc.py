"""Pascal VOC XML: one ``<annotation>`` file per image (LabelImg, CVAT, the VOC devkit), parsed with defusedxml.

The input is a folder of ``.xml`` files, a VOC devkit folder holding ``Annotations/``, or one ``.xml`` file. Images
are looked for in ``JPEGImages/`` or ``images/`` beside them, else in the XML folder itself (``--images``
overrides). A file without ``<object>`` lists a negative image. ``difficult`` and ``truncated`` boxes are kept as
ordinary boxes; coordinates are used as written (pixels), like the raccoon CSV that was made from these files.
A devkit's ``ImageSets/Main/{train,val,test}.txt`` (ids = XML file stems) assign those images' splits; images in none
of them are split by ``--val-fraction``.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from jobs.dataset.annotations import Box, Labels
from jobs.dataset.findings import BAD_FIELD, EMPTY_INPUT, MALFORMED_ANNOTATION, Report
from jobs.dataset.readers.base import display_name, fatal, number, register_reader

COORDINATES = ("xmin", "ymin", "xmax", "ymax")
IMAGE_SETS = ("train", "val", "test")  # ImageSets/Main/<split>.txt


def _xml_folder(path: Path) -> Path:
    return path / "Annotations" if (path / "Annotations").is_dir() else path


def _looks_like_voc(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() == ".xml"
    return path.is_dir() and any(_xml_folder(path).glob("*.xml"))


def default_images_dir(path: Path) -> Path:
    folder = _xml_folder(path)
    for candidate in (path / "JPEGImages", path / "images", folder.parent / "JPEGImages", folder.parent / "images"):
        if candidate.is_dir():
            return candidate
    return folder


def _text(element: Element, tag: str) -> str:
    child = element.find(tag)
    return (child.text or "").strip() if child is not None else ""


def _stated_size(root: Element) -> tuple[int, int] | None:
    size = root.find("size")
    if size is None:
        return None
    try:
        width, height = int(_text(size, "width")), int(_text(size, "height"))
    except ValueError:
        return None
    return (width, height) if width > 0 and height > 0 else None  # tools write 0 when they did not know


def _image_sets(folder: Path) -> dict[str, tuple[str, Path]]:
    """XML stem -> (split, the set file naming it) from the devkit's ImageSets/Main, if it has one."""
    sets: dict[str, tuple[str, Path]] = {}
    for split in IMAGE_SETS:
        path = folder.parent / "ImageSets" / "Main" / f"{split}.txt"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    sets.setdefault(line.split()[0], (split, path))
    return sets


def _read_file(xml: Path, name: str, labels: Labels, report: Report) -> str | None:
    """Add the file's boxes (or negative image); the image's file name, when the file names one."""
    if not xml.is_file():  # reading a FIFO would block
        report.add(MALFORMED_ANNOTATION, name, "not a regular file (a FIFO, socket, device or folder); not read")
        labels.drop_row()
        return None
    labels.sources.append(xml)
    try:
        root = fromstring(xml.read_bytes())
    except ParseError as err:
        line = err.position[0] if err.position else 1
        report.add(MALFORMED_ANNOTATION, f"{name}:{line}", f"not well-formed XML ({err}); fix or delete the file")
        labels.drop_row()
        return None
    except DefusedXmlException as err:
        report.add(MALFORMED_ANNOTATION, name, f"refused: {type(err).__name__} (entity and DTD declarations are "
                                               "not allowed); remove the <!DOCTYPE ...> part")
        labels.drop_row()
        return None
    filename = _text(root, "filename")
    if root.tag != "annotation" or not filename:
        what = f"the root element is <{root.tag}>" if root.tag != "annotation" else "<filename> is missing"
        report.add(MALFORMED_ANNOTATION, name, f"not a VOC annotation: {what}")
        labels.drop_row(filename)
        return None
    objects = root.findall("object")
    if not objects:
        labels.add_negative(filename, name)
    for index, element in enumerate(objects, start=1):
        location = f"{name}:object {index}"
        try:
            label = _text(element, "name")
            if not label:
                raise ValueError("<name> is empty")
            box = element.find("bndbox")
            if box is None:
                raise ValueError("<bndbox> is missing")
            coordinates = [number(_text(box, key), key) for key in COORDINATES]
        except ValueError as err:
            report.add(BAD_FIELD, location, str(err))
            labels.drop_row(filename)
            continue
        xmin, ymin, xmax, ymax = coordinates
        labels.add_box(filename, Box(label, xmin, ymin, xmax, ymax, location))
    if filename in labels.images:
        labels.images[filename].stated_size = _stated_size(root)
    return filename


@register_reader(
    "voc-xml", "Pascal VOC XML: one file per image (LabelImg, CVAT, VOC devkit), pixel coordinates",
    "a folder of .xml files (or holding Annotations/), or one .xml file", _looks_like_voc,
)
def read_voc(path: Path, report: Report) -> Labels:
    folder = _xml_folder(path) if path.is_dir() else path.parent
    files = sorted(folder.glob("*.xml")) if path.is_dir() else [path]
    sets = _image_sets(folder) if path.is_dir() else {}
    labels = Labels(sources=sorted({source for _, source in sets.values()}),  # and each XML file read
                    images_dir=default_images_dir(path) if path.is_dir() else path.parent)
    for xml in files:
        filename = _read_file(xml, xml.name, labels, report)
        if filename in labels.images and xml.stem in sets:
            labels.images[filename].split = sets[xml.stem][0]
    if labels.rows_in == 0:
        raise fatal(report, EMPTY_INPUT, display_name(path), "no .xml annotation files found")
    return labels
