"""The fake Discord server: its configuration, state for assertions, and what tests call."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import mimetypes
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import web

from tests.fakes import discord_spec

from ._gateway import GatewayHandlers, GatewaySession, _Connection
from ._http import RequestHandling, _Handler
from ._messages import MessageStore
from ._payloads import InteractionPayloads
from ._rest import RestRoutes
from .rate_limits import RateLimitPolicy
from .records import (
    API_PREFIX,
    DEFAULT_APP_PERMISSIONS,
    DEFAULT_MEMBER_PERMISSIONS,
    DISCORD_EPOCH_MS,
    FakeAttachment,
    FakeMessage,
    Injection,
    InteractionRecord,
    RecordedRequest,
    _image_size,
    _iso,
)

T = TypeVar("T")


class FakeDiscord(RequestHandling, RestRoutes, MessageStore, GatewayHandlers, InteractionPayloads):
    """Discord's REST API and gateway on 127.0.0.1, driven by the real discord.py.

    Its public methods below are what tests use; the REST routes, the gateway, the message
    store and the request checks live in the private modules of this package."""

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
        # Each server's language (its "community" locale, sent as `guild_locale`); en-US unless set.
        self.guild_locales: dict[int, str] = {}
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
        # Channels the bot cannot see (a user install used where the bot is not a member), with the
        # error code Discord answers channel endpoints there: 50001 Missing Access (a server channel),
        # 10003 Unknown Channel (a group DM).
        self.hidden_channels: dict[int, int] = {}
        self.dm_channels: dict[int, int] = {}  # user id → the bot's DM channel with them
        self.closed_dms: set[int] = set()  # users whose DMs are closed to the bot (50007)
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

    def guild_locale(self, guild_id: int) -> str:
        """The language a server set in its settings, as interactions from it carry it."""
        return self.guild_locales.get(guild_id, "en-US")

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
            "preferred_locale": self.guild_locale(guild_id),
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

    async def dispatch(self, event: str, data: dict[str, Any], *, guild_id: int | None = None) -> None:
        """Push any gateway dispatch to the shard that owns ``guild_id`` (shard 0 for DMs)."""
        await self._session_for(guild_id).dispatch(event, data)

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT on every session; discord.py reconnects and RESUMEs."""
        for session in self.connected_sessions():
            if session._conn is not None:
                await session._conn.send({"op": 7, "d": None})

    # ------------------------------------------------------------------ interactions

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
        install: str = "guild",
        private_channel: bool = False,
        external_apps: bool = True,
    ) -> dict[str, Any]:
        """An ``INTERACTION_CREATE`` payload for a chat-input command.

        ``name`` may hold subcommands (``"settings show"``). Option types are inferred from
        the dict values (str 3, int 4, bool 5, float 10, :class:`FakeAttachment` 11 with
        ``resolved.attachments`` filled); pass a list of ``{name, type, value}`` to be
        explicit; ``None`` values are left out. ``attachment_size_limit`` defaults to the
        fake's ``upload_limit``.
        ``data.guild_id`` is set when the command was synced to that guild (or given as
        ``command_guild_id``), like Discord does for guild commands.
        ``install="user"``, ``private_channel`` and ``external_apps``: a user install used where the
        bot is not a member (see ``_interaction_base``); use a server the bot is not in.
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
        if (
            command_guild_id is None
            and not dm
            and not private_channel
            and install == "guild"
            and self._find_command(target_guild, root) is not None
        ):
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
            install=install,
            private_channel=private_channel,
            external_apps=external_apps,
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
        external_apps: bool = True,
    ) -> dict[str, Any]:
        """An ``INTERACTION_CREATE`` payload for a button (2) / select (3, 5-8) click on ``message``.

        A click on a message in a channel the bot cannot see comes from the member's user install,
        like the command that posted it."""
        msg = message if isinstance(message, FakeMessage) else self.messages[message]
        hidden = msg.channel_id in self.hidden_channels
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
            dm=msg.guild_id is None and not hidden,
            install="user" if hidden else "guild",
            private_channel=hidden and msg.guild_id is None,
            external_apps=external_apps,
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
