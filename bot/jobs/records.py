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

import dataclasses
import enum
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.quota import QuotaExceededError, QuotaPlan, charge_many, settle
from bot.schema import jobs_table
from bot.store import WRITE_RETRY, GroupCommit, Retry, Store

# At most this many job creations (message ids) share one transaction.
CREATE_BATCH = 200
MESSAGE_ID_BATCH = 500


class JobState(enum.StrEnum):
    ACCEPTED = "accepted"
    SUBMITTING = "submitting"
    RUNNING = "running"
    DELIVERING = "delivering"
    DONE = "done"
    FAILED = "failed"


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED})
_JSON_COLUMNS = ("reference_urls", "result_urls", "result_layers", "delivered", "quota_keys", "active_keys")


@dataclass(frozen=True)
class ImageLayer:
    """Where one result image sits in a decomposed (layered) image: z_index 0 is the base image."""

    z_index: int
    name: str | None = None
    description: str | None = None

    @property
    def is_layer(self) -> bool:
        """A transparent layer above the base image (the base image is the generated one)."""
        return self.z_index > 0

    def to_json(self) -> dict[str, Any]:
        """The layer as stored."""
        return {"z_index": self.z_index, "name": self.name, "description": self.description}

    @classmethod
    def from_json(cls, data: object) -> ImageLayer | None:
        """A layer as stored; anything that is not one reads as None (an image without a layer)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("z_index"), int):
            return None
        name, description = data.get("name"), data.get("description")
        return cls(
            z_index=data["z_index"],
            name=name if isinstance(name, str) else None,
            description=description if isinstance(description, str) else None,
        )


@dataclass(frozen=True)
class DeliveredImage:
    """One image a member got, and the message it was posted in (later actions reuse posted images).

    Stored in the job's `delivered` JSON column; rows written by earlier versions may lack keys,
    which read as the defaults.
    """

    filename: str
    size: int = 0  # bytes, as posted
    width: int = 0
    height: int = 0
    reduced: bool = False  # re-encoded or downscaled to fit the upload limit
    message_id: int | None = None
    layer: ImageLayer | None = None  # set for the images of a layered result

    @property
    def is_layer(self) -> bool:
        """A transparent layer of a decomposed image: delivered, but not a generated image for quotas."""
        return self.layer is not None and self.layer.is_layer

    def to_json(self) -> dict[str, Any]:
        """The image as stored (every key earlier versions wrote, and `layer` when there is one)."""
        data: dict[str, Any] = {
            "filename": self.filename,
            "size": self.size,
            "width": self.width,
            "height": self.height,
            "reduced": self.reduced,
            "message_id": self.message_id,
        }
        if self.layer is not None:
            data["layer"] = self.layer.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeliveredImage:
        """An image as stored; a key missing from an older row reads as its default."""
        return cls(
            filename=str(data.get("filename", "")),
            size=int(data.get("size") or 0),
            width=int(data.get("width") or 0),
            height=int(data.get("height") or 0),
            reduced=bool(data.get("reduced", False)),
            message_id=data.get("message_id"),
            layer=ImageLayer.from_json(data.get("layer")),
        )


def delivered_column(images: Sequence[DeliveredImage]) -> dict[str, Any]:
    """The `delivered` JSON stored for a finished job: the messages carrying its images (each once,
    in order) and the images themselves."""
    message_ids = list(dict.fromkeys(image.message_id for image in images))
    return {"message_ids": message_ids, "images": [image.to_json() for image in images]}


class JobContext(enum.StrEnum):
    """Where a job was asked, as Discord's interaction `context` says."""

    GUILD = "guild"  # a server channel (or thread)
    BOT_DM = "bot_dm"  # the member's DM with the bot
    PRIVATE_CHANNEL = "private_channel"  # a group DM, or a DM between other people


@dataclass(frozen=True)
class Conversation:
    """The conversation a job lives in, and how the bot may reach it.

    `bot_in_channel` is False where the bot is not a member (a user install used in a server that
    never installed the bot, a group DM): there the interaction token is its only way in, and
    channel endpoints would only earn 403/404s.
    """

    context: JobContext = JobContext.GUILD
    installed_by: str = "guild"  # the install that authorised it: "guild" or "user"
    bot_in_channel: bool = True


SERVER_CONVERSATION = Conversation()


@dataclass(frozen=True)
class JobOrigin:
    """Where a request was asked: the conversation its message lives in, and how to answer it."""

    guild_id: int | None
    channel_id: int
    user_id: int
    application_id: int
    interaction_id: int | None
    interaction_token: str | None = field(repr=False)
    token_expires_at: float | None
    upload_limit: int  # the most bytes one message may upload there
    conversation: Conversation = field(default_factory=lambda: SERVER_CONVERSATION)
    locale: str | None = None  # the asking member's Discord locale: the language of the job's messages
    guild_locale: str | None = None  # the server's locale (None outside servers): its audit line's


@dataclass(frozen=True)
class NewJob:
    """The columns of a job about to be recorded (state `accepted`): built by
    `bot.jobs.request.new_job` from the request and where it was asked."""

    guild_id: int | None
    channel_id: int
    user_id: int
    application_id: int
    upload_limit: int
    prompt: str
    model: str
    ratio: str
    n: int
    resolution: str | None = None
    interaction_id: int | None = None
    interaction_token: str | None = field(default=None, repr=False)
    token_expires_at: float | None = None
    reference_urls: tuple[str, ...] = ()  # references the image service already holds
    reference_count: int = 0  # every reference, uploaded or not yet
    watermark: bool | None = None  # whether the provider was asked to watermark the images
    speed: str | None = None  # the prompt-optimisation mode sent (None: none)
    layers: bool = False  # the image split into transparent layers (migration 6)
    spoiler: bool = False  # the images are posted as spoilers (migration 9)
    context: str = JobContext.GUILD.value  # see `Conversation` (migration 10)
    installed_by: str = "guild"
    bot_in_channel: bool = True
    locale: str | None = None  # the language of the job's messages (migration 11)
    guild_locale: str | None = None  # the language of its audit line (migration 11)


_NEW_JOB_COLUMNS = tuple(f.name for f in dataclasses.fields(NewJob))


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
    watermark: bool | None = None  # None: recorded before it was sent explicitly (the model's default)
    speed: str | None = None
    layers: bool = False
    # Per result URL, its place in a layered result (migration 6); None when the result has no layers.
    result_layers: tuple[ImageLayer | None, ...] | None = None
    spoiler: bool = False  # the images are posted as spoilers (migration 9)
    # The languages of its messages (migration 11): the asking member's Discord locale, and the
    # server's for the audit line. None (jobs recorded before): English.
    locale: str | None = None
    guild_locale: str | None = None
    # When its personal details were deleted (see `bot.retention`); None while they are kept.
    forgotten_at: float | None = None
    context: str = JobContext.GUILD.value  # see `Conversation` (migration 10)
    installed_by: str = "guild"
    bot_in_channel: bool = True

    @property
    def conversation(self) -> Conversation:
        """Where the job was asked, and whether the bot can reach it other than through the token."""
        return Conversation(JobContext(self.context), self.installed_by, self.bot_in_channel)

    @property
    def token_only(self) -> bool:
        """The bot can reach this job's conversation only through the interaction token."""
        return not self.bot_in_channel

    @property
    def forgotten(self) -> bool:
        """Its prompt, reference links, member id and layer names were deleted; its counts remain."""
        return self.forgotten_at is not None

    @property
    def reference_images(self) -> int:
        """How many reference images reached the image service (a forgotten job keeps only the number)."""
        return self.reference_count if self.forgotten else len(self.reference_urls)

    @property
    def log_name(self) -> str:
        """How every log line about this job names it: `job 12 (guild 3, user 5)`."""
        return f"job {self.id} (guild {self.guild_id}, user {self.user_id})"

    @property
    def delivered_images(self) -> tuple[DeliveredImage, ...]:
        """The images members got (none until the job is done)."""
        if not self.delivered:
            return ()
        return tuple(DeliveredImage.from_json(image) for image in self.delivered.get("images", ()))

    @property
    def generated_images(self) -> int:
        """Delivered images the model generated: layers of a decomposed image are parts of one."""
        return sum(not image.is_layer for image in self.delivered_images)

    @property
    def delivered_message_ids(self) -> tuple[int, ...]:
        """The messages carrying the delivered images, in the order the images were posted."""
        if not self.delivered:
            return ()
        return tuple(self.delivered.get("message_ids", ()))

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
        if data["result_layers"] is not None:
            stored = json.loads(data["result_layers"])
            data["result_layers"] = tuple(ImageLayer.from_json(item) for item in stored)
        return cls(**data)


def _encode(changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(changes)
    for column in _JSON_COLUMNS:
        if column in out and out[column] is not None:
            value = out[column]
            if column == "result_layers":
                value = [None if layer is None else layer.to_json() for layer in value]
            out[column] = json.dumps(list(value) if isinstance(value, tuple | list) else value)
    if "state" in out:
        out["state"] = JobState(out["state"]).value
    return out


def _new_row(quota: QuotaPlan | None, job: NewJob, now: float) -> dict[str, Any]:
    values: dict[str, Any] = {column: getattr(job, column) for column in _NEW_JOB_COLUMNS}
    values |= {"state": JobState.ACCEPTED, "created_at": now, "updated_at": now}
    if quota is not None:
        values |= {
            "quota_reserved": quota.images,
            "quota_keys": [limit.key for limit in quota.image_limits],
            "active_keys": [limit.key for limit in quota.active_limits],
        }
    return _encode(values)


def _in_order(
    rows: Sequence[sa.Row[Any]], inserted: list[dict[str, Any]], columns: tuple[str, ...]
) -> list[sa.Row[Any]]:
    """The rows a multi-row INSERT … RETURNING gave back, in the order of the values inserted.

    Neither SQLite nor PostgreSQL promises RETURNING's order (and SQLAlchemy's ordered form
    falls back to one INSERT per row on SQLite), so rows are matched by the values written:
    rows that are equal in every one of them are interchangeable.
    """
    waiting: dict[tuple[Any, ...], list[sa.Row[Any]]] = {}
    for row in rows:
        waiting.setdefault(tuple(row._mapping[c] for c in columns), []).append(row)
    return [waiting[tuple(values[c] for c in columns)].pop() for values in inserted]


class JobStore:
    """Reads and writes job records. Each write is its own committed transaction, retried through
    transient database errors (a dropped connection, a restarting server, a locked SQLite file)."""

    def __init__(
        self, store: Store, *, clock: Callable[[], float] = time.time, retry: Retry = WRITE_RETRY
    ) -> None:
        self._store = store
        self._engine = store.engine
        self._clock = clock
        self.retry = retry  # how long each write keeps trying through transient database errors
        self._creates = GroupCommit(self._create_batch, size=CREATE_BATCH, name="job-create")
        self._message_ids = GroupCommit(self._message_id_batch, size=MESSAGE_ID_BATCH, name="job-message-id")

    async def create(self, job: NewJob, *, quota: QuotaPlan | None = None) -> JobRecord:
        """Insert `job` in state `accepted`.

        With `quota`, the job's images (and a running-job slot, and the cooldown) are charged in
        the same transaction: either the job exists and is paid for in quota, or neither
        happened. Raises `bot.quota.QuotaExceededError` when a limit would be passed.

        Creations that arrive together share one transaction and a few statements (group
        commit): a burst of hundreds of requests is recorded in a few commits, so every member
        gets an answer within Discord's 3 seconds.
        """
        return await self._creates.submit((quota, job))

    async def drain(self) -> None:
        """Let writes already grouped for a commit finish (call before closing the database)."""
        await self._creates.drain()
        await self._message_ids.drain()

    async def _create_batch(
        self, batch: list[tuple[QuotaPlan | None, NewJob]]
    ) -> list[JobRecord | QuotaExceededError]:
        now = self._clock()
        attempts = 0

        async def write(conn: AsyncConnection) -> list[JobRecord | QuotaExceededError]:
            nonlocal attempts
            attempts += 1
            # A retry after an error on the commit itself may find the batch already written:
            # those jobs (and their charges) exist, so they are returned, not created twice.
            existing = await self._created_before(conn, batch) if attempts > 1 else {}
            return await self._create_rows(conn, batch, existing, now)

        return await self._store.transact(write, what="job create", retry=self.retry, urgent=True)

    async def _created_before(
        self, conn: AsyncConnection, batch: list[tuple[QuotaPlan | None, NewJob]]
    ) -> dict[int, JobRecord]:
        """Jobs of this batch already stored, by interaction id (each interaction makes one job)."""
        ids = [job.interaction_id for _, job in batch if job.interaction_id is not None]
        if not ids:
            return {}
        rows = await conn.execute(sa.select(jobs_table).where(jobs_table.c.interaction_id.in_(ids)))
        return {row.interaction_id: JobRecord._from_row(row) for row in rows}

    async def _create_rows(
        self,
        conn: AsyncConnection,
        batch: list[tuple[QuotaPlan | None, NewJob]],
        existing: dict[int, JobRecord],
        now: float,
    ) -> list[JobRecord | QuotaExceededError]:
        outcomes: list[JobRecord | QuotaExceededError | None] = [
            existing.get(job.interaction_id) if job.interaction_id is not None else None for _, job in batch
        ]
        charged = [
            (i, quota) for i, (quota, _) in enumerate(batch) if quota is not None and outcomes[i] is None
        ]
        refusals = await charge_many(conn, [quota for _, quota in charged], now)
        for (i, _), refusal in zip(charged, refusals, strict=True):
            outcomes[i] = refusal
        rows = {i: _new_row(quota, job, now) for i, (quota, job) in enumerate(batch) if outcomes[i] is None}
        # One multi-row INSERT per shape of row (jobs charged to quota have three columns more).
        shapes: dict[tuple[str, ...], list[int]] = {}
        for i, row in rows.items():
            shapes.setdefault(tuple(sorted(row)), []).append(i)
        for columns, positions in shapes.items():
            values = [rows[i] for i in positions]
            result = await conn.execute(jobs_table.insert().returning(*jobs_table.c), values)
            for i, stored in zip(positions, _in_order(result.all(), values, columns), strict=True):
                outcomes[i] = JobRecord._from_row(stored)
        # Every position is filled by now: found already stored, refused its quota, or inserted.
        return cast(list[JobRecord | QuotaExceededError], outcomes)

    async def set_message_id(self, job: JobRecord, message_id: int) -> JobRecord:
        """Record where the job's message is (writes arriving together share one statement)."""
        await self._message_ids.submit((job.id, message_id))
        return dataclasses.replace(job, message_id=message_id)

    async def _message_id_batch(self, batch: list[tuple[int, int]]) -> list[None]:
        statement = (
            jobs_table.update()
            .where(jobs_table.c.id == sa.bindparam("job_id"))
            .values(message_id=sa.bindparam("new_message_id"), updated_at=self._clock())
        )

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(statement, [{"job_id": j, "new_message_id": m} for j, m in batch])

        await self._store.transact(write, what="job message ids", retry=self.retry)
        return [None] * len(batch)

    async def finish(
        self, job_id: int, state: JobState, *, delivered_images: int, **changes: Any
    ) -> JobRecord:
        """Write a final state and settle the job's quota (refund what was not delivered) atomically.

        The interaction token is cleared: nothing edits a finished job's message through it.
        Retried through transient errors; settling is exactly once, so a retry never refunds twice.
        """
        assert state in FINAL_STATES
        values = _encode(
            {
                **changes,
                "state": state,
                "interaction_token": None,
                "finished_at": self._clock(),
                "updated_at": self._clock(),
            }
        )

        async def write(conn: AsyncConnection) -> sa.Row[Any]:
            await settle(conn, job_id, delivered_images)  # first, so the row below shows it settled
            query = jobs_table.update().where(jobs_table.c.id == job_id).values(**values)
            return (await conn.execute(query.returning(*jobs_table.c))).one()

        row = await self._store.transact(write, what=f"job {job_id} {state}", retry=self.retry)
        return JobRecord._from_row(row)

    async def update(self, job_id: int, *, retry: Retry | None = None, **changes: Any) -> JobRecord:
        """Write changes (a state change included) and return the record as now stored.

        Retried through transient errors for `retry` (default: the store's usual patience);
        writing the same values again is harmless.
        """
        values = _encode({**changes, "updated_at": self._clock()})
        query = jobs_table.update().where(jobs_table.c.id == job_id).values(**values).returning(*jobs_table.c)

        async def write(conn: AsyncConnection) -> sa.Row[Any]:
            return (await conn.execute(query)).one()

        state = changes.get("state")
        what = f"job {job_id}" + (f" {state}" if state is not None else "")
        row = await self._store.transact(write, what=what, retry=retry or self.retry)
        return JobRecord._from_row(row)

    async def clear_expired_tokens(self, now: float) -> int:
        """Forget interaction tokens past their life (they can no longer edit anything); returns how many."""

        async def write(conn: AsyncConnection) -> int:
            result = await conn.execute(
                jobs_table.update()
                .where(jobs_table.c.interaction_token.is_not(None), jobs_table.c.token_expires_at < now)
                .values(interaction_token=None)
            )
            return result.rowcount or 0

        return await self._store.transact(write, what="expired interaction tokens", retry=self.retry)

    async def get(self, job_id: int) -> JobRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id))).first()
        return JobRecord._from_row(row) if row is not None else None

    async def unfinished(self, *, updated_before: float | None = None) -> list[JobRecord]:
        """Jobs a restart must pick up, oldest first; with `updated_before`, only those whose
        record has not been written since then (the sweeper's stranded jobs)."""
        query = (
            sa.select(jobs_table)
            .where(jobs_table.c.state.not_in([s.value for s in FINAL_STATES]))
            .order_by(jobs_table.c.id)
        )
        if updated_before is not None:
            query = query.where(jobs_table.c.updated_at < updated_before)
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
