"""Deleting job history, end to end: /imagine-forget (a member's own, after a private confirmation),
/imagine-admin forget (a server's admins), and JOB_RETENTION_DAYS applied by the bot's housekeeping.

The real bot through the fake Discord and the fake ToAPIs, on a real database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest
import sqlalchemy as sa

from bot.jobs.records import DeliveredImage, JobRecord, JobState, JobStore, NewJob, delivered_column
from bot.retention import DAY, FORGET_CANCELLED, FORGET_FAILED
from bot.schema import jobs_table
from bot.store import Store
from cogs.actions import GONE
from cogs.admin import NOT_ADMIN
from cogs.app import ImagineBot
from cogs.privacy import NOT_YOURS
from tests.fakes.discord import DEFAULT_MEMBER_PERMISSIONS, FakeDiscord, FakeMessage, InteractionRecord
from tests.fakes.toapis import TaskPlan
from tests.rig import RunningBot, eventually

pytestmark = pytest.mark.asyncio

MANAGER = DEFAULT_MEMBER_PERMISSIONS | (1 << 5)  # Manage Server
STALLED = TaskPlan(steps=[("queued", 0), ("in_progress", 50)], never_finish=True)


async def job_of(rig: RunningBot, record: InteractionRecord) -> JobRecord:
    """The job an interaction started, once its record is final."""

    async def final() -> JobRecord | None:
        assert rig.bot.store is not None
        async with rig.bot.store.engine.connect() as conn:
            query = sa.select(jobs_table.c.id).where(jobs_table.c.interaction_id == record.id)
            job_id = (await conn.execute(query)).scalar_one_or_none()
        job = None if job_id is None else await rig.bot.jobs.get(job_id)
        return job if job is not None and job.is_final else None

    deadline = time.monotonic() + 20
    while (job := await final()) is None:
        assert time.monotonic() < deadline, "the job did not finish"
        await asyncio.sleep(0.02)
    return job


async def imagined(rig: RunningBot, prompt: str, *, user_id: int, **payload: Any) -> JobRecord:
    record = await rig.discord.send_interaction(
        rig.discord.slash_command("imagine", {"prompt": prompt}, user_id=user_id, **payload)
    )
    await rig.finished(record)
    return await job_of(rig, record)


async def answered(fake: FakeDiscord, record: InteractionRecord) -> FakeMessage:
    """The bot's private answer (after a defer, the message that replaced "thinking")."""
    await fake.wait_for(lambda _: record.acknowledged)
    message = await fake.wait_for(
        lambda _: record.original if record.original and not record.original.loading else None
    )
    assert (message.ephemeral, message.pings) == (True, set())
    return message


async def confirmation_reads(rig: RunningBot, confirmation: FakeMessage, start: str) -> FakeMessage:
    """The confirmation message once the bot has replaced it with a text starting with `start`."""

    def edited(fake: FakeDiscord) -> FakeMessage | None:
        message = fake.messages.get(confirmation.id)
        return message if message is not None and message.content.startswith(start) else None

    return await rig.discord.wait_for(edited)


async def forget_command(rig: RunningBot, user_id: int) -> FakeMessage:
    """/imagine-forget: the private confirmation with its two buttons."""
    record = await rig.discord.send_interaction(rig.discord.slash_command("imagine-forget", user_id=user_id))
    return await answered(rig.discord, record)


async def click(rig: RunningBot, message: FakeMessage, custom_id: str, *, user_id: int) -> InteractionRecord:
    record = await rig.discord.send_interaction(
        rig.discord.component_interaction(message, custom_id, user_id=user_id)
    )
    await rig.discord.wait_for(lambda _: record.acknowledged)
    return record


async def stored(rig: RunningBot, job: JobRecord) -> JobRecord:
    found = await rig.bot.jobs.get(job.id)
    assert found is not None
    return found


async def test_forget_asks_privately_first_and_cancel_deletes_nothing(start_bot):
    rig = await start_bot()
    member = rig.discord.snowflake()
    job = await imagined(rig, "my cat Whiskers", user_id=member)
    confirmation = await forget_command(rig, member)
    asked, buttons = confirmation.content, list(confirmation.custom_ids)
    before_click = (await stored(rig, job)).prompt
    await click(rig, confirmation, f"imagine:forget:no:{member}", user_id=member)
    after = await rig.discord.wait_for(
        lambda fake: (
            m if (m := fake.messages.get(confirmation.id)) and m.content == str(FORGET_CANCELLED) else None
        )
    )
    assert (
        asked.startswith("**Delete your image history?**"),
        "90 days" in asked,
        buttons,
        before_click,
        after.component_list,
        (await stored(rig, job)).prompt,
    ) == (
        True,
        True,
        [f"imagine:forget:yes:{member}", f"imagine:forget:no:{member}"],
        "my cat Whiskers",
        [],
        "my cat Whiskers",
    )


async def test_confirming_deletes_the_members_history_and_their_buttons_say_it_is_gone(start_bot):
    rig = await start_bot()
    member, other = rig.discord.snowflake(), rig.discord.snowflake()
    mine = await imagined(rig, "my cat Whiskers", user_id=member)
    theirs = await imagined(rig, "a fox", user_id=other)
    confirmation = await forget_command(rig, member)
    await click(rig, confirmation, f"imagine:forget:yes:{member}", user_id=member)
    done = await rig.discord.wait_for(
        lambda fake: (
            m if (m := fake.messages.get(confirmation.id)) and m.content.startswith("Deleted") else None
        )
    )
    forgotten, kept = await stored(rig, mine), await stored(rig, theirs)
    details = await click(
        rig, rig.discord.messages[mine.message_id], f"imagine:details:{mine.id}", user_id=member
    )
    history = await rig.discord.send_interaction(rig.discord.slash_command("imagine-history", user_id=member))
    await rig.discord.wait_for(lambda _: history.acknowledged)
    assert (
        done.content,
        done.component_list,
        (forgotten.prompt, forgotten.user_id, forgotten.forgotten, forgotten.generated_images),
        (kept.prompt, kept.forgotten),
        details.callback["data"]["content"],
        history.callback["data"]["content"],
    ) == (
        "Deleted the details of your 1 finished job.",
        [],
        ("", 0, True, 1),
        ("a fox", False),
        str(GONE),
        "You have no images here yet. Try /imagine.",
    )


async def test_a_database_that_fails_the_deletion_is_said_plainly_and_a_second_press_finishes(start_bot):
    rig = await start_bot()
    member = rig.discord.snowflake()
    job = await imagined(rig, "my cat Whiskers", user_id=member)
    confirmation = await forget_command(rig, member)
    assert rig.bot.store is not None
    failures = {"left": 1}

    def broken(conn, cursor, statement, parameters, context, executemany) -> None:
        # What a damaged database file answers: an error no retry gets past.
        if failures["left"] and statement.startswith("UPDATE jobs"):
            failures["left"] -= 1
            raise conn.dialect.dbapi.DatabaseError("database disk image is malformed")

    sa.event.listen(rig.bot.store.engine.sync_engine, "before_cursor_execute", broken)
    await click(rig, confirmation, f"imagine:forget:yes:{member}", user_id=member)
    failed = await confirmation_reads(rig, confirmation, str(FORGET_FAILED))
    failed_view, kept = list(failed.custom_ids), (await stored(rig, job)).prompt
    await click(rig, failed, f"imagine:forget:yes:{member}", user_id=member)
    done = await confirmation_reads(rig, confirmation, "Deleted")
    assert (failed_view, kept, done.content, (await stored(rig, job)).prompt) == (
        [f"imagine:forget:yes:{member}", f"imagine:forget:no:{member}"],
        "my cat Whiskers",
        "Deleted the details of your 1 finished job.",
        "",
    )


async def test_another_member_cannot_press_someone_elses_forget_buttons(start_bot):
    rig = await start_bot()
    member, intruder = rig.discord.snowflake(), rig.discord.snowflake()
    job = await imagined(rig, "my cat Whiskers", user_id=member)
    confirmation = await forget_command(rig, member)
    record = await click(rig, confirmation, f"imagine:forget:yes:{member}", user_id=intruder)
    assert (record.ephemeral, record.callback["data"]["content"], (await stored(rig, job)).forgotten) == (
        True,
        str(NOT_YOURS),
        False,
    )


async def test_a_running_job_keeps_its_details_until_it_ends_and_its_quota_settles_once(start_bot):
    rig = await start_bot()
    member = rig.discord.snowflake()
    await imagined(rig, "done before", user_id=member)
    rig.toapis.plan = STALLED
    running = await rig.discord.send_interaction(
        rig.discord.slash_command("imagine", {"prompt": "still going", "n": 3}, user_id=member)
    )
    await eventually(lambda: len(rig.toapis.tasks) == 2, what="the second job was submitted")
    confirmation = await forget_command(rig, member)
    await click(rig, confirmation, f"imagine:forget:yes:{member}", user_id=member)
    done = await rig.discord.wait_for(
        lambda fake: (
            m if (m := fake.messages.get(confirmation.id)) and m.content.startswith("Deleted") else None
        )
    )
    for task in rig.toapis.tasks.values():
        task.plan = dataclasses.replace(task.plan, never_finish=False)
    await rig.finished(running)
    job = await job_of(rig, running)
    assert (done.content, job.prompt, job.user_id, job.state) == (
        "Deleted the details of your 1 finished job. 1 job still running keeps its details until it ends "
        "(the bot needs them to deliver the images or give the quota back): run this again once it is done.",
        "still going",
        member,
        JobState.DONE,
    )
    # Each image counter holds what the two jobs delivered: the forget neither refunded nor reset them.
    used = await rig.bot.ledger.values(job.quota_keys)
    assert (job.generated_images, set(used.values())) == (3, {1 + 3})


# --------------------------------------------------------------------------- /imagine-admin forget


def user_option(fake: FakeDiscord, user_id: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    listed = [{"name": "member", "type": 6, "value": str(user_id)}]
    resolved = {"users": {str(user_id): fake.user_payload(user_id)}}
    return listed, resolved


async def test_admin_forget_deletes_a_members_history_in_this_server_with_an_audit_line(start_bot):
    rig = await start_bot()
    fake = rig.discord
    member, admin = fake.snowflake(), fake.snowflake()
    here = await imagined(rig, "my cat Whiskers", user_id=member)
    elsewhere_guild = fake.snowflake()
    fake.channel(fake.snowflake(), guild_id=elsewhere_guild)
    audit = fake.snowflake()
    fake.channel(audit, guild_id=fake.guild_id)
    await rig.bot.guild_settings.update(
        fake.guild_id, lambda s: dataclasses.replace(s, audit_channel_id=audit)
    )
    listed, resolved = user_option(fake, member)

    refused = await fake.send_interaction(
        fake.slash_command("imagine-admin forget", listed, user_id=fake.snowflake(), resolved=resolved)
    )
    await fake.wait_for(lambda _: refused.acknowledged)
    still_kept = (await stored(rig, here)).forgotten

    record = await fake.send_interaction(
        fake.slash_command(
            "imagine-admin forget", listed, user_id=admin, permissions=MANAGER, resolved=resolved
        )
    )
    answer = await answered(fake, record)
    line = await fake.wait_for_message(lambda m: m.channel_id == audit and m.content.startswith("🧹"))
    assert (
        refused.callback["data"]["content"],
        still_kept,
        answer.content,
        (await stored(rig, here)).forgotten,
        line.content,
        line.pings,
    ) == (
        str(NOT_ADMIN),
        False,
        f"Deleted the details of <@{member}>'s 1 finished job in this server.",
        True,
        f"🧹 <@{admin}> deleted the job history of <@{member}> here (1 finished job) "
        "with /imagine-admin forget",
        set(),
    )


# --------------------------------------------------------------------------- JOB_RETENTION_DAYS


async def old_finished_job(database_url: str, *, days_ago: float, prompt: str) -> int:
    """A finished job recorded `days_ago` days ago, written as the bot writes jobs."""
    store = Store.open(database_url)
    await store.migrate()
    try:
        jobs = JobStore(store, clock=lambda: time.time() - days_ago * DAY)
        job = await jobs.create(
            NewJob(
                guild_id=1,
                channel_id=2,
                user_id=3,
                application_id=4,
                upload_limit=10 * 1024 * 1024,
                prompt=prompt,
                model="doubao-seedream-5-0",
                ratio="1:1",
                n=1,
            )
        )
        images = [DeliveredImage("imagine-1.jpg", message_id=5)]
        await jobs.finish(job.id, JobState.DONE, delivered_images=1, delivered=delivered_column(images))
        return job.id
    finally:
        await store.close()


async def test_jobs_past_the_retention_are_forgotten_at_start_and_by_housekeeping(
    start_bot, bot_settings, monkeypatch
):
    url = bot_settings.sqlalchemy_url
    at_start = await old_finished_job(url, days_ago=31, prompt="an old cat")
    young = await old_finished_job(url, days_ago=29, prompt="a young cat")
    monkeypatch.setattr(ImagineBot, "sweep_interval", 0.05)
    monkeypatch.setattr(ImagineBot, "retention_interval", 0.1)
    rig = await start_bot(job_retention_days=30)
    first = await rig.bot.jobs.get(at_start)
    later = await old_finished_job(url, days_ago=45, prompt="a later cat")

    async def forgotten_by_housekeeping() -> bool:
        job = await rig.bot.jobs.get(later)
        return job is not None and job.forgotten

    deadline = time.monotonic() + 10
    while not await forgotten_by_housekeeping():
        assert time.monotonic() < deadline, "housekeeping did not forget the old job"
        await asyncio.sleep(0.02)
    kept = await rig.bot.jobs.get(young)
    assert (first and (first.prompt, first.forgotten), kept and (kept.prompt, kept.forgotten)) == (
        ("", True),
        ("a young cat", False),
    )
