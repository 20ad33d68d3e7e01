"""Per-server moderation settings: a typed value, stored as versioned JSON, cached per server.

Every field has a default that means "no restriction", so a server that never
touched `/imagine-admin` behaves like the bot out of the box. `reset` returns to
these defaults.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from bot.blocklist import (
    MAX_ENTRIES,
    MAX_EXCEPTIONS,
    BlockEntry,
    Blocklist,
    BlocklistError,
    validate_entry,
    validate_exception,
)
from bot.schema import guild_settings_table
from bot.store import Store

log = logging.getLogger(__name__)

SETTINGS_VERSION = 1
# Several processes may share one database: a cached copy is trusted this long (seconds).
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class GuildSettings:
    """Everything a server admin can set. Empty tuples and None mean "no restriction"."""

    enabled: bool = True
    allowed_channels: tuple[int, ...] = ()
    denied_channels: tuple[int, ...] = ()
    allowed_roles: tuple[int, ...] = ()
    admin_roles: tuple[int, ...] = ()
    banned_users: tuple[int, ...] = ()
    allowed_models: tuple[str, ...] = ()
    allowed_resolutions: tuple[str, ...] = ()
    allowed_speeds: tuple[str, ...] = ()
    watermark: bool | None = None  # None: the operator's default (`WATERMARK`)
    spoiler: bool = False  # every result in this server is posted as a spoiler
    max_n: int | None = None
    max_references: int | None = None
    cooldown_seconds: int = 0
    max_concurrent_member: int | None = None
    max_concurrent_server: int | None = None
    daily_member_quota: int | None = None
    role_quotas: tuple[tuple[int, int], ...] = ()  # (role id, daily images), the highest applies
    daily_server_quota: int | None = None
    monthly_server_quota: int | None = None
    blocklist: tuple[BlockEntry, ...] = ()
    blocklist_exceptions: tuple[str, ...] = ()  # phrases never treated as a blocklist match
    audit_channel_id: int | None = None
    _compiled: Blocklist | None = field(default=None, compare=False, repr=False)

    @property
    def compiled_blocklist(self) -> Blocklist:
        """The blocklist with its exceptions, compiled once per distinct list (see :func:`_compile`)."""
        if self._compiled is None:
            object.__setattr__(self, "_compiled", _compile(self.blocklist, self.blocklist_exceptions))
        assert self._compiled is not None
        return self._compiled

    def member_daily_quota(self, role_ids: frozenset[int]) -> int | None:
        """A member's daily image quota: the best role override they have, else the server default."""
        overrides = [quota for role, quota in self.role_quotas if role in role_ids]
        return max(overrides) if overrides else self.daily_member_quota

    def replace(self, **changes: Any) -> GuildSettings:
        return dataclasses.replace(self, _compiled=None, **changes)

    def to_json(self) -> str:
        data: dict[str, Any] = {"version": SETTINGS_VERSION}
        for f in dataclasses.fields(self):
            if f.name.startswith("_"):
                continue
            value = getattr(self, f.name)
            if f.name == "blocklist":
                value = [{"kind": e.kind, "pattern": e.pattern} for e in value]
            elif f.name == "role_quotas":
                value = [[role, quota] for role, quota in value]
            elif isinstance(value, tuple):
                value = list(value)
            data[f.name] = value
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GuildSettings:
        """Decode stored settings; unknown keys (from a newer version) are ignored."""
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name not in known:
                continue
            if name == "blocklist":
                value = tuple(BlockEntry(kind=e["kind"], pattern=e["pattern"]) for e in value)
            elif name == "role_quotas":
                value = tuple((int(role), int(quota)) for role, quota in value)
            elif isinstance(value, list):
                value = tuple(value)
            values[name] = value
        return cls(**values)


@functools.lru_cache(maxsize=256)
def _compile(entries: tuple[BlockEntry, ...], exceptions: tuple[str, ...]) -> Blocklist:
    """A blocklist compiled once per distinct list, not on every reload of a server's settings.

    An entry or exception stored under older, looser rules that no longer validates is
    skipped (and logged) rather than breaking every prompt in the server.
    """
    try:
        return Blocklist(entries, exceptions)
    except BlocklistError:
        usable = []
        for entry in entries[:MAX_ENTRIES]:
            try:
                usable.append(validate_entry(entry.kind, entry.pattern))
            except BlocklistError as exc:
                log.warning("ignoring a stored blocklist entry that no longer validates: %s", exc)
        phrases = []
        for phrase in exceptions[:MAX_EXCEPTIONS]:
            try:
                phrases.append(validate_exception(phrase))
            except BlocklistError as exc:
                log.warning("ignoring a stored blocklist exception that no longer validates: %s", exc)
        return Blocklist(usable, phrases)


DEFAULTS = GuildSettings()


class GuildSettingsStore:
    """Reads and writes per-server settings, with a short-lived cache invalidated on write."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._engine = store.engine
        self._clock = clock
        self._cache: dict[int, tuple[float, GuildSettings]] = {}
        self._loading: dict[int, asyncio.Future[GuildSettings]] = {}
        self._writes: dict[int, int] = {}  # updates per server, so a slow read never caches stale data

    async def get(self, guild_id: int) -> GuildSettings:
        cached = self._cache.get(guild_id)
        if cached is not None and self._clock() - cached[0] < CACHE_SECONDS:
            return cached[1]
        # Many requests from one server at once share one read.
        loading = self._loading.get(guild_id)
        if loading is None:
            loading = self._loading[guild_id] = asyncio.ensure_future(self._load(guild_id))
            loading.add_done_callback(lambda _: self._loading.pop(guild_id, None))
        return await asyncio.shield(loading)

    async def _load(self, guild_id: int) -> GuildSettings:
        writes = self._writes.get(guild_id, 0)
        async with self._engine.connect() as conn:
            text = (
                await conn.execute(
                    sa.select(guild_settings_table.c.data).where(guild_settings_table.c.guild_id == guild_id)
                )
            ).scalar()
        settings = GuildSettings.from_json(text) if text else DEFAULTS
        if self._writes.get(guild_id, 0) == writes:  # an update meanwhile has the newer value cached
            self._cache[guild_id] = (self._clock(), settings)
        return settings

    async def update(self, guild_id: int, change: Callable[[GuildSettings], GuildSettings]) -> GuildSettings:
        """Apply `change` to the stored settings in one transaction (no lost concurrent edits)."""
        async with self._store.write() as conn:
            query = sa.select(guild_settings_table.c.data).where(guild_settings_table.c.guild_id == guild_id)
            text = (await conn.execute(query.with_for_update())).scalar()
            current = GuildSettings.from_json(text) if text else DEFAULTS
            new = change(current)
            values = {"data": new.to_json(), "updated_at": time.time()}
            if text is None:
                await conn.execute(guild_settings_table.insert().values(guild_id=guild_id, **values))
            else:
                await conn.execute(
                    guild_settings_table.update()
                    .where(guild_settings_table.c.guild_id == guild_id)
                    .values(**values)
                )
        self._writes[guild_id] = self._writes.get(guild_id, 0) + 1
        self._cache[guild_id] = (self._clock(), new)
        return new

    async def reset(self, guild_id: int) -> GuildSettings:
        return await self.update(guild_id, lambda _: DEFAULTS)
