"""What the ToAPIs API answers, parsed tolerantly: task observations, error bodies, Retry-After.

The provider documents only part of its answer shapes, so parsing accepts every plausible
place for a field and treats the unknown as "not final yet" rather than failing a paid task.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Final

from yarl import URL

from bot.text import clip
from bot.toapis.errors import AuthenticationError, InvalidResponseError, TaskFailedError

__all__ = [
    "Balance",
    "ResultImage",
    "TaskStatus",
    "extract_error_code",
    "extract_error_message",
    "parse_balance",
    "parse_retry_after",
    "parse_task",
]

log = logging.getLogger(__name__)

_MAX_MESSAGE_CHARS: Final = 300

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]+")
# Provider messages sometimes echo credentials back ("invalid token sk-…"); never pass them on.
_SECRET_PATTERNS = (
    re.compile(r"(?i)\bbearer\s+\S+"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"),
)


def _clean_text(value: str) -> str:
    text = " ".join(_CONTROL_CHARS.sub(" ", value).split())
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return clip(text, _MAX_MESSAGE_CHARS)


def _nonempty_str(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    return None


def extract_error_message(body: object, fallback: str = "") -> str:
    """Return the human message from any known error body shape, else ``fallback``.

    Handles ``{"error": {"message": ...}}``, ``{"error": "..."}``,
    ``{"success": false, "message": "..."}`` and ``{"message": "..."}``. The text is
    whitespace-normalised, truncated and scrubbed of anything that looks like a credential.
    """
    message: str | None = None
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            message = _nonempty_str(error.get("message"))
        elif isinstance(error, str):
            message = _nonempty_str(error)
        message = message or _nonempty_str(body.get("message")) or _nonempty_str(body.get("detail"))
        if message is None and isinstance(error, Mapping):
            # Last resort before the HTTP reason: a machine-readable type/code still says more.
            message = _nonempty_str(error.get("type")) or _nonempty_str(error.get("code"))
    elif isinstance(body, str):
        message = _nonempty_str(body)
    cleaned = _clean_text(message) if message else ""
    return cleaned or fallback


def extract_error_code(body: object) -> str | None:
    """Return ``error.code`` (or a top-level ``code``) from an error body, as a string."""
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    code = error.get("code") if isinstance(error, Mapping) else None
    if code is None:
        code = body.get("code")
    if code is None or isinstance(code, bool | Mapping | list):
        return None
    return _clean_text(str(code)) or None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delta seconds or an HTTP date) into seconds from now."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


_STATUS_MAP: Final[Mapping[str, str]] = {
    "submitted": "queued",
    "queued": "queued",
    "pending": "queued",
    "in_progress": "in_progress",
    "processing": "in_progress",
    "running": "in_progress",
    "completed": "completed",
    "succeeded": "completed",
    "success": "completed",
    "failed": "failed",
    "error": "failed",
    "cancelled": "failed",
    "canceled": "failed",
}


@dataclass(frozen=True)
class ResultImage:
    """One result image and what the provider says of it (layer decomposition adds the rest)."""

    url: str
    z_index: int | None = None  # stacking order: 0 is the base image, layers above it
    name: str | None = None
    description: str | None = None
    bounding_box: tuple[float, ...] | None = None  # where the layer sits; its shape is not documented

    @property
    def is_layer(self) -> bool:
        """A transparent layer of a decomposed image (not the base image)."""
        return self.z_index is not None and self.z_index > 0


@dataclass(frozen=True)
class TaskStatus:
    """One observation of a generation task, normalised from whatever the API sent."""

    id: str
    status: str
    progress: int | None = None
    image_urls: tuple[str, ...] = ()
    error_message: str | None = None
    error_code: str | None = None
    expires_at: int | None = None
    completed_at: int | None = None
    # The images of `image_urls`, in the same order, with any per-image details the provider sent.
    images: tuple[ResultImage, ...] = ()

    @property
    def is_final(self) -> bool:
        """True when the task will not change any more (completed or failed)."""
        return self.status in ("completed", "failed")

    def raise_if_failed(self) -> None:
        """Raise :class:`TaskFailedError` when the task ended as ``failed``."""
        if self.status == "failed":
            raise TaskFailedError(provider_message=self.error_message or "", code=self.error_code)


def _normalise_status(raw: object, task_id: str) -> str:
    key = raw.strip().lower().replace("-", "_").replace(" ", "_") if isinstance(raw, str) else ""
    status = _STATUS_MAP.get(key)
    if status is None:
        # Unknown means "not final yet" so polling continues rather than giving up on a paid task.
        log.warning("task %s has an unknown status %r; treating it as in progress", task_id, raw)
        return "in_progress"
    return status


def _parse_progress(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip().rstrip("%"))
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return max(0, min(100, round(value)))


def _parse_timestamp(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value)


def _is_http_url(value: str) -> bool:
    try:
        url = URL(value)
    except (ValueError, TypeError):
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def _add_urls(found: list[str], value: object) -> None:
    candidates = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    for candidate in candidates:
        if isinstance(candidate, str) and _is_http_url(candidate.strip()):
            found.append(candidate.strip())


def _add_entries(found: list[str], entries: object) -> None:
    if not isinstance(entries, list):
        return
    for entry in entries:
        _add_urls(found, entry.get("url") if isinstance(entry, Mapping) else entry)


def _collect_image_urls(body: Mapping[str, Any]) -> tuple[str, ...]:
    # The multi-image shape is undocumented: accept every plausible place, in a fixed order.
    found: list[str] = []
    result = body.get("result")
    if isinstance(result, Mapping):
        _add_entries(found, result.get("data"))
        _add_entries(found, result.get("images"))
        _add_urls(found, result.get("url"))
    elif isinstance(result, list):
        _add_entries(found, result)
    _add_urls(found, body.get("url"))
    return tuple(dict.fromkeys(found))


def _parse_z_index(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value.lstrip("-").isdigit():
            return None
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) else None


def _parse_bounding_box(value: object) -> tuple[float, ...] | None:
    if isinstance(value, Mapping):
        value = list(value.values())
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None
    return tuple(float(v) for v in value)


def _optional_text(value: object) -> str | None:
    return (_clean_text(value) or None) if isinstance(value, str) else None


def _collect_images(body: Mapping[str, Any], urls: tuple[str, ...]) -> tuple[ResultImage, ...]:
    # Per-image details are documented only on `result.data[]` items (5.0 Pro layers).
    details: dict[str, ResultImage] = {}
    result = body.get("result")
    entries = result.get("data") if isinstance(result, Mapping) else None
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("url"), str):
            continue
        url = entry["url"].strip()
        if url in details:
            continue
        details[url] = ResultImage(
            url=url,
            z_index=_parse_z_index(entry.get("z_index")),
            name=_optional_text(entry.get("name")),
            description=_optional_text(entry.get("description")),
            bounding_box=_parse_bounding_box(entry.get("bounding_box")),
        )
    return tuple(details.get(url) or ResultImage(url=url) for url in urls)


def parse_task(body: object) -> TaskStatus:
    """Build a :class:`TaskStatus` from a task JSON body, tolerating the undocumented parts.

    Raises :class:`InvalidResponseError` when the body is not an object or has no task id.
    """
    if not isinstance(body, Mapping):
        raise InvalidResponseError("The image service sent a task that is not a JSON object.")
    task: Mapping[str, Any] = body
    if "id" not in task and isinstance(task.get("data"), Mapping):
        task = task["data"]  # tolerate an envelope around the task object
    task_id = task.get("id")
    if isinstance(task_id, int) and not isinstance(task_id, bool):
        task_id = str(task_id)
    if not isinstance(task_id, str) or not task_id.strip():
        raise InvalidResponseError("The image service sent a task without an id.")
    task_id = task_id.strip()

    status = _normalise_status(task.get("status"), task_id)
    progress = _parse_progress(task.get("progress"))
    if status == "completed" and progress is None:
        progress = 100

    error = task.get("error")
    error_message: str | None = None
    if isinstance(error, Mapping):
        error_message = extract_error_message({"error": error}) or None
    elif isinstance(error, str):
        error_message = extract_error_message(error) or None
    error_code = extract_error_code({"error": error}) if isinstance(error, Mapping) else None

    image_urls = _collect_image_urls(task)
    return TaskStatus(
        id=task_id,
        status=status,
        progress=progress,
        image_urls=image_urls,
        images=_collect_images(task, image_urls),
        error_message=error_message,
        error_code=error_code,
        expires_at=_parse_timestamp(task.get("expires_at")),
        completed_at=_parse_timestamp(task.get("completed_at")),
    )


@dataclass(frozen=True)
class Balance:
    """What ``GET /v1/balance`` says about the API key's account (USD and credits)."""

    remain_balance: float
    used_balance: float
    remain_credits: float
    used_credits: float
    credits_per_usd: float
    unlimited_quota: bool

    @property
    def unlimited(self) -> bool:
        """True when the account has no spending limit (``remain_balance`` is -1)."""
        return self.unlimited_quota or self.remain_balance == -1

    def describe(self) -> str:
        """One short line for an operator: ``$10.50 left (2,100 credits)`` or ``unlimited``."""
        if self.unlimited:
            return "unlimited"
        return f"${self.remain_balance:,.2f} left ({self.remain_credits:,.0f} credits)"


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def parse_balance(body: object) -> Balance:
    """Build a :class:`Balance` from the balance endpoint's JSON body.

    ``{"success": false, "message": ...}`` (the provider's answer for an unknown key) raises
    :class:`AuthenticationError`; a body without a readable ``remain_balance`` raises
    :class:`InvalidResponseError`. Other missing numbers read as 0.
    """
    if not isinstance(body, Mapping):
        raise InvalidResponseError("The image service sent a balance that is not a JSON object.")
    if body.get("success") is False:
        # The provider's message may echo the key: the default sentence says enough.
        raise AuthenticationError()
    data: Mapping[str, Any] = body
    if "remain_balance" not in data and isinstance(data.get("data"), Mapping):
        data = data["data"]  # tolerate an envelope around the figures
    remain = _number(data.get("remain_balance"))
    if remain is None:
        raise InvalidResponseError("The image service's balance answer has no remaining balance.")
    unlimited = data.get("unlimited_quota")
    return Balance(
        remain_balance=remain,
        used_balance=_number(data.get("used_balance")) or 0.0,
        remain_credits=_number(data.get("remain_credits")) or 0.0,
        used_credits=_number(data.get("used_credits")) or 0.0,
        credits_per_usd=_number(data.get("credits_per_usd")) or 0.0,
        unlimited_quota=unlimited is True or (isinstance(unlimited, str) and unlimited.lower() == "true"),
    )
