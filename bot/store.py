"""The database: one async SQLAlchemy engine, migrations applied at start-up, bot-wide state.

SQLite (aiosqlite) by default, PostgreSQL (asyncpg) when DATABASE_URL says so.
Tables and the numbered migrations live in `bot.schema`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.schema import MIGRATIONS, bot_state, schema_version

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

# PostgreSQL error classes that pass on their own: a serialization failure or deadlock (the
# transaction was rolled back), the server shutting down or restarting, too many connections,
# and connection exceptions (class 08).
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03", "53300"})


def is_transient(exc: BaseException) -> bool:
    """A database error that a moment later may not happen: the connection dropped or was reset,
    the server restarted, SQLite was locked/busy, a deadlock or serialization failure.

    Classified by SQLAlchemy's exception types (and PostgreSQL's SQLSTATE), not by message.
    """
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            return True
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return isinstance(state, str) and (state in _TRANSIENT_SQLSTATES or state.startswith("08"))
    # Connecting can fail before SQLAlchemy wraps anything (refused, reset, timed out).
    return isinstance(exc, OSError | TimeoutError)


def describe(exc: BaseException) -> str:
    """One line naming a database error, without its SQL or parameters (they may hold tokens)."""
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    text = str(orig).splitlines()[0] if str(orig) else ""
    return f"{type(orig).__name__}: {text[:200]}" if text else type(orig).__name__


@dataclass(frozen=True)
class Retry:
    """How long a write keeps trying through transient database errors, with capped backoff."""

    within: float  # seconds from the first attempt; attempts stop once this has passed
    first_delay: float = 0.05
    max_delay: float = 2.0


# A write someone is waiting on: long enough to ride out a PostgreSQL restart or a long SQLite
# lock, short enough that a job whose runner gives up is picked up again by the sweeper.
WRITE_RETRY = Retry(within=20.0)


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers run beside the one writer, and NORMAL syncs at checkpoints instead of on
    every commit: under load, hundreds of small commits a second would otherwise queue behind
    fsync and delay answering members. A crash can lose at most the last moments of commits,
    never corrupt the file (see SQLite's WAL documentation)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class _WriteQueue:
    """A lock with two queues: urgent waiters are served before the others."""

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    async def acquire(self, *, urgent: bool) -> None:
        if not self._held:
            self._held = True
            return
        waiter = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._normal).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # it was handed to us just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        for queue in (self._urgent, self._normal):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._held = False


class GroupCommit(Generic[Item, Result]):
    """Group commit: writes that arrive together are done by one call of `flush`.

    `flush` gets up to `size` items, oldest first, writes them in one transaction and returns
    one outcome per item: its result, or an exception for that item's caller. If `flush`
    raises, every caller in the batch gets the exception (nothing of the batch was written).
    A burst of hundreds of writes then costs a few transactions instead of hundreds.
    """

    def __init__(
        self,
        flush: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
        *,
        size: int,
        name: str,
    ) -> None:
        self._flush = flush
        self._size = size
        self._name = name
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        waiter: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, waiter))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=self._name)
        return await waiter

    async def drain(self) -> None:
        """Wait until every write submitted so far is done (before closing the database)."""
        while self._worker is not None and not self._worker.done():
            await asyncio.wait([self._worker])

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._size], self._pending[self._size :]
            batch = [(item, waiter) for item, waiter in batch if not waiter.cancelled()]
            if not batch:
                continue
            try:
                outcomes: Sequence[Result | BaseException] = await self._flush([item for item, _ in batch])
            except Exception as exc:
                outcomes = [exc] * len(batch)
            except BaseException:
                for _, waiter in batch:
                    waiter.cancel()
                raise
            for (_, waiter), outcome in zip(batch, outcomes, strict=True):
                if waiter.done():
                    continue
                if isinstance(outcome, BaseException):
                    waiter.set_exception(outcome)
                else:
                    waiter.set_result(outcome)


class Store:
    """Owns the engine; every database access in the bot goes through here."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # SQLite has one writer at a time; writers that collide sleep in SQLite's busy handler
        # with growing back-off. Queueing them here instead keeps a burst of requests fast,
        # and lets the writes a member is waiting for go first.
        self._write_lock = _WriteQueue() if engine.dialect.name == "sqlite" else None

    @contextlib.asynccontextmanager
    async def write(self, *, urgent: bool = False) -> AsyncIterator[AsyncConnection]:
        """A write transaction (committed on success, rolled back on error).

        `urgent` writes (a member is waiting for the answer) go before queued background ones.
        """
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        await self._write_lock.acquire(urgent=urgent)
        try:
            async with self.engine.begin() as conn:
                yield conn
        finally:
            self._write_lock.release()

    @classmethod
    def open(cls, sqlalchemy_url: str) -> Store:
        """Create the engine (and the SQLite file's folder) without connecting yet.

        Statement parameters never appear in SQLAlchemy's log lines or error messages: they
        include interaction tokens.
        """
        url = sa.make_url(sqlalchemy_url)
        if url.get_backend_name() != "sqlite":
            return cls(create_async_engine(url, pool_pre_ping=True, hide_parameters=True))
        if url.database not in (None, "", ":memory:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # No pre-ping: a local file cannot drop the connection, and the ping costs a round trip.
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        sa.event.listen(engine.sync_engine, "connect", _tune_sqlite)
        return cls(engine)

    async def transact(
        self,
        work: Callable[[AsyncConnection], Awaitable[Result]],
        *,
        what: str,
        retry: Retry = WRITE_RETRY,
        urgent: bool = False,
    ) -> Result:
        """Run `work` in a write transaction, again from the start after a transient error.

        Each attempt is a whole transaction (a failed one was rolled back, or — if the error
        hit the commit itself — may have committed), so `work` must be safe to run twice.
        Between attempts the write queue is released and the wait doubles up to
        `retry.max_delay`; after `retry.within` seconds the last error is raised.
        """
        give_up = time.monotonic() + retry.within
        delay = retry.first_delay
        attempt = 1
        while True:
            try:
                async with self.write(urgent=urgent) as conn:
                    return await work(conn)
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() + delay > give_up:
                    raise
                log.warning(
                    "database write (%s) failed, retrying in %.2fs (attempt %d): %s",
                    what,
                    delay,
                    attempt,
                    describe(exc),
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, retry.max_delay)
            attempt += 1

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> bool:
        """Whether the database answers a trivial query now (health checks); never raises."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception as exc:
            log.warning("the database does not answer: %s", describe(exc))
            return False
        return True

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
        async with self.write() as conn:
            updated = await conn.execute(bot_state.update().where(bot_state.c.key == key).values(value=value))
            if updated.rowcount == 0:
                await conn.execute(bot_state.insert().values(key=key, value=value))
