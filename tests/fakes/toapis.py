"""A fake ToAPIs service: a real aiohttp server on 127.0.0.1 that tests drive.

Usage::

    async with FakeToAPIs() as fake:
        client = ToAPIsClient(fake.base_url, "test-key")
        fake.plan = TaskPlan(outcome="failed")
        fake.inject("POST", "/v1/images/generations", 503, times=2)

Endpoints: ``POST /v1/images/generations``, ``GET /v1/images/generations/{id}``,
``POST /v1/uploads/images``, ``GET /v1/balance`` (answers :attr:`FakeToAPIs.balance`; an
unknown key gets 401 ``{"success": false, "message": …}``) and the file host ``GET /files/{name}`` (plus
``/files/stream/{name}``, served chunked without Content-Length, and ``/files/slow/{name}``,
trickled in small chunks). The file host needs no key; every other endpoint wants
``Authorization: Bearer <api_key>``.

How a task advances (``TaskPlan.advance``):

* ``"poll"``: the submission answer shows ``steps[0]``; the k-th GET of the task shows
  ``steps[k]``; GET number ``len(steps)`` and later show the outcome.
* ``"time"``: ``steps[k]`` is current from ``k * step_seconds`` after submission (by
  ``fake.clock``), the outcome from ``len(steps) * step_seconds``.

With ``never_finish=True`` the task stays in its last step forever.

Reference images (``image_urls``) are checked like the provider documents them: only
public ``http(s)`` URLs (no ``data:`` URLs), at most 10, references + ``n`` ≤ 15. Entries
pointing at a file this fake hosts (an upload, a result or :meth:`FakeToAPIs.add_file`) are
also checked byte for byte: JPEG or PNG only (the upload endpoint also takes WebP and GIF,
but those are not valid references), ≤ 10 MB, width and height > 14 px, aspect ratio within
[1/3, 3], ≤ 36,000,000 pixels; a hosted URL with no file behind it cannot be fetched. URLs
to other hosts are accepted unchecked. A refused submission answers 400 and creates nothing.

Per model (``MODEL_RULES``, as documented): its resolutions, ``n`` ≤ 10 on 5.0 Pro,
``metadata.optimize_prompt_options.mode`` (``standard`` or ``fast``) only on 4.0 and 4.5;
``metadata.watermark`` must be a boolean, and a task remembers whether its images were
watermarked (``FakeTask.watermarked``: as asked, else the model's default — on for 4.0 and 4.5).

Webhooks (``fake.webhooks``, a :class:`FakeWebhooks`): off until a test configures the console's
callback URL; then every task's end is sent as a signed event, after a delay, sometimes twice or
never if the test says so, retried as documented; ``callback_url`` in a submission without a
configured webhook is refused ``400 webhook_not_configured``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import io
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp import web
from PIL import Image

__all__ = [
    "DEFAULT_MODELS",
    "MAX_UPLOAD_BYTES",
    "SIZES",
    "FakeTask",
    "FakeToAPIs",
    "FakeWebhooks",
    "Injection",
    "RecordedRequest",
    "TaskPlan",
    "make_image",
    "make_layer",
]

DEFAULT_MODELS = (
    "doubao-seedream-4-0",
    "doubao-seedream-4-5",
    "doubao-seedream-5-0",
    "doubao-seedream-5-0-pro",
)
SIZES = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9", "9:21")
RESOLUTIONS = ("1K", "2K", "3K", "4K")
# Documented per model: its resolutions, its most images per request, whether it watermarks when
# `metadata.watermark` is not sent, and whether it has prompt-optimisation modes. A model a test adds
# to `models` without an entry here is checked only against the general rules.
MODEL_RULES: dict[str, dict[str, Any]] = {
    "doubao-seedream-4-0": {"resolutions": ("1K", "2K", "4K"), "max_n": 15, "watermark": True, "modes": True},
    "doubao-seedream-4-5": {"resolutions": ("2K", "4K"), "max_n": 15, "watermark": True, "modes": True},
    "doubao-seedream-5-0": {"resolutions": ("2K", "3K"), "max_n": 15, "watermark": False, "modes": False},
    "doubao-seedream-5-0-pro": {"resolutions": ("1K", "2K"), "max_n": 10, "watermark": False, "modes": False},
}
OPTIMIZE_MODES = ("standard", "fast")
#: Models that document `layer_decomposition`.
LAYERED_MODELS = ("doubao-seedream-5-0-pro",)
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_IMAGES = 15
MAX_REFERENCE_IMAGES = 10
# Documented per reference image: "width and height > 14 px, aspect ratio (w/h) within
# [1/3, 3], total pixels ≤ 6000×6000", JPEG or PNG, ≤ 10 MB (taken as MAX_UPLOAD_BYTES).
MIN_REFERENCE_SIDE_EXCLUSIVE = 14
MAX_REFERENCE_ASPECT = 3
MAX_REFERENCE_PIXELS = 6000 * 6000
REFERENCE_FORMATS = ("JPEG", "PNG")
GENERATIONS_PATH = "/v1/images/generations"
UPLOADS_PATH = "/v1/uploads/images"
BALANCE_PATH = "/v1/balance"
RATE_LIMITED = "rate_limit_exceeded"

_MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
# Paths under which the fake's file host serves a stored file.
_FILE_ROUTES = ("/files/stream/", "/files/slow/", "/files/")


@functools.lru_cache(maxsize=32)
def make_image(width: int, height: int, fmt: str = "JPEG", noisy: bool = False, seed: int = 0) -> bytes:
    """Return a real encoded image of the given size and format (cached by its parameters).

    ``noisy=True`` fills it with random pixels so JPEG/PNG cannot shrink it — use it to make
    files of a predictable, large size. ``seed`` varies the colour of plain images.
    """
    fmt = "JPEG" if fmt.upper() == "JPG" else fmt.upper()
    if noisy:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        colour = ((seed * 67 + 40) % 256, (seed * 131 + 90) % 256, (seed * 29 + 160) % 256)
        image = Image.new("RGB", (width, height), colour)
    buffer = io.BytesIO()
    options: dict[str, Any] = {}
    if fmt == "JPEG":
        options["quality"] = 95
    elif fmt == "PNG":
        options["compress_level"] = 1  # speed: noisy PNGs do not compress anyway
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def make_layer(
    width: int, height: int, box: tuple[int, int, int, int], noisy: bool = False, seed: int = 0
) -> bytes:
    """Return a transparent PNG layer: fully transparent but for an opaque ``box`` (x, y, w, h).

    ``noisy=True`` fills the box with random pixels so the PNG cannot shrink.
    """
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    x, y, w, h = box
    if noisy:
        patch = Image.frombytes("RGB", (w, h), os.urandom(w * h * 3)).convert("RGBA")
    else:
        patch = Image.new("RGBA", (w, h), ((seed * 67 + 40) % 256, (seed * 131 + 90) % 256, 200, 255))
    image.paste(patch, (x, y))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


@dataclass
class TaskPlan:
    """How the next submitted task behaves. See the module docstring for ``advance``."""

    steps: Sequence[tuple[str, int | None]] = field(
        default_factory=lambda: [("queued", 0), ("in_progress", 40), ("in_progress", 80)]
    )
    outcome: Literal["completed", "failed"] = "completed"
    failure_message: str = "The prompt was rejected by the content policy"
    failure_code: str | None = "content_policy_violation"
    image_count: int | None = None  # None: as many as the submission's n
    image_size: tuple[int, int] = (64, 64)
    image_format: Literal["JPEG", "PNG"] = "JPEG"
    noisy: bool = False
    result_shape: Literal["data", "images", "images_nested", "url"] = "data"
    advance: Literal["poll", "time"] = "poll"
    step_seconds: float = 1.0
    never_finish: bool = False
    task_id: str | None = None  # the id the task gets (None: a fresh `task_img_…`)
    layer_count: int = 3  # transparent layers above the base image, when layers are asked for

    def __post_init__(self) -> None:
        if self.outcome not in ("completed", "failed"):
            raise ValueError(f"unknown outcome {self.outcome!r}")
        if self.result_shape not in ("data", "images", "images_nested", "url"):
            raise ValueError(f"unknown result_shape {self.result_shape!r}")
        if self.advance not in ("poll", "time"):
            raise ValueError(f"unknown advance {self.advance!r}")


@dataclass
class Injection:
    """A canned answer for the next ``remaining`` requests matching method and path prefix."""

    method: str
    path_prefix: str
    status: int | None
    body: dict[str, Any] | str | None = None
    remaining: int = 1
    headers: dict[str, str] | None = None
    delay: float = 0.0
    drop: bool = False
    accept_then_drop: bool = False

    def matches(self, method: str, path: str) -> bool:
        """True when this injection applies to a request."""
        return self.remaining > 0 and self.method in ("*", method) and path.startswith(self.path_prefix)


@dataclass
class FakeTask:
    """A task the fake created (what the submission asked for and how it will behave)."""

    id: str
    model: str
    prompt: str
    n: int
    size: str
    plan: TaskPlan
    created: float  # fake.clock() at submission
    created_at: int  # Unix seconds, as the API reports it
    image_names: list[str]
    completed_at: int | None = None
    watermarked: bool = False  # what the provider did: as asked, else the model's documented default
    # Per image, the layer details a layered result adds (z_index, name, description, bounding_box).
    layers: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received (before any injection or auth check)."""

    method: str
    path: str
    raw_path: str
    headers: dict[str, str]


@dataclass
class _File:
    content_type: str
    data: bytes | None = None
    # Result images are made on first download: big noisy images are slow to encode.
    spec: tuple[int, int, str, bool, int] | None = None
    layer_box: tuple[int, int, int, int] | None = None  # the spec is of a transparent layer


def _error(status: int, message: str, *, kind: str, code: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "code": code}}, status=status)


def _invalid(message: str) -> web.Response:
    return _error(400, message, kind="invalid_request_error", code="invalid_parameter")


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _image_format(data: bytes) -> tuple[str | None, tuple[int, int]]:
    """The Pillow format and size read from the header, or (None, (0, 0)) for non-images."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, size = image.format, image.size
    except Exception:
        return None, (0, 0)
    # Camera "multi-picture" JPEGs are JPEG files (any JPEG decoder reads them).
    return ("JPEG" if fmt == "MPO" else fmt), size


def _reference_complaint(data: bytes) -> str | None:
    """The provider's complaint about a reference image's bytes, or None when it is valid."""
    if len(data) > MAX_UPLOAD_BYTES:
        return f"image size {len(data)} bytes exceeds the 10MB limit"
    fmt, (width, height) = _image_format(data)
    if fmt is None:
        return "could not decode the image"
    if fmt not in REFERENCE_FORMATS:
        return f"unsupported image format {fmt}: only JPEG and PNG are supported"
    if width <= MIN_REFERENCE_SIDE_EXCLUSIVE or height <= MIN_REFERENCE_SIDE_EXCLUSIVE:
        side = MIN_REFERENCE_SIDE_EXCLUSIVE
        return f"image width and height must be greater than {side}px, got {width}x{height}"
    if width > MAX_REFERENCE_ASPECT * height or height > MAX_REFERENCE_ASPECT * width:
        return f"image aspect ratio must be between 1:3 and 3:1, got {width}x{height}"
    if width * height > MAX_REFERENCE_PIXELS:
        return f"image must not exceed 6000x6000 ({MAX_REFERENCE_PIXELS} pixels), got {width}x{height}"
    return None


@dataclass
class ProviderBucket:
    """One of the account's token buckets, as the provider documents it (§6): `per_second` refill,
    at most `burst`. A refused request costs nothing; any request let through costs a token."""

    category: str  # what X-RateLimit-Category says: async_submit | async_query
    per_second: float
    burst: float
    tokens: float = -1.0  # starts full
    updated: float | None = None

    def admit(self, now: float) -> dict[str, str] | None:
        """Take a token and return None, or return the 429's headers (taking nothing)."""
        if self.updated is None or self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.per_second)
        self.updated = max(now, self.updated)
        if self.tokens >= 1.0 - 1e-9:  # (clock arithmetic rounds)
            self.tokens = max(0.0, self.tokens - 1.0)
            return None
        wait = (1.0 - self.tokens) / self.per_second
        full = (self.burst - self.tokens) / self.per_second
        return {
            "Retry-After": str(max(1, int(-(-wait // 1)))),
            "X-RateLimit-Limit": str(int(self.burst)),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time() + full) + 1),
            "X-RateLimit-Category": self.category,
        }


@dataclass
class ProviderRateLimits:
    """The account's two buckets (default group unless given): submissions and status queries."""

    submit: ProviderBucket = field(default_factory=lambda: ProviderBucket("async_submit", 5, 50))
    query: ProviderBucket = field(default_factory=lambda: ProviderBucket("async_query", 50, 500))

    @classmethod
    def group(cls, submit: tuple[float, float], query: tuple[float, float]) -> ProviderRateLimits:
        """Buckets of other sizes: (per second, burst) each."""
        return cls(ProviderBucket("async_submit", *submit), ProviderBucket("async_query", *query))


class FakeToAPIs:
    """A fake ToAPIs server on loopback. Attributes tests read or set:

    * ``plan`` / ``plans``: the :class:`TaskPlan` for new tasks (``plans`` is a queue used first).
    * ``models``: accepted model ids (a set; add to it).
    * ``submissions``: bodies of submissions that created a task.
    * ``submit_attempts``: every POST to the generations endpoint, injected or not.
    * ``polls``: GETs per task id (only those answered normally).
    * ``uploads``: dicts with ``filename``, ``content_type``, ``size``, ``bytes``, ``purpose``.
    * ``downloads``: every GET under ``/files/``, injected or not.
    * ``requests``: every request as a :class:`RecordedRequest` (method, path, headers).
    * ``tasks``: created tasks by id; ``clock``: the time source for ``advance="time"``.
    * ``slow_chunk_bytes`` / ``slow_chunk_delay``: how ``/files/slow/`` trickles.
    * ``upload_url_query``: a query string added to the URLs uploads get (signed links are long).
    * ``rate_limits``: the account's buckets, enforced on submissions and status queries as
      documented (429 with ``Retry-After`` and ``X-RateLimit-*``; ``None`` turns them off);
      ``rate_limited`` counts the 429s they answered, by category.
    * ``poll_times``: when each task was queried (fake clock), for checking polling advice;
      ``queries_sooner_than(seconds)`` counts the queries closer than that to the previous one
      of their task (or to its creation).
    * ``hold_submission_answers()`` / ``release_submission_answers()``: submissions create their
      task (and are charged) at once but are answered only once released, like a busy service
      whose answer takes a while; ``answers_held`` counts those waiting.

    Note: aiohttp's client re-sends an idempotent request (GET) once by itself when the
    connection drops, so one client-level GET attempt may consume two ``drop`` injections.
    """

    def __init__(self, *, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self.plan = TaskPlan()
        self.plans: list[TaskPlan] = []
        self.models: set[str] = set(DEFAULT_MODELS)
        self.submissions: list[dict[str, Any]] = []
        self.submit_attempts = 0
        self.polls: dict[str, int] = {}
        self.uploads: list[dict[str, Any]] = []
        self.downloads = 0
        self.requests: list[RecordedRequest] = []
        self.tasks: dict[str, FakeTask] = {}
        self.injections: list[Injection] = []
        self.files: dict[str, _File] = {}
        self.clock: Callable[[], float] = time.monotonic
        self.slow_chunk_bytes = 1024
        self.slow_chunk_delay = 0.05
        self.upload_url_query = ""
        # What GET /v1/balance answers (the documented example); tests change it freely.
        self.balance: dict[str, Any] = {
            "remain_balance": 10.5,
            "used_balance": 2.3,
            "remain_credits": 2100,
            "used_credits": 460,
            "credits_per_usd": 200,
            "unlimited_quota": False,
        }
        self.balance_reads = 0
        self.rate_limits: ProviderRateLimits | None = ProviderRateLimits()
        self.rate_limited: dict[str, int] = {"async_submit": 0, "async_query": 0}
        self.poll_times: dict[str, list[float]] = {}
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        # The console's webhook and the events it sends (see FakeWebhooks); not configured by default.
        self.webhooks = FakeWebhooks()
        self.webhooks.result_urls = lambda task: self.image_urls(task.id)
        self._closing = asyncio.Event()
        self._answers_open = asyncio.Event()
        self._answers_open.set()
        self.answers_held = 0

    # ----------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        if self._base_url is None:
            raise RuntimeError("FakeToAPIs is not started")
        return self._base_url

    async def start(self) -> None:
        """Start listening on a free port of 127.0.0.1."""
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_post(GENERATIONS_PATH, self._handle_submit)
        app.router.add_get(GENERATIONS_PATH + "/{task_id}", self._handle_get_task)
        app.router.add_post(UPLOADS_PATH, self._handle_upload)
        app.router.add_get(BALANCE_PATH, self._handle_balance)
        app.router.add_get("/files/stream/{name}", self._handle_file_stream)
        app.router.add_get("/files/slow/{name}", self._handle_file_slow)
        app.router.add_get("/files/{name}", self._handle_file)
        # Cancel handlers whose client went away, and do not wait long for stragglers on close.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._base_url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        """Stop the server; pending injected delays end at once."""
        self._closing.set()
        await self.webhooks.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeToAPIs:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- test helpers

    def url(self, path: str) -> str:
        """An absolute URL on this server."""
        return self.base_url + path

    def inject(
        self,
        method: str,
        path_prefix: str,
        status: int | None,
        body: dict[str, Any] | str | None = None,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        drop: bool = False,
        accept_then_drop: bool = False,
    ) -> Injection:
        """Answer the next ``times`` matching requests with ``status``/``body`` instead.

        ``method`` may be ``"*"``. ``drop`` closes the connection (after reading the request)
        without answering; ``delay`` waits first. ``status=None`` handles the request normally
        (after ``delay``). ``accept_then_drop`` handles it normally — a submission creates its
        task and is counted in ``submissions`` — then drops the connection instead of answering.
        Injected answers never reach the real handlers and need no key.
        """
        injection = Injection(
            method=method.upper(),
            path_prefix=path_prefix,
            status=status,
            body=body,
            remaining=times,
            headers=headers,
            delay=delay,
            drop=drop,
            accept_then_drop=accept_then_drop,
        )
        self.injections.append(injection)
        return injection

    def hold_submission_answers(self) -> None:
        """From now on a valid submission creates its task but waits for the release to answer."""
        self._answers_open.clear()

    def release_submission_answers(self) -> None:
        """Answer every held submission (and the following ones at once)."""
        self._answers_open.set()

    def add_file(self, name: str, data: bytes, content_type: str = "image/jpeg") -> str:
        """Serve ``data`` at ``/files/{name}`` (and the stream/slow variants); return its URL."""
        self.files[name] = _File(content_type=content_type, data=data)
        return self.url(f"/files/{name}")

    def stream_url(self, name: str) -> str:
        """URL serving file ``name`` chunked, without Content-Length."""
        return self.url(f"/files/stream/{name}")

    def slow_url(self, name: str) -> str:
        """URL trickling file ``name`` (``slow_chunk_bytes`` every ``slow_chunk_delay`` s)."""
        return self.url(f"/files/slow/{name}")

    def image_urls(self, task_id: str) -> list[str]:
        """The result image URLs of a task (valid whatever its state)."""
        return [self.url(f"/files/{name}") for name in self.tasks[task_id].image_names]

    def queries_sooner_than(self, seconds: float) -> int:
        """Status queries closer than `seconds` to their task's previous query (or its creation)."""
        sooner = 0
        for task_id, times in self.poll_times.items():
            task = self.tasks.get(task_id)
            previous = task.created if task is not None else None
            for at in times:
                sooner += previous is not None and at - previous < seconds
                previous = at
        return sooner

    @property
    def download_requests(self) -> list[RecordedRequest]:
        """The recorded requests to the file host."""
        return [r for r in self.requests if r.path.startswith("/files/")]

    # ----------------------------------------------------------------- plumbing

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        path = request.path
        self.requests.append(RecordedRequest(request.method, path, request.raw_path, dict(request.headers)))
        if request.method == "POST" and path == GENERATIONS_PATH:
            self.submit_attempts += 1
        if path.startswith("/files/"):
            self.downloads += 1

        injection = next((i for i in self.injections if i.matches(request.method, path)), None)
        if injection is not None:
            injection.remaining -= 1
            if injection.remaining <= 0:
                self.injections.remove(injection)
            return await self._apply(request, injection, handler)
        return await self._authorised(request, handler)

    async def _authorised(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # The file host is a third party: it needs no key; the balance endpoint checks its own.
        needs_key = not request.path.startswith("/files/") and request.path != BALANCE_PATH
        if needs_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(
                401, "Invalid API key provided", kind="authentication_error", code="invalid_api_key"
            )
        refused = self._rate_limit(request)
        if refused is not None:
            return refused
        return await handler(request)

    def _rate_limit(self, request: web.Request) -> web.Response | None:
        """The account's buckets: a 429 (costing nothing) when the request's bucket is empty."""
        if self.rate_limits is None or not request.path.startswith(GENERATIONS_PATH):
            return None
        submitting = request.method == "POST" and request.path == GENERATIONS_PATH
        querying = request.method == "GET" and request.path != GENERATIONS_PATH
        if not (submitting or querying):
            return None
        bucket = self.rate_limits.submit if submitting else self.rate_limits.query
        headers = bucket.admit(self.clock())
        if headers is None:
            return None
        self.rate_limited[bucket.category] += 1
        return web.json_response(
            {
                "error": {
                    "message": "Rate limit exceeded",
                    "type": "rate_limit_error",
                    "code": "rate_limit_exceeded",
                }
            },
            status=429,
            headers=headers,
        )

    async def _apply(
        self,
        request: web.Request,
        injection: Injection,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        # "after reading the request"; a request handled normally is left for its handler to read
        # (a multipart upload cannot be read twice).
        if not injection.accept_then_drop and (injection.status is not None or injection.drop):
            await request.read()
        if injection.delay > 0 and await self._pause(injection.delay):
            return self._drop(request)
        if injection.accept_then_drop:
            response = await self._authorised(request, handler)
            # Only a request the handler accepted is dropped; a refusal is answered normally.
            return self._drop(request) if response.status < 300 else response
        if injection.drop:
            return self._drop(request)
        if injection.status is None:
            return await self._authorised(request, handler)
        headers = dict(injection.headers or {})
        if isinstance(injection.body, dict):
            return web.json_response(injection.body, status=injection.status, headers=headers)
        if isinstance(injection.body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return web.Response(text=injection.body, status=injection.status, headers=headers)
        return web.Response(status=injection.status, headers=headers)

    async def _pause(self, seconds: float) -> bool:
        """Sleep, ending early when the fake closes; True when it is closing."""
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return False
        return True

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        # Closing the transport makes the client see "server disconnected" with no answer;
        # the response returned here is never written.
        if request.transport is not None:
            request.transport.close()
        return web.Response()

    # ----------------------------------------------------------------- generations

    def _validate(self, body: object) -> str | None:
        """The provider's complaint about a submission body, or None when it is valid."""
        if not isinstance(body, dict):
            return "Request body must be a JSON object"
        model = body.get("model")
        if model not in self.models:
            return f"Invalid model: {model!r}"
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return "prompt is required"
        n = body.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, int):
            return "n must be an integer"
        if not 1 <= n <= MAX_IMAGES:
            return f"n must be between 1 and {MAX_IMAGES}"
        image_urls = body.get("image_urls", [])
        if not isinstance(image_urls, list):
            return "image_urls must be a list of http(s) URLs"
        for index, url in enumerate(image_urls):
            if isinstance(url, str) and url.strip().lower().startswith("data:"):
                return f"image_urls[{index}]: base64/data URLs are not supported, use a public http(s) URL"
            if not _is_http_url(url):
                return f"image_urls[{index}]: must be a public http(s) URL"
        if len(image_urls) > MAX_REFERENCE_IMAGES:
            return f"At most {MAX_REFERENCE_IMAGES} reference images are allowed"
        if len(image_urls) + n > MAX_IMAGES:
            return f"Reference images plus generated images must not exceed {MAX_IMAGES}"
        size = body.get("size", "1:1")
        if size == "auto":
            if not image_urls:
                return "size 'auto' requires image_urls"
        elif size not in SIZES:
            return f"Invalid size: {size!r}"
        metadata = body.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, dict):
                return "metadata must be an object"
            if "resolution" in metadata and metadata["resolution"] not in RESOLUTIONS:
                return f"Invalid resolution: {metadata['resolution']!r}"
            if "watermark" in metadata and not isinstance(metadata["watermark"], bool):
                return "metadata.watermark must be a boolean"
            if "optimize_prompt_options" in metadata:
                options = metadata["optimize_prompt_options"]
                if not isinstance(options, dict) or options.get("mode") not in OPTIMIZE_MODES:
                    return "metadata.optimize_prompt_options.mode must be 'standard' or 'fast'"
        layered = body.get("layer_decomposition", False)
        if not isinstance(layered, bool):
            return "layer_decomposition must be a boolean"
        if layered and model not in LAYERED_MODELS:
            return f"layer_decomposition is not supported by {model}"
        return self._validate_for_model(model, n, metadata or {})

    @staticmethod
    def _validate_for_model(model: str, n: int, metadata: dict[str, Any]) -> str | None:
        """The complaints that depend on the model (see `MODEL_RULES`)."""
        rules = MODEL_RULES.get(model)
        if rules is None:
            return None
        if n > rules["max_n"]:
            return f"n must be between 1 and {rules['max_n']} for {model}"
        if "resolution" in metadata and metadata["resolution"] not in rules["resolutions"]:
            offered = ", ".join(rules["resolutions"])
            return f"Invalid resolution {metadata['resolution']!r} for {model} (supported: {offered})"
        if "optimize_prompt_options" in metadata and not rules["modes"]:
            return f"optimize_prompt_options is not supported by {model}"
        return None

    def _hosted_name(self, url: str) -> str | None:
        """The stored file name when ``url`` points at this fake's file host, else None."""
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}".lower() != self.base_url.lower():
            return None
        for route in _FILE_ROUTES:
            if parts.path.startswith(route):
                return unquote(parts.path.removeprefix(route))
        return None

    async def _check_reference_files(self, image_urls: list[str]) -> str | None:
        """Check the bytes behind every ``image_urls`` entry this fake hosts."""
        for index, url in enumerate(image_urls):
            name = self._hosted_name(url)
            if name is None:
                continue  # another host: the fake cannot know, accept it
            found = await self._file_bytes(name)
            if found is None:
                return f"image_urls[{index}]: failed to download the image (HTTP 404)"
            complaint = _reference_complaint(found[0])
            if complaint is not None:
                return f"image_urls[{index}]: {complaint}"
        return None

    async def _handle_submit(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _invalid("Request body must be JSON")
        complaint = self._validate(body)
        if complaint is None:
            complaint = await self._check_reference_files(body.get("image_urls", []))
        if complaint is not None:
            return _invalid(complaint)
        refused = self.webhooks.refusal(body)
        if refused is not None:
            return refused

        plan = self.plans.pop(0) if self.plans else self.plan
        n = body.get("n", 1)
        task_id = plan.task_id or "task_img_" + secrets.token_hex(6)
        count = n if plan.image_count is None else plan.image_count
        if plan.result_shape == "url":
            count = min(count, 1)
        ext = _EXTENSIONS[plan.image_format]
        names = [f"{task_id}_{i}.{ext}" for i in range(count)]
        for i, name in enumerate(names):
            width, height = plan.image_size
            self.files[name] = _File(
                content_type=_MIME_TYPES[plan.image_format],
                spec=(width, height, plan.image_format, plan.noisy, i),
            )
        layers = self._add_layers(task_id, names, plan) if body.get("layer_decomposition") and names else None
        task = FakeTask(
            id=task_id,
            model=body["model"],
            prompt=body["prompt"],
            n=n,
            size=body.get("size", "1:1"),
            plan=plan,
            created=self.clock(),
            created_at=int(time.time()),
            image_names=names,
            watermarked=body.get("metadata", {}).get(
                "watermark", MODEL_RULES.get(body["model"], {}).get("watermark", False)
            ),
            layers=layers,
        )
        self.tasks[task_id] = task
        self.polls[task_id] = 0
        self.submissions.append(body)
        self.webhooks.submitted(task, body.get("callback_url"))
        if not self._answers_open.is_set():
            # The task exists and is charged: a client that stops waiting never learns its id.
            self.answers_held += 1
            try:
                released = asyncio.ensure_future(self._answers_open.wait())
                closing = asyncio.ensure_future(self._closing.wait())
                try:
                    await asyncio.wait({released, closing}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    released.cancel()
                    closing.cancel()
            finally:
                self.answers_held -= 1
        return web.json_response(self._task_body(task, 0))

    async def _handle_balance(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            # The balance endpoint's own error shape, unlike the other endpoints'.
            return web.json_response({"success": False, "message": "invalid token"}, status=401)
        self.balance_reads += 1
        return web.json_response({"success": True, **self.balance})

    def _add_layers(self, task_id: str, names: list[str], plan: TaskPlan) -> list[dict[str, Any]]:
        """Make the result layered, as documented: the base image (z_index 0) then transparent PNG
        layers, each with a name, a description and a bounding box. Listed out of z order on purpose."""
        width, height = plan.image_size
        del names[1:]
        details: list[dict[str, Any]] = [{"z_index": 0}]
        for z in range(1, plan.layer_count + 1):
            name = f"{task_id}_layer{z}.png"
            box = (z % max(1, width // 2), z % max(1, height // 2), max(1, width // 2), max(1, height // 2))
            self.files[name] = _File(
                content_type="image/png", spec=(width, height, "PNG", plan.noisy, z), layer_box=box
            )
            names.append(name)
            details.append(
                {
                    "z_index": z,
                    "name": f"Layer {z}",
                    "description": f"Part {z} of the picture",
                    "bounding_box": list(box),
                }
            )
        # The base image last, then the layers from the top: the bot must order by z_index.
        order = [*range(len(names) - 1, 0, -1), 0]
        names[:] = [names[i] for i in order]
        return [details[i] for i in order]

    async def _handle_get_task(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["task_id"]
        task = self.tasks.get(task_id)
        if task is None:
            return _error(404, f"Task not found: {task_id}", kind="not_found_error", code="task_not_found")
        self.polls[task_id] += 1
        self.poll_times.setdefault(task_id, []).append(self.clock())
        if task.plan.advance == "poll":
            index = self.polls[task_id]
        else:
            index = int((self.clock() - task.created) / task.plan.step_seconds)
        body = self._task_body(task, index)
        if body.get("status") in ("completed", "failed"):
            self.webhooks.seen_final(task)
        return web.json_response(body)

    def _task_body(self, task: FakeTask, index: int) -> dict[str, Any]:
        plan = task.plan
        if plan.never_finish:
            index = min(index, len(plan.steps) - 1)
        body: dict[str, Any] = {
            "id": task.id,
            "object": "generation.task",
            "model": task.model,
            "created_at": task.created_at,
            "metadata": {},
        }
        if index < 0 or (plan.never_finish and not plan.steps):
            body.update(status="queued", progress=0)
            return body
        if index < len(plan.steps):
            status, progress = plan.steps[index]
            body["status"] = status
            if progress is not None:
                body["progress"] = progress
            return body
        if plan.outcome == "failed":
            last = next((p for _, p in reversed(plan.steps) if p is not None), 0)
            body.update(status="failed", progress=last)
            error: dict[str, Any] = {"message": plan.failure_message}
            if plan.failure_code is not None:
                error["code"] = plan.failure_code
            body["error"] = error
            return body

        if task.completed_at is None:
            # When it finished: by its timeline for a task that advances with time, else now.
            finished_ago = 0.0
            if plan.advance == "time":
                finished_ago = max(0.0, self.clock() - (task.created + len(plan.steps) * plan.step_seconds))
            task.completed_at = int(time.time() - finished_ago)
        urls = [self.url(f"/files/{name}") for name in task.image_names]
        body.update(
            status="completed",
            progress=100,
            completed_at=task.completed_at,
            expires_at=task.completed_at + 24 * 3600,
        )
        if urls:
            body["url"] = urls[0]
        if plan.result_shape == "data":
            extras = task.layers or [{} for _ in urls]
            body["result"] = {
                "type": "image",
                "data": [{"url": u, **x} for u, x in zip(urls, extras, strict=True)],
            }
        elif plan.result_shape == "images":
            body["result"] = {"type": "image", "images": [{"url": u} for u in urls]}
        elif plan.result_shape == "images_nested":
            # Lists of up to two URLs per entry: exercises both "several entries" and "list url".
            body["result"] = {
                "type": "image",
                "images": [{"url": urls[i : i + 2]} for i in range(0, len(urls), 2)],
            }
        return body

    # ----------------------------------------------------------------- uploads

    async def _handle_upload(self, request: web.Request) -> web.StreamResponse:
        try:
            form = await request.post()
        except ValueError:
            return web.json_response({"success": False, "message": "Bad Request"}, status=400)
        part = form.get("file")
        if not isinstance(part, web.FileField):
            return web.json_response(
                {"success": False, "message": "Bad Request: file is required"}, status=400
            )
        data = part.file.read()
        if len(data) > MAX_UPLOAD_BYTES:
            return web.json_response({"success": False, "message": "File Too Large"}, status=400)
        fmt, _ = _image_format(data)
        if fmt not in _MIME_TYPES:
            return web.json_response(
                {"success": False, "message": "Unsupported file type: use JPEG, PNG, WebP or GIF"}, status=400
            )
        purpose = form.get("purpose", "generation")
        self.uploads.append(
            {
                "filename": part.filename,
                "content_type": part.content_type,
                "size": len(data),
                "bytes": data,
                "purpose": purpose if isinstance(purpose, str) else None,
            }
        )
        upload_id = "upload_" + secrets.token_hex(4)
        name = f"{upload_id}.{_EXTENSIONS[fmt]}"
        self.files[name] = _File(content_type=_MIME_TYPES[fmt], data=data)
        return web.json_response(
            {
                "success": True,
                "message": "",
                "data": {
                    "id": upload_id,
                    "url": self.url(f"/files/{name}")
                    + (f"?{self.upload_url_query}" if self.upload_url_query else ""),
                    "mime_type": _MIME_TYPES[fmt],
                    "size": len(data),
                },
            }
        )

    # ----------------------------------------------------------------- file host

    async def _file_bytes(self, name: str) -> tuple[bytes, str] | None:
        entry = self.files.get(name)
        if entry is None:
            return None
        if entry.data is None and entry.spec is not None:
            # Off the event loop: a big noisy image takes a while to encode.
            if entry.layer_box is not None:
                width, height, _, noisy, seed = entry.spec
                entry.data = await asyncio.to_thread(make_layer, width, height, entry.layer_box, noisy, seed)
            else:
                entry.data = await asyncio.to_thread(make_image, *entry.spec)
        return entry.data or b"", entry.content_type

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        found = await self._file_bytes(request.match_info["name"])
        if found is None:
            return web.Response(status=404, text="Not Found")
        data, content_type = found
        return web.Response(body=data, content_type=content_type)

    async def _handle_file_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, chunk=64 * 1024, delay=0.0)

    async def _handle_file_slow(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, chunk=self.slow_chunk_bytes, delay=self.slow_chunk_delay)

    async def _stream(self, request: web.Request, *, chunk: int, delay: float) -> web.StreamResponse:
        found = await self._file_bytes(request.match_info["name"])
        if found is None:
            return web.Response(status=404, text="Not Found")
        data, content_type = found
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.enable_chunked_encoding()  # no Content-Length: the client must count
        await response.prepare(request)
        for start in range(0, len(data), chunk):
            if delay > 0 and await self._pause(delay):
                break
            await response.write(data[start : start + chunk])
        await response.write_eof()
        return response


# ----------------------------------------------------------------- webhooks

WEBHOOK_RETRY_DELAYS = (10.0, 30.0, 120.0, 600.0, 3600.0, 6 * 3600.0, 24 * 3600.0)
WEBHOOK_TIMEOUT = 10.0


@dataclass(frozen=True)
class WebhookAttempt:
    """One delivery attempt of an event: the HTTP status it got (None: no answer)."""

    event_id: str
    event_type: str
    task_id: str | None
    attempt: int  # 1 for the first delivery, 2 for the first retry, …
    status: int | None


def _webhook_key(secret: str, form: Literal["bytes", "text"]) -> bytes:
    """The HMAC key for a console secret: its 32 decoded bytes, or the text as shown."""
    if form == "text":
        return secret.encode()
    text = secret.removeprefix("whsec_")
    if len(text) == 64:
        return bytes.fromhex(text)
    return base64.b64decode(
        text + "=" * (-len(text) % 4), altchars=b"-_" if "-" in text or "_" in text else None
    )


class FakeWebhooks:
    """The provider's webhook side, as documented (`docs/toapis-api.md` §3).

    The console's configuration for the key: ``callback_url`` (None: no webhook configured, so a
    submission sending ``callback_url`` is refused ``400 webhook_not_configured``; one whose
    scheme, host or port differ from it is refused too), ``secret`` (the 32-byte secret as the
    console shows it, 64 hex characters) and, for a day after a rotation, ``previous_secret``
    (both signatures are then sent). ``key_form`` says which HMAC key the fake uses: the decoded
    bytes (default) or the text as shown.

    When a task ends (a ``"time"`` plan at its finish, a ``"poll"`` plan when a query first sees
    it final) one event is sent to the task's callback URL ``delay`` seconds later — the
    submission's ``callback_url``, else the console's. ``deliver_to`` stands for the operator's
    reverse proxy: the base URL (e.g. ``http://127.0.0.1:PORT``) the public HTTPS address is
    forwarded to, path and query kept. ``duplicate(task)`` says an event is sent twice,
    ``lose(task)`` that it is never sent. Only a 2xx counts; no redirect is followed; each
    attempt times out after 10 s; failed ones are retried after ``WEBHOOK_RETRY_DELAYS`` ×
    ``retry_scale`` seconds. ``attempts`` records each attempt, ``events`` each event sent.
    """

    def __init__(self) -> None:
        self.callback_url: str | None = None
        self.secret: str = secrets.token_hex(32)
        self.previous_secret: str | None = None
        self.key_form: Literal["bytes", "text"] = "bytes"
        self.deliver_to: str | None = None
        self.delay: float = 0.1
        self.duplicate: Callable[[FakeTask], bool] = lambda task: False
        self.lose: Callable[[FakeTask], bool] = lambda task: False
        self.retry_scale = 1.0
        self.timeout = WEBHOOK_TIMEOUT
        self.attempts: list[WebhookAttempt] = []
        self.events: list[dict[str, Any]] = []
        self._task_urls: dict[str, str] = {}
        self._ended: set[str] = set()
        self._sending: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.result_urls: Callable[[FakeTask], list[str]] | None = None  # set by FakeToAPIs

    def configure(self, callback_url: str, *, deliver_to: str, secret: str | None = None) -> None:
        """Set the console's webhook (and where the reverse proxy forwards it)."""
        self.callback_url = callback_url
        self.deliver_to = deliver_to
        if secret is not None:
            self.secret = secret

    def rotate(self) -> str:
        """Rotate the console's secret (the old one still signs for a day); return the new one."""
        self.previous_secret, self.secret = self.secret, secrets.token_hex(32)
        return self.secret

    # -------------------------------------------------------- the submission side

    def refusal(self, body: dict[str, Any]) -> web.Response | None:
        """The provider's answer to a submission's ``callback_url`` it does not take, else None."""
        url = body.get("callback_url")
        if url is None:
            return None
        if self.callback_url is None:
            return _error(
                400,
                "callback_url was given but no webhook is configured for this API key",
                kind="invalid_request_error",
                code="webhook_not_configured",
            )
        given, default = urlsplit(str(url)), urlsplit(self.callback_url)
        if (given.scheme, given.hostname, given.port) != (default.scheme, default.hostname, default.port):
            return _invalid("callback_url must keep the configured webhook's scheme, host and port")
        return None

    def submitted(self, task: FakeTask, callback_url: str | None) -> None:
        """A task was created: remember where its event goes; a time-plan task ends on its own."""
        url = callback_url or self.callback_url
        if url is None:
            return
        self._task_urls[task.id] = url
        plan = task.plan
        if plan.advance == "time" and not plan.never_finish:
            self._spawn(self._end_later(task, len(plan.steps) * plan.step_seconds))

    def seen_final(self, task: FakeTask) -> None:
        """A status query showed the task final: a poll-plan task ends now."""
        if task.plan.advance == "poll":
            self._end(task)

    async def _end_later(self, task: FakeTask, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._end(task)

    def _end(self, task: FakeTask) -> None:
        if task.id in self._ended or task.id not in self._task_urls:
            return
        self._ended.add(task.id)
        if self.lose(task):
            return
        self._spawn(self._deliver_event(task, twice=self.duplicate(task)))

    # -------------------------------------------------------- events

    def event_for(self, task: FakeTask, urls: list[str]) -> dict[str, Any]:
        """The documented event body for a task that ended as its plan says."""
        failed = task.plan.outcome == "failed"
        now = int(time.time())
        data: dict[str, Any] = {
            "task_id": task.id,
            "task_type": "image",
            "model": task.model,
            "status": "FAILURE" if failed else "SUCCESS",
            "progress": "100%",
            "result": None if failed else {"type": "image", "data": [{"url": u} for u in urls]},
            "error": {"code": task.plan.failure_code, "message": task.plan.failure_message}
            if failed
            else None,
            "submitted_at": task.created_at,
            "finished_at": now,
        }
        return {
            "id": "evt_" + secrets.token_hex(8),
            "type": "generation.failed" if failed else "generation.completed",
            "api_version": "v1",
            "created_at": now,
            "data": data,
        }

    def test_event(self) -> dict[str, Any]:
        """The console's test event."""
        now = int(time.time())
        return {
            "id": "evt_" + secrets.token_hex(8),
            "type": "endpoint.test",
            "api_version": "v1",
            "created_at": now,
            "data": {},
        }

    def signature(
        self, event_id: str, timestamp: str, body: bytes, secrets_: Sequence[str] | None = None
    ) -> str:
        """The signature header: one ``v1=`` per secret in force (two after a rotation)."""
        chosen = secrets_ if secrets_ is not None else [s for s in (self.secret, self.previous_secret) if s]
        signed = event_id.encode() + b"." + timestamp.encode() + b"." + body
        return ",".join(
            "v1=" + hmac.new(_webhook_key(s, self.key_form), signed, hashlib.sha256).hexdigest()
            for s in chosen
        )

    def delivery_url(self, callback_url: str | None = None) -> str:
        """Where a POST to ``callback_url`` (default: the console's) lands, through the proxy."""
        url = callback_url or self.callback_url
        if url is None or self.deliver_to is None:
            raise RuntimeError("configure() the webhook first")
        parts = urlsplit(url)
        return self.deliver_to.rstrip("/") + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    async def post(
        self,
        event: dict[str, Any],
        *,
        url: str | None = None,
        body: bytes | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
        secrets_: Sequence[str] | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any] | None]:
        """One signed POST of ``event`` (tests may spoil any part); returns the status and JSON answer."""
        raw = body if body is not None else json.dumps(event).encode()
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        sent_headers = {
            "Content-Type": content_type,
            "X-ToAPIs-Webhook-Id": event["id"],
            "X-ToAPIs-Webhook-Timestamp": stamp,
            "X-ToAPIs-Webhook-Signature": signature or self.signature(event["id"], stamp, raw, secrets_),
            "User-Agent": "ToAPIs-Webhooks/1.0",
            **(headers or {}),
        }
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        async with self._session.post(
            self.delivery_url(url),
            data=raw,
            headers=sent_headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        ) as response:
            answer = await response.read()
            try:
                parsed = json.loads(answer) if answer else None
            except ValueError:
                parsed = None
            return response.status, parsed if isinstance(parsed, dict) else None

    async def send(self, event: dict[str, Any], *, url: str | None = None) -> None:
        """Deliver ``event`` as the provider does: retried on anything but a 2xx."""
        task_id = (event.get("data") or {}).get("task_id")
        for attempt in range(1, len(WEBHOOK_RETRY_DELAYS) + 2):
            try:
                status: int | None = (await self.post(event, url=url))[0]
            except (aiohttp.ClientError, TimeoutError):
                status = None
            self.attempts.append(WebhookAttempt(event["id"], event["type"], task_id, attempt, status))
            if status is not None and 200 <= status < 300:
                return
            if attempt > len(WEBHOOK_RETRY_DELAYS):
                return
            await asyncio.sleep(WEBHOOK_RETRY_DELAYS[attempt - 1] * self.retry_scale)

    async def send_test(self) -> None:
        """The console's "send test event" button."""
        await self.send(self.test_event())

    async def _deliver_event(self, task: FakeTask, *, twice: bool) -> None:
        await asyncio.sleep(self.delay)
        event = self.event_for(task, self._urls(task))
        self.events.append(event)
        url = self._task_urls[task.id]
        await self.send(event, url=url)
        if twice:
            await self.send(event, url=url)  # at least once: the same event id again

    def _urls(self, task: FakeTask) -> list[str]:
        return self.result_urls(task) if self.result_urls is not None else []

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def idle(self) -> None:
        """Wait until every delivery under way (retries included) is over."""
        while self._sending:
            await asyncio.wait(set(self._sending))

    async def close(self) -> None:
        for task in list(self._sending):
            task.cancel()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
