"""Durable jobs end to end: the real bot keeps its promise through dead tokens, deleted messages,
flaky services, Discord faults and restarts. Driven through the fake Discord and the fake ToAPIs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest
import sqlalchemy as sa

from bot.config import Settings
from bot.jobs.records import JobRecord, JobState, JobStore
from bot.jobs.runner import INTERRUPTED_WHILE_SENDING, RESULTS_EXPIRED
from bot.schema import jobs_table
from bot.store import Store
from tests.fakes.discord import (
    ATTACH_FILES,
    DEFAULT_APP_PERMISSIONS,
    EMBED_LINKS,
    SEND_MESSAGES,
    FakeDiscord,
    FakeMessage,
    InteractionRecord,
    RecordedRequest,
)
from tests.fakes.toapis import FakeToAPIs, TaskPlan
from tests.rig import RunningBot, status_of

pytestmark = pytest.mark.asyncio

T = TypeVar("T")

SLOW = "Still working — the image service is slow to answer."
CHANNEL_EDIT = "/channels/{channel_id}/messages/{message_id}"
WEBHOOK_EDIT = "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"
# A task that shows progress and then waits for the test to let it finish (see `let_tasks_finish`).
STALLED = TaskPlan(steps=[("queued", 0), ("in_progress", 50)], never_finish=True)


# --------------------------------------------------------------------------- helpers


async def until(check: Callable[[], Awaitable[T | None]], timeout: float = 10.0) -> T:  # noqa: ASYNC109
    """Wait for a condition the fakes cannot announce (a database row); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


async def find_job(rig: RunningBot, record: InteractionRecord) -> JobRecord | None:
    """The stored job behind an /imagine interaction, or None before /imagine created it."""
    assert rig.bot.store is not None
    async with rig.bot.store.engine.connect() as conn:
        query = sa.select(jobs_table.c.id).where(jobs_table.c.interaction_id == record.id)
        job_id = (await conn.execute(query)).scalar_one_or_none()
    return None if job_id is None else await rig.bot.jobs.get(job_id)


async def job_of(rig: RunningBot, record: InteractionRecord) -> JobRecord:
    """The stored job behind an /imagine interaction (waiting until /imagine has created it)."""
    return await until(lambda: find_job(rig, record))


async def final_job_of(rig: RunningBot, record: InteractionRecord) -> JobRecord:
    """The job once its record is final (a success is recorded just after the message is edited)."""

    async def final() -> JobRecord | None:
        job = await job_of(rig, record)
        return job if job.is_final else None

    return await until(final)


@contextlib.asynccontextmanager
async def job_store(settings: Settings) -> AsyncIterator[JobStore]:
    """The bot's database, opened from outside the bot (as an operator's script would)."""
    store = Store.open(settings.sqlalchemy_url)
    try:
        yield JobStore(store)
    finally:
        await store.close()


def let_tasks_finish(toapis: FakeToAPIs) -> None:
    """Stalled fake tasks complete at their next poll."""
    for task in toapis.tasks.values():
        task.plan = dataclasses.replace(task.plan, never_finish=False)


def writes_to(fake: FakeDiscord, message_id: int, *, since: int = 0) -> list[RecordedRequest]:
    """Edits of one message, from the `since`-th request the fake received on."""
    return [
        r for r in fake.requests[since:] if r.method == "PATCH" and r.path.endswith(f"/messages/{message_id}")
    ]


def successful_edits(fake: FakeDiscord, message_id: int) -> list[RecordedRequest]:
    return [r for r in writes_to(fake, message_id) if r.status == 200]


def channel_messages(fake: FakeDiscord) -> list[FakeMessage]:
    """Messages everyone in the channel sees (not ephemeral, not deleted)."""
    return [m for m in fake.messages.values() if not m.ephemeral and not m.deleted]


async def showing(rig: RunningBot, record: InteractionRecord, text: str) -> FakeMessage:
    """Wait until the job's message shows `text` in its status."""
    return await rig.discord.wait_for(
        lambda _: record.original if record.original and text in status_of(record.original) else None
    )


async def new_result_message(rig: RunningBot, record: InteractionRecord) -> FakeMessage:
    """Wait for a result posted as a new channel message (not the interaction's)."""
    return await rig.discord.wait_for_message(
        lambda m: m.id != record.original_message_id and m.interaction_id is None and bool(m.embeds),
        timeout=15,
    )


# --------------------------------------------------------------------------- the message's route


async def test_after_the_token_expires_the_images_arrive_in_the_original_message_by_channel_edit(start_bot):
    rig = await start_bot()
    rig.toapis.plan = STALLED
    record = await rig.imagine(prompt="a fox at dusk", n=2)
    await showing(rig, record, "50%")
    rig.discord.expire_interaction(record)
    let_tasks_finish(rig.toapis)

    message = await rig.finished(record)
    final = successful_edits(rig.discord, message.id)[-1]
    assert (
        status_of(message).startswith("✅ 2 images"),
        len(message.attachments),
        message.id,
        final.route,
        final.path,
        final.auth,
        len(final.files),
        [m.id for m in channel_messages(rig.discord)],
    ) == (
        True,
        2,
        record.original_message_id,
        CHANNEL_EDIT,
        f"/channels/{rig.discord.channel_id}/messages/{message.id}",
        "bot",
        2,
        [message.id],
    )


async def test_a_webhook_edit_refused_as_invalid_token_falls_back_to_the_channel_edit(start_bot):
    rig = await start_bot()
    refused = rig.discord.inject("PATCH", r"/webhooks/.*", 401, times=50)
    record = await rig.imagine(prompt="a fox at dawn", n=2)

    message = await rig.finished(record)
    final = successful_edits(rig.discord, message.id)[-1]
    assert (
        status_of(message).startswith("✅ 2 images"),
        len(message.attachments),
        message.id,
        final.route,
        final.auth,
        [m.id for m in channel_messages(rig.discord)],
        refused.hits[0].response,
    ) == (
        True,
        2,
        record.original_message_id,
        CHANNEL_EDIT,
        "bot",
        [message.id],
        {"message": "Invalid Webhook Token", "code": 50027},
    )


async def test_a_dead_token_is_not_tried_again_once_discord_refused_it(start_bot):
    rig = await start_bot()
    rig.toapis.plan = TaskPlan(steps=[("queued", 0)] + [("in_progress", p) for p in range(10, 100, 10)])
    refused = rig.discord.inject("PATCH", r"/webhooks/.*", 401, times=50)
    record = await rig.imagine(prompt="a patient fox")
    message = await rig.finished(record)
    channel_edits = [r for r in successful_edits(rig.discord, message.id) if r.route == CHANNEL_EDIT]
    assert (len(refused.hits), len(channel_edits) >= 2) == (1, True)


async def test_a_placeholder_deleted_mid_job_gets_the_result_as_a_new_message_pinging_only_the_requester(
    start_bot,
):
    rig = await start_bot()
    rig.toapis.plan = STALLED
    record = await rig.imagine(prompt="@everyone a fox", n=2)
    placeholder = await showing(rig, record, "50%")
    placeholder.deleted = True  # a moderator (or the member) deleted it while the task ran
    let_tasks_finish(rig.toapis)

    result = await new_result_message(rig, record)
    user_id = rig.discord.user_id
    mentions = result.allowed_mentions or {}
    assert (
        f"<@{user_id}>" in result.content,
        status_of(result).startswith("✅ 2 images"),
        len(result.attachments),
        result.channel_id,
        mentions.get("parse"),
        [str(u) for u in mentions.get("users", [])],
        mentions.get("roles", []),
        result.pings,
    ) == (
        True,
        True,
        2,
        rig.discord.channel_id,
        [],
        [str(user_id)],
        [],
        {f"user:{user_id}"},
    )
    job = await final_job_of(rig, record)
    assert (job.state, job.message_id, job.delivered["message_ids"] if job.delivered else None) == (
        JobState.DONE,
        result.id,
        [result.id],
    )


async def test_progress_after_the_placeholder_was_deleted_is_not_reposted_only_the_result_is(start_bot):
    rig = await start_bot()
    rig.toapis.plan = STALLED
    record = await rig.imagine(prompt="a fox")
    placeholder = await showing(rig, record, "50%")
    placeholder.deleted = True
    # From its next poll on, the task moves through many more visible steps, then completes.
    task = next(iter(rig.toapis.tasks.values()))
    seen = rig.toapis.polls[task.id] + 1
    task.plan = TaskPlan(steps=[("in_progress", 50)] * seen + [("in_progress", p) for p in range(52, 100, 2)])

    result = await new_result_message(rig, record)
    refused = [r for r in writes_to(rig.discord, placeholder.id) if r.status == 404]
    assert (
        [m.id for m in channel_messages(rig.discord)],
        status_of(result).startswith("✅ 1 image"),
        len(refused),
        status_of(refused[0].json).startswith("🎨 Generating") if refused else None,
    ) == ([result.id], True, 1, True)


async def test_images_past_ten_still_arrive_when_the_placeholder_is_gone_and_the_channel_refuses_posts(
    start_bot,
):
    rig = await start_bot()
    rig.toapis.plan = STALLED
    record = await rig.imagine(prompt="many foxes", n=12)
    placeholder = await showing(rig, record, "50%")
    placeholder.deleted = True
    # The bot may no longer post in the channel: the result has to go as interaction follow-ups.
    rig.discord.inject("POST", r"/channels/\d+/messages", 403, times=50)
    let_tasks_finish(rig.toapis)

    job = await final_job_of(rig, record)
    followups = record.followups
    delivered = job.delivered or {}
    assert (
        [len(m.attachments) for m in followups],
        [m.content for m in followups[1:]],
        f"<@{rig.discord.user_id}>" in followups[0].content if followups else None,
        delivered.get("message_ids"),
        len(delivered.get("images", [])),
    ) == ([10, 2], ["Images 11–12 of 12"], True, [m.id for m in followups], 12)


# --------------------------------------------------------------------------- before anything is charged


@pytest.mark.parametrize(
    ("withheld", "named"),
    [
        pytest.param(ATTACH_FILES, ["**Attach Files**"], id="attach-files"),
        pytest.param(
            EMBED_LINKS | SEND_MESSAGES, ["**Send Messages**", "**Embed Links**"], id="embed-links-and-send"
        ),
    ],
)
async def test_missing_channel_permissions_are_named_privately_and_nothing_is_charged(
    start_bot, withheld, named
):
    rig = await start_bot()
    payload = rig.discord.slash_command(
        "imagine", {"prompt": "a fox"}, app_permissions=DEFAULT_APP_PERMISSIONS & ~withheld
    )
    record = await rig.discord.send_interaction(payload)
    await rig.discord.wait_for(lambda _: record.acknowledged)
    text = record.callback["data"]["content"]
    assert (
        record.ephemeral,
        [name in text for name in named],
        "Nothing was charged" in text,
        rig.toapis.submit_attempts,
        channel_messages(rig.discord),
        await rig.bot.jobs.unfinished(),
    ) == (True, [True] * len(named), True, 0, [], [])


async def test_a_new_request_while_the_bot_is_stopping_is_refused_privately_and_not_submitted(start_bot):
    rig = await start_bot()
    rig.bot.stopping = True
    record = await rig.imagine(prompt="a fox")
    await rig.discord.wait_for(lambda _: record.acknowledged)
    assert (
        record.ephemeral,
        record.callback["data"]["content"],
        rig.toapis.submit_attempts,
        channel_messages(rig.discord),
        await rig.bot.jobs.unfinished(),
    ) == (True, "The bot is restarting — try again in a minute.", 0, [], [])


# --------------------------------------------------------------------------- a flaky image service


async def test_a_slow_image_service_is_shown_and_the_job_still_delivers_after_polling_errors(start_bot):
    # Edits may follow each other far more closely than polls, so the "slow" state is shown
    # before the next (successful) poll could replace it.
    rig = await start_bot(progress_edit_interval=0.05, poll_interval_queued=0.3, poll_interval_running=0.3)
    rig.toapis.plan = TaskPlan(steps=[("queued", 0)])
    # Four 503s exhaust one poll's own retries (the client tries each poll up to four times).
    rig.toapis.inject("GET", "/v1/images/generations/", 503, times=4)
    record = await rig.imagine(prompt="patience")
    message = await rig.finished(record)
    statuses = [status_of(body) for body in message.history]
    assert (
        any(SLOW in s for s in statuses[1:-1]),
        SLOW in status_of(message),
        status_of(message).startswith("✅ 1 image"),
        len(message.attachments),
        len(rig.toapis.submissions),
        rig.toapis.submit_attempts,
    ) == (True, False, True, 1, 1, 1), statuses


async def test_a_submission_whose_answer_times_out_is_failed_and_never_sent_again(start_bot):
    rig = await start_bot(toapis_timeout_seconds=0.3)
    rig.toapis.inject("POST", "/v1/images/generations", None, delay=2.0)
    record = await rig.imagine(prompt="a fox")
    message = await rig.finished(record)
    job = await job_of(rig, record)
    assert (
        status_of(message).startswith("❌ The image service did not confirm the request."),
        "did not send it again" in status_of(message),
        rig.toapis.submit_attempts,
        job.state,
        job.error is not None and status_of(message).startswith(f"❌ {job.error}"),
    ) == (True, True, 1, JobState.FAILED, True)


# --------------------------------------------------------------------------- restarts


async def _crash_while_running(start_bot) -> tuple[RunningBot, InteractionRecord, JobRecord]:
    """Start a job, let it reach `running` with a stalled task, then stop the bot."""
    rig = await start_bot()
    rig.toapis.plan = STALLED
    record = await rig.imagine(prompt="a fox that survives restarts", n=2)

    async def running() -> JobRecord | None:
        job = await job_of(rig, record)
        return job if job.state is JobState.RUNNING and job.task_id else None

    job = await until(running)
    await rig.bot.close()
    return rig, record, job


async def test_a_job_stored_as_accepted_is_sent_after_a_restart_and_delivered_in_its_message(
    start_bot, bot_settings
):
    rig, record, job = await _crash_while_running(start_bot)
    async with job_store(bot_settings) as jobs:
        await jobs.update(job.id, state=JobState.ACCEPTED, task_id=None, submitted_at=None, progress=None)
    rig.toapis.plan = TaskPlan()  # the task sent after the restart finishes

    again = await start_bot()
    message = await again.finished(record)
    stored = await final_job_of(again, record)
    assert (
        message.id,
        status_of(message).startswith("✅ 2 images"),
        len(message.attachments),
        again.toapis.submit_attempts,  # the first run's submission, and this one (nothing was sent)
        stored.state,
        stored.task_id != job.task_id,
    ) == (record.original_message_id, True, 2, 2, JobState.DONE, True)


async def test_a_job_stored_as_submitting_is_failed_on_restart_and_not_sent_again(start_bot, bot_settings):
    _, record, job = await _crash_while_running(start_bot)
    async with job_store(bot_settings) as jobs:
        await jobs.update(job.id, state=JobState.SUBMITTING, task_id=None, submitted_at=None, progress=None)

    again = await start_bot()
    message = await again.finished(record)
    stored = await final_job_of(again, record)
    assert (
        message.id,
        status_of(message).startswith(f"❌ {INTERRUPTED_WHILE_SENDING}"),
        "never confirmed" in status_of(message),
        "not sent again" in status_of(message),
        again.toapis.submit_attempts,
        stored.state,
    ) == (record.original_message_id, True, True, True, 1, JobState.FAILED)


async def test_a_running_job_is_polled_again_after_a_restart_and_delivered_in_its_message(start_bot):
    rig, record, job = await _crash_while_running(start_bot)
    polls_before = rig.toapis.polls[job.task_id]
    let_tasks_finish(rig.toapis)

    again = await start_bot()
    message = await again.finished(record)
    stored = await final_job_of(again, record)
    assert (
        message.id,
        status_of(message).startswith("✅ 2 images"),
        len(message.attachments),
        len(again.toapis.submissions),
        again.toapis.submit_attempts,
        again.toapis.polls[job.task_id] > polls_before,
        stored.state,
        stored.task_id,
    ) == (record.original_message_id, True, 2, 1, 1, True, JobState.DONE, job.task_id)


async def test_a_job_resumed_after_its_token_expired_edits_through_the_channel_only(start_bot, bot_settings):
    rig, record, job = await _crash_while_running(start_bot)
    async with job_store(bot_settings) as jobs:
        await jobs.update(job.id, token_expires_at=time.time() - 60)
    let_tasks_finish(rig.toapis)
    before = len(rig.discord.requests)

    again = await start_bot()
    message = await again.finished(record)
    after_restart = writes_to(again.discord, message.id, since=before)
    assert (
        message.id,
        len(message.attachments),
        {(r.route, r.auth, r.status) for r in after_restart},
    ) == (record.original_message_id, 2, {(CHANNEL_EDIT, "bot", 200)})


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [pytest.param(-60.0, "expired", id="expired"), pytest.param(3600.0, "delivered", id="still-valid")],
)
async def test_a_job_stored_as_delivering_delivers_its_stored_results_after_a_restart_unless_expired(
    start_bot, bot_settings, expires_in, expected
):
    rig, record, job = await _crash_while_running(start_bot)
    assert job.task_id is not None
    urls = rig.toapis.image_urls(job.task_id)
    async with job_store(bot_settings) as jobs:
        await jobs.update(
            job.id,
            state=JobState.DELIVERING,
            result_urls=urls,
            result_expires_at=time.time() + expires_in,
            progress=100,
        )

    again = await start_bot()
    message = await again.finished(record)
    stored = await final_job_of(again, record)
    status = status_of(message)
    outcome: tuple[object, ...]
    if expected == "expired":
        outcome = (
            status.startswith(f"❌ {RESULTS_EXPIRED}"),
            "expired before the bot could deliver them" in status,
            len(message.attachments),
            stored.state,
        )
        assert outcome == (True, True, 0, JobState.FAILED), status
    else:
        outcome = (status.startswith("✅ 2 images"), len(message.attachments), stored.state)
        assert outcome == (True, 2, JobState.DONE), status
    assert (message.id, again.toapis.submit_attempts) == (record.original_message_id, 1)


# --------------------------------------------------------------------------- Discord faults


async def test_a_rate_limited_final_edit_is_waited_out_and_the_images_still_arrive(start_bot):
    rig = await start_bot()
    rig.toapis.plan = STALLED
    record = await rig.imagine(prompt="a fox in a hurry", n=2)
    await showing(rig, record, "50%")
    # The next webhook edit is the one carrying the images.
    limited = rig.discord.inject(
        "PATCH",
        r"/webhooks/.*",
        429,
        {"message": "You are being rate limited.", "retry_after": 0.3, "global": False},
    )
    let_tasks_finish(rig.toapis)
    message = await rig.finished(record)
    retried = successful_edits(rig.discord, message.id)[-1]
    assert (
        len(limited.hits),
        len(limited.hits[0].files),
        status_of(message).startswith("✅ 2 images"),
        len(message.attachments),
        message.id,
        retried.route,
        len(retried.files),
    ) == (1, 2, True, 2, record.original_message_id, WEBHOOK_EDIT, 2)


async def test_unknown_message_on_a_progress_edit_is_treated_as_deleted_and_the_result_is_posted_anew(
    start_bot,
):
    rig = await start_bot()
    rig.toapis.plan = STALLED
    gone = rig.discord.inject("PATCH", r"/webhooks/.*", 404, times=1)
    record = await rig.imagine(prompt="a fox that moved", n=2)
    await rig.discord.wait_for(lambda _: gone.hits or None)
    let_tasks_finish(rig.toapis)

    result = await new_result_message(rig, record)
    job = await final_job_of(rig, record)
    assert (
        f"<@{rig.discord.user_id}>" in result.content,
        status_of(result).startswith("✅ 2 images"),
        len(result.attachments),
        job.state,
        job.message_id,
        status_of(record.original).startswith("✅") if record.original else None,
    ) == (True, True, 2, JobState.DONE, result.id, False)


async def test_a_forbidden_webhook_edit_falls_back_to_the_channel_edit(start_bot):
    rig = await start_bot()
    forbidden = rig.discord.inject("PATCH", r"/webhooks/.*", 403, times=50)
    record = await rig.imagine(prompt="a fox behind a wall", n=2)
    message = await rig.finished(record)
    final = successful_edits(rig.discord, message.id)[-1]
    assert (
        len(forbidden.hits) >= 1,
        status_of(message).startswith("✅ 2 images"),
        len(message.attachments),
        message.id,
        final.route,
        final.auth,
        [m.id for m in channel_messages(rig.discord)],
    ) == (True, True, 2, record.original_message_id, CHANNEL_EDIT, "bot", [message.id])


# --------------------------------------------------------------------------- what the record keeps


async def test_a_delivered_job_records_its_task_images_and_message(start_bot):
    rig = await start_bot()
    record = await rig.imagine(prompt="three foxes", n=3)
    message = await rig.finished(record)
    job = await final_job_of(rig, record)
    task_id = next(iter(rig.toapis.tasks))
    delivered = job.delivered or {}
    assert (
        job.state,
        job.task_id,
        len(delivered.get("images", [])),
        len(message.attachments),
        record.original_message_id in delivered.get("message_ids", []),
        sorted(i["filename"] for i in delivered.get("images", [])),
        job.error,
    ) == (
        JobState.DONE,
        task_id,
        3,
        3,
        True,
        sorted(a.filename for a in message.attachments),
        None,
    )


async def test_a_job_the_service_refused_records_the_error_the_message_shows(start_bot):
    rig = await start_bot()
    rig.toapis.plan = TaskPlan(outcome="failed", failure_message="The prompt was rejected by the policy")
    record = await rig.imagine(prompt="something forbidden")
    message = await rig.finished(record)
    job = await final_job_of(rig, record)
    assert (
        job.state,
        job.error,
        status_of(message).startswith(f"❌ {job.error}\n"),
        job.delivered,
    ) == (
        JobState.FAILED,
        "The image service could not make this image: The prompt was rejected by the policy",
        True,
        None,
    )


async def test_the_webhook_edit_is_used_while_the_token_lives(start_bot):
    rig = await start_bot()
    record = await rig.imagine(prompt="a fox", n=1)
    message = await rig.finished(record)
    final = successful_edits(rig.discord, message.id)[-1]
    assert (final.route, final.auth, len(final.files)) == (WEBHOOK_EDIT, "none", 1)
