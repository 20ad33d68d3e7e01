"""What a webhook delivery says: the event, and the task status it stands for.

Events name a task's end with their own words (`SUCCESS`/`FAILURE`, unlike the status
endpoint's `completed`/`failed`); the rest of the task (result images, error) is read by the
same tolerant parser as a status query's answer (`bot.toapis.parse_task`), so an event moves a
job on exactly as a query seeing the same end would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.toapis import InvalidResponseError, TaskStatus, parse_task

__all__ = [
    "COMPLETED",
    "ENDPOINT_TEST",
    "FAILED",
    "MalformedEventError",
    "WebhookEvent",
    "parse_event",
    "task_status",
]

COMPLETED = "generation.completed"
FAILED = "generation.failed"
ENDPOINT_TEST = "endpoint.test"
_FINAL_WORDS = {"success": "completed", "failure": "failed"}
MAX_ID_LENGTH = 200  # what the events table keeps of an event or task id


class MalformedEventError(Exception):
    """The signed body is not a webhook event the bot can read (answered 400)."""


@dataclass(frozen=True)
class WebhookEvent:
    """One delivery: its id (what deduplicates it), type, and the task it is about."""

    id: str
    type: str
    task_id: str | None
    data: Mapping[str, Any]


def parse_event(body: bytes, header_id: str) -> WebhookEvent:
    """Read a delivery's JSON body; its `id` must be the one the signature covered."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedEventError("the body is not JSON") from None
    if not isinstance(document, Mapping):
        raise MalformedEventError("the body is not a JSON object")
    event_id = document.get("id")
    if not isinstance(event_id, str) or event_id != header_id:
        raise MalformedEventError("the body's id is not the signed event id")
    if len(event_id) > MAX_ID_LENGTH:
        raise MalformedEventError("the event id is too long")
    kind = document.get("type")
    if not isinstance(kind, str) or not kind:
        raise MalformedEventError("the event has no type")
    data = document.get("data")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise MalformedEventError("the event's data is not an object")
    task_id = data.get("task_id")
    if isinstance(task_id, int) and not isinstance(task_id, bool):
        task_id = str(task_id)
    task = task_id.strip() if isinstance(task_id, str) and task_id.strip() else None
    if task is not None and len(task) > MAX_ID_LENGTH:
        raise MalformedEventError("the task id is too long")
    return WebhookEvent(id=event_id, type=kind, task_id=task, data=data)


def task_status(data: Mapping[str, Any]) -> TaskStatus | None:
    """The final status an event's `data` reports, or None when it reports no readable end."""
    word = data.get("status")
    status = _FINAL_WORDS.get(word.strip().lower()) if isinstance(word, str) else None
    if status is None:
        return None
    try:
        return parse_task(
            {
                "id": data.get("task_id"),
                "status": status,
                "progress": data.get("progress"),
                "result": data.get("result"),
                "error": data.get("error"),
                "completed_at": data.get("finished_at"),
            }
        )
    except InvalidResponseError:
        return None
