"""Running one generation job: submit, poll with live progress, download, fit, deliver.

The runner is Discord-free. It reports to a `JobObserver` (the chat adapter)
which turns progress, results and failures into messages. Failures reach the
observer as plain sentences a member can act on — never a traceback or JSON.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bot import toapis
from bot.images import FittedImage, ImageDecodeError, ImageTooLargeError, fit_image
from bot.progress import JobProgress, Phase, ProgressThrottle
from bot.request import ImagineRequest

log = logging.getLogger(__name__)

BUSY = "The image service is busy right now — try again in a minute."
PROVIDER_TEXT_LIMIT = 300


@dataclass(frozen=True)
class JobOutcome:
    """What a finished job delivers."""

    task_id: str
    images: tuple[FittedImage, ...]
    requested: int
    returned: int  # how many images the service made (it may make fewer than asked)
    elapsed: float

    @property
    def lost(self) -> int:
        """Images the service made that could not be downloaded or read."""
        return self.returned - len(self.images)


class JobObserver(Protocol):
    """Where a job reports; the chat adapter implements it."""

    async def show_progress(self, state: JobProgress) -> None: ...

    async def deliver(self, outcome: JobOutcome) -> None: ...

    async def fail(self, message: str, elapsed: float) -> None: ...


@dataclass(frozen=True)
class JobTimings:
    """How patient a job is and how often it looks."""

    timeout: float = 600.0
    poll_queued: float = 2.5
    poll_running: float = 4.0
    progress_interval: float = 2.0


class JobFailedError(Exception):
    """A job ended without images; the message is for the member."""


def duration_words(seconds: float) -> str:
    """`45 seconds`, `1 minute`, `10 minutes` — for messages."""
    if seconds < 90:
        value, unit = max(1, round(seconds)), "second"
    else:
        value, unit = round(seconds / 60), "minute"
    return f"{value} {unit}{'' if value == 1 else 's'}"


def _provider_text(text: str | None) -> str:
    text = " ".join((text or "").split())
    if len(text) > PROVIDER_TEXT_LIMIT:
        text = text[: PROVIDER_TEXT_LIMIT - 1] + "…"
    return text


def failure_message(exc: BaseException) -> str:
    """Plain words for an error from the image service."""
    if isinstance(exc, toapis.TaskFailedError):
        reason = _provider_text(exc.provider_message)
        return (
            f"The image service could not make this image: {reason}"
            if reason
            else ("The image service could not make this image. Try a different prompt.")
        )
    if isinstance(exc, toapis.BadRequestError):
        reason = _provider_text(exc.provider_message)
        return (
            f"The image service refused this request: {reason}"
            if reason
            else ("The image service refused this request. Try a different prompt.")
        )
    if isinstance(exc, toapis.SubmissionUnconfirmedError):
        return (
            "The image service did not confirm the request. The bot did not send it again, so you "
            "are not charged twice — try again in a minute."
        )
    if isinstance(exc, toapis.AuthenticationError | toapis.InsufficientBalanceError):
        return "The bot's image service account is not working right now. The bot's operator has to fix it."
    if isinstance(exc, toapis.InvalidResponseError):
        return "The image service sent an answer the bot could not read. Try again in a minute."
    if isinstance(exc, toapis.ToAPIsError):
        return BUSY
    return "Something went wrong inside the bot. The error was logged; try again in a minute."


_TRANSIENT = (
    toapis.RateLimitedError,
    toapis.ServerError,
    toapis.ToAPIsConnectionError,
    toapis.ToAPIsTimeoutError,
    toapis.InvalidResponseError,
)


class JobRunner:
    """Drives jobs against the image service. One runner serves every job."""

    def __init__(
        self,
        client: toapis.ToAPIsClient,
        timings: JobTimings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._timings = timings
        self._clock = clock
        self._sleep = sleep

    async def run(
        self, request: ImagineRequest, observer: JobObserver, *, upload_limit: int, name: str
    ) -> None:
        """Run one job to its end; every outcome is reported to `observer`."""
        started = self._clock()
        throttle = ProgressThrottle(
            observer.show_progress,
            interval=self._timings.progress_interval,
            initial=JobProgress(Phase.QUEUED),
            clock=self._clock,
        )
        try:
            outcome = await self._generate(request, throttle, started, upload_limit, name)
        except JobFailedError as exc:
            await throttle.close()
            await observer.fail(str(exc), self._clock() - started)
            return
        except Exception as exc:
            log.exception("job %s failed unexpectedly", name)
            await throttle.close()
            await observer.fail(failure_message(exc), self._clock() - started)
            return
        await throttle.close()
        await observer.deliver(outcome)

    async def _generate(
        self,
        request: ImagineRequest,
        throttle: ProgressThrottle,
        started: float,
        upload_limit: int,
        name: str,
    ) -> JobOutcome:
        try:
            task = await self._client.submit(**request.submit_kwargs())
        except toapis.ToAPIsError as exc:
            log.warning("job %s: submission failed: %s", name, exc)
            if isinstance(exc, toapis.AuthenticationError | toapis.InsufficientBalanceError):
                log.error("the image service refused the API key or the account has no balance: %s", exc)
            raise JobFailedError(failure_message(exc)) from exc
        log.info("job %s: submitted as task %s (model %s, n=%d)", name, task.id, request.model.id, request.n)

        status = await self._poll(task, throttle, started, name)
        urls = status.image_urls[: request.n] if len(status.image_urls) > request.n else status.image_urls
        if not urls:
            raise JobFailedError("The image service finished but returned no images. Try again.")

        images = await self._download(urls, upload_limit, name)
        if not images:
            raise JobFailedError(
                "The images were made, but none could be downloaded from the image service. Try again."
            )
        return JobOutcome(
            task_id=task.id,
            images=tuple(images),
            requested=request.n,
            returned=len(urls),
            elapsed=self._clock() - started,
        )

    async def _poll(
        self, task: toapis.TaskStatus, throttle: ProgressThrottle, started: float, name: str
    ) -> toapis.TaskStatus:
        deadline = started + self._timings.timeout
        status = task
        slow = False
        while True:
            if status.status == "completed":
                return status
            if status.status == "failed":
                log.info("job %s: task %s failed: %s", name, status.id, status.error_message)
                try:
                    status.raise_if_failed()
                except toapis.TaskFailedError as exc:
                    raise JobFailedError(failure_message(exc)) from exc
            phase = Phase.QUEUED if status.status == "queued" else Phase.GENERATING
            throttle.update(JobProgress(phase, status.progress, slow))

            delay = self._timings.poll_queued if phase is Phase.QUEUED else self._timings.poll_running
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise JobFailedError(
                    f"Timed out after {duration_words(self._timings.timeout)} — the image service did not "
                    "finish in time."
                )
            await self._sleep(min(delay, remaining))
            try:
                status = await self._client.get_task(task.id)
                slow = False
            except _TRANSIENT as exc:
                # The task is paid for: keep asking until the deadline instead of giving up.
                log.warning("job %s: polling task %s failed, will retry: %s", name, task.id, exc)
                slow = True
            except toapis.ToAPIsError as exc:
                raise JobFailedError(failure_message(exc)) from exc

    async def _download(self, urls: tuple[str, ...], upload_limit: int, name: str) -> list[FittedImage]:
        # One image at a time: at most one full-size image and its re-encoding in memory.
        images: list[FittedImage] = []
        for index, url in enumerate(urls, start=1):
            try:
                data = await self._client.download(url)
                fitted = await asyncio.to_thread(
                    fit_image, data, limit=upload_limit, basename=f"{name}-{index}"
                )
            except (toapis.ToAPIsError, ImageDecodeError, ImageTooLargeError) as exc:
                log.warning("job %s: image %d could not be delivered: %s", name, index, exc)
                continue
            images.append(fitted)
        return images
