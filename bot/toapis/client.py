"""The ToAPIs client: one HTTP session, requests with their retry rules, errors mapped to the family.

The API is asynchronous: a submission creates a task (and is charged up front), the task is
polled until it is final, and the result images are downloaded from a third-party file host.
See ``docs/toapis-api.md`` for what the provider documents.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

import aiohttp
from yarl import URL

from bot.toapis._http import USER_AGENT, Answer, read_capped
from bot.toapis.budget import RateBudget, RateLimitNotice
from bot.toapis.downloads import FileFetcher
from bot.toapis.errors import (
    AuthenticationError,
    BadRequestError,
    InsufficientBalanceError,
    InvalidResponseError,
    RateLimitedError,
    ServerError,
    SubmissionResponseInvalidError,
    SubmissionUnconfirmedError,
    ToAPIsConnectionError,
    ToAPIsError,
    ToAPIsTimeoutError,
)
from bot.toapis.models import (
    Balance,
    TaskStatus,
    _is_http_url,
    extract_error_code,
    extract_error_message,
    parse_balance,
    parse_retry_after,
    parse_task,
)

__all__ = ["USER_AGENT", "ToAPIsClient"]

log = logging.getLogger(__name__)

_GENERATIONS_PATH: Final = "/v1/images/generations"
_UPLOADS_PATH: Final = "/v1/uploads/images"
_BALANCE_PATH: Final = "/v1/balance"
# API answers are small JSON documents; anything bigger is not something we should buffer.
_MAX_API_BODY: Final = 2 * 1024 * 1024
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


Sleep = Callable[[float], Awaitable[object]]


class ToAPIsClient:
    """Talks to ToAPIs over one shared :class:`aiohttp.ClientSession`.

    Submissions are charged up front, so :meth:`submit` is only retried when the request
    provably did not reach the provider; a refusal (429/503) goes back to the caller, who
    sends it again within the submit budget. Downloads and the balance are retried with capped
    exponential backoff and full jitter. A status query (:meth:`get_task`) is made once: every
    status query must have taken a token of the query budget and keep the provider's floor
    between queries of a task, so retrying is the poller's call.
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
        rate_budget: RateBudget | None = None,
        callback_url: str | None = None,
        on_rate_limited: Callable[[str], None] | None = None,
    ) -> None:
        """`rate_budget` is corrected from the rate-limit headers of every submission and status
        answer (taking its tokens is the callers' part: they decide who goes first).
        `on_rate_limited(bucket)` hears of every 429 the provider answers, retried or not, with
        the bucket it came from (`"submit"` or `"query"`): what the operator's metrics count.

        `trusted_file_hosts` are URLs (or host names) whose host may serve downloads over
        plain HTTP and from a private address, like the API base's host (a local proxy, the
        Discord API base that serves attachments in tests). Every other file must come over
        HTTPS from a public address. `callback_url` (TOAPIS_CALLBACK_URL) goes with every
        submission, so ToAPIs calls the bot's webhook route when the task ends."""
        if not _is_http_url(base_url):
            raise ValueError("base_url must be an http(s) URL")
        if max_get_attempts < 1 or max_submit_attempts < 1:
            raise ValueError("attempt counts must be at least 1")
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._session = session
        self._owns_session = session is None
        self._files = FileFetcher(
            (base_url, *trusted_file_hosts), max_bytes=max_download_bytes, timeout=download_timeout
        )
        self._request_timeout = request_timeout
        self._max_get_attempts = max_get_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._max_submit_attempts = max_submit_attempts
        # A Retry-After longer than this is not slept through: the caller gets RateLimitedError.
        self._max_retry_after = max_retry_after
        self._rng = rng
        self._sleep = sleep
        self._rate_budget = rate_budget
        self._callback_url = callback_url
        self._on_rate_limited = on_rate_limited

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
        await self._files.close()

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
        :class:`SubmissionUnconfirmedError`. Retried here only when the connection could not be
        established. A 429, or a 503 (``rate_limit_unavailable`` raises
        :class:`RateLimitedError` with status 503, any other 503 :class:`ServerError`), is not
        retried here: the provider accepted nothing, and the caller — the submission queue,
        which takes a token of the submit budget before every attempt — sends it again in turn.
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
        if self._callback_url is not None:
            payload["callback_url"] = self._callback_url

        url = self._url(_GENERATIONS_PATH)

        async def send() -> Answer:
            answer = await self._exchange(
                "POST", url, headers=self._api_headers(), json_body=payload, timeout_s=self._request_timeout
            )
            self._note_rate_limits(answer, submit=True)
            return answer

        log.debug(
            "submitting a %s task (n=%d, size=%s, %d reference images)", model, n, size, len(image_urls)
        )

        async def send_once() -> Answer:
            # Re-sent only when it never reached the provider; a refusal (429/503) goes back to
            # the caller, who sends it again within the submit budget.
            return await self._with_retries(
                send,
                what="submit",
                attempts=self._max_submit_attempts,
                retry_status=lambda _: False,
                retry_transport=_NOT_SENT_ERRORS,
                unconfirmed_on_loss=True,
            )

        try:
            answer = await send_once()
            if "callback_url" in payload and _webhook_not_configured(answer):
                # Refused before anything was created or charged: safe to send again, without it.
                log.error(
                    "ToAPIs refused callback_url: no webhook is configured for this API key in the "
                    "ToAPIs console (webhook_not_configured). Submitting without it; results are "
                    "found by polling until the console has the webhook and the bot restarts."
                )
                self._callback_url = None
                del payload["callback_url"]
                # (Once per process, and without a token of its own: the refused request spent one.)
                answer = await send_once()
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
        """Fetch the current status of a task, in one request.

        Never retried here: a 429 raises :class:`RateLimitedError` carrying ``Retry-After``
        (the rate budget's query bucket is held off from the headers), a 5xx
        :class:`ServerError`, a lost connection :class:`ToAPIsConnectionError`; the poller
        decides when to ask again.
        """
        answer = await self._get_api(self._task_url(task_id), what="poll", attempts=1)
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

        async def send() -> Answer:
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

        async def fetch() -> Answer:
            return await self._files.fetch(url, max_bytes)

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

    async def balance(self) -> Balance:
        """Read the key's balance (free). Proves the key works.

        An unknown key raises :class:`AuthenticationError` (whether the provider says so with
        401 or with ``{"success": false}``); connection trouble raises
        :class:`ToAPIsConnectionError`/:class:`ToAPIsTimeoutError` after the usual retries.
        """
        answer = await self._get_api(URL(self._url(_BALANCE_PATH)), what="balance")
        body = answer.json()
        if not answer.ok:
            if answer.status in (400, 404) and isinstance(body, Mapping) and body.get("success") is False:
                # The documented unknown-key answer, whatever status it comes with.
                raise AuthenticationError(status=answer.status)
            raise self._status_error(answer)
        if body is None:
            raise InvalidResponseError("The image service sent a balance answer that could not be read.")
        balance = parse_balance(body)
        log.debug("ToAPIs balance: %s", balance.describe())
        return balance

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
    ) -> Answer:
        session = self._get_session()
        async with session.request(
            method,
            url,
            headers=headers,
            json=json_body,
            data=data,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            body = await read_capped(response, _MAX_API_BODY)
            if body is None:
                raise InvalidResponseError("The image service sent an answer that is too large.")
            return Answer(response.status, response.reason or "", response.headers, body)

    def _note_rate_limits(self, answer: Answer, *, submit: bool) -> None:
        """Correct the rate budget's bucket from what this answer's headers say about it, and
        report a 429 to `on_rate_limited`."""
        if answer.status == 429 and self._on_rate_limited is not None:
            self._on_rate_limited("submit" if submit else "query")
        if self._rate_budget is None:
            return
        notice = RateLimitNotice.from_headers(answer.headers)
        if not notice.empty:
            bucket = self._rate_budget.submit if submit else self._rate_budget.query
            bucket.observe(notice)

    async def _get_api(self, url: URL, *, what: str, attempts: int | None = None) -> Answer:
        async def send() -> Answer:
            answer = await self._exchange(
                "GET", url, headers=self._api_headers(), timeout_s=self._request_timeout
            )
            if what == "poll":
                self._note_rate_limits(answer, submit=False)
            return answer

        return await self._with_retries(
            send,
            what=what,
            attempts=self._max_get_attempts if attempts is None else attempts,
            retry_status=lambda status: status == 429 or status >= 500,
            retry_transport=_TRANSPORT_ERRORS,
        )

    async def _with_retries(
        self,
        send: Callable[[], Awaitable[Answer]],
        *,
        what: str,
        attempts: int,
        retry_status: Callable[[int], bool],
        retry_transport: tuple[type[BaseException], ...],
        unconfirmed_on_loss: bool = False,
        api: bool = True,
    ) -> Answer:
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
                    if attempts > 1:
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
                if attempts > 1:  # (a single try is the caller's to report)
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

    def _json_or_raise(self, answer: Answer) -> object:
        body = answer.json()
        if body is None:
            raise InvalidResponseError()
        return body

    def _status_error(self, answer: Answer, *, api: bool = True) -> ToAPIsError:
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
        if status == 503 and api and extract_error_code(body) == "rate_limit_unavailable":
            # The provider's submit limiter itself is down: a refusal for rate, not a failure.
            return RateLimitedError(
                "The image service's rate limiter is unavailable (HTTP 503).",
                status=503,
                retry_after=parse_retry_after(answer.headers.get("Retry-After")),
            )
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


_CORE_FIELDS: Final = frozenset({"model", "prompt", "size", "n", "image_urls", "callback_url"})


def _webhook_not_configured(answer: Answer) -> bool:
    """ToAPIs' 400 for a `callback_url` sent with no webhook configured in its console."""
    return answer.status == 400 and extract_error_code(answer.json()) == "webhook_not_configured"


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
