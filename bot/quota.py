"""Quotas are money: images reserved atomically when a job is accepted, settled exactly once.

Counters live in one table (`counters`): images per member per day, per server per
day and month, per member per day across the bot, running jobs, cooldown stamps.
A reservation is one conditional upsert per counter —

    INSERT … ON CONFLICT (key) DO UPDATE SET value = value + :n WHERE value + :n <= :limit RETURNING value

— all inside the transaction that inserts the job record. If any counter would go
over its limit, nothing is written: two requests at the same instant cannot both
take the last unit, on SQLite (writes are serialised) or PostgreSQL (row locks),
across any number of bot processes sharing the database.

Settling (`settle`) refunds what was reserved but not delivered and frees the
running-job slots, guarded by the job's `quota_settled` flag in the same
transaction, so a job is never refunded twice, even across restarts.

Days and months are UTC.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.schema import counters_table, jobs_table
from bot.store import Store


def day_key(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def month_key(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m")


def next_day(now: float) -> float:
    """When today's (UTC) quotas reset."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day + timedelta(days=1)).timestamp()


def next_month(now: float) -> float:
    """When this month's (UTC) quotas reset."""
    first = datetime.fromtimestamp(now, UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    ).timestamp()


@dataclass(frozen=True)
class Limit:
    """One counter a job is charged against. `limit` None: counted, never refused."""

    key: str
    limit: int | None
    rule: str  # which rule this is, for the refusal message (see bot.policy)
    resets_at: float | None = None  # when the counter's period ends (None: it does not)


@dataclass(frozen=True)
class Cooldown:
    key: str
    seconds: int


@dataclass(frozen=True)
class QuotaPlan:
    """What accepting one job charges: `images` on each image counter, 1 on each running-job counter."""

    images: int
    image_limits: tuple[Limit, ...] = ()
    active_limits: tuple[Limit, ...] = ()
    cooldown: Cooldown | None = None


class QuotaExceededError(Exception):
    """A limit would be exceeded; nothing was charged."""

    def __init__(self, limit: Limit, used: int, *, asked: int, retry_at: float | None = None) -> None:
        super().__init__(f"{limit.rule}: {used}/{limit.limit} used, asked for {asked}")
        self.limit = limit
        self.used = used
        self.asked = asked
        self.retry_at = retry_at if retry_at is not None else limit.resets_at


def _upsert(conn: AsyncConnection) -> Any:  # a dialect-specific INSERT construct
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(counters_table)


async def _add_all(conn: AsyncConnection, charges: list[tuple[Limit, int]]) -> set[str]:
    """Add each amount to its counter unless that passes the counter's limit, in ONE statement:

        INSERT … VALUES (k1, a1), (k2, a2), … ON CONFLICT (key) DO UPDATE
            SET value = value + excluded.value
            WHERE value + excluded.value <= CASE key WHEN k1 THEN l1 … END
        RETURNING key

    Returns the keys that were charged; a key missing from it was refused (the caller then
    rolls the whole transaction back). One round trip instead of one per counter matters
    when hundreds of requests arrive at once.
    """
    if not charges:
        return set()
    value, key = counters_table.c.value, counters_table.c.key
    insert = _upsert(conn).values(
        [{"key": limit.key, "value": amount, "expires_at": limit.resets_at} for limit, amount in charges]
    )
    limits = {limit.key: limit.limit for limit, _ in charges if limit.limit is not None}
    guard = value + insert.excluded.value <= sa.case(limits, value=key, else_=value + insert.excluded.value)
    statement = insert.on_conflict_do_update(
        index_elements=[key], set_={"value": value + insert.excluded.value}, where=guard if limits else None
    ).returning(key)
    return set((await conn.execute(statement)).scalars())


async def _stamp(conn: AsyncConnection, cooldown: Cooldown, now: float) -> float | None:
    """Record this request's time unless the previous one is too recent; else when it may retry."""
    now_ms = int(now * 1000)
    value = counters_table.c.value
    insert = _upsert(conn).values(key=cooldown.key, value=now_ms, expires_at=now + cooldown.seconds)
    statement = insert.on_conflict_do_update(
        index_elements=[counters_table.c.key],
        set_={"value": now_ms, "expires_at": now + cooldown.seconds},
        where=value <= now_ms - cooldown.seconds * 1000,
    ).returning(value)
    if (await conn.execute(statement)).scalar() is not None:
        return None
    last = (await conn.execute(sa.select(value).where(counters_table.c.key == cooldown.key))).scalar_one()
    return last / 1000 + cooldown.seconds


async def charge(conn: AsyncConnection, plan: QuotaPlan, now: float) -> None:
    """Charge `plan` inside the caller's transaction, or raise QuotaExceededError having charged
    nothing — even when other jobs share the transaction (group commit), so a refusal undoes
    its own partial charges rather than rolling back."""
    charges = [(limit, 1) for limit in plan.active_limits] + [
        (limit, plan.images) for limit in plan.image_limits
    ]
    for limit, amount in charges:
        if limit.limit is not None and amount > limit.limit:  # a new counter would start over it
            raise QuotaExceededError(limit, 0, asked=amount)
    charged = await _add_all(conn, charges)
    refused = next(((limit, amount) for limit, amount in charges if limit.key not in charged), None)
    if refused is not None:
        await _undo(conn, [(limit, amount) for limit, amount in charges if limit.key in charged])
        limit, amount = refused
        used = (
            await conn.execute(sa.select(counters_table.c.value).where(counters_table.c.key == limit.key))
        ).scalar() or 0
        raise QuotaExceededError(limit, used, asked=amount)
    if plan.cooldown is not None and plan.cooldown.seconds > 0:
        retry_at = await _stamp(conn, plan.cooldown, now)
        if retry_at is not None:
            await _undo(conn, charges)
            rule = Limit(key=plan.cooldown.key, limit=plan.cooldown.seconds, rule="cooldown")
            raise QuotaExceededError(rule, 0, asked=1, retry_at=retry_at)


async def _undo(conn: AsyncConnection, charges: list[tuple[Limit, int]]) -> None:
    for limit, amount in charges:
        await _subtract(conn, [limit.key], amount)


async def settle(conn: AsyncConnection, job_id: int, delivered: int) -> bool:
    """Inside the caller's transaction: refund job `job_id`'s reservation beyond `delivered`
    images and free its running slots. Exactly once per job: False if already settled."""
    claimed = await conn.execute(
        jobs_table.update()
        .where(jobs_table.c.id == job_id, jobs_table.c.quota_settled.is_(False))
        .values(quota_settled=True)
        .returning(jobs_table.c.quota_reserved, jobs_table.c.quota_keys, jobs_table.c.active_keys)
    )
    row = claimed.first()
    if row is None:
        return False
    refund = max(0, row.quota_reserved - max(0, delivered))
    await _subtract(conn, json.loads(row.quota_keys), refund)
    await _subtract(conn, json.loads(row.active_keys), 1)
    return True


class QuotaLedger:
    """Reads and tidies counters. Charging and settling happen with the job's own writes (JobStore)."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._engine = store.engine
        self._clock = clock

    async def claim(self, key: str, seconds: int) -> bool:
        """True for the first claim of `key` within `seconds` (across processes); False for repeats.

        Used to turn a double click into one action.
        """
        async with self._store.write() as conn:
            return await _stamp(conn, Cooldown(key=key, seconds=seconds), self._clock()) is None

    async def release(self, key: str) -> None:
        """Give a claim back (the action it guarded did not happen)."""
        async with self._store.write() as conn:
            await conn.execute(counters_table.delete().where(counters_table.c.key == key))

    async def values(self, keys: Iterable[str]) -> dict[str, int]:
        """Current counter values (missing keys read as 0)."""
        wanted = list(keys)
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(counters_table.c.key, counters_table.c.value).where(
                    counters_table.c.key.in_(wanted)
                )
            )
            found = {row.key: int(row.value) for row in rows}
        return {key: found.get(key, 0) for key in wanted}

    async def prune(self) -> int:
        """Delete counters whose period is over; returns how many."""
        async with self._store.write() as conn:
            result = await conn.execute(
                counters_table.delete().where(counters_table.c.expires_at < self._clock() - 86400)
            )
        return result.rowcount or 0


async def _subtract(conn: AsyncConnection, keys: Sequence[str], amount: int) -> None:
    if amount <= 0 or not keys:
        return
    value = counters_table.c.value
    await conn.execute(
        counters_table.update()
        .where(counters_table.c.key.in_(list(keys)))
        .values(value=sa.case((value >= amount, value - amount), else_=0))
    )
