"""A job's last log lines: from Cloud Logging (Vertex AI writes a custom job's output as ``ml_job`` entries), or
from the file that keeps a local job's output. A progress event reads as its message."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.runtime.spec import ProgressEvent
from jobs.stack import StackOutputs

if TYPE_CHECKING:
    from google.cloud.logging import Client


def readable(line: str) -> str:
    event = ProgressEvent.from_line(line)
    return line if event is None else event.message


def log_filter(job_id: str) -> str:
    return f'resource.type="ml_job" AND resource.labels.job_id="{job_id}"'


def job_logs(stack: StackOutputs, job_id: str, limit: int = 200, client: Client | None = None) -> Iterator[str]:
    from google.cloud import logging as cloud_logging

    client = client or cloud_logging.Client(project=stack.project)
    entries = client.list_entries(filter_=log_filter(job_id), order_by=cloud_logging.DESCENDING,
                                  max_results=limit)
    for entry in reversed(list(entries)):
        payload = entry.payload  # a JSON line may arrive parsed: its "message" is the line to show
        text = payload.get("message", str(payload)) if isinstance(payload, dict) else readable(str(payload))
        yield f"{entry.timestamp:%Y-%m-%d %H:%M:%S} {entry.severity or '':8} {text}"


def file_logs(path: Path, limit: int = 200) -> Iterator[str]:
    with path.open(encoding="utf-8", errors="replace") as stream:
        for line in deque(stream, maxlen=limit):
            yield readable(line.rstrip("\n"))
