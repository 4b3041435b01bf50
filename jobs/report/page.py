"""``report.html``: one self-contained page (inline CSS, images as data URIs, no scripts) readable offline."""

from __future__ import annotations

import base64
import html
import json

from jobs.metrics import COCO_KEYS, MetricsJson
from jobs.report.tables import (
    CLASS_COLUMNS,
    COMPARISON_COLUMNS,
    Row,
    class_rows,
    comparison_rows,
    model_label,
    threshold_note,
    total_row,
)

# (section id, title, picture, what it shows)
PICTURES = (
    ("pr-curves", "Precision-recall curves", "pr_curves.png",
     "Per class at IoU 0.5; the dot is the operating point at the report's score threshold."),
    ("confusion", "Confusion matrix", "confusion_matrix.png",
     "Rows are the true class (background: a detection that matches nothing), columns the predicted class "
     "(background: a box nothing found)."),
    ("ap-per-class", "AP per class", "ap_per_class.png", "COCO AP50 and AP (IoU 0.50:0.95) of each class."),
    ("worst-images", "Images with the most errors", "worst_images.png",
     "Ground truth in green on the left, predictions at the threshold on the right; most errors first."),
)
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 0 16px 40px; color: #222; }
nav a { margin-right: 12px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #ccc; padding: 3px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f0f0; }
tr.total td { font-weight: 600; font-style: italic; background: #f7f7f7; border-bottom: 2px solid #999; }
table.facts td { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; }
pre { background: #f6f6f6; padding: 10px; overflow-x: auto; font-size: 13px; }
.note { color: #555; }
"""


def report_html(metrics: MetricsJson, pictures: dict[str, bytes], config: dict[str, object]) -> str:
    """The page: summary, per-class table, the pictures and the run's config (``config``: title to JSON data)."""
    title = f"Evaluation: {model_label(metrics)}, {metrics.get('split', 'val')} split"
    sections = [_summary(metrics), _classes(metrics)]
    sections += [_picture(section, heading, pictures[name], caption) for section, heading, name, caption in PICTURES]
    sections.append(_config(config))
    links = [("summary", "Summary"), ("classes", "Per class"), *((s, h) for s, h, _, _ in PICTURES),
             ("config", "Config")]
    nav = "".join(f'<a href="#{section}">{heading}</a>' for section, heading in links)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_text(title)}</title>'
            f'<link rel="icon" href="data:,"><style>{STYLE}</style></head>\n<body><h1>{_text(title)}</h1>'
            f"<nav>{nav}</nav>\n" + "\n".join(sections) + "\n</body></html>\n")


def _summary(metrics: MetricsJson) -> str:
    facts = [("model", model_label(metrics)), ("split", metrics.get("split")), ("data", metrics.get("data")),
             ("images", metrics["all"]["images"]), ("detections", metrics.get("detections")),
             ("score threshold", threshold_note(metrics))]
    body = _table(["", "value"], [[name, value] for name, value in facts], css="facts")
    body += _table(list(COCO_KEYS), [[metrics["summary"][key] for key in COCO_KEYS]])
    comparison = comparison_rows(metrics)
    if comparison:
        body += "<h3>Against the float model</h3>" + _table(COMPARISON_COLUMNS, comparison)
    return _section("summary", "Summary", body)


def _classes(metrics: MetricsJson) -> str:
    body = _table(CLASS_COLUMNS, class_rows(metrics), total=total_row(metrics))
    return _section("classes", "Per class", body + f'<p class="note">{_text(threshold_note(metrics))}</p>')


def _picture(section: str, heading: str, png: bytes, caption: str) -> str:
    source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return _section(section, heading, f'<p class="note">{_text(caption)}</p><img src="{source}" alt="{heading}">')


def _config(config: dict[str, object]) -> str:
    body = "".join(f"<h3>{_text(name)}</h3><pre>{_text(json.dumps(data, indent=2, default=str))}</pre>"
                   for name, data in config.items())
    return _section("config", "Config", body or "<p>no config recorded</p>")


def _section(section: str, heading: str, body: str) -> str:
    return f'<section id="{section}"><h2>{_text(heading)}</h2>{body}</section>'


def _table(columns: list[str], rows: list[Row], css: str = "", total: Row | None = None) -> str:
    """``total``: a row above the others, set apart (``tr.total``)."""
    head = "".join(f"<th>{_text(column)}</th>" for column in columns)
    lines = [_row(total, ' class="total"')] if total else []
    lines += [_row(row) for row in rows]
    table_css = f' class="{css}"' if css else ""
    return f"<table{table_css}><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _row(values: Row, attributes: str = "") -> str:
    return f"<tr{attributes}>" + "".join(f"<td>{_cell(value)}</td>" for value in values) + "</tr>"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else _text(value)


def _text(value: object) -> str:
    return html.escape(str(value))
