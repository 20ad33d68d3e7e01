"""The benchmark's fakes: the test fakes, configured for load and instrumented for measuring.

* :class:`BenchToAPIs` — :class:`tests.fakes.toapis.FakeToAPIs` whose tasks follow a per-job
  timeline (queued, then ``in_progress`` in 10 % steps, then ``completed`` at exactly
  ``created + duration`` by the fake's clock) and whose result files come from a small pool of
  pre-made JPEGs held in memory. It enforces the account's documented rate limits like its
  parent (default group), records every poll, every status query and submission it refused
  with 429 (per job), and when the bot first knew of the completion (a poll that showed
  ``completed``, or its answer to the completion's webhook event).
* :class:`BenchWebhooks` — the fake's webhook side for the ``webhooks`` scenario: a job's signed
  event goes out its :class:`EventPlan`'s delay after the task's planned completion, sent twice or
  never as planned, and every delivery is recorded with when the bot answered it.
* :class:`BenchDiscord` — :class:`tests.fakes.discord.FakeDiscord` with
  :class:`DiscordRateLimits` (Discord's per-channel message limit and the global limit),
  optional request-body validation, uploads kept as sizes only (not bytes), and a record of
  each job's message writes: when its images were shown, or when it failed.
* :func:`jpeg_pool` — noisy JPEGs of chosen byte sizes, made once.
* :func:`flat_png` — a huge but mostly flat PNG, the reference image of the ``references`` scenario.

Times are ``time.monotonic()`` of the benchmark process, shared by both fakes.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import io
import json
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image, ImageDraw

from tests.fakes.discord import (
    FakeAttachment,
    FakeDiscord,
    FakeMessage,
    RateLimitPolicy,
    RecordedRequest,
    UploadedFile,
)
from tests.fakes.toapis import GENERATIONS_PATH, FakeTask, FakeToAPIs, FakeWebhooks, TaskPlan

PROMPT = re.compile(r"bench (\d+)")

# The task's visible steps: queued, then in_progress 0 %, 10 %, … 90 %; completed after the last.
STEPS: tuple[tuple[str, int], ...] = (("queued", 0), *(("in_progress", 10 * k) for k in range(10)))

# Requests that create, edit or delete a message: Discord's "~5 per 5 s per channel" family.
# Webhook routes count against the channel of the interaction their token belongs to.
MESSAGE_WRITES = frozenset(
    {
        ("POST", "/channels/{channel_id}/messages"),
        ("PATCH", "/channels/{channel_id}/messages/{message_id}"),
        ("DELETE", "/channels/{channel_id}/messages/{message_id}"),
        ("POST", "/webhooks/{webhook_id}/{webhook_token}"),
        ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original"),
        ("DELETE", "/webhooks/{webhook_id}/{webhook_token}/messages/@original"),
        ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"),
        ("DELETE", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"),
    }
)
MESSAGE_BUCKET = hashlib.sha1(b"channel message writes").hexdigest()[:16]
RATE_LIMITED = "You are being rate limited."


def job_of_prompt(prompt: str | None) -> int | None:
    """The job number in a benchmark prompt (``bench 17`` → 17), else None."""
    match = PROMPT.fullmatch(prompt or "")
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------- images


def _base_picture(side: int, index: int) -> Image.Image:
    """A smooth, distinct picture per index (gradients in different channel orders)."""
    linear = Image.linear_gradient("L").resize((side, side))
    radial = Image.radial_gradient("L").resize((side, side))
    channels = [
        linear.rotate(90 * (index % 4)),
        radial,
        linear.transpose(Image.Transpose.FLIP_TOP_BOTTOM).rotate(45 * (index % 8)),
    ]
    shift = index % 3
    return Image.merge("RGB", channels[shift:] + channels[:shift])


def _encode(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def jpeg_pool(side: int, sizes: Sequence[int], *, quality: int = 90, tolerance: float = 0.03) -> list[bytes]:
    """Square ``side``×``side`` JPEGs, one per target byte size (within ``tolerance``).

    A smooth picture blended with Gaussian noise: the noise share is searched until the file
    has the wanted size, so the images look like (very grainy) photos and decode like them.
    """
    noise = Image.merge("RGB", [Image.effect_noise((side, side), 64) for _ in range(3)])
    pool = []
    for index, target in enumerate(sizes):
        base = _base_picture(side, index)
        low, high = 0.0, 1.0
        best = b""
        for _ in range(16):
            alpha = (low + high) / 2
            data = _encode(Image.blend(base, noise, alpha), quality)
            if abs(len(data) - target) < abs(len(best) - target):
                best = data
            if abs(len(data) - target) <= tolerance * target:
                break
            if len(data) < target:
                low = alpha
            else:
                high = alpha
        pool.append(best)
    return pool


def flat_png(side: int) -> bytes:
    """A mostly flat ``side``×``side`` RGB PNG: two colours, so 8000×8000 is only ~230 kB.

    Cheap to send and huge to decode (Pillow holds 8000×8000 RGB in 256 MB): the shape of a
    large scan or screenshot a member attaches as a reference image.
    """
    image = Image.new("RGB", (side, side), (40, 90, 160))
    ImageDraw.Draw(image).ellipse((side // 8, side // 8, side * 7 // 8, side * 7 // 8), fill=(200, 60, 30))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- ToAPIs


@dataclass(frozen=True)
class JobPlan:
    """What the benchmark asks for in one job, and how its task will behave."""

    job: int
    channel_id: int
    n: int
    duration: float  # seconds from submission to completed
    queued: float  # seconds spent queued before in_progress
    images: tuple[int, ...]  # pool index per result image
    guild_id: int | None = None  # None: the fake Discord's default server
    server: int = 0  # which of the scenario's servers sends it (an index)


@dataclass
class TaskTimeline:
    """One task: when it became what, and every poll it received."""

    task_id: str
    job: int | None
    created: float
    queued: float
    duration: float
    starts: tuple[float, ...]  # offset at which STEPS[k] begins; the last entry is completion
    polls: list[tuple[float, str]] = field(default_factory=list)  # (time, status shown)
    refused: list[float] = field(default_factory=list)  # status queries answered 429 (time)
    # When the bot first knew of the completion: the first poll that answered "completed", or the
    # bot's 2xx answer to the completion's webhook event if that came first.
    detected_at: float | None = None
    detected_by: str | None = None  # "status query" or "event"

    @property
    def queries(self) -> list[float]:
        """Every status query of the task that reached the provider, answered or refused, in order."""
        return sorted([at for at, _ in self.polls] + self.refused)

    @property
    def completed_at(self) -> float:
        """The moment the task became completed (fake clock)."""
        return self.created + self.duration


def step_starts(queued: float, duration: float) -> tuple[float, ...]:
    """Queued for ``queued`` s, then ten equal in_progress steps, completed at ``duration``."""
    running = duration - queued
    return (0.0, *(queued + running * k / 10 for k in range(10)), duration)


class BenchToAPIs(FakeToAPIs):
    """FakeToAPIs with per-job task timelines and pooled result images.

    The account's rate limits (``rate_limits``, the documented default group unless changed) are
    enforced by the parent's middleware before any handler runs, so the handlers overridden here
    answer only what the buckets let through. What the buckets refused is kept per job:
    ``refused_submissions[job]`` and each timeline's ``refused`` status queries.
    """

    webhooks: BenchWebhooks

    def __init__(self, pool: Sequence[bytes], plans: dict[int, JobPlan], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool = list(pool)
        self.job_plans = plans
        self.plan = TaskPlan(steps=list(STEPS), advance="time")
        self.timelines: dict[str, TaskTimeline] = {}
        self.tasks_by_job: dict[int, list[str]] = defaultdict(list)
        self.unplanned_submissions = 0
        self.refused_submissions: Counter[int | None] = Counter()  # by job (None: not a bench prompt)
        self.status_queries = 0  # every GET of a task that reached the buckets, answered or not
        # The console's webhook: off (as in the parent) until the scenario configures it.
        self.webhooks = BenchWebhooks(plans, self.timelines, lambda: self.clock())
        self.webhooks.result_urls = lambda task: self.image_urls(task.id)

    async def _authorised(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        submitting = request.method == "POST" and request.path == GENERATIONS_PATH
        querying = request.method == "GET" and request.path.startswith(GENERATIONS_PATH + "/")
        job: int | None = None
        if submitting:
            with contextlib.suppress(ValueError, AttributeError):
                job = job_of_prompt(json.loads(await request.read()).get("prompt"))
        now = self.clock()
        response = await super()._authorised(request, handler)
        refused = response.status == 429 and "X-RateLimit-Category" in response.headers
        if querying:
            self.status_queries += 1
            timeline = self.timelines.get(request.path.rsplit("/", 1)[-1])
            if refused and timeline is not None:
                timeline.refused.append(now)
        elif submitting and refused:
            self.refused_submissions[job] += 1
        return response

    async def _handle_submit(self, request: web.Request) -> web.StreamResponse:
        response = await super()._handle_submit(request)
        if response.status != 200 or not isinstance(response, web.Response) or response.text is None:
            return response
        task = self.tasks[json.loads(response.text)["id"]]
        job = job_of_prompt(task.prompt)
        plan = self.job_plans.get(job) if job is not None else None
        if plan is None:
            self.unplanned_submissions += 1  # advances by the default plan's steps (time based)
            starts = tuple(float(k) for k in range(len(STEPS) + 1))
            queued, duration = 1.0, float(len(STEPS))
        else:
            queued, duration = plan.queued, plan.duration
            starts = step_starts(queued, duration)
            for index, name in enumerate(task.image_names):
                self.add_file(name, self.pool[plan.images[index % len(plan.images)]], "image/jpeg")
        if job is not None:
            self.tasks_by_job[job].append(task.id)
        self.timelines[task.id] = TaskTimeline(task.id, job, task.created, queued, duration, starts)
        return response

    async def _handle_get_task(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["task_id"]
        task = self.tasks.get(task_id)
        timeline = self.timelines.get(task_id)
        if task is None or timeline is None:
            return await super()._handle_get_task(request)
        now = self.clock()
        self.polls[task_id] += 1
        self.poll_times.setdefault(task_id, []).append(now)
        index = bisect.bisect_right(timeline.starts, now - task.created) - 1
        body = self._task_body(task, index)
        timeline.polls.append((now, body["status"]))
        if body["status"] == "completed" and timeline.detected_at is None:
            timeline.detected_at, timeline.detected_by = now, "status query"
        return web.json_response(body)


# --------------------------------------------------------------------------- ToAPIs webhooks


@dataclass(frozen=True)
class EventPlan:
    """How the provider delivers one job's completion event."""

    delay: float  # seconds after the task's completion the event is sent
    twice: bool = False  # delivered twice (at least once: the same event id again)
    never: bool = False  # never sent: only a status query can find the completion


@dataclass(frozen=True)
class Delivery:
    """One POST of an event to the bot (through the stand-in for the operator's proxy)."""

    event_id: str
    task_id: str | None
    sent_at: float
    answered_at: float
    status: int | None  # None: no answer (connection refused, timeout)


class BenchWebhooks(FakeWebhooks):
    """The console's webhook for the benchmark: each job's event at its planned moment.

    Once configured, the event of a job's task goes out at the task's completion by the job's
    :class:`JobPlan` (``created + duration``, the moment its status turns ``completed``) plus the
    job's :class:`EventPlan` delay, twice or never as planned; a task no plan names gets none.
    Signing, retries and the proxy's forwarding are the parent's. Every delivery is kept in
    ``deliveries``; the first 2xx for a task whose completion no poll had seen yet marks its
    timeline detected by the event at the moment of that answer (the bot has stored the event by
    then and hands it to the job at once).
    """

    def __init__(
        self,
        plans: dict[int, JobPlan],
        timelines: dict[str, TaskTimeline],
        clock: Callable[[], float],
    ) -> None:
        super().__init__()
        self.delay = 0.0  # the planned delay is part of the moment the event is scheduled for
        self.job_plans = plans
        self.timelines = timelines
        self.clock = clock
        self.event_plans: dict[int, EventPlan] = {}
        self.deliveries: list[Delivery] = []
        self.duplicate = lambda task: self._event_plan(task).twice
        self.lose = lambda task: self._event_plan(task).never

    def _event_plan(self, task: FakeTask) -> EventPlan:
        job = job_of_prompt(task.prompt)
        return self.event_plans.get(job, EventPlan(0.0)) if job is not None else EventPlan(0.0)

    def submitted(self, task: FakeTask, callback_url: str | None) -> None:
        url = callback_url or self.callback_url
        job = job_of_prompt(task.prompt)
        plan = self.job_plans.get(job) if job is not None else None
        if url is None or plan is None:
            return
        self._task_urls[task.id] = url
        self._spawn(self._end_at(task, task.created + plan.duration + self._event_plan(task).delay))

    async def _end_at(self, task: FakeTask, at: float) -> None:
        await asyncio.sleep(max(0.0, at - self.clock()))
        self._end(task)

    async def post(self, event: dict[str, Any], **kwargs: Any) -> tuple[int, dict[str, Any] | None]:
        task_id = (event.get("data") or {}).get("task_id")
        sent = self.clock()
        try:
            status, answer = await super().post(event, **kwargs)
        except BaseException:
            self.deliveries.append(Delivery(event["id"], task_id, sent, self.clock(), None))
            raise
        answered = self.clock()
        self.deliveries.append(Delivery(event["id"], task_id, sent, answered, status))
        timeline = self.timelines.get(task_id) if task_id is not None else None
        if 200 <= status < 300 and timeline is not None and timeline.detected_at is None:
            timeline.detected_at, timeline.detected_by = answered, "event"
        return status, answer


# --------------------------------------------------------------------------- Discord rate limits


@dataclass
class _Window:
    start: float
    count: int = 0


@dataclass(frozen=True)
class Rejection:
    """One 429 the fake answered."""

    at: float
    scope: str  # "global", "channel" or "route"
    method: str
    route: str | None
    retry_after: float


class DiscordRateLimits(RateLimitPolicy):
    """Discord's limits as the benchmark models them (see bench/README.md).

    * Per channel: at most ``channel_limit`` message creates/edits/deletes per
      ``channel_window`` seconds — channel routes, and webhook (interaction token) message
      routes counted against the interaction's channel. Fixed windows that open at the first
      request, so the ``X-RateLimit-*`` headers on every answer are exact.
    * Global: at most ``global_limit`` requests per ``global_window`` seconds across every
      request except interaction callbacks (exempt, as on Discord).
    * Anything else: the base policy's generous per-route buckets (headers only).

    A rejected request does not count towards any window. Every 429 is kept in ``rejections``.
    """

    def __init__(
        self,
        *,
        channel_limit: int = 5,
        channel_window: float = 5.0,
        global_limit: int = 50,
        global_window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.channel_limit = channel_limit
        self.channel_window = channel_window
        self.global_limit = global_limit
        self.global_window = global_window
        self.clock = clock
        self.channel_of: Callable[[RecordedRequest], int | None] = _channel_param
        self.rejections: list[Rejection] = []
        self._global = _Window(start=-math.inf)
        self._channels: dict[int, _Window] = {}

    def decide(self, request: RecordedRequest) -> tuple[dict[str, Any] | None, dict[str, str]]:
        if (request.route or "").startswith("/interactions/"):
            return super().decide(request)
        now = self.clock()
        window = self._global
        if now - window.start >= self.global_window:
            window.start, window.count = now, 0
        if window.count >= self.global_limit:
            retry_after = max(self.global_window - (now - window.start), 0.001)
            return self._reject(request, now, "global", retry_after, {})

        channel = self.channel_of(request) if (request.method, request.route) in MESSAGE_WRITES else None
        if channel is None:
            body, headers = super().decide(request)
            if body is None:
                window.count += 1
            else:
                self.rejections.append(Rejection(now, "route", request.method, request.route, 0.0))
            return body, headers

        bucket = self._channels.get(channel)
        if bucket is None or now - bucket.start >= self.channel_window:
            bucket = self._channels[channel] = _Window(start=now)
        reset_after = max(self.channel_window - (now - bucket.start), 0.001)
        headers = {
            "X-RateLimit-Limit": str(self.channel_limit),
            "X-RateLimit-Bucket": MESSAGE_BUCKET,
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        }
        if bucket.count >= self.channel_limit:
            return self._reject(request, now, "channel", reset_after, headers)
        bucket.count += 1
        window.count += 1
        headers["X-RateLimit-Remaining"] = str(self.channel_limit - bucket.count)
        return None, headers

    def _reject(
        self, request: RecordedRequest, now: float, scope: str, retry_after: float, headers: dict[str, str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        is_global = scope == "global"
        self.rejections.append(Rejection(now, scope, request.method, request.route, retry_after))
        headers = {
            **headers,
            "Retry-After": str(max(1, math.ceil(retry_after))),
            "X-RateLimit-Scope": "global" if is_global else "user",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        else:
            headers["X-RateLimit-Remaining"] = "0"
        body = {"message": RATE_LIMITED, "retry_after": round(retry_after, 3), "global": is_global}
        return body, headers


def _channel_param(request: RecordedRequest) -> int | None:
    channel = request.params.get("channel_id")
    return int(channel) if channel and channel.isdigit() else None


# --------------------------------------------------------------------------- Discord


@dataclass(eq=False)
class SlimAttachment(FakeAttachment):
    """An uploaded file kept as its size only: a load run uploads gigabytes."""

    stored_size: int = 0

    @property
    def size(self) -> int:
        return self.stored_size


def status_text(message: FakeMessage) -> str:
    """The Status field of a job message's embed ("" when it has none)."""
    if not message.embeds:
        return ""
    fields = message.embeds[0].get("fields") or []
    return next((f.get("value", "") for f in fields if f.get("name") == "Status"), "")


@dataclass
class JobTrack:
    """What the fake Discord saw of one job's messages."""

    job: int
    expected: int  # images asked for
    writes: int = 0  # successful creates/edits of the job's messages
    done_at: float | None = None  # first write showing ✅
    delivered_at: float | None = None  # the write after which every image was shown
    failed_at: float | None = None  # first write showing ❌
    failure: str | None = None
    mains: dict[int, FakeMessage] = field(default_factory=dict)  # messages with the job's embed
    replies: dict[int, dict[int, FakeMessage]] = field(default_factory=dict)  # main id -> overflow

    def images_shown(self) -> int:
        """Most images any (not deleted) ✅ message of the job shows, with its overflow replies."""
        best = 0
        for main_id, main in self.mains.items():
            if main.deleted or not status_text(main).startswith("✅"):
                continue
            shown = len(main.attachments) + sum(
                len(r.attachments) for r in self.replies.get(main_id, {}).values() if not r.deleted
            )
            best = max(best, shown)
        return best

    @property
    def delivered(self) -> bool:
        return self.images_shown() >= self.expected


class BenchDiscord(FakeDiscord):
    """FakeDiscord with Discord's rate limits, cheap uploads and a per-job record of writes."""

    def __init__(self, *, validate: bool, expected_images: dict[int, int], **kwargs: Any) -> None:
        self.limits = DiscordRateLimits()
        super().__init__(rate_limits=self.limits, **kwargs)
        self.limits.channel_of = self._write_channel
        self.validate_bodies = validate
        self.expected_images = expected_images
        self.tracks: dict[int, JobTrack] = {}
        self.late_callbacks: dict[int, float] = {}  # interaction id -> seconds after the interaction
        self.uploaded_bytes = 0
        self.uploaded_files = 0
        self._message_jobs: dict[int, int] = {}

    def _write_channel(self, request: RecordedRequest) -> int | None:
        """The channel a message write lands in (webhooks: the interaction's channel)."""
        channel = _channel_param(request)
        if channel is not None:
            return channel
        record = self.interactions.get(request.params.get("webhook_token", ""))
        if record is None:
            return None
        channel_id = record.payload.get("channel_id")
        return int(channel_id) if channel_id else None

    def _validate(self, req: RecordedRequest) -> list[Any]:
        if not self.validate_bodies:
            return []
        return super()._validate(req)

    async def _answer(self, req: RecordedRequest, matched: Any, parse_error: str | None) -> Any:
        try:
            return await super()._answer(req, matched, parse_error)
        finally:
            if req.files:
                # Keep names and count bytes; drop the bytes themselves.
                self.uploaded_files += len(req.files)
                self.uploaded_bytes += sum(len(f.data) for f in req.files)
                req.files = [UploadedFile(f.filename, b"", f.content_type) for f in req.files]

    def _new_attachment(self, channel_id: int, upload: UploadedFile, item: Any) -> FakeAttachment:
        full = super()._new_attachment(channel_id, upload, item)
        slim = SlimAttachment(
            full.id,
            full.filename,
            b"",
            full.content_type,
            full.url,
            full.description,
            full.width,
            full.height,
            stored_size=len(upload.data),
        )
        self.attachments[slim.id] = slim
        return slim

    async def _callback(self, req: RecordedRequest) -> tuple[int, Any]:
        status, body = await super()._callback(req)
        interaction_id = req.params.get("interaction_id", "")
        record = self._interactions_by_id.get(int(interaction_id)) if interaction_id.isdigit() else None
        if status == 404 and record is not None and record.callback_type is None:
            self.late_callbacks[record.id] = req.at - record.created_at
        return status, body

    def _write(self, msg: FakeMessage, req: RecordedRequest, body: Any, *, edit: bool) -> None:
        super()._write(msg, req, body, edit=edit)
        self._track(msg, time.monotonic())

    def _track(self, msg: FakeMessage, now: float) -> None:
        job = self._message_jobs.get(msg.id)
        main_id = None
        if job is None:
            description = msg.embeds[0].get("description") if msg.embeds else None
            job = job_of_prompt(description)
            if job is None and msg.message_reference:
                main_id = int(msg.message_reference.get("message_id") or 0)
                job = self._message_jobs.get(main_id)
            if job is None:
                return
            self._message_jobs[msg.id] = job
        track = self.tracks.get(job)
        if track is None:
            track = self.tracks[job] = JobTrack(job, self.expected_images.get(job, 1))
        track.writes += 1
        if main_id is not None or (msg.id not in track.mains and not msg.embeds):
            reference = main_id or int((msg.message_reference or {}).get("message_id") or 0)
            track.replies.setdefault(reference, {})[msg.id] = msg
        else:
            track.mains[msg.id] = msg
        status = status_text(msg)
        if status.startswith("❌") and track.failed_at is None:
            track.failed_at, track.failure = now, status
        if status.startswith("✅") and track.done_at is None:
            track.done_at = now
        if track.delivered_at is None and track.delivered:
            track.delivered_at = now
