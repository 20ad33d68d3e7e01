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


async def test_jobs_from_before_reference_counts_get_theirs_from_the_uploaded_references(store, database_url):
    import sqlalchemy as sa

    from bot.config import database_url_for_sqlalchemy
    from bot.jobstore import JobStore
    from bot.schema import schema_version
    from bot.store import Store

    job = await JobStore(store).create(
        guild_id=1,
        channel_id=2,
        user_id=3,
        application_id=4,
        upload_limit=1,
        prompt="p",
        model="m",
        ratio="1:1",
        n=1,
        reference_urls=("https://files/a.png", "https://files/b.png"),
    )
    async with store.engine.begin() as conn:
        await conn.execute(sa.text('ALTER TABLE jobs DROP COLUMN "reference_count"'))
        await conn.execute(schema_version.update().values(version=3))
    again = Store.open(database_url_for_sqlalchemy(database_url))
    try:
        await again.migrate()
        migrated = await JobStore(again).get(job.id)
    finally:
        await again.close()
    assert migrated is not None and (migrated.reference_count, migrated.references_lost) == (2, False)


async def test_on_sqlite_a_waiting_urgent_write_goes_before_waiting_background_writes(tmp_path):
    import asyncio

    from bot.config import database_url_for_sqlalchemy
    from bot.store import Store

    store = Store.open(database_url_for_sqlalchemy(f"sqlite:///{tmp_path / 'q.db'}"))
    await store.migrate()
    order: list[str] = []

    async def write(label: str, urgent: bool) -> None:
        async with store.write(urgent=urgent):
            order.append(label)

    try:
        async with store.write():  # hold the writer while others queue up
            tasks = [
                asyncio.create_task(write("background", False)),
                asyncio.create_task(write("member", True)),
            ]
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
    finally:
        await store.close()
    assert order == ["member", "background"]
