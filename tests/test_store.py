"""The database: migrations and the command-registration memory, on SQLite and PostgreSQL."""

from __future__ import annotations

from bot.registration import CommandRegistry, fingerprint
from bot.store import MIGRATIONS


async def test_migrating_twice_is_harmless(store):
    assert await store.migrate() == len(MIGRATIONS)


async def test_state_is_written_and_overwritten(store):
    await store.set_state("k", "one")
    await store.set_state("k", "two")
    assert await store.get_state("k") == "two"


async def test_registry_knows_definitions_it_registered(store):
    registry = CommandRegistry(store)
    digest = fingerprint([{"name": "imagine", "options": []}])
    await registry.remember(1, None, digest)
    assert await registry.is_current(1, None, digest)


async def test_registry_sees_changed_definitions(store):
    registry = CommandRegistry(store)
    await registry.remember(1, None, fingerprint([{"name": "imagine"}]))
    assert not await registry.is_current(1, None, fingerprint([{"name": "imagine", "description": "new"}]))


async def test_registry_keeps_guild_and_global_scopes_apart(store):
    registry = CommandRegistry(store)
    digest = fingerprint([{"name": "imagine"}])
    await registry.remember(1, 555, digest)
    assert not await registry.is_current(1, None, digest)


def test_fingerprint_ignores_order_of_commands_and_keys():
    a = [{"name": "a", "type": 1}, {"name": "b", "type": 1}]
    b = [{"type": 1, "name": "b"}, {"type": 1, "name": "a"}]
    assert fingerprint(a) == fingerprint(b)
