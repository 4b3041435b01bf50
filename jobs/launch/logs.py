"""A job's log lines from Cloud Logging (Vertex AI writes custom job output as ``ml_job`` entries)."""

from __future__ import annotations

from collections.abc import Iterator

from jobs.stack import StackOutputs


def log_filter(job_id: str) -> str:
    return f'resource.type="ml_job" AND resource.labels.job_id="{job_id}"'


def job_logs(stack: StackOutputs, job_id: str, limit: int = 200, client=None) -> Iterator[str]:
    from google.cloud import logging as cloud_logging

    client = client or cloud_logging.Client(project=stack.project)
    entries = client.list_entries(filter_=log_filter(job_id), order_by=cloud_logging.DESCENDING,
                                  max_results=limit)
    for entry in reversed(list(entries)):
        payload = entry.payload
        text = payload.get("message", str(payload)) if isinstance(payload, dict) else str(payload)
        yield f"{entry.timestamp:%Y-%m-%d %H:%M:%S} {entry.severity or '':8} {text}"
