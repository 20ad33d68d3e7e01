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

Lock order: on PostgreSQL every transaction that changes several counters first locks the
existing ones in key order (`_lock_in_order`), and adds to them in key order, so reserving and
settling at the same time across processes cannot deadlock.

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


async def _lock_in_order(conn: AsyncConnection, keys: Iterable[str]) -> None:
    """PostgreSQL: lock the existing counters among `keys` in key order before changing any.

    Every writer taking its rows in the same (sorted) order is what keeps concurrent reserving
    and settling from deadlocking. SQLite has one writer at a time, so it needs no row locks.
    """
    wanted = sorted(set(keys))
    if conn.dialect.name != "postgresql" or not wanted:
        return
    await conn.execute(
        sa.select(counters_table.c.key)
        .where(counters_table.c.key.in_(wanted))
        .order_by(counters_table.c.key)
        .with_for_update()
    )


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
    charges = sorted(charges, key=lambda charge: charge[0].key)  # new rows, too, in key order
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


async def _stamp_all(conn: AsyncConnection, cooldowns: Sequence[Cooldown], now: float) -> set[str]:
    """Stamp each cooldown key with this moment unless its previous stamp is too recent, in ONE
    statement; returns the keys stamped (a key missing from it must wait). Keys must be distinct."""
    if not cooldowns:
        return set()
    now_ms = int(now * 1000)
    cooldowns = sorted(cooldowns, key=lambda c: c.key)
    value, key = counters_table.c.value, counters_table.c.key
    insert = _upsert(conn).values(
        [{"key": c.key, "value": now_ms, "expires_at": now + c.seconds} for c in cooldowns]
    )
    gap_ms = sa.case({c.key: c.seconds * 1000 for c in cooldowns}, value=key, else_=0)
    statement = insert.on_conflict_do_update(
        index_elements=[key],
        set_={"value": insert.excluded.value, "expires_at": insert.excluded.expires_at},
        where=value + gap_ms <= now_ms,
    ).returning(key)
    return set((await conn.execute(statement)).scalars())


async def _retry_at(conn: AsyncConnection, cooldown: Cooldown) -> float:
    """When a member who hit `cooldown` may ask again."""
    last = (
        await conn.execute(sa.select(counters_table.c.value).where(counters_table.c.key == cooldown.key))
    ).scalar_one()
    return last / 1000 + cooldown.seconds


async def _stamp(conn: AsyncConnection, cooldown: Cooldown, now: float) -> float | None:
    """Record this request's time unless the previous one is too recent; else when it may retry."""
    if await _stamp_all(conn, [cooldown], now):
        return None
    return await _retry_at(conn, cooldown)


def _charges(plan: QuotaPlan) -> list[tuple[Limit, int]]:
    running = [(limit, 1) for limit in plan.active_limits]
    return running + [(limit, plan.images) for limit in plan.image_limits]


def _keys_of(plans: Iterable[QuotaPlan]) -> set[str]:
    """Every counter (cooldowns included) charging these plans may touch."""
    keys = {limit.key for plan in plans for limit, _ in _charges(plan)}
    return keys | {c.key for plan in plans if (c := _cooldown(plan)) is not None}


def _cooldown(plan: QuotaPlan) -> Cooldown | None:
    return plan.cooldown if plan.cooldown is not None and plan.cooldown.seconds > 0 else None


def _over_alone(plan: QuotaPlan) -> QuotaExceededError | None:
    """A job bigger than a limit itself (a new counter would start over it)."""
    for limit, amount in _charges(plan):
        if limit.limit is not None and amount > limit.limit:
            return QuotaExceededError(limit, 0, asked=amount)
    return None


async def charge(conn: AsyncConnection, plan: QuotaPlan, now: float) -> None:
    """Charge `plan` inside the caller's transaction, or raise QuotaExceededError having charged
    nothing — even when other jobs share the transaction (group commit), so a refusal undoes
    its own partial charges rather than rolling back."""
    refused = _over_alone(plan)
    if refused is not None:
        raise refused
    charges = _charges(plan)
    charged = await _add_all(conn, charges)
    over = next(((limit, amount) for limit, amount in charges if limit.key not in charged), None)
    if over is not None:
        await _undo(conn, [(limit, amount) for limit, amount in charges if limit.key in charged])
        limit, amount = over
        used = (
            await conn.execute(sa.select(counters_table.c.value).where(counters_table.c.key == limit.key))
        ).scalar() or 0
        raise QuotaExceededError(limit, used, asked=amount)
    cooldown = _cooldown(plan)
    if cooldown is not None:
        retry_at = await _stamp(conn, cooldown, now)
        if retry_at is not None:
            await _undo(conn, charges)
            raise _cooldown_refusal(cooldown, retry_at)


def _cooldown_refusal(cooldown: Cooldown, retry_at: float) -> QuotaExceededError:
    rule = Limit(key=cooldown.key, limit=cooldown.seconds, rule="cooldown")
    return QuotaExceededError(rule, 0, asked=1, retry_at=retry_at)


async def charge_many(
    conn: AsyncConnection, plans: Sequence[QuotaPlan], now: float
) -> list[QuotaExceededError | None]:
    """Charge several jobs inside one transaction (group commit), in order: per plan, None if
    it was charged, else its refusal (that job charged nothing).

    Usually two statements for the whole batch: the batch's amounts are added up per counter
    and charged together, then the cooldowns stamped together. Only when a sum would pass
    some limit, or one member asks twice under a cooldown, is each plan charged on its own —
    so who is refused near a limit is exactly what one-by-one charging would decide.
    """
    outcomes: list[QuotaExceededError | None] = [_over_alone(plan) for plan in plans]
    rest = [i for i, refused in enumerate(outcomes) if refused is None]
    await _lock_in_order(conn, _keys_of([plans[i] for i in rest]))
    cooldown_keys = [c.key for i in rest if (c := _cooldown(plans[i])) is not None]
    together = None
    if len(rest) > 1 and len(set(cooldown_keys)) == len(cooldown_keys):
        together = await _charge_together(conn, [plans[i] for i in rest], now)
    for position, i in enumerate(rest):
        if together is not None:
            outcomes[i] = together[position]
            continue
        try:
            await charge(conn, plans[i], now)
        except QuotaExceededError as exc:
            outcomes[i] = exc
    return outcomes


async def _charge_together(
    conn: AsyncConnection, plans: list[QuotaPlan], now: float
) -> list[QuotaExceededError | None] | None:
    """The fast path of `charge_many`; None (having charged nothing) when some sum would pass a limit."""
    totals: dict[str, tuple[Limit, int]] = {}
    for plan in plans:
        for limit, amount in _charges(plan):
            if limit.key in totals:
                known, total = totals[limit.key]
                limit, amount = _stricter(known, limit), total + amount
            totals[limit.key] = (limit, amount)
    if any(limit.limit is not None and total > limit.limit for limit, total in totals.values()):
        return None  # a new counter would start over its limit (the upsert only guards existing ones)
    charged = await _add_all(conn, list(totals.values()))
    if len(charged) < len(totals):
        await _undo(conn, [(limit, amount) for limit, amount in totals.values() if limit.key in charged])
        return None
    stamped = await _stamp_all(conn, [c for plan in plans if (c := _cooldown(plan)) is not None], now)
    outcomes: list[QuotaExceededError | None] = []
    for plan in plans:
        cooldown = _cooldown(plan)
        if cooldown is None or cooldown.key in stamped:
            outcomes.append(None)
            continue
        await _undo(conn, _charges(plan))  # asked again too soon: only this one is refused
        outcomes.append(_cooldown_refusal(cooldown, await _retry_at(conn, cooldown)))
    return outcomes


def _stricter(a: Limit, b: Limit) -> Limit:
    """Of two limits on one counter (they differ only while settings change), the lower."""
    if a.limit is None:
        return b
    return a if b.limit is None or a.limit <= b.limit else b


async def _undo(conn: AsyncConnection, charges: list[tuple[Limit, int]]) -> None:
    """Take charges back: one statement per distinct amount."""
    by_amount: dict[int, list[str]] = {}
    for limit, amount in charges:
        by_amount.setdefault(amount, []).append(limit.key)
    for amount, keys in by_amount.items():
        await _subtract(conn, keys, amount)


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
    image_keys, active_keys = json.loads(row.quota_keys), json.loads(row.active_keys)
    await _lock_in_order(conn, [*image_keys, *active_keys])
    await _subtract(conn, image_keys, refund)
    await _subtract(conn, active_keys, 1)
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
