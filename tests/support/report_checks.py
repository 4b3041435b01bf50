"""Checks shared by the report tests: every file an evaluation writes for people, opened as they open it."""

from __future__ import annotations

import json
from pathlib import Path

from report_browser import open_page

SECTIONS = ["summary", "classes", "pr-curves", "confusion", "ap-per-class", "worst-images", "config"]
PICTURES = ["pr_curves.png", "confusion_matrix.png", "ap_per_class.png", "worst_images.png"]


def assert_pictures_decode(folder: Path) -> None:
    from PIL import Image

    for name in PICTURES:
        with Image.open(folder / name) as image:
            assert image.format == "PNG", name
            image.load()  # decodes every pixel
            assert min(image.size) >= 200, (name, image.size)


def assert_report_in_chromium(report: Path, browser: str) -> dict:
    page, errors = open_page(report, browser)
    assert errors == [], errors
    assert page["sections"] == SECTIONS
    assert len(page["images"]) == len(PICTURES)
    assert all(image["loaded"] and image["width"] >= 200 for image in page["images"]), page["images"]
    assert page["scripts"] == 0 and page["external"] == [], "report.html must be readable offline"
    return page


def load_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))
