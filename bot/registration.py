"""Remembering which slash-command definitions were registered, so start-up re-registers only on change.

Discord rate-limits command registration per day; re-syncing on every start is
how bots get locked out. We keep a hash of the last registered definitions per
application and scope (global or one guild) in the database.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bot.store import Store


def fingerprint(definitions: list[dict[str, Any]]) -> str:
    """A stable hash of command definitions (order and key order do not matter)."""
    canonical = sorted(json.dumps(d, sort_keys=True, separators=(",", ":")) for d in definitions)
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()


def _key(application_id: int, guild_id: int | None) -> str:
    scope = f"guild:{guild_id}" if guild_id is not None else "global"
    return f"commands:{application_id}:{scope}"


class CommandRegistry:
    """Tells whether definitions changed since they were last registered."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def is_current(self, application_id: int, guild_id: int | None, digest: str) -> bool:
        return await self._store.get_state(_key(application_id, guild_id)) == digest

    async def remember(self, application_id: int, guild_id: int | None, digest: str) -> None:
        await self._store.set_state(_key(application_id, guild_id), digest)
