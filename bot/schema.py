"""The database schema: every table, and the numbered migrations that build it.

Each migration runs once, in order, in its own transaction; `schema_version`
records the highest applied number (see `Store.migrate`). Append new migrations;
never edit one that has shipped. A migration that changes an existing table must
spell out its DDL (and tolerate a column that a newer `create` already made),
because the `Table` objects below always describe the latest schema.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

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


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL needs a BIGINT for Discord-sized ids.
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

jobs_table = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("guild_id", sa.BigInteger, nullable=True),
    sa.Column("channel_id", sa.BigInteger, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("application_id", sa.BigInteger, nullable=False),
    sa.Column("interaction_id", sa.BigInteger, nullable=True),
    sa.Column("interaction_token", sa.Text, nullable=True),
    sa.Column("token_expires_at", sa.Float, nullable=True),
    sa.Column("message_id", sa.BigInteger, nullable=True),
    sa.Column("upload_limit", sa.Integer, nullable=False),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("model", sa.String(100), nullable=False),
    sa.Column("ratio", sa.String(16), nullable=False),
    sa.Column("resolution", sa.String(16), nullable=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("reference_urls", sa.Text, nullable=False, default="[]"),
    sa.Column("task_id", sa.String(200), nullable=True),
    sa.Column("progress", sa.Integer, nullable=True),
    sa.Column("result_urls", sa.Text, nullable=True),
    sa.Column("result_expires_at", sa.Float, nullable=True),
    sa.Column("delivered", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("submitted_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Index("ix_jobs_state", "state"),
    sa.Index("ix_jobs_guild_user", "guild_id", "user_id"),
)


async def _create(conn: AsyncConnection, table: sa.Table) -> None:
    await conn.run_sync(lambda sync: table.create(sync, checkfirst=True))


async def _m001_bot_state(conn: AsyncConnection) -> None:
    await _create(conn, bot_state)


async def _m002_jobs(conn: AsyncConnection) -> None:
    await _create(conn, jobs_table)


Migration = Callable[[AsyncConnection], Awaitable[None]]

MIGRATIONS: tuple[Migration, ...] = (_m001_bot_state, _m002_jobs)
