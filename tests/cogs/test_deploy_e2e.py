"""A deploy wastes nothing: the real bot stopping mid-job holds what it has not sent, and the next
start sends it — once, with the references it already uploaded. Driven through the fake Discord
and the fake ToAPIs."""

from __future__ import annotations

import asyncio

import pytest

from bot.jobs.records import JobState
from bot.jobs.runner import INTERRUPTED_BEFORE_SENDING
from cogs.render import WAITING_FOR_RESTART
from tests.cogs.test_durable_e2e import _crash_while_running, final_job_of, job_of, job_store
from tests.fakes.toapis import UPLOADS_PATH, make_image
from tests.rig import eventually, status_of

pytestmark = pytest.mark.asyncio


async def test_stopping_while_a_reference_uploads_holds_the_job_and_the_restart_sends_the_stored_upload(
    start_bot,
):
    rig = await start_bot()
    photo = rig.discord.make_attachment("photo.png", make_image(96, 64, "PNG", seed=7))
    rig.toapis.inject("POST", UPLOADS_PATH, None, delay=2.0)  # the upload is answered a moment later
    record = await rig.imagine(prompt="a fox like this one", image1=photo)
    await eventually(
        lambda: any(r.path == UPLOADS_PATH for r in rig.toapis.requests), what="the reference upload"
    )

    await rig.bot.shutdown()  # SIGTERM while the reference is being uploaded
    held = await job_of(rig, record)
    shown = status_of(record.original)
    uploads_before_restart = len(rig.toapis.uploads)

    again = await start_bot()
    message = await again.finished(record)
    stored = await final_job_of(again, record)
    used = await again.bot.ledger.values(stored.quota_keys)
    assert (
        shown.startswith(str(WAITING_FOR_RESTART)),
        held.state,
        len(held.reference_urls),
        uploads_before_restart,
        message.id,
        status_of(message).startswith("✅ 1 image"),
        len(again.toapis.uploads),
        again.toapis.submit_attempts,
        [s.get("image_urls") for s in again.toapis.submissions],
        set(used.values()),
    ) == (
        True,
        JobState.ACCEPTED,
        1,
        1,
        record.original_message_id,
        True,
        1,  # not uploaded again: the stored copy is sent
        1,
        [list(held.reference_urls)],
        {1},  # the one image is counted once, not again for the resumed run
    )


async def test_a_job_waiting_for_a_submit_slot_when_the_bot_stops_is_not_sent_until_the_restart(start_bot):
    rig = await start_bot()
    rig.toapis.hold_submission_answers()
    records = [await rig.imagine(prompt=f"fox {i}") for i in range(17)]  # one more than the slots
    await eventually(lambda: rig.toapis.answers_held == 16, what="every submit slot in use")
    await eventually(lambda: all(r.original for r in records), what="17 placeholders")

    stopping = asyncio.create_task(rig.bot.shutdown())
    await eventually(lambda: rig.bot.stopping, what="the bot stopping")
    rig.toapis.release_submission_answers()
    await stopping
    held = [r for r in records if status_of(r.original).startswith(str(WAITING_FOR_RESTART))]
    sent_before_restart = len(rig.toapis.submissions)

    again = await start_bot()
    messages = [await again.finished(r) for r in records]
    assert (
        len(held),
        sent_before_restart,
        len(again.toapis.submissions),
        sum(status_of(m).startswith("✅") for m in messages),
    ) == (1, 16, 17, 17)


async def test_a_job_stored_as_accepted_before_its_references_were_uploaded_is_failed_on_restart(
    start_bot, bot_settings
):
    _, record, job = await _crash_while_running(start_bot)
    async with job_store(bot_settings) as jobs:
        # As if the bot died while downloading a member's reference (only uploads are stored).
        await jobs.update(job.id, state=JobState.ACCEPTED, task_id=None, progress=None, reference_count=1)

    again = await start_bot()
    message = await again.finished(record)
    stored = await final_job_of(again, record)
    used = await again.bot.ledger.values(stored.quota_keys)
    assert (
        status_of(message).startswith(f"❌ {INTERRUPTED_BEFORE_SENDING}"),
        again.toapis.submit_attempts,
        stored.state,
        set(used.values()),
    ) == (True, 1, JobState.FAILED, {0})
