"""A placeholder that cannot be posted (or recorded) ends its job at once: the quota comes back, nothing
is sent to the image service, and the member is told privately. The real bot, driven through the
fake Discord (with its faults) and the fake ToAPIs."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bot.jobs.records import JobRecord, JobState
from cogs.launcher import PLACEHOLDER_FAILED
from tests.cogs.test_durable_e2e import final_job_of
from tests.fakes.discord import InteractionRecord
from tests.rig import RunningBot, status_of

pytestmark = pytest.mark.asyncio

CALLBACK = r"/interactions/\d+/[^/]+/callback$"


async def _ended(rig: RunningBot, record: InteractionRecord) -> tuple[JobRecord, set[int]]:
    """The job once ended, and the values of every quota counter it had taken."""
    job = await final_job_of(rig, record)
    used = await rig.bot.ledger.values([*job.quota_keys, *job.active_keys])
    return job, set(used.values())


async def _private_answer(rig: RunningBot, record: InteractionRecord) -> str:
    await rig.discord.wait_for(lambda _: record.acknowledged)
    return record.callback["data"]["content"] if record.ephemeral else ""


async def test_a_placeholder_that_times_out_ends_the_job_and_gives_the_quota_back(start_bot):
    rig = await start_bot()
    rig.bot.launcher.placeholder_timeout = 0.5  # the notice then still beats Discord's 3 s
    rig.discord.inject("POST", CALLBACK, fault="hang")
    record = await rig.imagine(prompt="a fox")

    text = await _private_answer(rig, record)
    job, used = await _ended(rig, record)
    assert (text, job.state, job.error, used, rig.toapis.submit_attempts) == (
        str(PLACEHOLDER_FAILED),
        JobState.FAILED,
        str(PLACEHOLDER_FAILED),
        {0},
        0,
    )


async def test_a_placeholder_whose_connection_drops_ends_the_job_and_gives_the_quota_back(start_bot):
    rig = await start_bot()
    rig.discord.inject("POST", CALLBACK, fault="drop")
    record = await rig.imagine(prompt="a fox")

    text = await _private_answer(rig, record)
    job, used = await _ended(rig, record)
    assert (text, job.state, used, rig.toapis.submit_attempts) == (
        str(PLACEHOLDER_FAILED),
        JobState.FAILED,
        {0},
        0,
    )


async def test_a_placeholder_refused_with_a_discord_server_error_ends_the_job_and_gives_the_quota_back(
    start_bot,
):
    rig = await start_bot()
    rig.discord.inject("POST", CALLBACK, 500)  # discord.py retries once a second later...
    rig.discord.inject("POST", CALLBACK, 404)  # ...when Discord no longer knows the interaction
    record = await rig.imagine(prompt="a fox")

    text = await _private_answer(rig, record)
    job, used = await _ended(rig, record)
    assert (text, job.state, used, rig.toapis.submit_attempts) == (
        str(PLACEHOLDER_FAILED),
        JobState.FAILED,
        {0},
        0,
    )


async def test_a_placeholder_whose_message_id_cannot_be_stored_ends_the_job_and_says_so(
    start_bot, monkeypatch
):
    rig = await start_bot()

    async def database_gone(*_: object) -> None:
        raise sa.exc.OperationalError("UPDATE jobs SET message_id", {}, Exception("database is locked"))

    monkeypatch.setattr(rig.bot.jobs, "set_message_id", database_gone)
    record = await rig.imagine(prompt="a fox")

    notice = await rig.discord.wait_for(lambda _: next(iter(record.followups), None))
    job, used = await _ended(rig, record)
    assert (
        (notice.content, notice.ephemeral),
        status_of(record.original).startswith(f"❌ {PLACEHOLDER_FAILED}"),
        job.state,
        used,
        rig.toapis.submit_attempts,
    ) == ((str(PLACEHOLDER_FAILED), True), True, JobState.FAILED, {0}, 0)
