"""Job details kept only as long as needed (SQLite and PostgreSQL): old or requested jobs lose their
prompt, reference links, member id and layer names; counts, reports and quota counters stay right."""

from __future__ import annotations

import csv
import dataclasses
import io
from typing import Any

import pytest

from bot import retention as retention_module
from bot.catalog import builtin_catalog
from bot.jobs.records import (
    DeliveredImage,
    ImageLayer,
    JobRecord,
    JobState,
    JobStore,
    NewJob,
    delivered_column,
)
from bot.quota import Limit, QuotaLedger, QuotaPlan
from bot.retention import DAY, ForgetResult, JobRetention
from bot.store import Store
from bot.usage import images_of, jobs_csv, prices_of, summarize

GUILD_ID = 1234567890123456789
OTHER_GUILD_ID = 1234567890123456700
CHANNEL_ID = 1234567890123456790
MEMBER = 987654321098765432
OTHER_MEMBER = 987654321098765000
NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def new_job(**overrides: Any) -> NewJob:
    job = NewJob(
        guild_id=GUILD_ID,
        channel_id=CHANNEL_ID,
        user_id=MEMBER,
        application_id=1111111111111111111,
        interaction_id=1456789012345678901,
        interaction_token="itok.secret",
        token_expires_at=NOW + 900,
        upload_limit=10 * 1024 * 1024,
        prompt="my cat Whiskers on my sofa",
        model="doubao-seedream-5-0-pro",
        ratio="1:1",
        resolution="2K",
        n=2,
        layers=True,
        reference_urls=("https://files.example/ref-1.png", "https://files.example/ref-2.png"),
        reference_count=2,
    )
    return dataclasses.replace(job, **overrides)


LAYERED = (
    DeliveredImage("imagine-1.jpg", size=900, message_id=555, layer=ImageLayer(0)),
    DeliveredImage("imagine-2.png", size=400, message_id=555, layer=ImageLayer(1, "Whiskers", "The cat")),
)


def plan(user_id: int = MEMBER, images: int = 2) -> QuotaPlan:
    return QuotaPlan(
        images=images,
        image_limits=(Limit(f"m:{GUILD_ID}:{user_id}:day", 10, "member_daily"),),
        active_limits=(Limit(f"am:{GUILD_ID}:{user_id}", 2, "member_active"),),
    )


async def finished_job(jobs: JobStore, clock: Clock, *, days_ago: float, **overrides: Any) -> JobRecord:
    """A job created `days_ago` days before NOW, delivered (one image and one layer) and settled."""
    clock.now = NOW - days_ago * DAY
    job = await jobs.create(new_job(**overrides), quota=plan(overrides.get("user_id", MEMBER)))
    await jobs.update(
        job.id,
        result_urls=("https://r/0", "https://r/1"),
        result_layers=(ImageLayer(0), ImageLayer(1, "Whiskers")),
    )
    await jobs.finish(job.id, JobState.DONE, delivered_images=1, delivered=delivered_column(LAYERED))
    clock.now = NOW
    stored = await jobs.get(job.id)
    assert stored is not None
    return stored


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def jobs(store: Store, clock: Clock) -> JobStore:
    return JobStore(store, clock=clock)


def personal(job: JobRecord) -> tuple[Any, ...]:
    """What identifies the member or what they typed."""
    layer_words = [(i.layer.name, i.layer.description) for i in job.delivered_images if i.layer is not None]
    return (
        job.prompt,
        job.reference_urls,
        job.user_id,
        job.interaction_id,
        job.result_urls,
        job.result_layers,
        layer_words,
        job.quota_keys,
    )


def counted(job: JobRecord) -> tuple[Any, ...]:
    """What usage reports read."""
    return (
        job.state,
        job.guild_id,
        job.channel_id,
        job.model,
        job.ratio,
        job.resolution,
        job.n,
        images_of(job),
        job.reference_images,
        job.generated_images,
        job.created_at,
        job.finished_at,
        job.delivered_message_ids,
    )


async def test_jobs_older_than_the_retention_lose_their_details_and_keep_their_counts(store, jobs, clock):
    old = await finished_job(jobs, clock, days_ago=91)
    recent = await finished_job(jobs, clock, days_ago=89)
    retention = JobRetention(store, retention_days=90, clock=clock)
    assert await retention.forget_expired() == 1
    after_old, after_recent = await jobs.get(old.id), await jobs.get(recent.id)
    assert after_old is not None and after_recent is not None
    assert (
        personal(after_old),
        counted(after_old),
        after_old.forgotten_at,
        personal(after_recent),
        after_recent.forgotten,
    ) == (
        ("", (), 0, None, None, None, [(None, None), (None, None)], ()),
        counted(old),
        NOW,
        personal(recent),
        False,
    )


async def test_an_unfinished_old_job_keeps_its_details_until_it_ends(store, jobs, clock):
    clock.now = NOW - 100 * DAY
    running = await jobs.create(new_job(), quota=plan())
    await jobs.update(running.id, state=JobState.RUNNING, task_id="task_1")
    clock.now = NOW
    retention = JobRetention(store, retention_days=90, clock=clock)
    assert await retention.forget_expired() == 0
    await jobs.finish(running.id, JobState.DONE, delivered_images=2)
    assert await retention.forget_expired() == 1


async def test_retention_zero_keeps_details_until_someone_asks(store, jobs, clock):
    old = await finished_job(jobs, clock, days_ago=3650)
    assert await JobRetention(store, retention_days=None, clock=clock).forget_expired() == 0
    stored = await jobs.get(old.id)
    assert stored is not None and stored.prompt == "my cat Whiskers on my sofa"


async def test_a_member_forgets_their_own_jobs_everywhere_and_only_theirs(store, jobs, clock):
    mine_here = await finished_job(jobs, clock, days_ago=1)
    mine_elsewhere = await finished_job(jobs, clock, days_ago=2, guild_id=OTHER_GUILD_ID)
    theirs = await finished_job(jobs, clock, days_ago=1, user_id=OTHER_MEMBER)
    running = await jobs.create(new_job(), quota=plan())
    result = await JobRetention(store, retention_days=90, clock=clock).forget_member(MEMBER)
    stored = {j.id: await jobs.get(j.id) for j in (mine_here, mine_elsewhere, theirs, running)}
    assert (result, {job_id: job.forgotten for job_id, job in stored.items() if job}) == (
        ForgetResult(forgotten=2, unfinished=1),
        {mine_here.id: True, mine_elsewhere.id: True, theirs.id: False, running.id: False},
    )


async def test_an_admin_forgets_a_members_jobs_in_their_server_only(store, jobs, clock):
    here = await finished_job(jobs, clock, days_ago=1)
    elsewhere = await finished_job(jobs, clock, days_ago=1, guild_id=OTHER_GUILD_ID)
    result = await JobRetention(store, retention_days=90, clock=clock).forget_member(
        MEMBER, guild_id=GUILD_ID
    )
    after_here, after_elsewhere = await jobs.get(here.id), await jobs.get(elsewhere.id)
    assert (result, after_here and after_here.forgotten, after_elsewhere and after_elsewhere.forgotten) == (
        ForgetResult(forgotten=1, unfinished=0),
        True,
        False,
    )


async def test_forgetting_never_changes_quota_counters_and_a_running_job_still_settles_once(
    store, jobs, clock
):
    ledger = QuotaLedger(store, clock=clock)
    keys = [f"m:{GUILD_ID}:{MEMBER}:day", f"am:{GUILD_ID}:{MEMBER}"]
    await finished_job(jobs, clock, days_ago=0)  # 2 reserved, 1 delivered: 1 counted
    running = await jobs.create(new_job(n=3), quota=plan(images=3))  # 3 reserved, running
    before = await ledger.values(keys)
    retention = JobRetention(store, retention_days=90, clock=clock)
    first = await retention.forget_member(MEMBER)
    during = await ledger.values(keys)
    await jobs.finish(running.id, JobState.DONE, delivered_images=2)  # refunds 1, frees the slot
    second = await retention.forget_member(MEMBER)
    again = await retention.forget_member(MEMBER)
    assert (before, during, await ledger.values(keys), first, second, again) == (
        {keys[0]: 4, keys[1]: 1},
        {keys[0]: 4, keys[1]: 1},
        {keys[0]: 3, keys[1]: 0},
        ForgetResult(1, 1),
        ForgetResult(1, 0),
        ForgetResult(0, 0),
    )


async def test_reports_still_count_forgotten_jobs_without_naming_anyone(store, jobs, clock):
    kept = await finished_job(jobs, clock, days_ago=1, user_id=OTHER_MEMBER)
    forgotten = await finished_job(jobs, clock, days_ago=1)
    await JobRetention(store, retention_days=90, clock=clock).forget_member(MEMBER)
    records = [r for r in [await jobs.get(kept.id), await jobs.get(forgotten.id)] if r is not None]
    summary = summarize(records)
    catalog = builtin_catalog()
    header, _, row = csv.reader(io.StringIO(jobs_csv(records, prices_of(catalog)).decode("utf-8-sig")))
    cells = dict(zip(header, row, strict=True))
    assert (
        summary.jobs,
        summary.images,
        [m.user_id for m in summary.members],
        (cells["user_id"], cells["references"], cells["prompt"], cells["images"]),
    ) == (2, 2, [OTHER_MEMBER], ("", "2", "", "1"))


async def test_a_large_backlog_is_forgotten_in_batches(store, jobs, clock, monkeypatch):
    monkeypatch.setattr(retention_module, "BATCH", 3)
    for _ in range(7):
        await finished_job(jobs, clock, days_ago=120)
    assert await JobRetention(store, retention_days=90, clock=clock).forget_expired() == 7
