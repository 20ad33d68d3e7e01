"""Running one generation job: submit, poll with live progress, download, fit, deliver.

The runner is Discord-free. It drives a stored job (`bot.jobs.records`) forward,
writing each state change before acting on it, so a job interrupted at any
point can be resumed from its record: a submitted task is polled again and its
images delivered; a submission is never sent twice. It reports to a
`JobObserver` (the chat adapter) which turns progress, results and failures
into messages. Failures reach the observer as plain sentences a member can act
on — never a traceback or JSON — as translatable texts (`bot.i18n`): the observer
writes them in the member's language, the record keeps their English.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from bot import toapis
from bot.i18n import Readable, Text, TextError, _, _n
from bot.images import FittedImage, ImageDecodeError, ImageTooLargeError, fit_image
from bot.jobs.news import TaskNews
from bot.jobs.polling import ModelDurations, PollPlanner, PollRules, PollScheduler
from bot.jobs.progress import JobProgress, Phase, ProgressThrottle
from bot.jobs.queue import QueueClosedError, QueuePosition, QueueTimeoutError, SubmitQueue, SubmitTicket
from bot.jobs.records import DeliveredImage, ImageLayer, JobRecord, JobState, JobStore, delivered_column
from bot.jobs.request import ImagineRequest
from bot.references import (
    MAX_DOWNLOAD_BYTES,
    ReferenceRejectedError,
    prepare_reference_in_turn,
    quoted_filename,
)
from bot.telemetry import Telemetry
from bot.text import clip, limit_size
from bot.toapis.budget import RateBudget

log = logging.getLogger(__name__)

BUSY = _("The image service is busy right now — try again in a minute.")
# The provider refused for balance or permission: the member can do nothing but wait.
BUDGET_USED_UP = _("The bot's image budget is used up — the bot's operator has been told.")
# How many jobs may hold their downloaded images at once (bounds memory under load).
DELIVERY_SLOTS = 8
DOWNLOADS_PER_JOB = 4
# A plain 503 on a submission (the service is unavailable; it accepted nothing): how many times
# in all the job is sent before it fails as busy. Refusals for rate never fail a job.
SERVER_BUSY_ATTEMPTS = 3
INTERRUPTED_BEFORE_SENDING = _(
    "The bot was interrupted (a restart or a database outage) before your request reached the image "
    "service, so you were not charged. "
    "Run the command again."
)
INTERRUPTED_WHILE_SENDING = _(
    "The bot was interrupted (a restart or a database outage) while sending your request and the image "
    "service never confirmed it. "
    "It was not sent again, so you are not charged twice — run the command again if no images arrive."
)
RESULTS_EXPIRED = _(
    "The images were made, but they expired before the bot could deliver them "
    "(the image service keeps results for about a day)."
)
# What a member sees when the bot itself failed (the job runner, a command, a form).
INTERNAL_ERROR = _("Something went wrong inside the bot. The error was logged; try again in a minute.")
NOT_DOWNLOADED = _("The images were made, but none could be downloaded from the image service. Try again.")
NOT_POSTED = _(
    "The images were made, but Discord refused every way the bot tried to post them here, so they "
    "were not counted against your quota. Check that the bot may send messages and attach files in "
    "this channel, then try again."
)
PROVIDER_TEXT_LIMIT = 300
# Webhook mode gives up on webhooks after this many tasks in a row were found finished by a
# query at least this many polling floors after they finished, with no event for them.
MISSED_WEBHOOKS_LIMIT = 3
WEBHOOK_GRACE_FLOORS = 3
# How many recent jobs the polling figures (queries per job, detection lag) keep.
POLLING_FIGURES_KEPT = 1000


@dataclass(frozen=True)
class JobOutcome:
    """What a finished job delivers."""

    task_id: str
    images: tuple[FittedImage, ...]
    requested: int
    returned: int  # how many images the service made (it may make fewer than asked)
    elapsed: float
    layers: tuple[ImageLayer | None, ...] = ()  # per image, its place in a layered result (else empty)

    def layer_of(self, index: int) -> ImageLayer | None:
        """The layer details of `images[index]`, if the result is layered."""
        return self.layers[index] if index < len(self.layers) else None

    @property
    def lost(self) -> int:
        """Images the service made that could not be downloaded or read."""
        return self.returned - len(self.images)


class JobObserver(Protocol):
    """Where a job reports; the chat adapter implements it."""

    async def show_progress(self, state: JobProgress) -> None: ...

    def references_ready(self, urls: tuple[str, ...]) -> None:
        """The references were re-hosted at `urls`; show those from now on."""
        ...

    def delivery_turn(self) -> AbstractAsyncContextManager[None]:
        """Entered when the destination can take the result now; held while delivering.

        The runner downloads images only inside it, so no images wait in memory for a busy
        destination.
        """
        ...

    async def deliver(self, outcome: JobOutcome) -> list[int | None]:
        """Show the images; return, per image, the id of the message carrying it (None: not delivered)."""
        ...

    async def fail(self, message: Readable, elapsed: float) -> None:
        """The job ended without images: show `message` (in the member's language)."""
        ...

    async def hold(self) -> None:
        """The bot is stopping before this job was sent: say it will be sent after the restart."""
        ...

    def result_kept(self) -> bool:
        """No image could be posted, but the member was told where to find the result (a user install
        whose token expired, with the member's DMs closed: /imagine-history): the job ends done and
        charged once, rather than failed."""
        ...


@dataclass(frozen=True)
class JobTimings:
    """How patient a job is and how often it may look.

    `poll_queued` / `poll_running` are the least seconds between two status queries of a task
    (after a look that showed it queued / running; the first query counts from the submission's
    answer). Settings never let them below the provider's 5 s; tests may shrink them.
    """

    timeout: float = 600.0
    poll_queued: float = 5.0
    poll_running: float = 5.0
    progress_interval: float = 2.0


class JobFailedError(TextError):
    """A job ended without images; `text` is for the member (``str()``: its English, for the record)."""


class SubmissionsStoppedError(Exception):
    """The bot is stopping: this job was not sent and waits, `accepted`, for the next start."""


class _SendAgainError(Exception):
    """The provider did not accept the submission (rate, or unavailable): it is sent again later."""

    def __init__(self, cause: toapis.ToAPIsError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def first_progress(request: ImagineRequest) -> JobProgress:
    """What the placeholder shows before the job has done anything."""
    return JobProgress(Phase.PREPARING if request.reference_sources else Phase.QUEUED)


def _result_images(
    status: toapis.TaskStatus, job: JobRecord
) -> tuple[tuple[str, ...], tuple[ImageLayer | None, ...] | None]:
    """The result URLs to deliver and, for a layered result, each one's layer (z_index order).

    A plain result keeps the first `n` images. A layered one keeps the base image and every
    layer: the layers are parts of the image that was asked for, not extra images.
    """
    images = status.images or tuple(toapis.ResultImage(url=url) for url in status.image_urls)
    if not job.layers or not any(image.z_index is not None for image in images):
        return status.image_urls[: job.n], None
    # Stable: items without a z_index keep their place after the ordered ones.
    ordered = sorted(images, key=lambda image: (image.z_index is None, image.z_index or 0))
    layers = tuple(
        None
        if image.z_index is None
        else ImageLayer(z_index=image.z_index, name=image.name, description=image.description)
        for image in ordered
    )
    return tuple(image.url for image in ordered), layers


def duration_words(seconds: float) -> Text:
    """`45 seconds`, `1 minute`, `10 minutes` — for messages."""
    if seconds < 90:
        return _n("{count} second", "{count} seconds", max(1, round(seconds)))
    return _n("{count} minute", "{count} minutes", round(seconds / 60))


def _provider_text(text: str | None) -> str:
    return clip(" ".join((text or "").split()), PROVIDER_TEXT_LIMIT)


def failure_message(exc: BaseException) -> Text:
    """Plain words for an error from the image service (the provider's own reason, in its words)."""
    if isinstance(exc, toapis.TaskFailedError):
        reason = _provider_text(exc.provider_message)
        if reason:
            return _("The image service could not make this image: {reason}", reason=reason)
        return _("The image service could not make this image. Try a different prompt.")
    if isinstance(exc, toapis.BadRequestError):
        reason = _provider_text(exc.provider_message)
        if reason:
            return _("The image service refused this request: {reason}", reason=reason)
        return _("The image service refused this request. Try a different prompt.")
    if isinstance(exc, toapis.SubmissionUnconfirmedError):
        return _(
            "The image service did not confirm the request. The bot did not send it again, so you "
            "are not charged twice — try again in a minute."
        )
    if isinstance(exc, toapis.InsufficientBalanceError):
        return BUDGET_USED_UP
    if isinstance(exc, toapis.AuthenticationError):
        return _(
            "The bot's image service account is not working right now. The bot's operator has to fix it."
        )
    if isinstance(exc, toapis.InvalidResponseError):
        return _("The image service sent an answer the bot could not read. Try again in a minute.")
    if isinstance(exc, toapis.ToAPIsError):
        return BUSY
    return INTERNAL_ERROR


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
        jobs: JobStore,
        timings: JobTimings,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_balance_refused: Callable[[], object] | None = None,
        budget: RateBudget | None = None,
        news: TaskNews | None = None,
        webhooks: bool = False,
        rng: Callable[[], float] = random.random,
        telemetry: Telemetry | None = None,
        submit_queue: SubmitQueue | None = None,
    ) -> None:
        """`on_balance_refused` is called when a submission is refused for balance or permission
        (the balance watch reads the balance at once).

        `budget`: the provider's rate budget; every status query takes a token of `budget.query`
        through the poll scheduler (None: no budget). `news`: statuses published by webhook
        events, waited on between queries. `webhooks`: webhooks are configured, so tasks are
        queried only rarely (until they are found not to arrive). `telemetry`: where
        figures go for /metrics.

        Submissions wait their turn in `submit_queue` (by default a fair queue in front of the
        budget's submit bucket)."""
        self._budget = budget
        if submit_queue is None:
            submit_queue = SubmitQueue(budget.submit if budget is not None else None)
        self.submit_queue = submit_queue
        self._client = client
        self._news = news
        self._telemetry = telemetry
        # Job id → when the provider finished its task (its own clock), for completion→final message.
        self._finished_at: dict[int, float] = {}
        self._on_balance_refused = on_balance_refused
        self._jobs = jobs
        self._timings = timings
        self._clock = clock
        self._sleep = sleep
        self._rules = PollRules.from_intervals(timings.poll_queued, timings.poll_running)
        self._rng = rng
        self._scheduler = PollScheduler(budget.query if budget is not None else None)
        # Webhook mode, until queries keep finding tasks finished with no event for them.
        self.webhooks_active = webhooks
        self._missed_webhooks = 0
        # Polling figures, for metrics: provider 429s on status queries, the queries each recent
        # job made, and how long after the provider's `completed_at` each finish was seen.
        self.query_rate_limited = 0
        self.queries_per_job: deque[int] = deque(maxlen=POLLING_FIGURES_KEPT)
        self.detection_lags: deque[float] = deque(maxlen=POLLING_FIGURES_KEPT)
        self._delivery_slots = asyncio.Semaphore(DELIVERY_SLOTS)
        # Submissions on the wire, and jobs not yet sent (preparing, waiting for a slot, sending):
        # stopping closes the gate to new submissions and waits for both counts to reach zero.
        self._sending = 0
        self._unsent = 0
        self._stopping = False
        self._change = asyncio.Event()
        self._durations = ModelDurations()  # recent task durations per model, for first guesses

    @property
    def poll_scheduler(self) -> PollScheduler:
        """Who grants status-query turns (its `granted`/`waiting` counts are metrics)."""
        return self._scheduler

    async def run(
        self, job: JobRecord, request: ImagineRequest, observer: JobObserver, *, resumed: bool = False
    ) -> JobRecord:
        """Take a job from its stored state to `done` or `failed`, reporting to `observer`.

        `resumed` says the job was found unfinished at start-up: one still `accepted` never
        reached the service and is sent now, if its references were all uploaded before.
        Stopping holds a job not yet sent (it stays `accepted`); cancelling (shutdown) leaves
        the stored state as it is. Either way it resumes on the next start.
        """
        name = job.log_name  # built once: every log line of this run names the job, server and member
        throttle = ProgressThrottle(
            observer.show_progress,
            interval=self._timings.progress_interval,
            # A resumed job not yet sent replaces the "waiting for the restart" notice at once.
            initial=first_progress(request) if not resumed or job.state is JobState.ACCEPTED else None,
            name=name,
        )
        try:
            try:
                job = await self._advance(job, request, observer, throttle, resumed, name)
            finally:
                await throttle.close()
            images = await self._deliver(job, observer, name)
            self._note_final_message(job.id)
        except SubmissionsStoppedError:
            log.info("%s: not sent before the bot stopped; it is sent on the next start", name)
            return job
        except JobFailedError as exc:
            return await self._fail(job, observer, exc.text)
        except asyncio.CancelledError:
            log.info("%s: stopped in state %s; it resumes on the next start", name, job.state)
            raise
        except Exception as exc:
            log.exception("%s failed unexpectedly", name)
            return await self._fail(job, observer, failure_message(exc))
        # Quotas count generated images: the layers of a decomposed image are parts of it.
        generated = sum(not image.is_layer for image in images)
        return await self._jobs.finish(
            job.id, JobState.DONE, delivered_images=generated, delivered=delivered_column(images)
        )

    async def _deliver(self, job: JobRecord, observer: JobObserver, name: str) -> list[DeliveredImage]:
        """Download and show the images; return what the record keeps about those shown.

        Downloaded images stay in memory until posted: only so many jobs hold them at once,
        only once their destination has room, and not a moment longer (the caller's record
        write may queue behind others, so nothing here outlives this call).
        """
        async with observer.delivery_turn(), self._delivery_slots:
            outcome = await self._download(job, name)
            posted = await observer.deliver(outcome)
        log.info(
            "%s: delivered %d of %d image(s) in %.1fs",
            name,
            sum(message_id is not None for message_id in posted),
            len(outcome.images),
            outcome.elapsed,
        )
        kept = not any(message_id is not None for message_id in posted) and observer.result_kept()
        if kept:
            log.warning("%s: no image could be posted; the result is kept for /imagine-history", name)
        # What members actually got, and where (later actions reuse posted images).
        delivered = [
            DeliveredImage(
                filename=i.filename,
                size=len(i.data),
                width=i.width,
                height=i.height,
                reduced=i.reduced,
                message_id=message_id,
                layer=outcome.layer_of(index),
            )
            for index, (i, message_id) in enumerate(zip(outcome.images, posted, strict=True))
            if message_id is not None or kept
        ]
        if not delivered:
            # Every route refused every image: not a success with none, a failure refunded in full.
            log.warning("%s: no image could be posted by any route", name)
            raise JobFailedError(NOT_POSTED)
        return delivered

    @property
    def unsent_count(self) -> int:
        """Jobs of this process not sent yet: waiting in line, preparing references or being sent."""
        return self._unsent

    def stop_submitting(self) -> None:
        """From now on no submission starts: jobs not yet sent are held for the next start."""
        self._stopping = True
        self.submit_queue.close()
        self._changed()

    async def drain_submissions(self, within: float) -> bool:
        """Stop submitting, then wait (at most `within` seconds) until every submission on the wire
        was answered and its task id stored, and every job not yet sent was held.

        Returns False if the time ran out first (what is still on the wire stays `submitting`).
        """
        self.stop_submitting()
        if self._sending or self._unsent:
            log.info(
                "stopping: waiting for %d submission(s) on the wire; %d job(s) not sent are held",
                self._sending,
                self._unsent - self._sending,
            )
        try:
            async with asyncio.timeout(within):
                await self._until(lambda: self._sending == 0 and self._unsent == 0)
        except TimeoutError:
            log.warning("stopping: %d submission(s) still unanswered after %.1fs", self._sending, within)
            return False
        return True

    def _changed(self) -> None:
        """Wake everything waiting in `_until` (a submit slot, the drain) to look again."""
        self._change.set()
        self._change = asyncio.Event()

    async def _until(self, check: Callable[[], bool]) -> None:
        while not check():
            await self._change.wait()

    def _note_final_message(self, job_id: int) -> None:
        """The job's images are posted: how long after the provider finished its task."""
        finished = self._finished_at.pop(job_id, None)
        if finished is not None and self._telemetry is not None:
            self._telemetry.observe_completion_to_final_message(self._clock() - finished)

    async def _fail(self, job: JobRecord, observer: JobObserver, message: Readable) -> JobRecord:
        self._finished_at.pop(job.id, None)
        # Written before the message is edited: a crash in between leaves a final, honest record
        # (in English: the record is read by operators and reports; members get `message`).
        job = await self._jobs.finish(job.id, JobState.FAILED, delivered_images=0, error=str(message))
        await observer.fail(message, self._clock() - job.created_at)
        return job

    async def _advance(
        self,
        job: JobRecord,
        request: ImagineRequest,
        observer: JobObserver,
        throttle: ProgressThrottle,
        resumed: bool,
        name: str,
    ) -> JobRecord:
        """Drive the job up to `delivering` (its result URLs stored)."""
        first: toapis.TaskStatus | None = None
        if job.state is JobState.ACCEPTED:
            if resumed and (job.message_id is None or len(job.reference_urls) < job.reference_count):
                # Never shown to the member, or the member's references were not all uploaded
                # (only the uploaded copies are stored): it cannot be sent as asked.
                raise JobFailedError(INTERRUPTED_BEFORE_SENDING)
            self._unsent += 1
            try:
                if request.reference_sources:
                    job, request = await self._prepare_references(job, request, name)
                    observer.references_ready(request.reference_urls)
                job, first = await self._submit(job, request, name, throttle)
            except SubmissionsStoppedError:
                await throttle.close()
                try:
                    await observer.hold()
                except Exception as exc:
                    # Only the notice failed: the job must still stay `accepted`, to be sent later.
                    log.warning("%s: the waiting notice could not be shown: %s", name, type(exc).__name__)
                raise
            finally:
                self._unsent -= 1
                self._changed()
        elif job.state is JobState.SUBMITTING:
            raise JobFailedError(INTERRUPTED_WHILE_SENDING)
        if job.state is JobState.RUNNING:
            job = await self._poll(job, first, throttle, name)
        return job

    async def _prepare_references(
        self, job: JobRecord, request: ImagineRequest, name: str
    ) -> tuple[JobRecord, ImagineRequest]:
        """Download each reference Discord gave us, make it acceptable, and re-host it with the service.

        Discord's links expire, so the uploaded copies are what the submission carries and
        what the job keeps (a later reroll reuses them). Nothing here costs anything: any
        failure ends the job before a submission.
        """
        urls: list[str] = []
        for source in request.reference_sources:
            shown = quoted_filename(source.filename)
            try:
                data = await self._client.download(source.url, max_bytes=MAX_DOWNLOAD_BYTES)
            except toapis.DownloadTooLargeError as exc:
                raise JobFailedError(
                    _(
                        "{filename} is larger than {limit}. Attach a smaller image.",
                        filename=shown,
                        limit=limit_size(MAX_DOWNLOAD_BYTES),
                    )
                ) from exc
            except toapis.ToAPIsError as exc:
                log.warning("%s: downloading reference %s failed: %s", name, source.filename, exc)
                raise JobFailedError(
                    _(
                        "{filename} could not be downloaded from Discord. Attach it again and retry.",
                        filename=shown,
                    )
                ) from exc
            try:
                prepared = await prepare_reference_in_turn(data, filename=source.filename)
            except ReferenceRejectedError as exc:
                raise JobFailedError(exc.text) from exc
            del data  # one reference in memory at a time
            try:
                url = await self._client.upload_image(
                    prepared.data, filename=prepared.filename, content_type=prepared.content_type
                )
            except toapis.BadRequestError as exc:
                reason = _provider_text(exc.provider_message)
                refusal = (
                    _(
                        "The image service refused the reference image {filename}: {reason}",
                        filename=shown,
                        reason=reason,
                    )
                    if reason
                    else _(
                        "The image service refused the reference image {filename}. Try another image.",
                        filename=shown,
                    )
                )
                raise JobFailedError(refusal) from exc
            except toapis.ToAPIsError as exc:
                self._note_refusal(exc)
                raise JobFailedError(failure_message(exc)) from exc
            urls.append(url)
        log.info("%s: uploaded %d reference image(s)", name, len(urls))
        hosted = (*request.reference_urls, *urls)  # copies the service already had come first
        job = await self._jobs.update(job.id, reference_urls=hosted)
        return job, dataclasses.replace(request, reference_urls=hosted, reference_sources=())

    async def _submit(
        self, job: JobRecord, request: ImagineRequest, name: str, throttle: ProgressThrottle
    ) -> tuple[JobRecord, toapis.TaskStatus]:
        """Send the job when its turn in the queue comes; raise SubmissionsStoppedError once stopping.

        A submission the provider did not accept for rate (429, its limiter down) goes back to
        the head of the line and is sent again: it was never charged, so this never pays twice.
        """
        if self._stopping:
            raise SubmissionsStoppedError

        def show_place(place: QueuePosition) -> None:
            throttle.update(JobProgress(Phase.WAITING, ahead=place.ahead, wait=place.wait))

        try:
            ticket = self.submit_queue.join(job.id, job.guild_id, job.user_id, on_position=show_place)
        except QueueClosedError:
            raise SubmissionsStoppedError from None
        busy = 0  # plain 503s so far
        while True:
            try:
                await ticket.turn()
            except QueueClosedError:
                raise SubmissionsStoppedError from None
            except QueueTimeoutError:
                log.warning("%s: waited in line longer than %.0fs; not sent", name, self.submit_queue.timeout)
                raise JobFailedError(
                    _(
                        "The bot was too busy to send your request to the image service within {wait}, so "
                        "it was not sent and nothing was charged. Try again in a few minutes.",
                        wait=duration_words(self.submit_queue.timeout),
                    )
                ) from None
            if self._stopping:
                ticket.sent()
                raise SubmissionsStoppedError
            try:
                job, status = await self._send(job, request, name, ticket)
            except _SendAgainError as exc:
                cause = exc.cause
                if isinstance(cause, toapis.RateLimitedError):
                    self.submit_queue.refused_for_rate(
                        limiter_down=cause.status == 503, retry_after=cause.retry_after
                    )
                else:
                    busy += 1
                    if busy >= SERVER_BUSY_ATTEMPTS:
                        raise JobFailedError(failure_message(cause)) from cause
                    self.submit_queue.hold_off(self.submit_queue.backoff(busy))
                log.info(
                    "%s: the image service did not take it (%s); back to the head of the line", name, cause
                )
                ticket.again()
                continue
            self.submit_queue.accepted()
            return job, status

    async def _send(
        self, job: JobRecord, request: ImagineRequest, name: str, ticket: SubmitTicket
    ) -> tuple[JobRecord, toapis.TaskStatus]:
        """Submit now (the job's turn came), keeping the stored state honest for a restart."""
        # Counted before the first await, so the drain cannot miss a submission just starting.
        self._sending += 1
        # Shielded: once sent, the answer's task id must be stored even if shutdown cancels the job.
        task = asyncio.create_task(self._submit_and_record(job, request, name), name=f"{name}-submit")

        def done(finished: asyncio.Task[tuple[JobRecord, toapis.TaskStatus]]) -> None:
            ticket.sent()
            self._submission_done(finished)

        task.add_done_callback(done)
        return await asyncio.shield(task)

    def _note_refusal(self, exc: toapis.ToAPIsError) -> None:
        """A refusal for balance or permission: the balance watch reads the balance at once."""
        if isinstance(exc, toapis.InsufficientBalanceError) and self._on_balance_refused is not None:
            self._on_balance_refused()

    def _submission_done(self, _: asyncio.Task[tuple[JobRecord, toapis.TaskStatus]]) -> None:
        self._sending -= 1
        self._changed()

    async def _submit_and_record(
        self, job: JobRecord, request: ImagineRequest, name: str
    ) -> tuple[JobRecord, toapis.TaskStatus]:
        job = await self._jobs.update(job.id, state=JobState.SUBMITTING)
        try:
            task = await self._client.submit(**request.submit_kwargs())
        except (toapis.RateLimitedError, toapis.ServerError) as exc:
            if not isinstance(exc, toapis.RateLimitedError) and exc.status != 503:
                log.warning("%s: submission failed: %s", name, exc)
                raise JobFailedError(failure_message(exc)) from exc
            # Not accepted: the job waits again, and a restart meanwhile sends it (not "unconfirmed").
            await self._jobs.update(job.id, state=JobState.ACCEPTED)
            raise _SendAgainError(exc) from exc
        except toapis.ToAPIsError as exc:
            log.warning("%s: submission failed: %s", name, exc)
            if isinstance(exc, toapis.AuthenticationError | toapis.InsufficientBalanceError):
                log.error(
                    "%s: the image service refused the API key or the account has no balance: %s", name, exc
                )
            self._note_refusal(exc)
            raise JobFailedError(failure_message(exc)) from exc
        # Logged before it is stored: if the database never takes it, an operator can still find it.
        log.info("%s: submitted as task %s (model %s, n=%d)", name, task.id, request.model.id, request.n)
        # The task is paid for: losing its id loses the images, so the write keeps trying
        # through database trouble until the job's own deadline (counted from the submission, as
        # the job may have waited in line), not just the usual while.
        patience = max(self._jobs.retry.within, self._timings.timeout)
        try:
            job = await self._jobs.update(
                job.id,
                retry=dataclasses.replace(self._jobs.retry, within=patience),
                state=JobState.RUNNING,
                task_id=task.id,
                submitted_at=self._clock(),
                progress=task.progress,
            )
        except Exception:
            log.error("%s: the id of task %s, already paid for, could not be stored", name, task.id)
            raise
        return job, task

    async def _poll(
        self, job: JobRecord, status: toapis.TaskStatus | None, throttle: ProgressThrottle, name: str
    ) -> JobRecord:
        """Follow the task to its end: status queries when its planner and the scheduler say, and
        statuses published by webhook events (`TaskNews`) exactly like answers to a query."""
        assert job.task_id is not None
        task_id = job.task_id
        # The deadline counts from the submission: time spent waiting in line is not the provider's.
        started = job.submitted_at if job.submitted_at is not None else self._clock()
        deadline = started + self._timings.timeout
        planner = PollPlanner(
            started=started,
            rules=self._rules,
            typical_duration=self._durations.typical(job.model),
            rng=self._rng,
            webhooks=self.webhooks_active,
        )
        if self._news is not None:
            self._news.watch(task_id)
        try:
            return await self._follow(job, task_id, planner, status, deadline, throttle, name)
        finally:
            if self._news is not None:
                self._news.forget(task_id)

    async def _follow(
        self,
        job: JobRecord,
        task_id: str,
        planner: PollPlanner,
        status: toapis.TaskStatus | None,
        deadline: float,
        throttle: ProgressThrottle,
        name: str,
    ) -> JobRecord:
        slow = False
        stored_progress = job.progress
        phase = Phase.QUEUED if not stored_progress else Phase.GENERATING
        queried = False  # whether `status` answered a query of ours (else: the submission or an event)
        while True:
            if status is None:
                status, queried, slow = await self._next_status(task_id, planner, deadline, slow, name)
            now = self._clock()
            if status is not None:
                if status.status == "completed":
                    # The provider's finish (whole seconds), else now: what completion→final counts from.
                    self._finished_at[job.id] = float(status.completed_at or now)
                    self._note_finished(job, planner, status, now, queried)
                    urls, layers = _result_images(status, job)
                    if not urls:
                        raise JobFailedError(
                            _("The image service finished but returned no images. Try again.")
                        )
                    return await self._jobs.update(
                        job.id,
                        state=JobState.DELIVERING,
                        result_urls=urls,
                        result_layers=layers,
                        result_expires_at=status.expires_at,
                        progress=100,
                    )
                if status.status == "failed":
                    log.info("%s: task %s failed: %s", name, status.id, status.error_message)
                    try:
                        status.raise_if_failed()
                    except toapis.TaskFailedError as exc:
                        raise JobFailedError(failure_message(exc)) from exc
                phase = Phase.QUEUED if status.status == "queued" else Phase.GENERATING
                if status.progress is not None:
                    # Kept in memory only: a write per step of every job would crowd the database
                    # that members' new requests wait on. The record gets 100 on completion.
                    stored_progress = status.progress
                if not queried and status.status != "queued":
                    planner.observe(now, now, status.status, status.progress)
            throttle.update(JobProgress(phase, stored_progress, slow))
            if now >= deadline:
                raise JobFailedError(
                    _(
                        "Timed out after {duration} — the image service did not finish in time.",
                        duration=duration_words(self._timings.timeout),
                    )
                )
            status = None

    async def _next_status(
        self, task_id: str, planner: PollPlanner, deadline: float, slow: bool, name: str
    ) -> tuple[toapis.TaskStatus | None, bool, bool]:
        """Wait for the planned moment (or an event), then query in the scheduler's turn.

        Returns (status or None, whether it answered a query, whether the service is being slow).
        """
        planner.webhooks = self.webhooks_active
        now = self._clock()
        due = planner.next_query_at()
        wait = min(max(0.0, due - now), max(0.0, deadline - now))
        if self._news is not None:
            published = await self._news.wait(task_id, wait)
            if published is not None:
                if published.status in ("completed", "failed"):
                    self._webhook_arrived()
                return published, False, False
        elif wait > 0:
            await self._sleep(wait)
        if self._clock() >= deadline:
            return None, False, slow
        expected = planner.expected_finish()
        await self._scheduler.turn(expected if expected is not None else due)
        sent = self._clock()
        try:
            status = await self._client.get_task(task_id)
        except toapis.RateLimitedError as exc:
            answered = self._clock()
            self.query_rate_limited += 1
            planner.queried(sent, answered, None, None)
            planner.refused(answered, exc.retry_after)
            if self._budget is not None:
                self._budget.query.hold_off(exc.retry_after if exc.retry_after is not None else 1.0)
            log.info("%s: status query refused for rate (retry after %s s)", name, exc.retry_after)
            return None, False, True
        except _TRANSIENT as exc:
            # The task is paid for: keep asking until the deadline instead of giving up.
            planner.queried(sent, self._clock(), None, None)
            log.warning("%s: polling task %s failed, will retry: %s", name, task_id, exc)
            return None, False, True
        except toapis.ToAPIsError as exc:
            raise JobFailedError(failure_message(exc)) from exc
        planner.queried(sent, self._clock(), status.status, status.progress)
        return status, True, False

    def _note_finished(
        self, job: JobRecord, planner: PollPlanner, status: toapis.TaskStatus, now: float, queried: bool
    ) -> None:
        """Learn the model's duration, and what polling cost and how late it saw the finish."""
        if job.submitted_at is not None:
            self._durations.add(job.model, now - job.submitted_at)
        self.queries_per_job.append(planner.queries)
        if status.completed_at is not None:
            lag = max(0.0, now - status.completed_at)
            self.detection_lags.append(lag)
            if self._telemetry is not None:
                self._telemetry.observe_detection_lag(lag)
            if queried and planner.webhooks:
                self._judge_webhooks(lag)

    def _webhook_arrived(self) -> None:
        self._missed_webhooks = 0

    def _judge_webhooks(self, lag: float) -> None:
        """A query, not an event, found the task finished: if it finished well before, its event
        never came. Enough of those in a row and webhooks are given up for normal polling."""
        if lag < WEBHOOK_GRACE_FLOORS * self._rules.base:
            return  # the event may still be on its way
        self._missed_webhooks += 1
        if self._missed_webhooks >= MISSED_WEBHOOKS_LIMIT and self.webhooks_active:
            self.webhooks_active = False
            log.warning("webhooks configured but not arriving — check the ToAPIs console")

    async def _download(self, job: JobRecord, name: str) -> JobOutcome:
        urls = job.result_urls or ()
        if job.result_expires_at is not None and self._clock() >= job.result_expires_at:
            raise JobFailedError(RESULTS_EXPIRED)
        # A few images at a time (one job's set is in memory anyway); each checked in a thread.
        parallel = asyncio.Semaphore(DOWNLOADS_PER_JOB)
        gone = 0

        layers = job.result_layers or ()

        async def fetch(index: int, url: str) -> tuple[FittedImage, ImageLayer | None] | None:
            nonlocal gone
            async with parallel:
                try:
                    data = await self._client.download(url)
                    layer = layers[index - 1] if index <= len(layers) else None
                    fitted = await asyncio.to_thread(
                        fit_image,
                        data,
                        limit=job.upload_limit,
                        basename=f"imagine-{job.id}-{index}",
                        keep_transparency=layer is not None and layer.is_layer,
                    )
                    return fitted, layer
                except (toapis.ToAPIsError, ImageDecodeError, ImageTooLargeError) as exc:
                    # A 4xx from the file host means the link is dead: the result expired.
                    gone += isinstance(exc, toapis.BadRequestError)
                    log.warning("%s: image %d could not be delivered: %s", name, index, exc)
                    return None

        fetched = await asyncio.gather(*(fetch(i, url) for i, url in enumerate(urls, start=1)))
        kept = [pair for pair in fetched if pair is not None]
        images = [image for image, _ in kept]
        if not images:
            raise JobFailedError(RESULTS_EXPIRED if gone == len(urls) else NOT_DOWNLOADED)
        return JobOutcome(
            task_id=job.task_id or "",
            images=tuple(images),
            requested=job.n,
            returned=len(urls),
            elapsed=self._clock() - job.created_at,
            layers=tuple(layer for _, layer in kept) if layers else (),
        )
