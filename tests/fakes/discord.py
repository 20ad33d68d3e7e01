"""A fake Discord (REST under ``/api/v10`` + gateway websocket) that the REAL discord.py talks to.

The test rig starts :class:`FakeDiscord` on 127.0.0.1, points discord.py at it
(``discord.http.Route.BASE = fake.api_base``; an ``AutoShardedBot`` finds the gateway
through ``GET /gateway/bot``) and then pushes interactions over the gateway and asserts on
what the bot sent back::

    async with FakeDiscord() as fake, fake.run_client(bot):
        record = await fake.send_interaction(fake.slash_command("imagine", {"prompt": "a cat"}))
        message = await fake.wait_for(lambda f: record.original)
        fake.assert_clean()

Every request body is checked against Discord's OpenAPI description plus the limits it
does not encode (:mod:`tests.fakes.discord_spec`); a request Discord would refuse is
answered the way Discord answers it (400 ``Invalid Form Body`` / 413) and listed in
:attr:`FakeDiscord.violations`.

Not modelled: guild/role/member management, DMs created through ``/users/@me/channels``,
threads, reactions beyond a record, MESSAGE_CREATE echoes of the bot's own messages over
the gateway, ETF encoding, zstd-stream without the ``zstandard`` module, real rate limits
(the :class:`RateLimitPolicy` hook is where they go).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import io
import json
import logging
import math
import mimetypes
import re
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from aiohttp import WSMsgType, web

from . import discord_spec

__all__ = [
    "DEFAULT_APP_PERMISSIONS",
    "DEFAULT_MEMBER_PERMISSIONS",
    "FakeAttachment",
    "FakeDiscord",
    "FakeMessage",
    "GatewaySession",
    "Injection",
    "InteractionRecord",
    "RateLimitPolicy",
    "RecordedRequest",
    "UploadedFile",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

DISCORD_EPOCH_MS = 1420070400000
API_PREFIX = "/api/v10"
JSON_TYPE = "application/json"
EPHEMERAL = 1 << 6
LOADING = 1 << 7

# Permission bits (Discord's documented values).
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
ADD_REACTIONS = 1 << 6
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
MANAGE_MESSAGES = 1 << 13  # not in the defaults: moderators only
DEFAULT_MEMBER_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
)
DEFAULT_APP_PERMISSIONS = DEFAULT_MEMBER_PERMISSIONS | SEND_MESSAGES_IN_THREADS

_MENTION_USER = re.compile(r"<@!?(\d+)>")
_MENTION_ROLE = re.compile(r"<@&(\d+)>")
_FILE_PART = re.compile(r"^files\[(\d+)\]$")
_TRUE = {"1", "true", "True"}


def _iso(ms_since_unix: float) -> str:
    return datetime.fromtimestamp(ms_since_unix / 1000, UTC).isoformat()


def _snowflake_time(snowflake: int) -> str:
    return _iso((snowflake >> 22) + DISCORD_EPOCH_MS)


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    """Width/height like Discord reports for images (None for anything else)."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return img.width, img.height
    except Exception:  # not an image, or Pillow missing: Discord omits the size too
        return None, None


# --------------------------------------------------------------------------- records


class UploadedFile(NamedTuple):
    """One ``files[n]`` part of a multipart request."""

    filename: str
    data: bytes
    content_type: str | None


@dataclass
class RecordedRequest:
    """A request the fake received (REST only; CDN downloads go to ``cdn_requests``)."""

    method: str
    path: str  # below /api/v10, e.g. /webhooks/1/tok/messages/@original
    route: str | None  # template, e.g. /webhooks/{webhook_id}/{webhook_token}/messages/@original
    query: dict[str, str]
    json: Any  # JSON body, or the parsed payload_json part of a multipart body
    files: list[UploadedFile]
    file_fields: list[str]
    at: float  # time.monotonic() when received
    auth: str  # "bot" (valid bot token), "invalid" (wrong token) or "none"
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    response: Any = None
    violations: list[str] = field(default_factory=list)
    injected: bool = False
    fault: str | None = None  # "drop" or "hang": how an injection left it unanswered

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


@dataclass(eq=False)
class FakeAttachment:
    """An uploaded (or test-provided) file, served back at :attr:`url`."""

    id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    description: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        """Byte size, as Discord reports it."""
        return len(self.data)

    def to_payload(self) -> dict[str, Any]:
        """Discord's attachment object."""
        payload: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
            "width": self.width,
            "height": self.height,
        }
        if self.description is not None:
            payload["description"] = self.description
        return payload


@dataclass(eq=False)
class FakeMessage:
    """A message as the fake stores it (updated in place by edits)."""

    id: int
    channel_id: int
    guild_id: int | None
    author: dict[str, Any]
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None  # as sent on the latest write
    message_reference: dict[str, Any] | None = None
    flags: int = 0
    type: int = 0
    tts: bool = False
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_id: int | None = None
    interaction_token: str | None = None
    interaction_metadata: dict[str, Any] | None = None
    deleted: bool = False
    created_at: float = field(default_factory=time.monotonic)
    edited_timestamp: str | None = None
    edits: list[float] = field(default_factory=list)  # monotonic time of every edit
    history: list[dict[str, Any]] = field(default_factory=list)  # body of every write
    reactions: list[str] = field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        """Only the invoking user sees it (flag 64)."""
        return bool(self.flags & EPHEMERAL)

    @property
    def component_list(self) -> list[dict[str, Any]]:
        """Every interactive component (buttons, selects) of the message, row by row, in order."""
        return [c for row in self.components for c in (row.get("components") or [row])]

    @property
    def custom_ids(self) -> list[str]:
        """The ``custom_id`` of every interactive component (what a click sends back)."""
        return [c["custom_id"] for c in self.component_list if "custom_id" in c]

    @property
    def loading(self) -> bool:
        """Still the "thinking..." placeholder of a deferred interaction (flag 128)."""
        return bool(self.flags & LOADING)

    @property
    def pings(self) -> set[str]:
        """Who the content would notify given ``allowed_mentions`` (approximation of Discord).

        Items: ``"everyone"``, ``"user:<id>"``, ``"role:<id>"``, ``"replied_user"``.
        Without ``allowed_mentions`` Discord parses every mention in the content.
        """
        am = self.allowed_mentions
        parse = {"everyone", "users", "roles"} if am is None else set(am.get("parse") or [])
        users = set() if am is None else {str(u) for u in am.get("users") or []}
        roles = set() if am is None else {str(r) for r in am.get("roles") or []}
        out: set[str] = set()
        if ("@everyone" in self.content or "@here" in self.content) and "everyone" in parse:
            out.add("everyone")
        out.update(f"user:{u}" for u in _MENTION_USER.findall(self.content) if "users" in parse or u in users)
        out.update(f"role:{r}" for r in _MENTION_ROLE.findall(self.content) if "roles" in parse or r in roles)
        if self.message_reference and (am is None or am.get("replied_user")):
            out.add("replied_user")
        return out

    def to_payload(self) -> dict[str, Any]:
        """Discord's message object, complete enough for discord.py to parse."""
        payload: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": self.author,
            "content": self.content,
            "timestamp": _snowflake_time(self.id),
            "edited_timestamp": self.edited_timestamp,
            "tts": self.tts,
            "mention_everyone": "everyone" in self.pings,
            "mentions": [],
            "mention_roles": [],
            "attachments": [a.to_payload() for a in self.attachments],
            "embeds": self.embeds,
            "pinned": False,
            "type": self.type,
            "flags": self.flags,
            "components": self.components,
        }
        if self.guild_id is not None:
            payload["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            payload["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            payload["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            payload["interaction_metadata"] = self.interaction_metadata
        if self.message_reference is not None:
            payload["message_reference"] = {
                "type": 0,
                "channel_id": str(self.channel_id),
                **self.message_reference,
            }
        return payload


@dataclass(eq=False)
class InteractionRecord:
    """An interaction pushed to the bot, and everything the bot did with it."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    created_at: float
    attachment_size_limit: int
    callback: dict[str, Any] | None = None  # body of the (first) callback
    callback_type: int | None = None
    callback_at: float | None = None
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    expired: bool = False
    _fake: FakeDiscord | None = field(default=None, repr=False)

    @property
    def acknowledged(self) -> bool:
        """The bot sent a callback."""
        return self.callback_type is not None

    @property
    def ephemeral(self) -> bool:
        """The response (or deferred placeholder) is ephemeral."""
        data = (self.callback or {}).get("data") or {}
        return bool((data.get("flags") or 0) & EPHEMERAL)

    @property
    def original(self) -> FakeMessage | None:
        """The ``@original`` response message, once there is one."""
        if self._fake is None or self.original_message_id is None:
            return None
        return self._fake.messages.get(self.original_message_id)

    @property
    def followups(self) -> list[FakeMessage]:
        """Followup messages in the order they were created."""
        if self._fake is None:
            return []
        return [self._fake.messages[i] for i in self.followup_ids]


@dataclass(eq=False)
class Injection:
    """A canned answer for the next ``times`` requests matching ``method`` + ``pattern``."""

    method: str
    pattern: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str]
    times: int
    fault: str | None = None  # "drop": close the connection unanswered; "hang": never answer
    hits: list[RecordedRequest] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        """How many more requests it will answer."""
        return self.times - len(self.hits)

    def matches(self, method: str, path: str) -> bool:
        """Method (``*`` = any) and regex search on the path, with or without ``/api/v10``."""
        if self.remaining <= 0 or self.method not in ("*", method):
            return False
        return bool(self.pattern.search(path) or self.pattern.search(API_PREFIX + path))


class RateLimitPolicy:
    """Decides rate-limit headers and 429s for every REST request, in one place.

    The default is generous (1000 requests per bucket per second) so discord.py never
    waits; a stricter policy (e.g. Discord's ~5 messages / 5 s per channel) can subclass
    this and override :meth:`limit_for`.
    """

    def __init__(self, limit: int = 1000, window: float = 1.0) -> None:
        """``limit`` requests per ``window`` seconds per bucket + major parameter."""
        self.limit = limit
        self.window = window
        self._windows: dict[str, tuple[float, int]] = {}

    def limit_for(self, request: RecordedRequest) -> tuple[int, float]:
        """``(limit, window_seconds)`` for this request's bucket (override for real limits)."""
        return self.limit, self.window

    @staticmethod
    def bucket(request: RecordedRequest) -> str:
        """A stable bucket hash per route template, like Discord's ``X-RateLimit-Bucket``."""
        key = f"{request.method} {request.route or request.path}"
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    @staticmethod
    def major(request: RecordedRequest) -> str:
        """Discord's major parameters (channel, guild, webhook) for this request."""
        p = request.params
        parts = [
            p.get(k) for k in ("channel_id", "guild_id", "webhook_id", "webhook_token", "interaction_id")
        ]
        return "+".join(x for x in parts if x)

    def decide(self, request: RecordedRequest) -> tuple[dict[str, Any] | None, dict[str, str]]:
        """Return ``(429 body or None, headers)`` and count the request in its window."""
        limit, window = self.limit_for(request)
        bucket = self.bucket(request)
        key = f"{bucket}:{self.major(request)}"
        now = request.at
        start, count = self._windows.get(key, (now, 0))
        if now - start >= window:
            start, count = now, 0
        reset_after = max(window - (now - start), 0.001)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        }
        if count >= limit:
            headers.update(
                {
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Scope": "user",
                    "Retry-After": str(math.ceil(reset_after)),
                }
            )
            body = {
                "message": "You are being rate limited.",
                "retry_after": round(reset_after, 3),
                "global": False,
            }
            return body, headers
        self._windows[key] = (start, count + 1)
        headers["X-RateLimit-Remaining"] = str(limit - count - 1)
        return None, headers


# --------------------------------------------------------------------------- gateway


class _Connection:
    """One websocket connection: owns the transport compression stream."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.compress = compress
        self.lock = asyncio.Lock()  # compress+send must not interleave (one zlib stream)
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self._zstd: Any = None
        if compress == "zstd-stream":
            import zstandard

            self._zstd = zstandard.ZstdCompressor().compressobj()
            self._zstd_flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK

    async def send(self, message: dict[str, Any]) -> None:
        raw = json.dumps(message, separators=(",", ":")).encode()
        async with self.lock:
            if self._zlib is not None:
                # discord.py buffers until the Z_SYNC_FLUSH suffix 00 00 ff ff.
                await self.ws.send_bytes(self._zlib.compress(raw) + self._zlib.flush(zlib.Z_SYNC_FLUSH))
            elif self._zstd is not None:
                await self.ws.send_bytes(self._zstd.compress(raw) + self._zstd.flush(self._zstd_flush))
            else:
                await self.ws.send_str(raw.decode())


@dataclass(eq=False)
class GatewaySession:
    """A gateway session (survives RESUME onto a new connection)."""

    session_id: str
    shard_id: int
    shard_count: int
    intents: int | None
    identify: dict[str, Any]
    seq: int = 0
    ready_at: float | None = None
    resumes: int = 0
    heartbeats: int = 0
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    presence_updates: list[dict[str, Any]] = field(default_factory=list)
    _conn: _Connection | None = field(default=None, repr=False)

    @property
    def compress(self) -> str | None:
        """Transport compression of the current connection (``zlib-stream``, ...)."""
        return self._conn.compress if self._conn is not None else None

    @property
    def connected(self) -> bool:
        """The session has an open websocket."""
        return self._conn is not None and not self._conn.ws.closed

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send an op-0 dispatch with the next sequence number."""
        if self._conn is None:
            raise AssertionError(
                f"gateway session {self.session_id} (shard {self.shard_id}) is not connected"
            )
        self.seq += 1
        self.events.append((event, data))
        await self._conn.send({"op": 0, "s": self.seq, "t": event, "d": data})


# --------------------------------------------------------------------------- the server

_Handler = Callable[[RecordedRequest], Awaitable[tuple[int, Any]]]


class FakeDiscord:
    """Discord's REST API and gateway on 127.0.0.1, driven by the real discord.py."""

    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        upload_limit: int = discord_spec.DEFAULT_UPLOAD_LIMIT,
        shard_count: int = 1,
        guild_ids: Iterable[int] = (),
        heartbeat_interval: int = 41250,
        interaction_deadline: float | None = 3.0,
        token_ttl: float = 15 * 60,
        rate_limits: RateLimitPolicy | None = None,
        bot_name: str = "FakeBot",
    ) -> None:
        """Configure the fake; nothing listens until :meth:`start`.

        ``guild_ids`` are announced in READY (as unavailable) and then sent as GUILD_CREATE;
        the first one is the default guild of built interactions.
        ``interaction_deadline`` is Discord's 3 s limit for the first callback (None: off);
        ``token_ttl`` the 15 min lifetime of interaction tokens.
        """
        self.token = token
        self.upload_limit = upload_limit
        self.shard_count = shard_count
        self.guild_ids = list(guild_ids)
        self.heartbeat_interval = heartbeat_interval
        self.interaction_deadline = interaction_deadline
        self.token_ttl = token_ttl
        self.rate_limits = rate_limits or RateLimitPolicy()
        self._last_snowflake = 0

        self.application_id = self.snowflake()
        self.bot_user_id = self.application_id  # Discord bots share the application's id
        self.owner_id = self.snowflake()
        # Default guild for built interactions: the first announced guild, else a fresh id.
        self.guild_id = self.guild_ids[0] if self.guild_ids else self.snowflake()
        self.channel_id = self.snowflake()  # default text channel
        self.user_id = self.snowflake()  # default invoking member
        self.bot_user: dict[str, Any] = {
            "id": str(self.bot_user_id),
            "username": bot_name,
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "flags": 0,
            "public_flags": 0,
            "verified": True,
            "mfa_enabled": False,
        }

        # state for assertions
        self.requests: list[RecordedRequest] = []
        self.cdn_requests: list[str] = []
        self.messages: dict[int, FakeMessage] = {}
        self.interactions: dict[str, InteractionRecord] = {}
        self.attachments: dict[int, FakeAttachment] = {}
        self.left_guilds: list[int] = []  # servers the bot left (DELETE /users/@me/guilds/{id})
        self.channels: dict[int, dict[str, Any]] = {}
        self.commands: dict[str | int, list[dict[str, Any]]] = {}  # "global" or guild id
        self.command_syncs: list[tuple[str | int, Any]] = []
        self.violations: list[str] = []
        self.injections: list[Injection] = []
        self._closing = asyncio.Event()
        self.sessions: list[GatewaySession] = []
        self.heartbeats = 0  # op 1 received on any connection

        self._interactions_by_id: dict[int, InteractionRecord] = {}
        self._command_ids: dict[tuple[str, int], int] = {}
        self._general_channels: dict[int, int] = {}
        self._cond = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._connections: set[_Connection] = set()
        self.port = 0
        self._routes: list[tuple[str, str, re.Pattern[str], _Handler, bool]] = []
        self._build_routes()

    # ------------------------------------------------------------------ lifecycle

    @property
    def http_base(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """Value for ``discord.http.Route.BASE``."""
        return f"{self.http_base}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """The websocket URL announced by ``GET /gateway/bot``."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> FakeDiscord:
        """Listen on an ephemeral port of 127.0.0.1."""
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._handle_api)
        app.router.add_get("/gateway", self._handle_gateway)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._handle_cdn)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        """Close gateway connections and stop listening (requests left hanging end unanswered)."""
        self._closing.set()
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"fake discord shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.contextmanager
    def patch_discord_py(self) -> Iterator[None]:
        """Point discord.py's REST base and default gateway here; restore on exit."""
        import discord.gateway
        import discord.http
        import yarl

        old_base = discord.http.Route.BASE
        old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        # A plain Client (not AutoSharded) connects to DEFAULT_GATEWAY without asking REST.
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE = old_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    @contextlib.asynccontextmanager
    async def run_client(self, client: Any, *, ready_timeout: float = 10.0) -> AsyncIterator[Any]:
        """Log ``client`` in against this fake, connect, wait until ready; close it on exit.

        Pass ``guild_ready_timeout=0.1`` (or similar) to the client's constructor, or its
        ready event waits 2 s for GUILD_CREATEs.
        """
        with self.patch_discord_py():
            await client.login(self.token)
            task = asyncio.create_task(client.connect(reconnect=True), name="fake-discord-client")
            try:
                ready = asyncio.ensure_future(client.wait_until_ready())
                done, _ = await asyncio.wait(
                    {ready, task}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if ready not in done:
                    ready.cancel()
                    if task in done:
                        task.result()  # re-raise why the client stopped
                    raise AssertionError(f"client not ready after {ready_timeout}s\n{self.describe()}")
                yield client
            finally:
                await client.close()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=5)

    # ------------------------------------------------------------------ ids & helpers

    def snowflake(self) -> int:
        """A fresh, increasing snowflake with the current timestamp."""
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_snowflake = max(now, self._last_snowflake + 1)
        return self._last_snowflake

    def channel(self, channel_id: int | None = None, *, guild_id: int | None = None) -> dict[str, Any]:
        """The (auto-created) guild text channel object for ``channel_id``.

        Without ``channel_id`` it is the guild's "general" channel (``self.channel_id`` for
        the default guild, a fresh one per other guild).
        """
        guild_id = guild_id or self.guild_id
        general = channel_id is None
        if channel_id is None:
            if guild_id == self.guild_id:
                channel_id = self.channel_id
            else:
                channel_id = self._general_channels.setdefault(guild_id, self.snowflake())
        if channel_id not in self.channels:
            self.channels[channel_id] = {
                "id": str(channel_id),
                "type": 0,
                "guild_id": str(guild_id),
                "name": "general" if general or channel_id == self.channel_id else f"channel-{channel_id}",
                "position": 0,
                "permission_overwrites": [],
                "nsfw": False,
                "topic": None,
                "parent_id": None,
                "rate_limit_per_user": 0,
                "last_message_id": None,
                "flags": 0,
            }
        return self.channels[channel_id]

    def user_payload(self, user_id: int | None = None, username: str = "member") -> dict[str, Any]:
        """A (non-bot) user object."""
        return {
            "id": str(user_id or self.user_id),
            "username": username,
            "discriminator": "0",
            "global_name": username.title(),
            "avatar": None,
            "public_flags": 0,
        }

    def make_attachment(
        self, filename: str, data: bytes, content_type: str | None = None, *, channel_id: int | None = None
    ) -> FakeAttachment:
        """Host ``data`` like a CDN attachment (e.g. a user's upload for an attachment option)."""
        attachment_id = self.snowflake()
        content_type = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        width, height = _image_size(data) if content_type.startswith("image/") else (None, None)
        url = (
            f"{self.http_base}/attachments/{channel_id or self.channel_id}/{attachment_id}/{filename}"
            f"?ex={int(time.time()) + 86400:x}&is={int(time.time()):x}&hm={secrets.token_hex(8)}"
        )
        attachment = FakeAttachment(attachment_id, filename, data, content_type, url, None, width, height)
        self.attachments[attachment_id] = attachment
        return attachment

    def describe(self, last: int = 15) -> str:
        """The last requests and all violations, for assertion messages."""
        lines = [f"last {min(last, len(self.requests))} of {len(self.requests)} requests:"]
        for req in self.requests[-last:]:
            body = json.dumps(req.json)[:300] if req.json is not None else ""
            files = f" files={[f.filename for f in req.files]}" if req.files else ""
            lines.append(f"  {req.method} {req.path} -> {req.status} {body}{files}")
        lines.append(f"violations ({len(self.violations)}):")
        lines.extend(f"  {v}" for v in self.violations)
        return "\n".join(lines)

    def assert_clean(self) -> None:
        """Fail if any request was one Discord would refuse (or an unknown route)."""
        if self.violations:
            raise AssertionError(
                "fake Discord saw violations:\n" + "\n".join(f"  {v}" for v in self.violations)
            )

    def _violation(self, text: str, request: RecordedRequest | None = None) -> None:
        self.violations.append(text)
        if request is not None:
            request.violations.append(text)

    async def _changed(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def wait_for(self, predicate: Callable[[FakeDiscord], T | None], timeout: float = 10.0) -> T:  # noqa: ASYNC109
        """Return the first truthy ``predicate(self)``, re-evaluated after every state change."""

        async def waiter() -> T:
            async with self._cond:
                while True:
                    result = predicate(self)
                    if result:
                        return result
                    await self._cond.wait()

        try:
            return await asyncio.wait_for(waiter(), timeout)
        except TimeoutError:
            raise AssertionError(f"condition not met within {timeout}s\n{self.describe()}") from None

    async def wait_for_message(
        self,
        predicate: Callable[[FakeMessage], Any] = lambda m: True,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> FakeMessage:
        """The first stored message (oldest first) matching ``predicate``."""
        return await self.wait_for(
            lambda f: next((m for m in list(f.messages.values()) if predicate(m)), None), timeout
        )

    async def wait_for_request(
        self,
        predicate: Callable[[RecordedRequest], Any],
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> RecordedRequest:
        """The first answered request matching ``predicate``."""
        return await self.wait_for(
            lambda f: next((r for r in list(f.requests) if r.status is not None and predicate(r)), None),
            timeout,
        )

    def inject(
        self,
        method: str,
        path_regex: str,
        status: int = 0,
        body: Any = None,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        fault: str | None = None,
    ) -> Injection:
        """Answer the next ``times`` requests matching ``method`` (or ``*``) and ``path_regex``.

        The regex is searched in the path below ``/api/v10`` (e.g. ``/webhooks/\\d+/[^/]+$``).
        ``body`` defaults to what Discord sends for that status (401 50027 on webhook routes,
        403 50013, 404 10008, 429 with ``retry_after``/``global`` and Discord's headers, ...).
        ``fault`` leaves the request unanswered instead (``status`` is then ignored): ``"drop"``
        closes the connection (a connection error), ``"hang"`` never answers until the fake closes
        (a timeout). Either way the request is recorded and not acted on.
        """
        if fault not in (None, "drop", "hang"):
            raise ValueError(f"unknown fault {fault!r}")
        injection = Injection(
            method.upper(), re.compile(path_regex), status, body, dict(headers or {}), times, fault
        )
        self.injections.append(injection)
        return injection

    def expire_interaction(self, record_or_token: InteractionRecord | str) -> None:
        """Make an interaction token invalid as if its 15 minutes had passed."""
        token = record_or_token if isinstance(record_or_token, str) else record_or_token.token
        self.interactions[token].expired = True

    # ------------------------------------------------------------------ gateway

    async def _handle_gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        encoding = request.query.get("encoding", "json")
        compress = request.query.get("compress")
        problem = None
        if encoding != "json":
            problem = f"gateway encoding {encoding!r} is not supported by the fake (only json)"
        elif compress not in (None, "zlib-stream", "zstd-stream"):
            problem = f"gateway compression {compress!r} is unknown"
        elif compress == "zstd-stream":
            try:
                import zstandard  # noqa: F401
            except ImportError:
                problem = "discord.py asked for zstd-stream but the fake cannot compress zstd (no zstandard)"
        if problem is not None:
            # Fail loudly: record it and close with a code discord.py will not retry.
            self._violation(problem)
            await self._changed()
            await ws.close(code=4012, message=problem.encode()[:120])
            return ws

        conn = _Connection(ws, compress)
        self._connections.add(conn)
        session: GatewaySession | None = None
        try:
            await conn.send(
                {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval, "_trace": ["fake"]}}
            )
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                op, d = data.get("op"), data.get("d")
                if op == 1:
                    self.heartbeats += 1
                    if session is not None:
                        session.heartbeats += 1
                    await conn.send({"op": 11})
                elif op == 2:
                    session = await self._identify(conn, d)
                    if session is None:
                        break
                elif op == 6:
                    session = await self._resume(conn, d)
                elif op == 8:
                    await self._members_chunk(session, d)
                elif op == 3 and session is not None:
                    session.presence_updates.append(d)
                elif op not in (3, 4):
                    self._violation(f"gateway: unknown opcode {op}")
                    await ws.close(code=4001, message=b"Unknown opcode.")
        finally:
            self._connections.discard(conn)
            await self._changed()
        return ws

    async def _identify(self, conn: _Connection, d: dict[str, Any]) -> GatewaySession | None:
        if d.get("token") != self.token:
            self._violation("gateway: IDENTIFY with a wrong token")
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return None
        shard_id, shard_count = d.get("shard") or [0, 1]
        session = GatewaySession(
            session_id=secrets.token_hex(16),
            shard_id=shard_id,
            shard_count=shard_count,
            intents=d.get("intents"),
            identify=d,
            _conn=conn,
        )
        self.sessions.append(session)
        guilds = [g for g in self.guild_ids if (g >> 22) % shard_count == shard_id]
        await session.dispatch(
            "READY",
            {
                "v": 10,
                "user": self.bot_user,
                "guilds": [{"id": str(g), "unavailable": True} for g in guilds],
                "session_id": session.session_id,
                "resume_gateway_url": self.gateway_url,
                "shard": [shard_id, shard_count],
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "user_settings": {},
                "_trace": ["fake"],
            },
        )
        for guild_id in guilds:
            await session.dispatch("GUILD_CREATE", self.guild_payload(guild_id))
        session.ready_at = time.monotonic()
        await self._changed()
        return session

    async def _resume(self, conn: _Connection, d: dict[str, Any]) -> GatewaySession | None:
        session = next((s for s in self.sessions if s.session_id == d.get("session_id")), None)
        if session is None or d.get("token") != self.token:
            await conn.send({"op": 9, "d": False})
            return None
        session._conn = conn
        session.resumes += 1
        await session.dispatch("RESUMED", {"_trace": ["fake"]})
        await self._changed()
        return session

    async def _members_chunk(self, session: GatewaySession | None, d: dict[str, Any]) -> None:
        if session is None:
            return
        member = self._member_payload(self.bot_user, DEFAULT_APP_PERMISSIONS)
        member.pop("permissions")
        await session.dispatch(
            "GUILD_MEMBERS_CHUNK",
            {
                "guild_id": str(d.get("guild_id")),
                "members": [member],
                "chunk_index": 0,
                "chunk_count": 1,
                "nonce": d.get("nonce"),
            },
        )

    def guild_payload(self, guild_id: int) -> dict[str, Any]:
        channel = self.channel(guild_id=guild_id)
        bot_member = self._member_payload(self.bot_user, DEFAULT_APP_PERMISSIONS)
        bot_member.pop("permissions")
        return {
            "id": str(guild_id),
            "name": f"Guild {guild_id}",
            "icon": None,
            "owner_id": str(self.owner_id),
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "features": [],
            "roles": [
                {
                    "id": str(guild_id),
                    "name": "@everyone",
                    "permissions": str(DEFAULT_MEMBER_PERMISSIONS),
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "stickers": [],
            "channels": [channel],
            "threads": [],
            "members": [bot_member],
            "member_count": 2,
            "large": False,
            "unavailable": False,
            "joined_at": _iso(time.time() * 1000),
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "system_channel_id": None,
        }

    def connected_sessions(self) -> list[GatewaySession]:
        """Sessions with an open websocket that received READY."""
        return [s for s in self.sessions if s.connected and s.ready_at is not None]

    async def wait_until_connected(self, timeout: float = 10.0) -> list[GatewaySession]:  # noqa: ASYNC109
        """Wait until every shard of the bot got READY over an open websocket."""

        def all_ready(fake: FakeDiscord) -> list[GatewaySession] | None:
            sessions = fake.connected_sessions()
            if not sessions:
                return None
            expected = sessions[-1].shard_count
            return sessions if len({s.shard_id for s in sessions}) >= expected else None

        return await self.wait_for(all_ready, timeout)

    def _session_for(self, guild_id: int | None) -> GatewaySession:
        sessions = self.connected_sessions()
        if not sessions:
            raise AssertionError("no connected gateway session: did the bot connect to the fake?")
        shard_count = sessions[-1].shard_count
        shard_id = (guild_id >> 22) % shard_count if guild_id else 0
        for session in reversed(sessions):
            if session.shard_id == shard_id:
                return session
        raise AssertionError(f"shard {shard_id} (of {shard_count}) is not connected")

    async def dispatch(self, event: str, data: dict[str, Any], *, guild_id: int | None = None) -> None:
        """Push any gateway dispatch to the shard that owns ``guild_id`` (shard 0 for DMs)."""
        await self._session_for(guild_id).dispatch(event, data)

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT on every session; discord.py reconnects and RESUMEs."""
        for session in self.connected_sessions():
            if session._conn is not None:
                await session._conn.send({"op": 7, "d": None})

    # ------------------------------------------------------------------ interactions

    def _member_payload(self, user: dict[str, Any], permissions: int) -> dict[str, Any]:
        return {
            "user": user,
            "roles": [],
            "joined_at": _iso(time.time() * 1000 - 86_400_000),
            "premium_since": None,
            "nick": None,
            "avatar": None,
            "banner": None,
            "pending": False,
            "flags": 0,
            "permissions": str(permissions),
            "communication_disabled_until": None,
            "deaf": False,
            "mute": False,
        }

    def _interaction_base(
        self,
        interaction_type: int,
        data: dict[str, Any],
        *,
        guild_id: int | None,
        channel_id: int | None,
        user_id: int | None,
        username: str,
        permissions: int,
        app_permissions: int,
        attachment_size_limit: int | None,
        locale: str,
        dm: bool,
    ) -> dict[str, Any]:
        user = self.user_payload(user_id, username)
        payload: dict[str, Any] = {
            "id": str(self.snowflake()),
            "application_id": str(self.application_id),
            "type": interaction_type,
            "token": f"itok.{secrets.token_urlsafe(24)}",
            "version": 1,
            "attachment_size_limit": attachment_size_limit or self.upload_limit,
            "app_permissions": str(app_permissions),
            "data": data,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
        }
        if dm:
            dm_channel_id = channel_id or self.snowflake()
            payload.update(
                channel={"id": str(dm_channel_id), "type": 1, "recipients": [user], "flags": 0},
                channel_id=str(dm_channel_id),
                user=user,
                authorizing_integration_owners={"0": str(self.owner_id), "1": user["id"]},
                context=1,
            )
            return payload
        guild_id = guild_id or self.guild_id
        channel = dict(self.channel(channel_id, guild_id=guild_id))
        channel["permissions"] = str(permissions)
        payload.update(
            channel=channel,
            channel_id=channel["id"],
            guild_id=str(guild_id),
            guild={"id": str(guild_id), "locale": "en-US", "features": []},
            guild_locale="en-US",
            member=self._member_payload(user, permissions),
            authorizing_integration_owners={"0": str(guild_id)},
            context=0,
        )
        return payload

    @staticmethod
    def _option_payloads(
        options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    ) -> list[dict[str, Any]]:
        if options is None:
            return []
        if not isinstance(options, Mapping):
            return [dict(o) for o in options]  # explicit [{name, type, value}] form
        out = []
        for name, value in options.items():
            if value is None:
                continue  # an optional option the user left out
            if isinstance(value, FakeAttachment):
                out.append({"name": name, "type": 11, "value": str(value.id)})
                continue
            # bool before int: bool is an int subclass.
            if isinstance(value, bool):
                kind = 5
            elif isinstance(value, int):
                kind = 4
            elif isinstance(value, float):
                kind = 10
            else:
                kind = 3
            out.append({"name": name, "type": kind, "value": value})
        return out

    def slash_command(
        self,
        name: str,
        options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        user_id: int | None = None,
        username: str = "member",
        permissions: int = DEFAULT_MEMBER_PERMISSIONS,
        app_permissions: int = DEFAULT_APP_PERMISSIONS,
        attachment_size_limit: int | None = None,
        resolved: dict[str, Any] | None = None,
        locale: str = "en-US",
        dm: bool = False,
        command_guild_id: int | None = None,
    ) -> dict[str, Any]:
        """An ``INTERACTION_CREATE`` payload for a chat-input command.

        ``name`` may hold subcommands (``"settings show"``). Option types are inferred from
        the dict values (str 3, int 4, bool 5, float 10, :class:`FakeAttachment` 11 with
        ``resolved.attachments`` filled); pass a list of ``{name, type, value}`` to be
        explicit; ``None`` values are left out. ``attachment_size_limit`` defaults to the
        fake's ``upload_limit``.
        ``data.guild_id`` is set when the command was synced to that guild (or given as
        ``command_guild_id``), like Discord does for guild commands.
        """
        parts = name.split()
        option_list = self._option_payloads(options)
        if len(parts) == 3:
            option_list = [
                {
                    "name": parts[1],
                    "type": 2,
                    "options": [{"name": parts[2], "type": 1, "options": option_list}],
                }
            ]
        elif len(parts) == 2:
            option_list = [{"name": parts[1], "type": 1, "options": option_list}]
        root = parts[0]
        target_guild = guild_id or self.guild_id
        if command_guild_id is None and not dm and self._find_command(target_guild, root) is not None:
            command_guild_id = target_guild
        command = self._find_command(command_guild_id or "global", root)
        command_id = (
            command["id"] if command else str(self._command_ids.setdefault((root, 1), self.snowflake()))
        )
        data: dict[str, Any] = {"id": command_id, "name": root, "type": 1, "options": option_list}
        if command_guild_id is not None:
            data["guild_id"] = str(command_guild_id)
        attachments = {
            str(v.id): v.to_payload()
            for v in (options.values() if isinstance(options, Mapping) else [])
            if isinstance(v, FakeAttachment)
        }
        if attachments or resolved:
            merged = copy.deepcopy(resolved or {})
            merged.setdefault("attachments", {}).update(attachments)
            data["resolved"] = merged
        return self._interaction_base(
            2,
            data,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            username=username,
            permissions=permissions,
            app_permissions=app_permissions,
            attachment_size_limit=attachment_size_limit,
            locale=locale,
            dm=dm,
        )

    def component_interaction(
        self,
        message: FakeMessage | int,
        custom_id: str,
        *,
        component_type: int = 2,
        values: Sequence[str] | None = None,
        user_id: int | None = None,
        username: str = "member",
        permissions: int = DEFAULT_MEMBER_PERMISSIONS,
        app_permissions: int = DEFAULT_APP_PERMISSIONS,
        attachment_size_limit: int | None = None,
        resolved: dict[str, Any] | None = None,
        locale: str = "en-US",
    ) -> dict[str, Any]:
        """An ``INTERACTION_CREATE`` payload for a button (2) / select (3, 5-8) click on ``message``."""
        msg = message if isinstance(message, FakeMessage) else self.messages[message]
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = list(values)
        if resolved is not None:
            data["resolved"] = resolved
        payload = self._interaction_base(
            3,
            data,
            guild_id=msg.guild_id,
            channel_id=msg.channel_id,
            user_id=user_id,
            username=username,
            permissions=permissions,
            app_permissions=app_permissions,
            attachment_size_limit=attachment_size_limit,
            locale=locale,
            dm=msg.guild_id is None,
        )
        payload["message"] = msg.to_payload()
        return payload

    def modal_submit(
        self,
        custom_id: str,
        values: Mapping[str, str] | Sequence[Mapping[str, Any]],
        *,
        message: FakeMessage | int | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        user_id: int | None = None,
        username: str = "member",
        permissions: int = DEFAULT_MEMBER_PERMISSIONS,
        app_permissions: int = DEFAULT_APP_PERMISSIONS,
        attachment_size_limit: int | None = None,
        resolved: dict[str, Any] | None = None,
        locale: str = "en-US",
    ) -> dict[str, Any]:
        """An ``INTERACTION_CREATE`` payload for a modal submit (type 5).

        ``values`` maps text-input custom ids to values (sent as action rows of text
        inputs), or is the raw ``components`` list (labels, file uploads, ...).
        """
        if isinstance(values, Mapping):
            components = [
                {"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]}
                for k, v in values.items()
            ]
        else:
            components = [dict(c) for c in values]
        data: dict[str, Any] = {"custom_id": custom_id, "components": components}
        if resolved is not None:
            data["resolved"] = resolved
        msg = None
        if message is not None:
            msg = message if isinstance(message, FakeMessage) else self.messages[message]
        payload = self._interaction_base(
            5,
            data,
            guild_id=msg.guild_id if msg else guild_id,
            channel_id=msg.channel_id if msg else channel_id,
            user_id=user_id,
            username=username,
            permissions=permissions,
            app_permissions=app_permissions,
            attachment_size_limit=attachment_size_limit,
            locale=locale,
            dm=False,
        )
        if msg is not None:
            payload["message"] = msg.to_payload()
        return payload

    # ------------------------------------------------------------------ members' messages & message commands

    def post_message(
        self,
        content: str = "",
        *,
        attachments: Sequence[FakeAttachment] = (),
        embeds: Sequence[Mapping[str, Any]] = (),
        channel_id: int | None = None,
        user_id: int | None = None,
        username: str = "member",
    ) -> FakeMessage:
        """Store a member's message in a channel (default: general), e.g. the target of a message command.

        ``attachments`` come from :meth:`make_attachment`, ``embeds`` e.g. from :meth:`image_embed`.
        Nothing is dispatched over the gateway: the message only exists for REST and for
        :meth:`message_command` payloads.
        """
        channel = self.channel(channel_id)
        msg = FakeMessage(
            id=self.snowflake(),
            channel_id=int(channel["id"]),
            guild_id=int(channel["guild_id"]) if channel.get("guild_id") else None,
            author=self.user_payload(user_id, username),
            content=content,
            embeds=[copy.deepcopy(dict(e)) for e in embeds],
            attachments=list(attachments),
        )
        return self._store(msg)

    def bot_message(
        self,
        content: str = "",
        *,
        embeds: Sequence[Mapping[str, Any]] = (),
        components: Sequence[Mapping[str, Any]] = (),
        channel_id: int | None = None,
    ) -> FakeMessage:
        """Store a message the bot posted earlier (say, before its database was replaced), e.g. one
        whose buttons name records the bot no longer has. Like :meth:`post_message`, nothing is
        dispatched; the message exists for REST and for :meth:`component_interaction` payloads.
        """
        channel = self.channel(channel_id)
        msg = FakeMessage(
            id=self.snowflake(),
            channel_id=int(channel["id"]),
            guild_id=int(channel["guild_id"]) if channel.get("guild_id") else None,
            author=self.bot_user,
            content=content,
            embeds=[copy.deepcopy(dict(e)) for e in embeds],
            components=[copy.deepcopy(dict(c)) for c in components],
            application_id=self.application_id,
        )
        return self._store(msg)

    def image_embed(
        self,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        sized: bool = True,
        thumbnail: bool = False,
        original_url: str | None = None,
        channel_id: int | None = None,
    ) -> dict[str, Any]:
        """An embed showing an image as Discord stores it: ``url`` is the original (third-party)
        address, ``proxy_url`` Discord's media-proxy copy.

        The proxy copy is hosted like :meth:`make_attachment` (served, and its downloads land in
        ``cdn_requests``; it also appears in ``attachments``). ``original_url`` defaults to a path
        on this fake's CDN that hosts nothing: a fetch of it is answered 404 but recorded in
        ``cdn_requests``, so a test can prove the bot never fetched the original.
        ``sized=False`` leaves out width and height (Discord does not always know them);
        ``thumbnail=True`` shows the image as the embed's thumbnail (like a link preview,
        embed type ``image``) instead of its ``image``.
        """
        hosted = self.make_attachment(filename, data, content_type, channel_id=channel_id)
        original = (
            original_url
            or f"{self.http_base}/attachments/{channel_id or self.channel_id}/{self.snowflake()}"
            f"/original-{filename}"
        )
        media: dict[str, Any] = {"url": original, "proxy_url": hosted.url}
        if sized and hosted.width is not None and hosted.height is not None:
            media.update(width=hosted.width, height=hosted.height)
        if thumbnail:
            return {"type": "image", "url": original, "thumbnail": media}
        return {"type": "rich", "title": filename, "image": media}

    def _find_message_command(self, scope: str | int, name: str) -> dict[str, Any] | None:
        return next(
            (c for c in self.commands.get(scope, []) if c["name"] == name and c.get("type", 1) == 3), None
        )

    def message_command(
        self,
        name: str,
        message: FakeMessage | int,
        *,
        user_id: int | None = None,
        username: str = "member",
        permissions: int = DEFAULT_MEMBER_PERMISSIONS,
        app_permissions: int = DEFAULT_APP_PERMISSIONS,
        attachment_size_limit: int | None = None,
        locale: str = "en-US",
        command_guild_id: int | None = None,
    ) -> dict[str, Any]:
        """An ``INTERACTION_CREATE`` payload for the message context-menu command ``name`` on ``message``.

        ``data`` is what Discord sends for command type 3: ``target_id`` and the message itself in
        ``resolved.messages`` (attachments and embeds included). The interaction happens in the
        message's channel. ``data.guild_id`` is set when the command was synced to that guild.
        """
        msg = message if isinstance(message, FakeMessage) else self.messages[message]
        if (
            command_guild_id is None
            and msg.guild_id is not None
            and self._find_message_command(msg.guild_id, name) is not None
        ):
            command_guild_id = msg.guild_id
        command = self._find_message_command(command_guild_id or "global", name)
        command_id = (
            command["id"] if command else str(self._command_ids.setdefault((name, 3), self.snowflake()))
        )
        data: dict[str, Any] = {
            "id": command_id,
            "name": name,
            "type": 3,
            "target_id": str(msg.id),
            "resolved": {"messages": {str(msg.id): msg.to_payload()}},
        }
        if command_guild_id is not None:
            data["guild_id"] = str(command_guild_id)
        return self._interaction_base(
            2,
            data,
            guild_id=msg.guild_id,
            channel_id=msg.channel_id,
            user_id=user_id,
            username=username,
            permissions=permissions,
            app_permissions=app_permissions,
            attachment_size_limit=attachment_size_limit,
            locale=locale,
            dm=msg.guild_id is None,
        )

    @staticmethod
    def modal_answers(
        modal: Mapping[str, Any], answers: Mapping[str, str | Sequence[str]]
    ) -> list[dict[str, Any]]:
        """The ``components`` of a modal submit that answers ``modal`` (the ``data`` of a type-9 callback).

        ``answers`` are keyed by a component's label (its Label's ``label``, or a text input's own
        ``label``) or by its ``custom_id``: a string for a text input, a value or a list of values
        for a select. Like Discord, an unanswered text input submits its preset ``value`` (or
        ``""``) and an unanswered select its default options. An answer no component takes, or a
        select value that is not one of its options, raises ``ValueError`` (Discord's client
        cannot send it).
        """
        unused = set(answers)

        def answer_for(component: Mapping[str, Any], label: str | None) -> str | Sequence[str] | None:
            for key in (label, component.get("label"), component.get("custom_id")):
                if key is not None and key in answers:
                    unused.discard(key)
                    return answers[key]
            return None

        def submitted(component: Mapping[str, Any], label: str | None) -> dict[str, Any] | None:
            kind = component.get("type")
            given = answer_for(component, label)
            if kind == 4:
                value = (component.get("value") or "") if given is None else given
                if not isinstance(value, str):
                    raise ValueError(f"text input {label or component.get('custom_id')!r} takes a string")
                return {"type": 4, "custom_id": component["custom_id"], "value": value}
            if kind == 3:
                options = component.get("options") or []
                if given is None:
                    values = [o["value"] for o in options if o.get("default")]
                else:
                    values = [given] if isinstance(given, str) else list(given)
                offered = {o["value"] for o in options}
                wrong = [v for v in values if v not in offered]
                if wrong:
                    raise ValueError(f"select {label or component.get('custom_id')!r} has no option {wrong}")
                return {"type": 3, "custom_id": component["custom_id"], "values": values}
            if kind == 1:
                inner = [s for c in component.get("components") or [] if (s := submitted(c, label))]
                return {"type": 1, "components": inner}
            if kind == 18:
                inner_component = submitted(component["component"], component.get("label"))
                return {"type": 18, "component": inner_component} if inner_component else None
            return None  # text displays and other non-input components submit nothing

        components = [s for c in modal.get("components") or [] if (s := submitted(c, None))]
        if unused:
            raise ValueError(f"the modal has no input for {sorted(unused)}")
        return components

    def modal_reply(
        self, record: InteractionRecord, answers: Mapping[str, str | Sequence[str]]
    ) -> dict[str, Any]:
        """The modal submit a member sends after the bot answered ``record`` with a modal.

        Built from the modal in ``record``'s callback (see :meth:`modal_answers`), by the same
        member in the same guild and channel.
        """
        if record.callback_type != 9:
            raise AssertionError(
                f"interaction {record.id} was answered with type {record.callback_type}, not 9"
            )
        modal = (record.callback or {}).get("data") or {}
        payload = record.payload
        user = payload.get("member", {}).get("user") or payload.get("user") or {}
        return self.modal_submit(
            modal["custom_id"],
            self.modal_answers(modal, answers),
            guild_id=int(payload["guild_id"]) if payload.get("guild_id") else None,
            channel_id=int(payload["channel_id"]),
            user_id=int(user["id"]) if user.get("id") else None,
            username=user.get("username", "member"),
            attachment_size_limit=payload.get("attachment_size_limit"),
        )

    async def send_interaction(self, payload: dict[str, Any]) -> InteractionRecord:
        """Push ``payload`` as INTERACTION_CREATE to the owning shard; return its record."""
        record = InteractionRecord(
            id=int(payload["id"]),
            token=payload["token"],
            type=payload["type"],
            payload=payload,
            created_at=time.monotonic(),
            attachment_size_limit=payload.get("attachment_size_limit", self.upload_limit),
            _fake=self,
        )
        # Register before dispatching: the bot may answer before dispatch() returns.
        self.interactions[record.token] = record
        self._interactions_by_id[record.id] = record
        guild_id = int(payload["guild_id"]) if payload.get("guild_id") else None
        await self.dispatch("INTERACTION_CREATE", payload, guild_id=guild_id)
        await self._changed()
        return record

    # ------------------------------------------------------------------ HTTP plumbing

    def _build_routes(self) -> None:
        """Route table: (method, template, handler, needs bot token). Literal paths first."""
        table: list[tuple[str, str, _Handler, bool]] = [
            ("GET", "/users/@me", self._get_me, True),
            ("DELETE", "/users/@me/guilds/{guild_id}", self._leave_guild, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
            ("GET", "/applications/{application_id}/commands", self._get_commands, True),
            ("PUT", "/applications/{application_id}/commands", self._put_commands, True),
            ("POST", "/applications/{application_id}/commands", self._post_command, True),
            ("DELETE", "/applications/{application_id}/commands/{command_id}", self._delete_command, True),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self._get_commands, True),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands, True),
            ("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self._post_command, True),
            (
                "DELETE",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self._delete_command,
                True,
            ),
            ("GET", "/channels/{channel_id}", self._get_channel, True),
            ("POST", "/channels/{channel_id}/typing", self._typing, True),
            ("POST", "/channels/{channel_id}/messages", self._create_channel_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_channel_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_channel_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_channel_message, True),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me",
                self._add_reaction,
                True,
            ),
            ("POST", "/interactions/{interaction_id}/{interaction_token}/callback", self._callback, False),
            ("POST", "/webhooks/{webhook_id}/{webhook_token}", self._followup, False),
            (
                "GET",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                self._get_webhook_message,
                False,
            ),
            (
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                self._edit_webhook_message,
                False,
            ),
            (
                "DELETE",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                self._delete_webhook_message,
                False,
            ),
            (
                "GET",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self._get_webhook_message,
                False,
            ),
            (
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self._edit_webhook_message,
                False,
            ),
            (
                "DELETE",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self._delete_webhook_message,
                False,
            ),
        ]
        for method, template, handler, needs_bot in table:
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
            self._routes.append((method, template, re.compile(f"^{regex}$"), handler, needs_bot))
        # Most literal templates first, so ".../@original" wins over ".../{message_id}".
        self._routes.sort(key=lambda r: -sum(1 for p in r[1].split("/") if p and not p.startswith("{")))

    def _match(self, method: str, path: str) -> tuple[str, _Handler, bool, dict[str, str]] | None:
        for route_method, template, regex, handler, needs_bot in self._routes:
            if route_method != method:
                continue
            match = regex.match(path)
            if match:
                return template, handler, needs_bot, match.groupdict()
        return None

    def _auth_kind(self, request: web.Request) -> str:
        header = request.headers.get("Authorization")
        if header is None:
            return "none"
        return "bot" if header == f"Bot {self.token}" else "invalid"

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, list[UploadedFile], list[str], str | None]:
        """``(json, files, file part names, parse error)`` for JSON or multipart bodies."""
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            payload: Any = None
            files: list[UploadedFile] = []
            fields: list[str] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                name = part.name or ""
                if name == "payload_json":
                    try:
                        payload = json.loads(await part.text())
                    except ValueError:
                        return None, files, fields, "payload_json is not valid JSON"
                else:
                    data = bytes(await part.read(decode=False))
                    files.append(UploadedFile(part.filename or name, data, part.headers.get("Content-Type")))
                    fields.append(name)
            return payload, files, fields, None
        raw = await request.read()
        if not raw:
            return None, [], [], None
        try:
            return json.loads(raw), [], [], None
        except ValueError:
            return None, [], [], "The request body contains invalid JSON."

    def _response(
        self, request: RecordedRequest, status: int, body: Any, headers: Mapping[str, str]
    ) -> web.Response:
        request.status = status
        request.response = body
        # discord.py treats a 429 without "Via" as a Cloudflare ban; Discord always sends it.
        base = {"Via": "1.1 google", **headers}
        if status == 204 or body is None:
            return web.Response(status=status, headers=base)
        base["Content-Type"] = JSON_TYPE  # exactly this: discord.py does not decode "; charset=..."
        return web.Response(status=status, body=json.dumps(body).encode(), headers=base)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        path = "/" + request.match_info["tail"]
        method = request.method.upper()
        matched = self._match(method, path)
        payload, files, fields, parse_error = await self._read_body(request)
        req = RecordedRequest(
            method=method,
            path=path,
            route=matched[0] if matched else None,
            query=dict(request.query),
            json=payload,
            files=files,
            file_fields=fields,
            at=at,
            auth=self._auth_kind(request),
            headers=dict(request.headers),
            params=matched[3] if matched else {},
        )
        self.requests.append(req)
        try:
            status, body, headers = await self._answer(req, matched, parse_error)
        except Exception as exc:  # a bug in the fake must not look like a Discord outage
            log.exception("fake discord handler failed")
            self._violation(f"fake discord crashed on {method} {path}: {exc!r}", req)
            status, body, headers = 500, {"message": f"fake crashed: {exc!r}", "code": 0}, {}
        if req.fault is not None:
            await self._changed()
            if req.fault == "hang":
                await self._closing.wait()
            # Closing the transport: the client sees the connection end without an answer.
            if request.transport is not None:
                request.transport.close()
            return web.Response()
        response = self._response(req, status, body, headers)
        await self._changed()
        return response

    async def _answer(
        self,
        req: RecordedRequest,
        matched: tuple[str, _Handler, bool, dict[str, str]] | None,
        parse_error: str | None,
    ) -> tuple[int, Any, dict[str, str]]:
        """Decide the answer: unknown route, injected/rate-limited, auth, invalid body, handler."""
        if matched is None:
            known = discord_spec.match_operation(req.method, req.path)
            note = " (in Discord's spec, not implemented by the fake)" if known else ""
            self._violation(f"unknown route {req.method} {req.path}{note}", req)
            return 404, {"message": "404: Not Found", "code": 0}, {}
        _, handler, needs_bot, _ = matched

        violations = self._validate(req) if parse_error is None else []
        for violation in violations:
            self._violation(violation, req)

        decided, headers = self._pre_route(req)
        if decided is not None:
            return decided

        if needs_bot and req.auth != "bot":
            return 401, {"message": "401: Unauthorized", "code": 0}, headers
        if parse_error is not None:
            self._violation(f"{req.method} {req.path}: {parse_error}", req)
            return 400, {"code": 50109, "message": "The request body contains invalid JSON."}, headers
        if violations:
            if any(getattr(v, "status", 400) == 413 for v in violations):
                return 413, discord_spec.too_large_body(), headers
            return 400, discord_spec.form_error_body(violations), headers
        status, body = await handler(req)
        return status, body, headers

    def _pre_route(
        self, req: RecordedRequest
    ) -> tuple[tuple[int, Any, dict[str, str]] | None, dict[str, str]]:
        """The single place that may answer before routing: injected faults, then rate limits.

        Returns ``(answer or None, rate-limit headers for a normal answer)``.
        """
        for injection in self.injections:
            if injection.matches(req.method, req.path):
                injection.hits.append(req)
                req.injected = True
                req.fault = injection.fault
                return self._injected_answer(req, injection), {}
        body, headers = self.rate_limits.decide(req)
        if body is not None:
            return (429, body, headers), headers
        return None, headers

    def _injected_answer(self, req: RecordedRequest, injection: Injection) -> tuple[int, Any, dict[str, str]]:
        status = injection.status
        body = (
            copy.deepcopy(injection.body) if injection.body is not None else self._default_error(req, status)
        )
        headers: dict[str, str] = {}
        if status == 429:
            retry_after = float((body or {}).get("retry_after", 0.1))
            is_global = bool((body or {}).get("global", False))
            headers = {
                "Retry-After": str(max(1, math.ceil(retry_after))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                "X-RateLimit-Bucket": RateLimitPolicy.bucket(req),
                "X-RateLimit-Scope": "global" if is_global else "user",
            }
            if is_global:
                headers["X-RateLimit-Global"] = "true"
        headers.update(injection.headers)
        return status, body, headers

    @staticmethod
    def _default_error(req: RecordedRequest, status: int) -> dict[str, Any]:
        """What Discord answers for ``status`` on this route."""
        route = req.route or ""
        token_route = route.startswith(("/webhooks/", "/interactions/"))
        if status == 401 and token_route:
            return {"message": "Invalid Webhook Token", "code": 50027}
        if status == 401:
            return {"message": "401: Unauthorized", "code": 0}
        if status == 403:
            return {"message": "Missing Permissions", "code": 50013}
        if status == 404:
            if route.startswith("/interactions/"):
                return {"message": "Unknown interaction", "code": 10062}
            if "{message_id}" in route or "@original" in route:
                return {"message": "Unknown Message", "code": 10008}
            if route.startswith("/channels/"):
                return {"message": "Unknown Channel", "code": 10003}
            return {"message": "404: Not Found", "code": 0}
        if status == 429:
            return {"message": "You are being rate limited.", "retry_after": 0.1, "global": False}
        if status >= 500:
            return {"message": f"{status}: Internal Server Error", "code": 0}
        return {"message": f"{status}: Bad Request", "code": 0}

    def _validate(self, req: RecordedRequest) -> list[discord_spec.Violation]:
        """Run the spec + extra checks with the context only the server knows."""
        if req.method in ("GET", "DELETE") and req.json is None and not req.files:
            return []
        limit = self.upload_limit
        token = req.params.get("webhook_token") or req.params.get("interaction_token")
        record = self.interactions.get(token) if token else None
        if record is not None:
            # Discord applies the limit it told the bot in the interaction.
            limit = record.attachment_size_limit
        flags = None
        if req.method == "PATCH":
            target = self._target_message(req, record)
            flags = target.flags if target is not None else None
        return discord_spec.validate_request(
            req.method,
            req.path,
            req.json,
            file_fields=req.file_fields,
            file_sizes=[len(f.data) for f in req.files],
            upload_limit=limit,
            message_flags=flags,
            template=req.route,
        )

    def _target_message(self, req: RecordedRequest, record: InteractionRecord | None) -> FakeMessage | None:
        message_id = req.params.get("message_id")
        if message_id is None:
            if record is not None and req.route and req.route.endswith("@original"):
                return record.original
            return None
        return self.messages.get(int(message_id)) if message_id.isdigit() else None

    async def _handle_cdn(self, request: web.Request) -> web.Response:
        self.cdn_requests.append(request.path)
        attachment_id = request.match_info["attachment_id"]
        attachment = self.attachments.get(int(attachment_id)) if attachment_id.isdigit() else None
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=attachment.data, headers={"Content-Type": attachment.content_type or ""})

    # ------------------------------------------------------------------ message storage

    def _new_attachment(
        self, channel_id: int, upload: UploadedFile, item: Mapping[str, Any]
    ) -> FakeAttachment:
        filename = item.get("filename") or upload.filename
        attachment = self.make_attachment(
            filename, upload.data, mimetypes.guess_type(filename)[0], channel_id=channel_id
        )
        attachment.description = item.get("description")
        return attachment

    def _build_attachments(
        self, channel_id: int, req: RecordedRequest, body: Mapping[str, Any], existing: list[FakeAttachment]
    ) -> list[FakeAttachment] | None:
        """New attachment list after a write, or None when the write leaves them alone."""
        uploads: dict[str, UploadedFile] = {}
        for name, upload in zip(req.file_fields, req.files, strict=False):
            match = _FILE_PART.match(name)
            if match:
                uploads[match.group(1)] = upload
        listed = body.get("attachments")
        if listed is None:
            if not uploads:
                return None
            # Files without an attachments list are added (Discord keeps old ones on edit).
            return existing + [self._new_attachment(channel_id, u, {}) for u in uploads.values()]
        kept = {str(a.id): a for a in existing}
        result: list[FakeAttachment] = []
        for item in listed:
            key = str(item.get("id"))
            if key in uploads:
                result.append(self._new_attachment(channel_id, uploads[key], item))
            elif key in kept:
                result.append(kept[key])
        return result

    def _write(self, msg: FakeMessage, req: RecordedRequest, body: Mapping[str, Any], *, edit: bool) -> None:
        """Apply a create/edit body to ``msg`` (PATCH semantics: absent keys unchanged)."""
        if "content" in body:
            msg.content = body["content"] or ""
        if "embeds" in body:
            msg.embeds = list(body["embeds"] or [])
        if "components" in body:
            msg.components = list(body["components"] or [])
        if body.get("flags") is not None:
            # Ephemeral/loading are fixed at creation; other bits (suppress embeds, V2) may change.
            fixed = msg.flags & (EPHEMERAL | LOADING)
            msg.flags = fixed | (int(body["flags"]) & ~(EPHEMERAL | LOADING)) if edit else int(body["flags"])
        msg.allowed_mentions = body.get("allowed_mentions")
        attachments = self._build_attachments(msg.channel_id, req, body, msg.attachments)
        if attachments is not None:
            msg.attachments = attachments
        history_entry = copy.deepcopy(dict(body))
        if req.files:
            history_entry["_files"] = [f.filename for f in req.files]
        msg.history.append(history_entry)
        if edit:
            msg.edits.append(req.at)
            msg.edited_timestamp = _iso(time.time() * 1000)
            msg.flags &= ~LOADING  # the "thinking..." placeholder is replaced by any edit

    def _store(self, msg: FakeMessage) -> FakeMessage:
        self.messages[msg.id] = msg
        return msg

    def _interaction_message(
        self, record: InteractionRecord, req: RecordedRequest, body: Mapping[str, Any], *, followup: bool
    ) -> FakeMessage:
        payload = record.payload
        channel_id = int(payload.get("channel_id") or payload["channel"]["id"])
        guild_id = int(payload["guild_id"]) if payload.get("guild_id") else None
        user = payload.get("member", {}).get("user") or payload.get("user")
        metadata: dict[str, Any] = {
            "id": str(record.id),
            "type": record.type,
            "user": user,
            "authorizing_integration_owners": payload.get("authorizing_integration_owners", {}),
        }
        data = payload.get("data") or {}
        if record.type == 2:
            metadata.update(name=data.get("name"), command_type=data.get("type", 1))
        if followup and record.original_message_id is not None:
            metadata["original_response_message_id"] = str(record.original_message_id)
        kind = {1: 20, 2: 23, 3: 23}.get(data.get("type", 1), 20) if record.type == 2 else 0
        msg = FakeMessage(
            id=self.snowflake(),
            channel_id=channel_id,
            guild_id=guild_id,
            author=self.bot_user,
            type=kind,
            webhook_id=self.application_id,
            application_id=self.application_id,
            interaction_id=record.id,
            interaction_token=record.token,
            interaction_metadata=metadata,
            created_at=req.at,
        )
        self._write(msg, req, body, edit=False)
        return self._store(msg)

    # ------------------------------------------------------------------ REST handlers

    async def _get_me(self, req: RecordedRequest) -> tuple[int, Any]:
        return 200, self.bot_user

    async def _leave_guild(self, req: RecordedRequest) -> tuple[int, Any]:
        """The bot leaves a server: recorded in ``left_guilds``."""
        self.left_guilds.append(int(req.params["guild_id"]))
        return 204, None

    async def _get_application(self, req: RecordedRequest) -> tuple[int, Any]:
        return 200, {
            "id": str(self.application_id),
            "name": self.bot_user["username"],
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": {"id": str(self.owner_id), "username": "owner", "discriminator": "0", "avatar": None},
            "verify_key": "0" * 64,
            "flags": 0,
            "team": None,
            "summary": "",
            "bot": self.bot_user,
        }

    async def _get_gateway(self, req: RecordedRequest) -> tuple[int, Any]:
        return 200, {"url": self.gateway_url}

    async def _get_gateway_bot(self, req: RecordedRequest) -> tuple[int, Any]:
        return 200, {
            "url": self.gateway_url,
            "shards": self.shard_count,
            "session_start_limit": {
                "total": 1000,
                "remaining": 999,
                "reset_after": 14_400_000,
                "max_concurrency": 1,
            },
        }

    def _scope(self, req: RecordedRequest) -> str | int:
        guild = req.params.get("guild_id")
        return int(guild) if guild else "global"

    def _find_command(self, scope: str | int, name: str) -> dict[str, Any] | None:
        return next(
            (c for c in self.commands.get(scope, []) if c["name"] == name and c.get("type", 1) == 1), None
        )

    def _stored_command(self, scope: str | int, body: Mapping[str, Any]) -> dict[str, Any]:
        kind = body.get("type") or 1
        key = (body["name"], kind) if scope == "global" else (f"{scope}:{body['name']}", kind)
        command_id = self._command_ids.setdefault(key, int(body.get("id") or self.snowflake()))
        stored = {
            "id": str(command_id),
            "application_id": str(self.application_id),
            "version": str(self.snowflake()),
            "type": kind,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            **{k: v for k, v in body.items() if k not in ("id", "type")},
        }
        if scope != "global":
            stored["guild_id"] = str(scope)
        return stored

    def _wrong_app(self, req: RecordedRequest) -> bool:
        return req.params.get("application_id") != str(self.application_id)

    async def _get_commands(self, req: RecordedRequest) -> tuple[int, Any]:
        if self._wrong_app(req):
            return 403, {"message": "Missing Access", "code": 50001}
        return 200, self.commands.get(self._scope(req), [])

    async def _put_commands(self, req: RecordedRequest) -> tuple[int, Any]:
        if self._wrong_app(req):
            return 403, {"message": "Missing Access", "code": 50001}
        scope = self._scope(req)
        body = req.json or []
        self.command_syncs.append((scope, copy.deepcopy(body)))
        self.commands[scope] = [self._stored_command(scope, c) for c in body]
        return 200, self.commands[scope]

    async def _post_command(self, req: RecordedRequest) -> tuple[int, Any]:
        if self._wrong_app(req):
            return 403, {"message": "Missing Access", "code": 50001}
        scope = self._scope(req)
        stored = self._stored_command(scope, req.json)
        commands = [c for c in self.commands.get(scope, []) if c["id"] != stored["id"]]
        self.commands[scope] = [*commands, stored]
        return 201, stored

    async def _delete_command(self, req: RecordedRequest) -> tuple[int, Any]:
        scope = self._scope(req)
        before = self.commands.get(scope, [])
        self.commands[scope] = [c for c in before if c["id"] != req.params["command_id"]]
        if len(before) == len(self.commands[scope]):
            return 404, {"message": "Unknown application command", "code": 10063}
        return 204, None

    async def _get_channel(self, req: RecordedRequest) -> tuple[int, Any]:
        channel_id = req.params["channel_id"]
        if not channel_id.isdigit():
            return 404, {"message": "Unknown Channel", "code": 10003}
        return 200, self.channel(int(channel_id))

    async def _typing(self, req: RecordedRequest) -> tuple[int, Any]:
        return 204, None

    def _channel_message(self, req: RecordedRequest) -> FakeMessage | None:
        message_id = req.params["message_id"]
        msg = self.messages.get(int(message_id)) if message_id.isdigit() else None
        if msg is None or msg.deleted or msg.ephemeral or str(msg.channel_id) != req.params["channel_id"]:
            return None  # ephemeral messages do not exist for channel endpoints
        return msg

    async def _create_channel_message(self, req: RecordedRequest) -> tuple[int, Any]:
        body = req.json or {}
        channel_id = int(req.params["channel_id"])
        channel = self.channel(channel_id)
        guild_id = int(channel["guild_id"]) if channel.get("guild_id") else None
        reference = body.get("message_reference")
        msg = FakeMessage(
            id=self.snowflake(),
            channel_id=channel_id,
            guild_id=guild_id,
            author=self.bot_user,
            type=19 if reference else 0,
            message_reference={k: str(v) if k.endswith("_id") else v for k, v in reference.items()}
            if reference
            else None,
            created_at=req.at,
            tts=bool(body.get("tts")),
        )
        self._write(msg, req, body, edit=False)
        msg.flags &= ~(EPHEMERAL | LOADING)  # not settable on channel messages
        return 200, self._store(msg).to_payload()

    async def _get_channel_message(self, req: RecordedRequest) -> tuple[int, Any]:
        msg = self._channel_message(req)
        if msg is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        return 200, msg.to_payload()

    async def _edit_channel_message(self, req: RecordedRequest) -> tuple[int, Any]:
        msg = self._channel_message(req)
        if msg is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        if msg.author.get("id") != str(self.bot_user_id):
            return 403, {"message": "Cannot edit a message authored by another user", "code": 50005}
        self._write(msg, req, req.json or {}, edit=True)
        return 200, msg.to_payload()

    async def _delete_channel_message(self, req: RecordedRequest) -> tuple[int, Any]:
        msg = self._channel_message(req)
        if msg is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        msg.deleted = True
        return 204, None

    async def _add_reaction(self, req: RecordedRequest) -> tuple[int, Any]:
        msg = self._channel_message(req)
        if msg is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        msg.reactions.append(req.params["emoji_name"])
        return 204, None

    async def _callback(self, req: RecordedRequest) -> tuple[int, Any]:
        interaction_id = req.params["interaction_id"]
        record = self._interactions_by_id.get(int(interaction_id)) if interaction_id.isdigit() else None
        if record is None or record.token != req.params["interaction_token"]:
            return 404, {"message": "Unknown interaction", "code": 10062}
        if record.callback_type is not None:
            self._violation(f"second callback for interaction {record.id} (already acknowledged)", req)
            return 400, {"message": "Interaction has already been acknowledged.", "code": 40060}
        late = req.at - record.created_at
        if self.interaction_deadline is not None and late > self.interaction_deadline:
            self._violation(
                f"callback for interaction {record.id} after {late:.2f}s (Discord allows 3 s)", req
            )
            return 404, {"message": "Unknown interaction", "code": 10062}
        body = req.json or {}
        kind = body.get("type")
        data = body.get("data") or {}
        record.callback, record.callback_type, record.callback_at = body, kind, req.at
        message: FakeMessage | None = None
        if kind == 4:
            message = self._interaction_message(record, req, data, followup=False)
        elif kind == 5:
            placeholder = {"content": "", "flags": (int(data.get("flags") or 0) & EPHEMERAL) | LOADING}
            message = self._interaction_message(record, req, placeholder, followup=False)
        elif kind == 7:
            message_id = int((record.payload.get("message") or {}).get("id", 0))
            message = self.messages.get(message_id)
            if message is not None:
                self._write(message, req, data, edit=True)
        elif kind == 6:
            message_id = int((record.payload.get("message") or {}).get("id", 0))
            record.original_message_id = message_id if message_id in self.messages else None
        if message is not None:
            record.original_message_id = message.id
        if req.query.get("with_response") not in _TRUE:
            return 204, None
        resource: dict[str, Any] = {"type": kind}
        if message is not None:
            resource["message"] = message.to_payload()
        return 200, {
            "interaction": {
                "id": str(record.id),
                "type": record.type,
                "activity_instance_id": None,
                "response_message_id": str(message.id) if message else None,
                "response_message_loading": bool(message and message.loading),
                "response_message_ephemeral": bool(message and message.ephemeral),
            },
            "resource": resource,
        }

    def _webhook_record(self, req: RecordedRequest) -> InteractionRecord | None:
        """The interaction behind a webhook token, if it is still valid."""
        record = self.interactions.get(req.params["webhook_token"])
        if record is None or req.params["webhook_id"] != str(self.application_id) or record.expired:
            return None
        if req.at - record.created_at > self.token_ttl:
            return None
        return record

    def _webhook_target(self, req: RecordedRequest, record: InteractionRecord) -> FakeMessage | None:
        message_id = req.params.get("message_id")
        if message_id is None:
            msg = record.original
        else:
            msg = self.messages.get(int(message_id)) if message_id.isdigit() else None
            if msg is not None and msg.id != record.original_message_id and msg.id not in record.followup_ids:
                msg = None
        return None if msg is None or msg.deleted else msg

    async def _followup(self, req: RecordedRequest) -> tuple[int, Any]:
        record = self._webhook_record(req)
        if record is None:
            return 401, {"message": "Invalid Webhook Token", "code": 50027}
        if not record.acknowledged:
            return 404, {"message": "Unknown Webhook", "code": 10015}
        body = req.json or {}
        original = record.original
        if original is not None and original.loading:
            # The first followup after a deferred ("thinking") response replaces the placeholder.
            self._write(original, req, {k: v for k, v in body.items() if k != "flags"}, edit=True)
            msg = original
        else:
            msg = self._interaction_message(record, req, body, followup=True)
            record.followup_ids.append(msg.id)
        if req.query.get("wait") not in _TRUE:
            return 204, None
        return 200, msg.to_payload()

    async def _get_webhook_message(self, req: RecordedRequest) -> tuple[int, Any]:
        record = self._webhook_record(req)
        if record is None:
            return 401, {"message": "Invalid Webhook Token", "code": 50027}
        msg = self._webhook_target(req, record)
        if msg is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        return 200, msg.to_payload()

    async def _edit_webhook_message(self, req: RecordedRequest) -> tuple[int, Any]:
        record = self._webhook_record(req)
        if record is None:
            return 401, {"message": "Invalid Webhook Token", "code": 50027}
        msg = self._webhook_target(req, record)
        if msg is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        self._write(msg, req, req.json or {}, edit=True)
        return 200, msg.to_payload()

    async def _delete_webhook_message(self, req: RecordedRequest) -> tuple[int, Any]:
        record = self._webhook_record(req)
        if record is None:
            return 401, {"message": "Invalid Webhook Token", "code": 50027}
        msg = self._webhook_target(req, record)
        if msg is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        msg.deleted = True
        return 204, None
