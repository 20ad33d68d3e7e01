"""The database: migrations and the command-registration memory, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from bot.registration import CommandRegistry, fingerprint
from bot.schema import bot_state
from bot.store import MIGRATIONS, Retry, describe, is_transient
from tests.core.older_databases import as_before, asked, reopened


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
    from bot.jobs.records import JobStore
    from bot.schema import _m004_reference_count

    job = await JobStore(store).create(asked(reference_urls=("https://files/a.png", "https://files/b.png")))
    await as_before(store, _m004_reference_count, columns=("reference_count",))
    async with reopened(database_url) as again:
        await again.migrate()
        migrated = await JobStore(again).get(job.id)
    assert migrated is not None and (migrated.reference_count, migrated.references_lost) == (2, False)


async def test_jobs_from_before_the_watermark_column_show_their_models_default(store, database_url):
    from bot.catalog import builtin_catalog
    from bot.jobs.records import JobStore
    from bot.jobs.request import request_for_job
    from bot.schema import _m005_watermark_and_speed

    seedream_4 = asked(model="doubao-seedream-4-0", watermark=False, speed="fast")
    job = await JobStore(store).create(seedream_4)
    await as_before(store, _m005_watermark_and_speed, columns=("watermark", "speed"))
    async with reopened(database_url) as again:
        await again.migrate()
        migrated = await JobStore(again).get(job.id)
        created = await JobStore(again).create(dataclasses.replace(seedream_4, watermark=True))
        fresh = await JobStore(again).get(created.id)
    assert migrated is not None and fresh is not None
    request = request_for_job(migrated, builtin_catalog())
    # Seedream 4.0 watermarks unless told otherwise, which older jobs never did.
    assert (migrated.watermark, migrated.speed, request.watermark, request.speed) == (None, None, True, None)
    assert (fresh.watermark, fresh.speed) == (True, "fast")


async def test_jobs_from_before_the_layers_columns_keep_watermark_and_speed_and_have_no_layers(
    store, database_url
):
    from bot.jobs.records import JobStore
    from bot.schema import MIGRATIONS, _m006_layers

    seedream_4 = asked(model="doubao-seedream-4-0", watermark=True, speed="fast")
    job = await JobStore(store).create(seedream_4)
    await as_before(store, _m006_layers, columns=("layers", "result_layers"))
    async with reopened(database_url) as again:
        assert await again.migrate() == len(MIGRATIONS)
        migrated = await JobStore(again).get(job.id)
        created = await JobStore(again).create(
            dataclasses.replace(seedream_4, model="doubao-seedream-5-0-pro", speed=None, layers=True)
        )
        fresh = await JobStore(again).get(created.id)
    assert migrated is not None and fresh is not None
    assert (migrated.watermark, migrated.speed, migrated.layers, migrated.result_layers) == (
        True,
        "fast",
        False,
        None,
    )
    assert (fresh.watermark, fresh.layers) == (True, True)


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


class _Orig(Exception):
    """A driver error carrying PostgreSQL's SQLSTATE, as asyncpg's do."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (sa.exc.OperationalError("UPDATE", None, Exception("database is locked")), True),
        (sa.exc.InterfaceError("SELECT", None, Exception("connection is closed")), True),
        (sa.exc.DBAPIError("UPDATE", None, Exception("gone"), connection_invalidated=True), True),
        (sa.exc.DBAPIError("UPDATE", None, _Orig("40P01")), True),  # deadlock detected
        (sa.exc.DBAPIError("UPDATE", None, _Orig("57P01")), True),  # server shutting down
        (sa.exc.DBAPIError("UPDATE", None, _Orig("08006")), True),  # connection failure
        (ConnectionRefusedError("connect"), True),
        (sa.exc.IntegrityError("INSERT", None, Exception("UNIQUE constraint failed")), False),
        (sa.exc.DBAPIError("UPDATE", None, _Orig("22003")), False),  # a number out of range
        (ValueError("not a database error"), False),
    ],
)
def test_only_errors_that_pass_on_their_own_count_as_transient(error, transient):
    assert is_transient(error) is transient


async def test_a_write_that_meets_a_locked_database_is_tried_again_until_it_goes_through(store):
    failures = [2]

    def locked(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith("INSERT INTO bot_state") and failures[0] > 0:
            failures[0] -= 1
            raise conn.dialect.dbapi.OperationalError("database is locked")

    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", locked)

    async def write(conn) -> None:
        await conn.execute(bot_state.insert().values(key="k", value="v"))

    await store.transact(write, what="test", retry=Retry(within=5.0, first_delay=0.01))
    assert (failures[0], await store.get_state("k")) == (0, "v")


async def test_an_error_that_will_not_pass_is_raised_at_once_and_never_shows_its_parameters(store):
    secret = "itok.interaction-token-that-must-not-be-logged"
    attempts = 0

    async def write(conn) -> None:
        nonlocal attempts
        attempts += 1
        await conn.execute(bot_state.insert().values(key="same", value=secret))

    await store.transact(write, what="first")
    with pytest.raises(sa.exc.IntegrityError) as refused:
        await store.transact(write, what="duplicate")
    assert (attempts, secret in str(refused.value), secret in describe(refused.value)) == (2, False, False)


def test_fingerprint_changes_when_where_a_command_may_be_used_changes():
    server_only = {"name": "imagine", "integration_types": [0], "contexts": [0]}
    anywhere = {"name": "imagine", "integration_types": [0, 1], "contexts": [0, 1, 2]}
    assert fingerprint([server_only]) != fingerprint([anywhere])


async def test_jobs_from_before_the_job_context_are_server_or_bot_dm_jobs_the_bot_can_reach(
    store, database_url
):
    from bot.jobs.records import JobStore
    from bot.schema import _m010_job_context

    jobs = JobStore(store)
    in_server, in_dm = await jobs.create(asked(guild_id=1)), await jobs.create(asked(guild_id=None))
    await as_before(store, _m010_job_context, columns=("context", "installed_by", "bot_in_channel"))
    async with reopened(database_url) as again:
        await again.migrate()
        migrated = [await JobStore(again).get(job.id) for job in (in_server, in_dm)]
    assert [
        (j.context, j.installed_by, j.bot_in_channel, j.token_only) for j in migrated if j is not None
    ] == [
        ("guild", "guild", True, False),
        ("bot_dm", "guild", True, False),
    ]


async def test_a_job_asked_where_the_bot_is_not_a_member_is_stored_as_reachable_only_by_its_token(store):
    from bot.jobs.records import JobStore

    job = await JobStore(store).create(
        asked(guild_id=None, context="private_channel", installed_by="user", bot_in_channel=False)
    )
    stored = await JobStore(store).get(job.id)
    assert stored is not None and (stored.conversation.context, stored.installed_by, stored.token_only) == (
        "private_channel",
        "user",
        True,
    )
