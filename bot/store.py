"""The database: one async SQLAlchemy engine, numbered migrations, small typed accessors.

SQLite (aiosqlite) by default, PostgreSQL (asyncpg) when DATABASE_URL says so.
Migrations are a numbered list below: each runs once, in order, inside a
transaction, and `schema_version` records the highest applied number. Add a new
migration by appending a function; never edit one that has shipped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

bot_state = sa.Table(
    "bot_state",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


async def _m001_bot_state(conn: AsyncConnection) -> None:
    await conn.run_sync(lambda sync: bot_state.create(sync, checkfirst=True))


Migration = Callable[[AsyncConnection], Awaitable[None]]

MIGRATIONS: tuple[Migration, ...] = (_m001_bot_state,)


class Store:
    """Owns the engine; every database access in the bot goes through here."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, sqlalchemy_url: str) -> Store:
        """Create the engine (and the SQLite file's folder) without connecting yet."""
        url = sa.make_url(sqlalchemy_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        return cls(create_async_engine(url, pool_pre_ping=True))

    async def close(self) -> None:
        await self.engine.dispose()

    async def migrate(self) -> int:
        """Apply pending migrations; return the schema version now in force."""
        async with self.engine.begin() as conn:
            await conn.run_sync(lambda sync: schema_version.create(sync, checkfirst=True))
            current = (await conn.execute(sa.select(schema_version.c.version))).scalar()
            if current is None:
                await conn.execute(schema_version.insert().values(id=1, version=0))
                current = 0
        for number, migration in enumerate(MIGRATIONS, start=1):
            if number <= current:
                continue
            async with self.engine.begin() as conn:
                # Lock the version row so two processes starting together migrate once.
                locked = (
                    await conn.execute(sa.select(schema_version.c.version).with_for_update())
                ).scalar_one()
                if locked >= number:
                    continue
                log.info("applying database migration %d (%s)", number, migration.__name__)
                await migration(conn)
                await conn.execute(schema_version.update().values(version=number))
            current = number
        return len(MIGRATIONS)

    async def get_state(self, key: str) -> str | None:
        """A small piece of bot-wide state (e.g. the registered-commands hash)."""
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(bot_state.c.value).where(bot_state.c.key == key))).scalar()

    async def set_state(self, key: str, value: str) -> None:
        async with self.engine.begin() as conn:
            updated = await conn.execute(bot_state.update().where(bot_state.c.key == key).values(value=value))
            if updated.rowcount == 0:
                await conn.execute(bot_state.insert().values(key=key, value=value))
