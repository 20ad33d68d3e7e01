"""Job records on SQLite and PostgreSQL: what is written is what a restart reads back."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from bot.catalog import builtin_catalog
from bot.config import database_url_for_sqlalchemy
from bot.jobs.records import (
    DeliveredImage,
    ImageLayer,
    JobOrigin,
    JobState,
    JobStore,
    NewJob,
    delivered_column,
)
from bot.jobs.request import RequestOptions, build_request, request_for_job
from bot.jobs.request import new_job as new_job_for
from bot.quota import Limit, QuotaLedger, QuotaPlan
from bot.schema import jobs_table
from bot.store import Store

pytestmark = pytest.mark.asyncio

# Real Discord snowflakes are 64-bit: far beyond a 32-bit INTEGER.
GUILD_ID = 1234567890123456789
CHANNEL_ID = 1234567890123456790
USER_ID = 987654321098765432
APPLICATION_ID = 1111111111111111111
INTERACTION_ID = 1456789012345678901
MESSAGE_ID = 1456789012345678999
TOKEN = "itok.secret-interaction-token-do-not-log"


def new_job(**overrides: Any) -> NewJob:
    """The job /imagine records when it accepts a request."""
    job = NewJob(
        guild_id=GUILD_ID,
        channel_id=CHANNEL_ID,
        user_id=USER_ID,
        application_id=APPLICATION_ID,
        interaction_id=INTERACTION_ID,
        interaction_token=TOKEN,
        token_expires_at=1_900_000_000.5,
        upload_limit=10 * 1024 * 1024,
        prompt="a red fox in snow",
        model="doubao-seedream-5-0",
        ratio="16:9",
        resolution="3K",
        n=2,
    )
    return dataclasses.replace(job, **overrides)


def ticking_clock(start: float = 1_700_000_000.0, step: float = 10.0):
    """A clock that moves forward by `step` seconds on every reading."""
    counter = itertools.count()
    return lambda: start + step * next(counter)


async def test_a_new_job_is_accepted_with_its_fields_and_json_columns_round_tripped(store):
    jobs = JobStore(store)
    created = await jobs.create(
        new_job(
            reference_urls=("https://files.example/ref-1.png", "https://files.example/ref-2.png"),
            reference_count=2,
        )
    )
    stored = await jobs.get(created.id)
    assert (
        created.state,
        created.prompt,
        created.ratio,
        created.resolution,
        created.n,
        created.reference_urls,
        created.reference_count,
        created.result_urls,
        created.delivered,
        created.task_id,
        created.interaction_token,
        created.message_id,
        created.is_final,
    ) == (
        JobState.ACCEPTED,
        "a red fox in snow",
        "16:9",
        "3K",
        2,
        ("https://files.example/ref-1.png", "https://files.example/ref-2.png"),
        2,
        None,
        None,
        None,
        TOKEN,
        None,
        False,
    )
    assert stored == created


async def test_a_job_without_references_reads_back_an_empty_tuple_and_no_results(store):
    jobs = JobStore(store)
    created = await jobs.create(new_job())
    stored = await jobs.get(created.id)
    assert stored is not None
    assert (stored.reference_urls, stored.result_urls, stored.delivered) == ((), None, None)


async def test_discord_sized_ids_survive_the_database(store):
    jobs = JobStore(store)
    created = await jobs.create(new_job())
    created = await jobs.set_message_id(created, MESSAGE_ID)
    stored = await jobs.get(created.id)
    assert stored is not None
    assert (
        stored.guild_id,
        stored.channel_id,
        stored.user_id,
        stored.application_id,
        stored.interaction_id,
        stored.message_id,
    ) == (GUILD_ID, CHANNEL_ID, USER_ID, APPLICATION_ID, INTERACTION_ID, MESSAGE_ID)


async def test_a_moved_message_id_of_discord_size_is_stored(store):
    jobs = JobStore(store)
    created = await jobs.create(new_job())
    created = await jobs.set_message_id(created, MESSAGE_ID)
    updated = await jobs.update(created.id, message_id=MESSAGE_ID + 12345)
    stored = await jobs.get(created.id)
    assert (updated.message_id, stored.message_id if stored else None) == (
        MESSAGE_ID + 12345,
        MESSAGE_ID + 12345,
    )


async def test_update_writes_the_state_change_and_returns_the_stored_record(store):
    jobs = JobStore(store, clock=ticking_clock())
    created = await jobs.create(new_job())
    updated = await jobs.update(
        created.id, state=JobState.RUNNING, task_id="task_img_abc123", progress=40, submitted_at=123.0
    )
    stored = await jobs.get(created.id)
    assert (updated.state, updated.task_id, updated.progress, updated.submitted_at) == (
        JobState.RUNNING,
        "task_img_abc123",
        40,
        123.0,
    )
    assert stored == updated
    assert updated.updated_at > created.updated_at
    assert updated.created_at == created.created_at


async def test_update_leaves_columns_it_was_not_given_alone(store):
    jobs = JobStore(store)
    created = await jobs.create(new_job(reference_urls=("https://files.example/ref.png",)))
    updated = await jobs.update(created.id, state="submitting")
    assert (updated.state, updated.prompt, updated.reference_urls, updated.interaction_token) == (
        JobState.SUBMITTING,
        created.prompt,
        ("https://files.example/ref.png",),
        TOKEN,
    )


async def test_result_urls_and_delivery_written_by_update_read_back_decoded(store):
    jobs = JobStore(store)
    created = await jobs.create(new_job())
    await jobs.update(
        created.id,
        state=JobState.DELIVERING,
        result_urls=["https://files.example/1.jpg", "https://files.example/2.jpg"],
        result_expires_at=1_800_000_000.0,
    )
    done = await jobs.update(
        created.id,
        state=JobState.DONE,
        delivered={"message_ids": [MESSAGE_ID], "images": [{"filename": "x.jpg"}, {"filename": "y.jpg"}]},
    )
    stored = await jobs.get(created.id)
    assert stored is not None
    assert (
        stored.state,
        stored.result_urls,
        stored.result_expires_at,
        stored.delivered,
        stored.is_final,
    ) == (
        JobState.DONE,
        ("https://files.example/1.jpg", "https://files.example/2.jpg"),
        1_800_000_000.0,
        {"message_ids": [MESSAGE_ID], "images": [{"filename": "x.jpg"}, {"filename": "y.jpg"}]},
        True,
    )
    assert stored == done


async def test_unfinished_lists_exactly_the_jobs_a_restart_must_pick_up_oldest_first(store):
    jobs = JobStore(store)
    states = [
        JobState.RUNNING,
        JobState.DONE,
        JobState.ACCEPTED,
        JobState.FAILED,
        JobState.DELIVERING,
        JobState.SUBMITTING,
        JobState.DONE,
    ]
    created = [await jobs.create(new_job(prompt=f"job {i}")) for i in range(len(states))]
    for job, state in zip(created, states, strict=True):
        if state is not JobState.ACCEPTED:
            await jobs.update(job.id, state=state)
    unfinished = await jobs.unfinished()
    expected = [
        (job.id, state) for job, state in zip(created, states, strict=True) if state not in ("done", "failed")
    ]
    assert [(job.id, job.state) for job in unfinished] == expected
    assert [job.prompt for job in unfinished] == ["job 0", "job 2", "job 4", "job 5"]


async def test_unfinished_is_empty_when_every_job_ended(store):
    jobs = JobStore(store)
    first = await jobs.create(new_job())
    second = await jobs.create(new_job())
    await jobs.update(first.id, state=JobState.DONE)
    await jobs.update(second.id, state=JobState.FAILED, error="The image service refused this request.")
    assert await jobs.unfinished() == []


async def test_get_of_an_unknown_job_is_none(store):
    jobs = JobStore(store)
    created = await jobs.create(new_job())
    assert await jobs.get(created.id + 1000) is None


async def test_the_interaction_token_is_kept_out_of_the_records_repr(store):
    jobs = JobStore(store)
    created = await jobs.create(new_job())
    assert created.interaction_token == TOKEN
    assert TOKEN not in repr(created) and TOKEN not in str(created)
    assert f"prompt='{created.prompt}'" in repr(created)


async def test_migrating_an_already_migrated_database_keeps_existing_jobs(store, database_url):
    jobs = JobStore(store)
    running = await jobs.create(new_job(reference_urls=("https://files.example/ref.png",)))
    running = await jobs.update(
        running.id, state=JobState.RUNNING, task_id="task_img_1", message_id=MESSAGE_ID
    )
    done = await jobs.create(new_job(prompt="finished"))
    done = await jobs.update(done.id, state=JobState.DONE, delivered={"message_ids": [1], "images": []})

    # A restart: a second process opens the same database and migrates again.
    again = Store.open(database_url_for_sqlalchemy(database_url))
    try:
        await again.migrate()
        after = JobStore(again)
        kept = [await after.get(running.id), await after.get(done.id)]
        unfinished = await after.unfinished()
        newer = await after.create(new_job(prompt="after the restart"))
    finally:
        await again.close()
    assert kept == [running, done]
    assert [job.id for job in unfinished] == [running.id]
    assert newer.id not in (running.id, done.id)


async def test_writes_grouped_for_a_commit_are_finished_before_the_database_closes(store):
    jobs = JobStore(store)
    job = await jobs.create(new_job())
    pending = asyncio.ensure_future(jobs.set_message_id(job, MESSAGE_ID))
    await asyncio.sleep(0)  # grouped, not yet written
    await jobs.drain()
    assert (pending.done(), (await jobs.get(job.id)).message_id) == (True, MESSAGE_ID)


async def stored_token(store: Store, job_id: int) -> str | None:
    """The interaction token column as stored (not as any record in memory remembers it)."""
    async with store.engine.connect() as conn:
        query = sa.select(jobs_table.c.interaction_token).where(jobs_table.c.id == job_id)
        return (await conn.execute(query)).scalar_one()


async def test_a_finished_job_keeps_no_interaction_token(store):
    jobs = JobStore(store)
    done, failed, running = [await jobs.create(new_job()) for _ in range(3)]
    await jobs.finish(done.id, JobState.DONE, delivered_images=2)
    await jobs.finish(failed.id, JobState.FAILED, delivered_images=0, error="refused")
    await jobs.update(running.id, state=JobState.RUNNING, task_id="task_1")
    assert [await stored_token(store, job.id) for job in (done, failed, running)] == [None, None, TOKEN]


async def test_tokens_past_their_15_minutes_are_forgotten_and_living_ones_kept(store):
    jobs = JobStore(store)
    now = 1_800_000_000.0
    expired = await jobs.create(new_job(token_expires_at=now - 1))
    living = await jobs.create(new_job(token_expires_at=now + 600))
    cleared = await jobs.clear_expired_tokens(now)
    assert (cleared, await stored_token(store, expired.id), await stored_token(store, living.id)) == (
        1,
        None,
        TOKEN,
    )


async def test_unfinished_can_leave_out_jobs_written_recently(store):
    now = [1_700_000_000.0]
    jobs = JobStore(store, clock=lambda: now[0])
    old = await jobs.create(new_job(prompt="untouched for ten minutes"))
    now[0] += 600
    await jobs.create(new_job(prompt="just accepted"))
    assert [job.id for job in await jobs.unfinished(updated_before=now[0] - 120)] == [old.id]


class CommitThenDrop(Store):
    """A database whose connection drops just after a commit went through: the writer sees an error
    for a transaction that was in fact written (what a reset connection can do on PostgreSQL)."""

    def __init__(self, engine: Any, drops: int) -> None:
        super().__init__(engine)
        self.drops = drops

    @contextlib.asynccontextmanager
    async def write(self, *, urgent: bool = False) -> AsyncIterator[Any]:
        async with super().write(urgent=urgent) as conn:
            yield conn
        if self.drops > 0:
            self.drops -= 1
            raise sa.exc.OperationalError("COMMIT", None, ConnectionResetError("connection reset by peer"))


async def test_a_create_retried_after_its_commit_went_through_makes_one_job_charged_once(store):
    dropping = CommitThenDrop(store.engine, drops=1)
    jobs = JobStore(dropping)
    quota = QuotaPlan(
        images=2,
        image_limits=(Limit("m:1:3:day", 10, "member_daily"),),
        active_limits=(Limit("am:1:3", 2, "member_active"),),
    )
    job = await jobs.create(new_job(), quota=quota)
    async with store.engine.connect() as conn:
        count = sa.select(sa.func.count()).select_from(jobs_table)
        stored = (await conn.execute(count.where(jobs_table.c.interaction_id == INTERACTION_ID))).scalar_one()
    values = await QuotaLedger(store).values(["m:1:3:day", "am:1:3"])
    assert (dropping.drops, stored, job.interaction_id, values) == (
        0,
        1,
        INTERACTION_ID,
        {"m:1:3:day": 2, "am:1:3": 1},
    )


async def test_a_finish_retried_after_its_commit_went_through_settles_the_quota_once(store):
    quota = QuotaPlan(
        images=4,
        image_limits=(Limit("m:1:3:day", 10, "member_daily"),),
        active_limits=(Limit("am:1:3", 2, "member_active"),),
    )
    job = await JobStore(store).create(new_job(n=4), quota=quota)
    dropping = CommitThenDrop(store.engine, drops=1)
    finished = await JobStore(dropping).finish(job.id, JobState.DONE, delivered_images=1)
    values = await QuotaLedger(store).values(["m:1:3:day", "am:1:3"])
    assert (dropping.drops, finished.state, values) == (0, JobState.DONE, {"m:1:3:day": 1, "am:1:3": 0})


async def test_a_job_recorded_from_a_request_gives_back_that_request_and_where_it_was_asked(store):
    catalog = builtin_catalog()
    request = build_request(
        catalog,
        RequestOptions(
            prompt="a red fox in snow",
            model_id="doubao-seedream-5-0",
            ratio="16:9",
            n=3,
            resolution="3K",
            hosted_references=("https://files.example/ref.png",),
        ),
        default_model="doubao-seedream-5-0",
        requester_id=USER_ID,
    )
    origin = JobOrigin(
        guild_id=GUILD_ID,
        channel_id=CHANNEL_ID,
        user_id=USER_ID,
        application_id=APPLICATION_ID,
        interaction_id=INTERACTION_ID,
        interaction_token=TOKEN,
        token_expires_at=1_900_000_000.5,
        upload_limit=25 * 1024 * 1024,
    )
    stored = await JobStore(store).create(new_job_for(request, origin))
    asked_at = JobOrigin(
        guild_id=stored.guild_id,
        channel_id=stored.channel_id,
        user_id=stored.user_id,
        application_id=stored.application_id,
        interaction_id=stored.interaction_id,
        interaction_token=stored.interaction_token,
        token_expires_at=stored.token_expires_at,
        upload_limit=stored.upload_limit,
    )
    assert (request_for_job(stored, catalog), asked_at, stored.reference_count) == (request, origin, 1)


POSTED = (
    DeliveredImage(
        "imagine-7-1.jpg", size=812_345, width=2048, height=2048, reduced=False, message_id=MESSAGE_ID
    ),
    DeliveredImage(
        "imagine-7-2.jpg", size=9_000_000, width=1536, height=1536, reduced=True, message_id=MESSAGE_ID
    ),
    DeliveredImage("imagine-7-11.jpg", size=700_000, width=2048, height=2048, message_id=MESSAGE_ID + 1),
)


async def test_delivered_images_are_stored_in_the_json_existing_databases_hold(store):
    jobs = JobStore(store)
    job = await jobs.create(new_job(n=11))
    await jobs.finish(job.id, JobState.DONE, delivered_images=3, delivered=delivered_column(POSTED))
    async with store.engine.connect() as conn:
        raw = (
            await conn.execute(sa.select(jobs_table.c.delivered).where(jobs_table.c.id == job.id))
        ).scalar_one()
    # The keys and values earlier versions wrote: rows already stored must keep reading the same.
    assert json.loads(raw) == {
        "message_ids": [MESSAGE_ID, MESSAGE_ID + 1],
        "images": [
            {
                "filename": "imagine-7-1.jpg",
                "size": 812_345,
                "width": 2048,
                "height": 2048,
                "reduced": False,
                "message_id": MESSAGE_ID,
            },
            {
                "filename": "imagine-7-2.jpg",
                "size": 9_000_000,
                "width": 1536,
                "height": 1536,
                "reduced": True,
                "message_id": MESSAGE_ID,
            },
            {
                "filename": "imagine-7-11.jpg",
                "size": 700_000,
                "width": 2048,
                "height": 2048,
                "reduced": False,
                "message_id": MESSAGE_ID + 1,
            },
        ],
    }


async def test_delivered_images_read_back_as_they_were_posted(store):
    jobs = JobStore(store)
    job = await jobs.create(new_job(n=11))
    await jobs.finish(job.id, JobState.DONE, delivered_images=3, delivered=delivered_column(POSTED))
    stored = await jobs.get(job.id)
    assert stored is not None
    assert (stored.delivered_images, stored.delivered_message_ids) == (POSTED, (MESSAGE_ID, MESSAGE_ID + 1))


async def test_delivered_images_of_rows_with_fewer_keys_read_with_defaults(store):
    jobs = JobStore(store)
    job = await jobs.create(new_job())
    await jobs.update(
        job.id, state=JobState.DONE, delivered={"images": [{"filename": "x.jpg", "size": 12}, {}]}
    )
    stored = await jobs.get(job.id)
    assert stored is not None
    assert (stored.delivered_images, stored.delivered_message_ids) == (
        (DeliveredImage("x.jpg", size=12), DeliveredImage("")),
        (),
    )


async def test_a_job_not_yet_done_has_no_delivered_images(store):
    job = await JobStore(store).create(new_job())
    assert (job.delivered_images, job.delivered_message_ids) == ((), ())


async def test_a_jobs_log_name_carries_the_ids_an_operator_searches_by(store):
    job = await JobStore(store).create(new_job())
    assert job.log_name == f"job {job.id} (guild {GUILD_ID}, user {USER_ID})"


LAYERED = (
    DeliveredImage("imagine-8-1.jpg", size=900, message_id=MESSAGE_ID, layer=ImageLayer(0)),
    DeliveredImage(
        "imagine-8-2.png",
        size=400,
        message_id=MESSAGE_ID,
        layer=ImageLayer(1, name="Fox", description="The fox, cut out"),
    ),
)


async def test_the_layers_of_delivered_images_are_kept_and_only_the_base_counts_as_generated(store):
    jobs = JobStore(store)
    job = await jobs.create(new_job(layers=True))
    await jobs.update(job.id, result_urls=("u0", "u1"), result_layers=(ImageLayer(0), ImageLayer(1, "Fox")))
    await jobs.finish(job.id, JobState.DONE, delivered_images=1, delivered=delivered_column(LAYERED))
    stored = await jobs.get(job.id)
    assert stored is not None
    assert (stored.layers, stored.result_layers, stored.delivered_images, stored.generated_images) == (
        True,
        (ImageLayer(0), ImageLayer(1, "Fox")),
        LAYERED,
        1,
    )
