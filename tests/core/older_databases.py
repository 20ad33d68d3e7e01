"""A database as an older release of the bot left it, for the tests of each migration.

Every migration test does the same three things: record jobs with today's schema, take away what
one migration added (its columns, its tables) and mark the schema as from before it, then open the
database again the way a newly started process does. The pieces here are those steps, once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa

from bot.config import database_url_for_sqlalchemy
from bot.jobs.records import NewJob
from bot.schema import MIGRATIONS, Migration, schema_version
from bot.store import Store

_SMALLEST_JOB = NewJob(
    guild_id=1,
    channel_id=2,
    user_id=3,
    application_id=4,
    upload_limit=1,
    prompt="p",
    model="m",
    ratio="1:1",
    n=1,
)


def asked(**fields: Any) -> NewJob:
    """A job with only what every job needs, and `fields`."""
    return dataclasses.replace(_SMALLEST_JOB, **fields)


async def as_before(
    store: Store, migration: Migration, *, columns: Sequence[str] = (), tables: Sequence[str] = ()
) -> None:
    """Make `store`'s database as it was before `migration`: the job `columns` and the `tables` it
    added gone, and the schema version the one before it."""
    async with store.engine.begin() as conn:
        for column in columns:
            await conn.execute(sa.text(f'ALTER TABLE jobs DROP COLUMN "{column}"'))
        for table in tables:
            await conn.execute(sa.text(f'DROP TABLE "{table}"'))
        await conn.execute(schema_version.update().values(version=MIGRATIONS.index(migration)))


@asynccontextmanager
async def reopened(database_url: str) -> AsyncIterator[Store]:
    """The same database opened by a new store, as a restarted bot opens it (not yet migrated)."""
    again = Store.open(database_url_for_sqlalchemy(database_url))
    try:
        yield again
    finally:
        await again.close()
