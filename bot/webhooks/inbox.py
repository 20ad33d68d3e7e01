"""The webhook inbox: a verified event is stored once, then handed to the job running its task.

At least once, as ToAPIs delivers: the event id is written to `webhook_events` before anything
is acted on, and a repeated delivery (same id) answers 2xx and does nothing. A database that
cannot take the id answers 503, so ToAPIs retries later: nothing is acted on unrecorded.

The stored row is also how an event reaches its job wherever it runs: the receiving process
hands the status straight to its own job (`TaskNews.publish`), and every process's relay
(`relay`) looks every `relay_interval` for stored events of the tasks its jobs run — events
received by another process, or that came before the job began waiting. A short poll of an
indexed table works on SQLite and PostgreSQL alike; a job not reached this way is still found
by its status queries (polling stays the safety net).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.jobs.news import TaskNews
from bot.schema import jobs_table, webhook_events_table
from bot.store import WRITE_RETRY, Retry, Store, describe
from bot.telemetry import Telemetry
from bot.toapis import TaskStatus
from bot.webhooks.events import (
    COMPLETED,
    ENDPOINT_TEST,
    FAILED,
    MalformedEventError,
    WebhookEvent,
    parse_event,
    task_status,
)
from bot.webhooks.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_ID_HEADER,
    SignatureError,
    SigningSecret,
    verify_signature,
)

__all__ = ["RefusalLog", "WebhookInbox", "WebhookReply"]

log = logging.getLogger(__name__)

RELAY_INTERVAL = 0.5  # how often a process looks for events of its tasks received elsewhere
KEEP_EVENTS_SECONDS = 3 * 24 * 3600  # longer than ToAPIs retries a delivery (about 31 hours)
PRUNE_EVERY = 3600.0
_CHUNK = 500  # task ids per relay query (SQLite's bound-parameter limit is far above)


@dataclass(frozen=True)
class WebhookReply:
    """The HTTP answer to a delivery: ToAPIs counts only a 2xx, and retries anything else."""

    status: int
    body: Mapping[str, Any]


class RefusalLog:
    """Says why deliveries are refused, once a minute at most per reason (no flood from a
    misconfigured console or a scanner), counting the ones it did not say."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def refused(self, status: int, reason: str) -> None:
        now = self._clock()
        last = self._last.get(reason)
        if last is not None and now - last < self._every:
            self._quiet[reason] = self._quiet.get(reason, 0) + 1
            return
        self._last[reason] = now
        quiet = self._quiet.pop(reason, 0)
        more = f" ({quiet} more like it in the last minute)" if quiet else ""
        log.warning("webhook delivery refused with %d: %s%s", status, reason, more)


@dataclass
class _Relayed:
    """Event ids already handed to this process's jobs, by task (dropped with the task)."""

    by_task: dict[str, set[str]] = field(default_factory=dict)

    def seen(self, task_id: str, event_id: str) -> bool:
        return event_id in self.by_task.get(task_id, ())

    def add(self, task_id: str, event_id: str) -> None:
        self.by_task.setdefault(task_id, set()).add(event_id)

    def keep_only(self, tasks: set[str]) -> None:
        for task_id in [t for t in self.by_task if t not in tasks]:
            del self.by_task[task_id]


class WebhookInbox:
    """Receives deliveries for the HTTP server, and relays stored events to this process's jobs."""

    def __init__(
        self,
        store: Store,
        news: TaskNews,
        secrets: tuple[SigningSecret, ...],
        *,
        telemetry: Telemetry | None = None,
        clock: Callable[[], float] = time.time,
        refusals: RefusalLog | None = None,
        relay_interval: float = RELAY_INTERVAL,
        retry: Retry = WRITE_RETRY,
    ) -> None:
        """`retry` bounds how long storing an event rides out database trouble before the
        delivery is answered 503 (ToAPIs then delivers it again later)."""
        if not secrets:
            raise ValueError("a webhook inbox needs at least one signing secret")
        self._store = store
        self._news = news
        self._secrets = secrets
        self._telemetry = telemetry
        self._clock = clock
        self._refusals = refusals or RefusalLog()
        self._relay_interval = relay_interval
        self._relayed = _Relayed()
        self._retry = retry

    async def receive(self, headers: Mapping[str, str], body: bytes, content_type: str) -> WebhookReply:
        """Check, store and act on one delivery; the reply says what ToAPIs should be told."""
        try:
            if content_type.split(";")[0].strip().lower() != "application/json":
                raise SignatureError(400, "the content type is not application/json")
            event_id = headers.get(WEBHOOK_ID_HEADER)
            verify_signature(
                self._secrets,
                event_id=event_id,
                timestamp=headers.get(TIMESTAMP_HEADER),
                signature=headers.get(SIGNATURE_HEADER),
                body=body,
                now=self._clock(),
            )
            assert event_id is not None
            try:
                event = parse_event(body, event_id)
            except MalformedEventError as exc:
                raise SignatureError(400, f"a signed body that is not a readable event: {exc}") from None
        except SignatureError as exc:
            self._count("refused")
            self._refusals.refused(exc.status, exc.reason)
            return WebhookReply(exc.status, {"error": exc.reason})
        try:
            return await self._accept(event)
        except Exception as exc:
            # Not stored, so not acted on: a non-2xx answer makes ToAPIs deliver it again later.
            log.error(
                "webhook event %s could not be stored; ToAPIs will retry it: %s", event.id, describe(exc)
            )
            return WebhookReply(503, {"error": "the event could not be stored; retry later"})

    async def _accept(self, event: WebhookEvent) -> WebhookReply:
        if not await self._remember(event):
            log.info("webhook event %s (%s) was already received; ignoring the repeat", event.id, event.type)
            self._count("duplicate")
            return WebhookReply(200, {"received": True, "duplicate": True})
        if event.type == ENDPOINT_TEST:
            log.info("webhook test event %s received from the ToAPIs console: webhooks work", event.id)
            self._count("accepted")
            return WebhookReply(200, {"received": True})
        status = task_status(event.data) if event.type in (COMPLETED, FAILED) else None
        if event.task_id is None or status is None:
            log.warning(
                "webhook event %s (%s) reports no task end the bot can read; ignored", event.id, event.type
            )
            self._count("ignored")
            return WebhookReply(200, {"received": True, "ignored": True})
        if not await self._task_known(event.task_id):
            # Another application on the same API key, or (rarely) an event faster than the
            # submission's answer: kept, and relayed should a job take up that task.
            log.info(
                "webhook event %s is for task %s, which no job here knows; ignored", event.id, event.task_id
            )
            self._count("ignored")
            return WebhookReply(200, {"received": True, "ignored": True})
        log.info("webhook event %s: task %s %s", event.id, event.task_id, status.status)
        self._count("accepted")
        self._hand_over(event.id, status)
        return WebhookReply(200, {"received": True})

    def _count(self, outcome: str) -> None:
        if self._telemetry is not None:
            self._telemetry.record_webhook_event(outcome)

    async def _remember(self, event: WebhookEvent) -> bool:
        """Store the event id; False when it was stored before (a repeated delivery)."""
        row = {
            "event_id": event.id,
            "event_type": event.type[:64],
            "task_id": event.task_id,
            "data": json.dumps(event.data, separators=(",", ":")),
            "received_at": self._clock(),
        }

        async def insert(conn: AsyncConnection) -> bool:
            table = webhook_events_table
            found = await conn.execute(sa.select(table.c.event_id).where(table.c.event_id == event.id))
            if found.first() is not None:
                return False
            await conn.execute(table.insert().values(**row))
            return True

        try:
            return await self._store.transact(insert, what="store webhook event", retry=self._retry)
        except sa.exc.IntegrityError:
            return False  # another process stored the same delivery a moment before

    async def _task_known(self, task_id: str) -> bool:
        async with self._store.engine.connect() as conn:
            found = await conn.execute(
                sa.select(jobs_table.c.id).where(jobs_table.c.task_id == task_id).limit(1)
            )
            return found.first() is not None

    def _hand_over(self, event_id: str, status: TaskStatus) -> None:
        """Give the status to this process's job of that task, if it runs here and can use it."""
        if status.status == "completed" and not status.image_urls:
            # Nothing to deliver from: the job's next status query reads the result instead.
            log.warning(
                "webhook event %s: task %s completed without image URLs; left to polling", event_id, status.id
            )
            return
        if self._relayed.seen(status.id, event_id):
            return
        if self._news.publish(status):
            self._relayed.add(status.id, event_id)

    # ------------------------------------------------------------ relay

    async def relay_once(self) -> int:
        """Hand stored events of the tasks this process's jobs run to them; return how many."""
        watched = self._news.watched_tasks()
        self._relayed.keep_only(set(watched))
        handed = 0
        table = webhook_events_table
        for start in range(0, len(watched), _CHUNK):
            chunk = watched[start : start + _CHUNK]
            async with self._store.engine.connect() as conn:
                rows = await conn.execute(
                    sa.select(table.c.event_id, table.c.task_id, table.c.data)
                    .where(table.c.task_id.in_(chunk), table.c.event_type.in_((COMPLETED, FAILED)))
                    .order_by(table.c.received_at)
                )
                found = rows.all()
            for event_id, task_id, data in found:
                if self._relayed.seen(task_id, event_id):
                    continue
                status = task_status(json.loads(data))
                if status is None or status.id != task_id:
                    self._relayed.add(task_id, event_id)
                    continue
                log.info(
                    "webhook event %s received by another process: task %s %s",
                    event_id,
                    task_id,
                    status.status,
                )
                self._hand_over(event_id, status)
                handed += self._relayed.seen(task_id, event_id)
        return handed

    async def prune(self, keep_seconds: float = KEEP_EVENTS_SECONDS) -> int:
        """Forget events older than `keep_seconds` (ToAPIs stopped retrying them long ago)."""
        cutoff = self._clock() - keep_seconds

        async def delete(conn: AsyncConnection) -> int:
            result = await conn.execute(
                webhook_events_table.delete().where(webhook_events_table.c.received_at < cutoff)
            )
            return result.rowcount or 0

        return await self._store.transact(delete, what="prune webhook events")

    async def relay(self) -> None:
        """Run the relay until cancelled; prune old events every hour. Errors are logged and retried."""
        loop = asyncio.get_running_loop()
        pruned_at = -PRUNE_EVERY
        while True:
            try:
                if self._news.watched:
                    await self.relay_once()
                if loop.time() - pruned_at >= PRUNE_EVERY:
                    pruned_at = loop.time()
                    pruned = await self.prune()
                    if pruned:
                        log.info("pruned %d old webhook event(s)", pruned)
            except Exception as exc:
                log.warning("webhook relay: the database did not answer (%s); trying again", describe(exc))
            await asyncio.sleep(self._relay_interval)
