"""A Discord-free client for the ToAPIs image generation API.

The API is asynchronous: a submission creates a task (and is charged up front), the task is
polled until it is final, and the result images are downloaded from a third-party file host.
See ``docs/toapis-api.md`` for what the provider documents.

Everything here raises exceptions from the :class:`ToAPIsError` family; their ``str()`` is a
short plain-English sentence that is safe to show to users and to log (never the API key,
never raw JSON).
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import logging
import math
import random
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

if TYPE_CHECKING:
    from aiohttp.abc import ResolveResult

__all__ = [
    "KEY_CHECK_TASK_ID",
    "USER_AGENT",
    "AuthenticationError",
    "BadRequestError",
    "DownloadRefusedError",
    "DownloadTooLargeError",
    "InsufficientBalanceError",
    "InvalidResponseError",
    "RateLimitedError",
    "ServerError",
    "SubmissionResponseInvalidError",
    "SubmissionUnconfirmedError",
    "TaskFailedError",
    "TaskStatus",
    "ToAPIsClient",
    "ToAPIsConnectionError",
    "ToAPIsError",
    "ToAPIsTimeoutError",
    "extract_error_code",
    "extract_error_message",
    "is_public_address",
    "parse_retry_after",
    "parse_task",
]

log = logging.getLogger(__name__)

USER_AGENT: Final = "imagine-bot"
# A task id that cannot exist: polling it costs nothing and still goes through authentication.
KEY_CHECK_TASK_ID: Final = "imagine-bot-key-check"

_GENERATIONS_PATH: Final = "/v1/images/generations"
_UPLOADS_PATH: Final = "/v1/uploads/images"
# API answers are small JSON documents; anything bigger is not something we should buffer.
_MAX_API_BODY: Final = 2 * 1024 * 1024
_MAX_ERROR_BODY: Final = 64 * 1024
_CHUNK_SIZE: Final = 64 * 1024
# Redirects a download may follow; each hop is checked like the first address.
_MAX_REDIRECTS: Final = 5
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_MAX_MESSAGE_CHARS: Final = 300

# Errors raised before any byte of the request left this machine: safe to retry even a POST.
_NOT_SENT_ERRORS: Final[tuple[type[BaseException], ...]] = (
    aiohttp.ClientConnectorError,
    *(getattr(aiohttp, name) for name in ("ConnectionTimeoutError",) if hasattr(aiohttp, name)),
)
_TRANSPORT_ERRORS: Final = (aiohttp.ClientError, TimeoutError)
# URL problems (bad scheme, redirect loops) that retrying cannot fix.
_BAD_URL_ERRORS: Final[tuple[type[BaseException], ...]] = (
    aiohttp.InvalidURL,
    aiohttp.TooManyRedirects,
    *(getattr(aiohttp, name) for name in ("NonHttpUrlClientError",) if hasattr(aiohttp, name)),
)


# --------------------------------------------------------------------------- exceptions


class ToAPIsError(Exception):
    """Base class of every error raised by this module.

    ``str(error)`` is a short, safe, plain-English description; ``status`` is the HTTP status
    when the error came from an HTTP answer.
    """

    default_message = "Something went wrong while talking to the image service."

    def __init__(self, message: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message or self.default_message)
        self.status = status


class AuthenticationError(ToAPIsError):
    """The API key was rejected (HTTP 401)."""

    default_message = "The image service rejected the API key."


class InsufficientBalanceError(ToAPIsError):
    """The account has no balance left or lacks permission (HTTP 402 or 403)."""

    default_message = "The image service account has insufficient balance or lacks permission."


class BadRequestError(ToAPIsError):
    """The request was refused (HTTP 400/404/422 and similar); see ``provider_message``."""

    default_message = "The image service rejected the request."

    def __init__(
        self, message: str | None = None, *, status: int | None = 400, provider_message: str = ""
    ) -> None:
        if message is None and provider_message:
            message = f"The image service rejected the request: {provider_message}"
        super().__init__(message, status=status)
        self.provider_message = provider_message


class RateLimitedError(ToAPIsError):
    """Too many requests (HTTP 429); ``retry_after`` is the advised wait in seconds, if any."""

    default_message = "The image service is rate limiting requests."

    def __init__(
        self, message: str | None = None, *, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ServerError(ToAPIsError):
    """The service answered with a 5xx status."""

    default_message = "The image service had a server error."


class ToAPIsConnectionError(ToAPIsError):
    """The connection could not be established, or it dropped."""

    default_message = "Could not connect to the image service."


class ToAPIsTimeoutError(ToAPIsError):
    """A request did not complete in time."""

    default_message = "The request to the image service timed out."


class InvalidResponseError(ToAPIsError):
    """The answer was not JSON, or lacked a required field such as the task id."""

    default_message = "The image service sent an answer that could not be read."


class TaskFailedError(ToAPIsError):
    """A task ended as ``failed``; ``provider_message`` says why (e.g. content policy)."""

    default_message = "The image generation failed."

    def __init__(
        self,
        message: str | None = None,
        *,
        provider_message: str = "",
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        if message is None and provider_message:
            message = f"The image generation failed: {provider_message}"
        super().__init__(message, status=status)
        self.provider_message = provider_message
        self.code = code


class SubmissionUnconfirmedError(ToAPIsError):
    """A submission was sent but its answer never arrived.

    It may have been accepted and charged, so it is never re-sent automatically.
    """

    default_message = (
        "The image request was sent but the image service did not confirm it; "
        "it may have been accepted, so it was not sent again."
    )


class SubmissionResponseInvalidError(SubmissionUnconfirmedError, InvalidResponseError):
    """A submission got a success status but an unreadable body.

    The task was probably created (and charged) but its id is unknown, so this is both
    "unconfirmed" (do not re-send) and "invalid response".
    """

    default_message = (
        "The image service accepted the request but its answer could not be read; it was not sent again."
    )


class DownloadTooLargeError(ToAPIsError):
    """A downloaded file exceeded the byte limit."""

    default_message = "The image file is larger than the download limit."

    def __init__(self, message: str | None = None, *, limit: int | None = None, status: int | None = None):
        if message is None and limit is not None:
            message = f"The image file is larger than the download limit of {_format_bytes(limit)}."
        super().__init__(message, status=status)
        self.limit = limit


class DownloadRefusedError(ToAPIsError):
    """An image address (or a redirect) leads somewhere the bot does not fetch from.

    Only HTTPS to public internet addresses is fetched, except from the image service's own
    host and the hosts the operator configured; never retried.
    """

    default_message = "The image address is not a public HTTPS address, so it was not fetched."


# --------------------------------------------------------------------------- address guard

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: IPAddress) -> bool:
    """True for an address on the public internet: not private, loopback, link-local, CGNAT,
    multicast, reserved or unspecified, also when wrapped in an IPv6 address."""
    if isinstance(address, ipaddress.IPv6Address) and (inner := _embedded_ipv4(address)) is not None:
        return is_public_address(inner)
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _host_key(host: str | None) -> str:
    return (host or "").rstrip(".").lower()


class _PublicAddressResolver(AbstractResolver):
    """Resolves names like aiohttp does, then keeps only public addresses.

    The check runs when the connection is made, on the addresses it will use, so a name that
    resolves to a private address (or changes to one after a first check) is never reached.
    """

    def __init__(self, trusted_hosts: frozenset[str]) -> None:
        self._inner = aiohttp.DefaultResolver()
        self._trusted = trusted_hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if _host_key(host) in self._trusted:
            return found
        public = [entry for entry in found if is_public_address(ipaddress.ip_address(entry["host"]))]
        if not public:
            log.warning("refused a download from %s: it resolves to no public address", host)
            raise DownloadRefusedError("The image address leads to a private network, so it was not fetched.")
        return public

    async def close(self) -> None:
        await self._inner.close()


# --------------------------------------------------------------------------- parsing helpers


def _format_bytes(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.0f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"


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
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[: _MAX_MESSAGE_CHARS - 1] + "…"
    return text


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

    return TaskStatus(
        id=task_id,
        status=status,
        progress=progress,
        image_urls=_collect_image_urls(task),
        error_message=error_message,
        error_code=error_code,
        expires_at=_parse_timestamp(task.get("expires_at")),
        completed_at=_parse_timestamp(task.get("completed_at")),
    )


# --------------------------------------------------------------------------- client


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> object:
        """The body as JSON, or ``None`` when it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None


Sleep = Callable[[float], Awaitable[object]]


class ToAPIsClient:
    """Talks to ToAPIs over one shared :class:`aiohttp.ClientSession`.

    Submissions are charged up front, so :meth:`submit` is only retried when the request
    provably did not reach the provider or was refused without being accepted (429/503).
    Reads (:meth:`get_task`, :meth:`download`) are retried with capped exponential backoff
    and full jitter.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        session: aiohttp.ClientSession | None = None,
        request_timeout: float = 30.0,
        max_download_bytes: int = 50 * 1024 * 1024,
        download_timeout: float = 60.0,
        max_get_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        max_submit_attempts: int = 3,
        max_retry_after: float = 60.0,
        rng: Callable[[], float] = random.random,
        sleep: Sleep = asyncio.sleep,
        trusted_file_hosts: Sequence[str] = (),
    ) -> None:
        """`trusted_file_hosts` are URLs (or host names) whose host may serve downloads over
        plain HTTP and from a private address, like the API base's host (a local proxy, the
        Discord API base that serves attachments in tests). Every other file must come over
        HTTPS from a public address."""
        if not _is_http_url(base_url):
            raise ValueError("base_url must be an http(s) URL")
        if max_get_attempts < 1 or max_submit_attempts < 1:
            raise ValueError("attempt counts must be at least 1")
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._session = session
        self._owns_session = session is None
        self._trusted_hosts = frozenset(
            _host_key(URL(entry).host if "://" in entry else entry)
            for entry in (base_url, *trusted_file_hosts)
        )
        self._download_session: aiohttp.ClientSession | None = None
        self._request_timeout = request_timeout
        self._max_download_bytes = max_download_bytes
        self._download_timeout = download_timeout
        self._max_get_attempts = max_get_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._max_submit_attempts = max_submit_attempts
        # A Retry-After longer than this is not slept through: the caller gets RateLimitedError.
        self._max_retry_after = max_retry_after
        self._rng = rng
        self._sleep = sleep

    def __repr__(self) -> str:  # never show the key
        return f"ToAPIsClient(base_url={self._base_url!r})"

    @property
    def base_url(self) -> str:
        """The API base URL, without a trailing slash."""
        return self._base_url

    async def __aenter__(self) -> ToAPIsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client created it (a borrowed one is left open)."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        if self._owns_session:
            self._session = None
        if self._download_session is not None and not self._download_session.closed:
            await self._download_session.close()
        self._download_session = None

    # ----------------------------------------------------------------- public API

    async def submit(
        self,
        *,
        model: str,
        prompt: str,
        size: str,
        n: int,
        image_urls: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        extra_fields: Mapping[str, Any] | None = None,
    ) -> TaskStatus:
        """Submit a generation task and return its first status.

        ``extra_fields`` are model-specific body fields (e.g. ``{"metadata": {"resolution":
        "3K"}}``), deep-merged into the body; they may not replace the core fields.

        Never re-sent once it may have reached the provider: a lost answer raises
        :class:`SubmissionUnconfirmedError`. Retried only when the connection could not be
        established, or on 429/503 (the provider did not accept it).
        """
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError("n must be an int")
        if isinstance(image_urls, str):
            raise TypeError("image_urls must be a sequence of URLs, not a string")
        payload: dict[str, Any] = {"model": model, "prompt": prompt, "size": size, "n": n}
        if image_urls:
            payload["image_urls"] = list(image_urls)
        if metadata:
            payload["metadata"] = dict(metadata)
        if extra_fields:
            # n and the prompt decide what is charged: extra fields must not change them silently.
            clashes = sorted(_CORE_FIELDS.intersection(extra_fields))
            if clashes:
                raise ValueError(f"extra_fields may not set {', '.join(clashes)}")
            payload = _deep_merge(payload, extra_fields)

        url = self._url(_GENERATIONS_PATH)

        async def send() -> _Answer:
            return await self._exchange(
                "POST", url, headers=self._api_headers(), json_body=payload, timeout_s=self._request_timeout
            )

        log.debug(
            "submitting a %s task (n=%d, size=%s, %d reference images)", model, n, size, len(image_urls)
        )
        try:
            answer = await self._with_retries(
                send,
                what="submit",
                attempts=self._max_submit_attempts,
                retry_status=lambda status: status in (429, 503),
                retry_transport=_NOT_SENT_ERRORS,
                unconfirmed_on_loss=True,
            )
            if not answer.ok:
                raise self._status_error(answer)
            task = parse_task(self._json_or_raise(answer))
        except SubmissionUnconfirmedError:
            raise
        except InvalidResponseError as exc:
            # Whatever arrived was unreadable, and the task may exist and be paid for.
            log.error("a submission got an unreadable answer; it may have been charged")
            raise SubmissionResponseInvalidError() from exc
        log.info("submitted task %s (model %s, n=%d): %s", task.id, model, n, task.status)
        return task

    async def get_task(self, task_id: str) -> TaskStatus:
        """Fetch the current status of a task (retried on transient failures)."""
        answer = await self._get_api(self._task_url(task_id), what="poll")
        if not answer.ok:
            raise self._status_error(answer)
        task = parse_task(self._json_or_raise(answer))
        log.debug("task %s: %s (%s%%)", task.id, task.status, task.progress)
        return task

    async def upload_image(self, data: bytes, *, filename: str, content_type: str) -> str:
        """Upload an image (JPEG/PNG/WebP/GIF) and return its public URL.

        Only retried when the connection could not be established.
        """
        url = self._url(_UPLOADS_PATH)

        async def send() -> _Answer:
            # FormData can be serialised only once, so each attempt builds its own.
            form = aiohttp.FormData()
            # A BytesIO, not raw bytes: aiohttp streams it instead of blocking the loop on a big body.
            form.add_field("file", io.BytesIO(data), filename=filename, content_type=content_type)
            form.add_field("purpose", "generation")
            return await self._exchange(
                "POST", url, headers=self._api_headers(), data=form, timeout_s=self._request_timeout
            )

        answer = await self._with_retries(
            send,
            what="upload",
            attempts=self._max_get_attempts,
            retry_status=lambda _: False,
            retry_transport=_NOT_SENT_ERRORS,
        )
        if not answer.ok:
            raise self._status_error(answer)
        body = self._json_or_raise(answer)
        if not isinstance(body, Mapping):
            raise InvalidResponseError("The image service sent an upload answer that is not a JSON object.")
        if body.get("success") is False:
            message = extract_error_message(body, answer.reason)
            raise BadRequestError(status=answer.status, provider_message=self._redact(message))
        data_obj = body.get("data")
        uploaded = data_obj.get("url") if isinstance(data_obj, Mapping) else None
        if not isinstance(uploaded, str) or not _is_http_url(uploaded):
            raise InvalidResponseError("The image service's upload answer has no file URL.")
        log.info("uploaded %s (%d bytes)", filename, len(data))
        return uploaded

    async def download(self, url: str, *, max_bytes: int | None = None) -> bytes:
        """Download an image (a result, or a member's reference from Discord), bounded in size and time.

        The file host is a third party, so no Authorization header is sent. `max_bytes`
        lowers the client's download cap for this one file. Only HTTPS from public addresses
        is fetched (the API's host and the trusted hosts excepted), on every redirect hop:
        anything else raises :class:`DownloadRefusedError`.
        """
        if not isinstance(url, str) or not _is_http_url(url):
            raise InvalidResponseError("The image address is not an http(s) URL.")
        host = URL(url).host

        async def fetch() -> _Answer:
            return await self._fetch_file(url, max_bytes)

        answer = await self._with_retries(
            fetch,
            what="download",
            attempts=self._max_get_attempts,
            retry_status=lambda status: status == 429 or status >= 500,
            retry_transport=_TRANSPORT_ERRORS,
            api=False,
        )
        if not answer.ok:
            raise self._status_error(answer, api=False)
        log.debug("downloaded %d bytes from %s", len(answer.body), host)
        return answer.body

    async def check_key(self) -> None:
        """Prove the API key works without spending money.

        Polls a task id that cannot exist: "unknown task" (400/404) or 200 means the key was
        accepted; 401 raises :class:`AuthenticationError`, 402/403
        :class:`InsufficientBalanceError`.
        """
        answer = await self._get_api(self._task_url(KEY_CHECK_TASK_ID), what="key check")
        if answer.ok or answer.status in (400, 404):
            log.info("the ToAPIs API key was accepted")
            return
        raise self._status_error(answer)

    # ----------------------------------------------------------------- plumbing

    def _url(self, path: str) -> str:
        return self._base_url + path

    def _task_url(self, task_id: str) -> URL:
        # Quote everything (including "/") so an odd id cannot change the path.
        return URL(f"{self._base_url}{_GENERATIONS_PATH}/{quote(task_id, safe='')}", encoded=True)

    def _api_headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }

    def _redact(self, text: str) -> str:
        if self._api_key and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "[redacted]")
        return text

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns_session and self._session.closed):
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def _exchange(
        self,
        method: str,
        url: str | URL,
        *,
        headers: Mapping[str, str],
        timeout_s: float,
        json_body: object = None,
        data: Any = None,
    ) -> _Answer:
        session = self._get_session()
        async with session.request(
            method,
            url,
            headers=headers,
            json=json_body,
            data=data,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            body = await _read_capped(response, _MAX_API_BODY)
            if body is None:
                raise InvalidResponseError("The image service sent an answer that is too large.")
            return _Answer(response.status, response.reason or "", response.headers, body)

    def _get_download_session(self) -> aiohttp.ClientSession:
        # Its own session: every connection it opens goes through the public-address check.
        if self._download_session is None or self._download_session.closed:
            connector = aiohttp.TCPConnector(resolver=_PublicAddressResolver(self._trusted_hosts))
            self._download_session = aiohttp.ClientSession(connector=connector)
        return self._download_session

    def _check_file_address(self, url: URL) -> None:
        """Refuse what the resolver cannot see: a scheme other than HTTPS, an address written as an IP."""
        if _host_key(url.host) in self._trusted_hosts and url.scheme in ("http", "https"):
            return
        if url.scheme != "https":
            log.warning("refused a download from %s: %s is not HTTPS", url.host, url.scheme)
            raise DownloadRefusedError("The image address is not HTTPS, so it was not fetched.")
        try:
            literal = ipaddress.ip_address(_host_key(url.host).strip("[]"))
        except ValueError:
            return  # a name: the resolver checks the addresses it stands for
        if not is_public_address(literal):
            log.warning("refused a download from %s: not a public address", url.host)
            raise DownloadRefusedError("The image address leads to a private network, so it was not fetched.")

    async def _fetch_file(self, url: str, max_bytes: int | None = None) -> _Answer:
        session = self._get_download_session()
        headers = {"User-Agent": USER_AGENT}
        current = URL(url)
        # One time limit for the whole chain of redirects, as before they were followed by hand.
        async with asyncio.timeout(self._download_timeout):
            for _ in range(_MAX_REDIRECTS + 1):
                self._check_file_address(current)
                async with session.get(current, headers=headers, allow_redirects=False) as response:
                    location = response.headers.get("Location")
                    if response.status in _REDIRECT_STATUSES and location:
                        current = current.join(URL(location))
                        continue
                    return await self._read_file(response, max_bytes)
        log.warning("refused a download: more than %d redirects", _MAX_REDIRECTS)
        raise DownloadRefusedError("The image address redirects too many times, so it was not fetched.")

    async def _read_file(self, response: aiohttp.ClientResponse, max_bytes: int | None) -> _Answer:
        """The body of a final answer, within the byte limit (an error's body only briefly)."""
        if not 200 <= response.status < 300:
            error_body = await _read_capped(response, _MAX_ERROR_BODY) or b""
            return _Answer(response.status, response.reason or "", response.headers, error_body)
        limit = min(self._max_download_bytes, max_bytes or self._max_download_bytes)
        if response.content_length is not None and response.content_length > limit:
            log.warning("refusing a %d byte download (limit %d)", response.content_length, limit)
            raise DownloadTooLargeError(limit=limit, status=response.status)
        body = await _read_capped(response, limit)
        if body is None:
            log.warning("a download exceeded %d bytes while streaming", limit)
            raise DownloadTooLargeError(limit=limit, status=response.status)
        return _Answer(response.status, response.reason or "", response.headers, body)

    async def _get_api(self, url: URL, *, what: str) -> _Answer:
        async def send() -> _Answer:
            return await self._exchange(
                "GET", url, headers=self._api_headers(), timeout_s=self._request_timeout
            )

        return await self._with_retries(
            send,
            what=what,
            attempts=self._max_get_attempts,
            retry_status=lambda status: status == 429 or status >= 500,
            retry_transport=_TRANSPORT_ERRORS,
        )

    async def _with_retries(
        self,
        send: Callable[[], Awaitable[_Answer]],
        *,
        what: str,
        attempts: int,
        retry_status: Callable[[int], bool],
        retry_transport: tuple[type[BaseException], ...],
        unconfirmed_on_loss: bool = False,
        api: bool = True,
    ) -> _Answer:
        """Run ``send`` up to ``attempts`` times; return the last answer or raise.

        ``retry_transport`` lists the transport errors worth another try; with
        ``unconfirmed_on_loss`` any other transport error means the request may have been
        processed, which raises :class:`SubmissionUnconfirmedError`.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = await send()
            except _BAD_URL_ERRORS as exc:
                # A bad address or a redirect loop: another attempt would end the same way.
                raise InvalidResponseError(
                    "An address from the image service could not be followed."
                ) from exc
            except _TRANSPORT_ERRORS as exc:
                retryable = isinstance(exc, retry_transport)
                if unconfirmed_on_loss and not retryable:
                    log.error(
                        "%s: the request was sent but its answer was lost (%s); not re-sending it",
                        what,
                        type(exc).__name__,
                    )
                    raise SubmissionUnconfirmedError() from exc
                error = _transport_error(exc, api=api)
                if not retryable or attempt >= attempts:
                    log.warning("%s failed after %d attempt(s): %s", what, attempt, type(exc).__name__)
                    raise error from exc
                delay = self._backoff(attempt)
                log.warning(
                    "%s failed (%s); retrying in %.2fs (attempt %d of %d)",
                    what,
                    type(exc).__name__,
                    delay,
                    attempt,
                    attempts,
                )
                await self._sleep(delay)
                continue

            if answer.ok or not retry_status(answer.status):
                return answer
            error = self._status_error(answer, api=api)
            if attempt >= attempts:
                log.warning("%s got HTTP %d after %d attempt(s); giving up", what, answer.status, attempt)
                return answer
            delay = self._backoff(attempt)
            if isinstance(error, RateLimitedError) and error.retry_after is not None:
                if error.retry_after > self._max_retry_after:
                    log.warning("%s: rate limited for %.0fs, too long to wait", what, error.retry_after)
                    return answer
                delay = max(delay, error.retry_after)
            log.warning(
                "%s got HTTP %d; retrying in %.2fs (attempt %d of %d)",
                what,
                answer.status,
                delay,
                attempt,
                attempts,
            )
            await self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        # Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))], so callers spread out.
        ceiling = min(self._backoff_cap, self._backoff_base * (2 ** (attempt - 1)))
        return max(0.0, self._rng() * ceiling)

    def _json_or_raise(self, answer: _Answer) -> object:
        body = answer.json()
        if body is None:
            raise InvalidResponseError()
        return body

    def _status_error(self, answer: _Answer, *, api: bool = True) -> ToAPIsError:
        status = answer.status
        body = answer.json()
        if body is None:
            # Not JSON: accept a short plain-text reason, never an HTML error page.
            text = answer.body.decode("utf-8", "replace").strip()
            short_text = len(text) <= 200 and "<" not in text and "{" not in text
            body = text if short_text else None
        message = self._redact(extract_error_message(body, answer.reason or f"HTTP {status}"))
        if message != (answer.reason or f"HTTP {status}"):
            log.debug("HTTP %d from %s: %s", status, "ToAPIs" if api else "the file host", message)
        if status == 429:
            retry_after = parse_retry_after(answer.headers.get("Retry-After"))
            name = "The image service" if api else "The image host"
            return RateLimitedError(f"{name} is rate limiting requests (HTTP 429).", retry_after=retry_after)
        if status >= 500:
            name = "The image service" if api else "The image host"
            return ServerError(f"{name} had a server error (HTTP {status}).", status=status)
        if not api:
            # A file host's 403/404 usually means an expired link, not an account problem.
            return BadRequestError(
                f"The image could not be downloaded (HTTP {status}).", status=status, provider_message=message
            )
        if status == 401:
            return AuthenticationError(
                f"The image service rejected the API key (HTTP {status}).", status=status
            )
        if status in (402, 403):
            return InsufficientBalanceError(
                f"The image service account has insufficient balance or lacks permission (HTTP {status}).",
                status=status,
            )
        if 400 <= status < 500:
            return BadRequestError(status=status, provider_message=message)
        return InvalidResponseError(f"The image service sent an unexpected HTTP {status}.", status=status)


_CORE_FIELDS: Final = frozenset({"model", "prompt", "size", "n", "image_urls"})


def _deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged


def _transport_error(exc: BaseException, *, api: bool) -> ToAPIsError:
    name = "the image service" if api else "the image host"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ToAPIsConnectionError(f"Could not connect to {name}.")
    if isinstance(exc, TimeoutError):
        return ToAPIsTimeoutError(f"The request to {name} timed out.")
    return ToAPIsConnectionError(f"The connection to {name} was lost.")


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """Read the body in chunks; ``None`` when it grows beyond ``limit`` bytes."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(_CHUNK_SIZE):
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
