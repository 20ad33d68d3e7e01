"""A real bot process (`python -m bot`) killed mid-job and started again loses nothing and pays once."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from bot.jobs.queue import SUBMIT_SLOTS
from bot.jobs.runner import INTERRUPTED_WHILE_SENDING
from cogs.render import WAITING_FOR_RESTART
from tests.fakes.discord import FakeDiscord, FakeMessage, InteractionRecord
from tests.fakes.toapis import FakeToAPIs, TaskPlan
from tests.process_launcher import SHUTDOWN_LIMIT, BotProcess
from tests.rig import eventually, status_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bot_env(discord_fake: FakeDiscord, toapis_fake: FakeToAPIs, tmp_path: Path) -> dict[str, str]:
    return {
        "DISCORD_TOKEN": discord_fake.token,
        "TOAPIS_API_KEY": toapis_fake.api_key,
        "TOAPIS_BASE_URL": toapis_fake.base_url,
        "DISCORD_API_BASE_URL": discord_fake.api_base,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'imagine.db'}",
        "PROGRESS_EDIT_INTERVAL_SECONDS": "0.25",
        "JOB_TIMEOUT_SECONDS": "120",
        "LOG_LEVEL": "INFO",
    }


async def _start_online(
    discord_fake: FakeDiscord, env: dict[str, str], cwd: Path, started: list
) -> BotProcess:
    """Start a bot process and wait until its own gateway session is up."""
    known = {id(s) for s in discord_fake.sessions}
    process = await BotProcess.start(env, cwd)
    started.append(process)

    def new_session(fake: FakeDiscord) -> object | None:
        return next((s for s in fake.connected_sessions() if id(s) not in known), None)

    try:
        await discord_fake.wait_for(new_session, timeout=30)
    except AssertionError:
        raise AssertionError(f"the bot process did not come online:\n{process.log}") from None
    return process


async def _final(discord_fake: FakeDiscord, record: InteractionRecord, process: BotProcess) -> FakeMessage:
    def final(_: FakeDiscord) -> FakeMessage | None:
        message = record.original
        return message if message is not None and status_of(message).startswith(("✅", "❌")) else None

    try:
        return await discord_fake.wait_for(final, timeout=30)
    except AssertionError:
        raise AssertionError(f"the job never finished:\n{process.log}") from None


async def _job_running(toapis_fake: FakeToAPIs) -> str:
    """Wait until the task was submitted and polled at least once (so its id is stored)."""
    return await eventually(
        lambda: next((t for t, polls in toapis_fake.polls.items() if polls >= 1), None), what="a poll"
    )


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_killed_mid_job_then_restarted_delivers_into_the_original_message_paying_once(
    discord_fake, toapis_fake, bot_env, tmp_path, processes, sig
):
    toapis_fake.plan = TaskPlan(steps=[("queued", 0), ("in_progress", 40)], never_finish=True)
    first = await _start_online(discord_fake, bot_env, tmp_path, processes)
    record = await discord_fake.send_interaction(
        discord_fake.slash_command("imagine", {"prompt": "a fox", "n": 2})
    )
    task_id = await _job_running(toapis_fake)

    code = await first.stop(sig)
    second = await _start_online(discord_fake, bot_env, tmp_path, processes)
    toapis_fake.tasks[task_id].plan.never_finish = False  # the service finishes while the bot was away
    message = await _final(discord_fake, record, second)

    assert (message.id, len(message.attachments), len(toapis_fake.submissions), code) == (
        record.original_message_id,
        2,
        1,
        -signal.SIGKILL if sig is signal.SIGKILL else 0,
    ), second.log


async def test_sigterm_during_a_submission_waits_for_its_answer_and_resumes_it(
    discord_fake, toapis_fake, bot_env, tmp_path, processes
):
    toapis_fake.plan = TaskPlan(steps=[("queued", 0)], never_finish=True)
    toapis_fake.inject("POST", "/v1/images/generations", None, delay=1.5)  # a slow answer
    first = await _start_online(discord_fake, bot_env, tmp_path, processes)
    record = await discord_fake.send_interaction(discord_fake.slash_command("imagine", {"prompt": "a fox"}))
    await eventually(lambda: toapis_fake.submit_attempts == 1, what="the submission reaching ToAPIs")

    code = await first.stop(signal.SIGTERM)  # the submission is still being answered
    second = await _start_online(discord_fake, bot_env, tmp_path, processes)
    task_id = await _job_running(toapis_fake)
    toapis_fake.tasks[task_id].plan.never_finish = False
    message = await _final(discord_fake, record, second)

    assert (code, len(toapis_fake.submissions), len(message.attachments)) == (0, 1, 1), first.log


async def test_a_job_sent_but_unconfirmed_when_the_process_died_is_not_sent_again(
    discord_fake, toapis_fake, bot_env, tmp_path, processes
):
    toapis_fake.inject("POST", "/v1/images/generations", None, delay=30)  # the answer never comes in time
    first = await _start_online(discord_fake, bot_env, tmp_path, processes)
    record = await discord_fake.send_interaction(discord_fake.slash_command("imagine", {"prompt": "a fox"}))
    await eventually(lambda: toapis_fake.submit_attempts == 1, what="the submission reaching ToAPIs")

    await first.stop(signal.SIGKILL)
    second = await _start_online(discord_fake, bot_env, tmp_path, processes)
    message = await _final(discord_fake, record, second)

    assert (
        toapis_fake.submit_attempts,
        status_of(message).startswith(f"❌ {INTERRUPTED_WHILE_SENDING}"),
    ) == (1, True), second.log


async def test_sigterm_during_a_burst_lets_submissions_on_the_wire_answer_and_sends_the_rest_after_restart(
    discord_fake, toapis_fake, bot_env, tmp_path, processes
):
    toapis_fake.plan = TaskPlan(steps=[("queued", 0)])
    toapis_fake.hold_submission_answers()  # each submission is charged at once, answered later
    first = await _start_online(discord_fake, bot_env, tmp_path, processes)
    records = [
        await discord_fake.send_interaction(
            # Members in their own channels: each channel's edits are paced on their own.
            discord_fake.slash_command(
                "imagine", {"prompt": f"fox {i}"}, user_id=5000 + i, channel_id=discord_fake.snowflake()
            )
        )
        for i in range(40)
    ]
    await eventually(lambda: all(r.original_message_id for r in records), what="40 placeholders")
    await eventually(lambda: toapis_fake.answers_held == SUBMIT_SLOTS, what="16 submissions in flight")

    signalled = time.monotonic()
    first.proc.send_signal(signal.SIGTERM)
    await eventually(lambda: b"stopping: new jobs are refused" in first.output, what="the bot stopping")
    toapis_fake.release_submission_answers()  # the service answers while the bot is stopping
    try:
        code = await asyncio.wait_for(first.proc.wait(), SHUTDOWN_LIMIT - (time.monotonic() - signalled))
    except TimeoutError:
        raise AssertionError(f"the bot did not exit within {SHUTDOWN_LIMIT}s:\n{first.log}") from None
    sent_before_restart = len(toapis_fake.submissions)
    waiting = [r for r in records if status_of(r.original).startswith(str(WAITING_FOR_RESTART))]

    second = await _start_online(discord_fake, bot_env, tmp_path, processes)
    finals = [await _final(discord_fake, record, second) for record in records]

    assert (
        code,
        sent_before_restart,
        len(waiting),
        len(toapis_fake.submissions),
        toapis_fake.submit_attempts,
        sum(status_of(m).startswith("✅ 1 image") and len(m.attachments) == 1 for m in finals),
    ) == (0, SUBMIT_SLOTS, 40 - SUBMIT_SLOTS, 40, 40, 40), second.log
