"""The database schema: every table, and the numbered migrations that build it.

Each migration runs once, in order, in its own transaction; `schema_version`
records the highest applied number (see `Store.migrate`). Append new migrations;
never edit one that has shipped. A migration that changes an existing table must
spell out its DDL (and tolerate a column that a newer `create` already made),
because the `Table` objects below always describe the latest schema.
"""

from __future__ import annotations

import json
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
    # Quota bookkeeping (migration 3): what was reserved when the job was accepted, and whether
    # it was settled (refunded down to what was delivered) — exactly once.
    sa.Column("quota_reserved", sa.Integer, nullable=False, server_default="0"),
    sa.Column("quota_keys", sa.Text, nullable=False, server_default="[]"),
    sa.Column("active_keys", sa.Text, nullable=False, server_default="[]"),
    sa.Column("quota_settled", sa.Boolean, nullable=False, server_default=sa.false()),
    # How many reference images the member gave (migration 4): a reroll must not silently run
    # without references that were never uploaded.
    sa.Column("reference_count", sa.Integer, nullable=False, server_default="0"),
    # What was asked of the model beyond the basics (migration 5): whether the images carry the
    # provider's watermark (NULL: older jobs, which got the model's default) and the speed mode.
    sa.Column("watermark", sa.Boolean, nullable=True),
    sa.Column("speed", sa.String(16), nullable=True),
    # The member asked for the image split into layers (migration 6).
    sa.Column("layers", sa.Boolean, nullable=False, server_default=sa.false()),
    # Per result URL, its z_index, name and description when the result is layered (JSON, migration 6).
    sa.Column("result_layers", sa.Text, nullable=True),
    # When the job's personal details (prompt, reference links, member id, layer names) were
    # deleted, by JOB_RETENTION_DAYS or on request (migration 8); its counts stay for reports.
    sa.Column("forgotten_at", sa.Float, nullable=True),
    # The images are posted as spoilers (migration 9): the member's or the server's choice when asked.
    sa.Column("spoiler", sa.Boolean, nullable=False, server_default=sa.false()),
    # Where the job was asked (migration 10): `guild`, `bot_dm` or `private_channel` (Discord's
    # interaction context); which install authorised it (`guild` or `user`); and whether the bot
    # can reach that conversation with its own token. A user install used in a server the bot is
    # not in, or in a group DM, is reached only through the interaction token.
    sa.Column("context", sa.String(16), nullable=False, server_default="guild"),
    sa.Column("installed_by", sa.String(8), nullable=False, server_default="guild"),
    sa.Column("bot_in_channel", sa.Boolean, nullable=False, server_default=sa.true()),
    # The languages its messages are written in, long after the interaction (migration 11): the
    # member's Discord locale, and the server's for its audit line. NULL (older jobs): English.
    sa.Column("locale", sa.String(16), nullable=True),
    sa.Column("guild_locale", sa.String(16), nullable=True),
    sa.Index("ix_jobs_state", "state"),
    sa.Index("ix_jobs_guild_user", "guild_id", "user_id"),
    # A webhook event names its task: finding the job by it must not scan the table (migration 7).
    sa.Index("ix_jobs_task_id", "task_id"),
    sa.Index("ix_jobs_created_at", "created_at"),
    sa.Index("ix_jobs_user", "user_id"),
)


guild_settings_table = sa.Table(
    "guild_settings",
    metadata,
    sa.Column("guild_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("data", sa.Text, nullable=False),  # JSON, see bot.guild_settings
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Atomic counters: images per member/server/day/month, running jobs, cooldown stamps.
counters_table = sa.Table(
    "counters",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),  # when the row may be pruned
)


# Signed webhook events received (migration 7), by event id: a repeated delivery is recognised
# and does nothing. Each process watches the rows of the tasks its jobs run, so an event
# received by any process reaches the job, wherever it runs. Pruned after a few days.
webhook_events_table = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("task_id", sa.String(200), nullable=True),
    sa.Column("data", sa.Text, nullable=False),  # the event's `data` object, as JSON
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Index("ix_webhook_events_task_id", "task_id"),
    sa.Index("ix_webhook_events_received_at", "received_at"),
)


# A member's own defaults for /imagine (migration 9), global to the member: see bot.preferences.
# A member who resets everything has no row.
member_preferences_table = sa.Table(
    "member_preferences",
    metadata,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("data", sa.Text, nullable=False),  # JSON, see bot.preferences
    sa.Column("updated_at", sa.Float, nullable=False),
)


async def _create(conn: AsyncConnection, table: sa.Table) -> None:
    await conn.run_sync(lambda sync: table.create(sync, checkfirst=True))


async def _m001_bot_state(conn: AsyncConnection) -> None:
    await _create(conn, bot_state)


async def _m002_jobs(conn: AsyncConnection) -> None:
    await _create(conn, jobs_table)


async def _add_missing_columns(conn: AsyncConnection, table: sa.Table, names: tuple[str, ...]) -> None:
    """ALTER TABLE … ADD COLUMN for columns an older database lacks (newer ones got them from `create`)."""

    def existing(sync: sa.Connection) -> set[str]:
        return {c["name"] for c in sa.inspect(sync).get_columns(table.name)}

    present = await conn.run_sync(existing)
    for name in names:
        if name in present:
            continue
        column = table.c[name]
        ddl = column.type.compile(dialect=conn.dialect)
        server_default = column.server_default
        default = server_default.arg if isinstance(server_default, sa.DefaultClause) else None
        sql_default: str | None = None
        if isinstance(default, str):
            sql_default = "'" + default.replace("'", "''") + "'"
        elif isinstance(default, sa.sql.elements.ClauseElement):
            sql_default = str(default.compile(dialect=conn.dialect))
        clause = f" NOT NULL DEFAULT {sql_default}" if sql_default is not None else ""
        await conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{name}" {ddl}{clause}'))


async def _m003_moderation(conn: AsyncConnection) -> None:
    quota_columns = ("quota_reserved", "quota_keys", "active_keys", "quota_settled")
    await _add_missing_columns(conn, jobs_table, quota_columns)
    await _create(conn, guild_settings_table)
    await _create(conn, counters_table)


async def _m004_reference_count(conn: AsyncConnection) -> None:
    await _add_missing_columns(conn, jobs_table, ("reference_count",))
    # Jobs from before knew only their uploaded references: count those.
    rows = await conn.execute(
        sa.select(jobs_table.c.id, jobs_table.c.reference_urls).where(jobs_table.c.reference_urls != "[]")
    )
    for job_id, urls in rows.all():
        await conn.execute(
            jobs_table.update().where(jobs_table.c.id == job_id).values(reference_count=len(json.loads(urls)))
        )


async def _m005_watermark_and_speed(conn: AsyncConnection) -> None:
    await _add_missing_columns(conn, jobs_table, ("watermark", "speed"))


async def _m006_layers(conn: AsyncConnection) -> None:
    await _add_missing_columns(conn, jobs_table, ("layers", "result_layers"))


async def _m007_webhook_events(conn: AsyncConnection) -> None:
    await _create(conn, webhook_events_table)
    task_index = next(index for index in jobs_table.indexes if index.name == "ix_jobs_task_id")
    await conn.run_sync(lambda sync: task_index.create(sync, checkfirst=True))


async def _m008_forgotten_jobs(conn: AsyncConnection) -> None:
    await _add_missing_columns(conn, jobs_table, ("forgotten_at",))
    # The retention sweep looks for old jobs not yet forgotten; a member's forget, for their jobs
    # (ix_jobs_guild_user covers only jobs in one server).
    await conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_jobs_created_at ON jobs (created_at)"))
    await conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_jobs_user ON jobs (user_id)"))


async def _m009_member_preferences_and_spoilers(conn: AsyncConnection) -> None:
    await _create(conn, member_preferences_table)
    await _add_missing_columns(conn, jobs_table, ("spoiler",))


async def _m010_job_context(conn: AsyncConnection) -> None:
    await _add_missing_columns(conn, jobs_table, ("context", "installed_by", "bot_in_channel"))
    # Jobs from before were asked in a server the bot is in, or in a DM with the bot.
    await conn.execute(jobs_table.update().where(jobs_table.c.guild_id.is_(None)).values(context="bot_dm"))


async def _m011_job_locales(conn: AsyncConnection) -> None:
    await _add_missing_columns(conn, jobs_table, ("locale", "guild_locale"))


Migration = Callable[[AsyncConnection], Awaitable[None]]

MIGRATIONS: tuple[Migration, ...] = (
    _m001_bot_state,
    _m002_jobs,
    _m003_moderation,
    _m004_reference_count,
    _m005_watermark_and_speed,
    _m006_layers,
    _m007_webhook_events,
    _m008_forgotten_jobs,
    _m009_member_preferences_and_spoilers,
    _m010_job_context,
    _m011_job_locales,
)
