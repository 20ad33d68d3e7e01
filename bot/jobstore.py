"""Job records: every request, where its message is, and how far it got.

A job is paid for before it starts, so its record is the source of truth that
survives restarts. States move forward only:

    accepted → submitting → running → delivering → done
         ↘          ↘           ↘           ↘
                          failed

- `accepted`: the member's request was validated and its placeholder posted; nothing sent yet.
- `submitting`: written just before the submission is sent. A record still here after a
  crash means the service may or may not have received it, so it is never re-sent.
- `running`: the service answered with a task id (stored at once); the task is polled.
- `delivering`: the task finished; its result URLs are stored; images are being delivered.
- `done` / `failed`: final.
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.quota import QuotaExceededError, QuotaPlan, charge, settle
from bot.schema import jobs_table
from bot.store import Store

# At most this many job creations share one transaction.
CREATE_BATCH = 200


class JobState(enum.StrEnum):
    ACCEPTED = "accepted"
    SUBMITTING = "submitting"
    RUNNING = "running"
    DELIVERING = "delivering"
    DONE = "done"
    FAILED = "failed"


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED})
_JSON_COLUMNS = ("reference_urls", "result_urls", "delivered", "quota_keys", "active_keys")


@dataclass(frozen=True)
class JobRecord:
    """One job as stored. JSON columns are decoded (tuples for URL lists)."""

    id: int
    state: JobState
    guild_id: int | None
    channel_id: int
    user_id: int
    application_id: int
    interaction_id: int | None
    interaction_token: str | None = field(repr=False)
    token_expires_at: float | None
    message_id: int | None
    upload_limit: int
    prompt: str
    model: str
    ratio: str
    resolution: str | None
    n: int
    reference_urls: tuple[str, ...]
    task_id: str | None
    progress: int | None
    result_urls: tuple[str, ...] | None
    result_expires_at: float | None
    delivered: dict[str, Any] | None
    error: str | None
    created_at: float
    updated_at: float
    submitted_at: float | None
    finished_at: float | None
    quota_reserved: int = 0
    quota_keys: tuple[str, ...] = ()
    active_keys: tuple[str, ...] = ()
    quota_settled: bool = False
    reference_count: int = 0

    @property
    def references_lost(self) -> bool:
        """The member gave reference images that were never re-hosted (the job failed preparing them)."""
        return self.reference_count > len(self.reference_urls)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def token_usable(self, now: float, margin: float = 30.0) -> bool:
        """The interaction token can still edit the message (it dies after 15 minutes)."""
        return (
            bool(self.interaction_token)
            and self.token_expires_at is not None
            and (now < self.token_expires_at - margin)
        )

    @classmethod
    def _from_row(cls, row: sa.Row[Any]) -> JobRecord:
        data = dict(row._mapping)
        data["state"] = JobState(data["state"])
        for column in ("reference_urls", "result_urls", "quota_keys", "active_keys"):
            if data[column] is not None:
                data[column] = tuple(json.loads(data[column]))
        if data["delivered"] is not None:
            data["delivered"] = json.loads(data["delivered"])
        return cls(**data)


def _encode(changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(changes)
    for column in _JSON_COLUMNS:
        if column in out and out[column] is not None:
            value = out[column]
            out[column] = json.dumps(list(value) if isinstance(value, tuple | list) else value)
    if "state" in out:
        out["state"] = JobState(out["state"]).value
    return out


class JobStore:
    """Reads and writes job records. Each write is its own committed transaction."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._engine = store.engine
        self._clock = clock
        self._pending: list[tuple[QuotaPlan | None, dict[str, Any], asyncio.Future[JobRecord]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def create(self, *, quota: QuotaPlan | None = None, **fields: Any) -> JobRecord:
        """Insert a job in state `accepted`; `fields` are the record's columns.

        With `quota`, the job's images (and a running-job slot, and the cooldown) are charged in
        the same transaction: either the job exists and is paid for in quota, or neither
        happened. Raises `bot.quota.QuotaExceededError` when a limit would be passed.

        Creations that arrive together share one transaction (group commit): a burst of
        hundreds of requests is recorded in a few commits, so every member gets an answer
        within Discord's 3 seconds.
        """
        waiter: asyncio.Future[JobRecord] = asyncio.get_running_loop().create_future()
        self._pending.append((quota, fields, waiter))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="job-create-flush")
        return await waiter

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:CREATE_BATCH], self._pending[CREATE_BATCH:]
            outcomes: list[tuple[asyncio.Future[JobRecord], JobRecord | BaseException]] = []
            try:
                async with self._store.write(urgent=True) as conn:
                    for quota, fields, waiter in batch:
                        outcomes.append((waiter, await self._insert(conn, quota, fields)))
            except Exception as exc:  # the commit failed: none of the batch exists
                outcomes = [(waiter, exc) for _, _, waiter in batch]
            for waiter, outcome in outcomes:
                if waiter.done():
                    continue
                if isinstance(outcome, BaseException):
                    waiter.set_exception(outcome)
                else:
                    waiter.set_result(outcome)

    async def _insert(
        self, conn: AsyncConnection, quota: QuotaPlan | None, fields: dict[str, Any]
    ) -> JobRecord | QuotaExceededError:
        now = self._clock()
        values = {
            "state": JobState.ACCEPTED,
            "reference_urls": (),
            **fields,
            "created_at": now,
            "updated_at": now,
        }
        if quota is not None:
            values |= {
                "quota_reserved": quota.images,
                "quota_keys": [limit.key for limit in quota.image_limits],
                "active_keys": [limit.key for limit in quota.active_limits],
            }
            try:
                await charge(conn, quota, now)
            except QuotaExceededError as exc:
                return exc
        row = (
            await conn.execute(jobs_table.insert().values(**_encode(values)).returning(*jobs_table.c))
        ).one()
        return JobRecord._from_row(row)

    async def finish(
        self, job_id: int, state: JobState, *, delivered_images: int, **changes: Any
    ) -> JobRecord:
        """Write a final state and settle the job's quota (refund what was not delivered) atomically."""
        assert state in FINAL_STATES
        values = _encode(
            {**changes, "state": state, "finished_at": self._clock(), "updated_at": self._clock()}
        )
        async with self._store.write() as conn:
            await settle(conn, job_id, delivered_images)  # first, so the row below shows it settled
            query = jobs_table.update().where(jobs_table.c.id == job_id).values(**values)
            row = (await conn.execute(query.returning(*jobs_table.c))).one()
        return JobRecord._from_row(row)

    async def update(self, job_id: int, **changes: Any) -> JobRecord:
        """Write changes (a state change included) and return the record as now stored."""
        values = _encode({**changes, "updated_at": self._clock()})
        async with self._store.write() as conn:
            row = (
                await conn.execute(
                    jobs_table.update()
                    .where(jobs_table.c.id == job_id)
                    .values(**values)
                    .returning(*jobs_table.c)
                )
            ).one()
        return JobRecord._from_row(row)

    async def get(self, job_id: int) -> JobRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id))).first()
        return JobRecord._from_row(row) if row is not None else None

    async def unfinished(self) -> list[JobRecord]:
        """Jobs a restart must pick up, oldest first."""
        query = (
            sa.select(jobs_table)
            .where(jobs_table.c.state.not_in([s.value for s in FINAL_STATES]))
            .order_by(jobs_table.c.id)
        )
        async with self._engine.connect() as conn:
            return [JobRecord._from_row(row) for row in await conn.execute(query)]

    async def in_guild(self, guild_id: int, *, since: float, until: float, limit: int) -> list[JobRecord]:
        """A server's jobs created in [since, until), oldest first, at most `limit` (for usage reports)."""
        query = (
            sa.select(jobs_table)
            .where(
                jobs_table.c.guild_id == guild_id,
                jobs_table.c.created_at >= since,
                jobs_table.c.created_at < until,
            )
            .order_by(jobs_table.c.created_at, jobs_table.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [JobRecord._from_row(row) for row in await conn.execute(query)]

    async def recent(self, *, guild_id: int | None, user_id: int, limit: int = 10) -> list[JobRecord]:
        """A member's latest jobs in one server (in DMs when guild_id is None), newest first."""
        guild = jobs_table.c.guild_id.is_(None) if guild_id is None else jobs_table.c.guild_id == guild_id
        query = (
            sa.select(jobs_table)
            .where(guild, jobs_table.c.user_id == user_id)
            .order_by(jobs_table.c.id.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [JobRecord._from_row(row) for row in await conn.execute(query)]
