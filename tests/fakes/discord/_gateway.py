"""Private to the fake Discord: gateway connections and sessions, and the handlers of the websocket."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .records import DEFAULT_APP_PERMISSIONS


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


class GatewayHandlers:
    """The gateway side of the fake: HELLO, IDENTIFY/RESUME, READY and GUILD_CREATE, member chunks.

    A part of :class:`FakeDiscord`; its state lives there."""

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
