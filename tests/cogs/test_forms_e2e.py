"""The request forms end to end: Remix and "Imagine with these images", submitted after a restart
or long after they were opened.

A member may leave a form open for as long as they like, and the bot may restart meanwhile: the
submission must still start the job, or get a private answer saying what to do — never Discord's
"interaction failed". The real bot is driven through the fake Discord gateway against the fake
ToAPIs; a restart is the bot closed and a new one started on the same database.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import sqlalchemy as sa

from bot.jobs.records import JobRecord
from bot.schema import jobs_table
from cogs.actions import GONE
from cogs.forms import EXPIRED
from cogs.imagine import MENU_IMAGES_GONE, MENU_MESSAGE_GONE
from tests.fakes.discord import FakeMessage, InteractionRecord
from tests.fakes.toapis import make_image
from tests.rig import RunningBot, StartBot, status_of

pytestmark = pytest.mark.asyncio

MENU = "Imagine with these images"
# Longer than Discord keeps an interaction token, and than any form timeout discord.py would apply.
LATER = 16 * 60


# --------------------------------------------------------------------------- helpers


async def job_of(rig: RunningBot, record: InteractionRecord) -> JobRecord:
    """The stored job an interaction started, once final."""
    assert rig.bot.store is not None
    deadline = time.monotonic() + 20
    while True:
        async with rig.bot.store.engine.connect() as conn:
            query = sa.select(jobs_table.c.id).where(jobs_table.c.interaction_id == record.id)
            job_id = (await conn.execute(query)).scalar_one_or_none()
        job = None if job_id is None else await rig.bot.jobs.get(job_id)
        if job is not None and job.is_final:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"no final job for interaction {record.id}")
        await asyncio.sleep(0.02)


async def job_count(rig: RunningBot) -> int:
    assert rig.bot.store is not None
    async with rig.bot.store.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(jobs_table))).scalar_one()


async def imagined(rig: RunningBot, **options: Any) -> tuple[FakeMessage, JobRecord]:
    """Run /imagine to the end: its final message and its final job record."""
    record = await rig.imagine(**options)
    return await rig.finished(record), await job_of(rig, record)


async def answered(rig: RunningBot, payload: dict[str, Any]) -> InteractionRecord:
    record = await rig.discord.send_interaction(payload)
    await rig.discord.wait_for(lambda _: record.acknowledged)
    return record


async def open_remix(rig: RunningBot, message: FakeMessage, job: JobRecord) -> InteractionRecord:
    """Click Remix under a result; the bot answers with the form."""
    record = await answered(rig, rig.discord.component_interaction(message, f"imagine:remix:{job.id}"))
    assert record.callback_type == 9, record.callback
    return record


async def open_menu(rig: RunningBot, message: FakeMessage) -> InteractionRecord:
    """Right-click `message` → Apps → "Imagine with these images"; the bot answers with the form."""
    record = await answered(rig, rig.discord.message_command(MENU, message))
    assert record.callback_type == 9, record.callback
    return record


async def submit(rig: RunningBot, form: InteractionRecord, answers: dict[str, str]) -> InteractionRecord:
    """The member fills in the form `form` opened (answers by label) and submits it."""
    return await answered(rig, rig.discord.modal_reply(form, answers))


async def restart(rig: RunningBot, start_bot: StartBot) -> RunningBot:
    await rig.bot.close()
    return await start_bot()


def time_passes(rig: RunningBot, *opened: InteractionRecord, seconds: float = LATER) -> None:
    """What `seconds` do to the bot and to Discord: the tokens of the interactions that opened the
    forms die, discord.py ends every form it holds whose timeout is up, and the bot's clock for
    the forms it remembers moves on."""
    for record in opened:
        rig.discord.expire_interaction(record)
    modals = rig.bot._connection._view_store._modals  # discord.py's registry of live forms
    for modal in list(modals.values()):
        if modal.timeout is not None and modal.timeout <= seconds:
            modal.stop()
    forms = rig.bot.get_cog("ImagineCog").open_menu_forms
    clock = forms.clock
    forms.clock = lambda: clock() + seconds


def private_text(record: InteractionRecord) -> str:
    """The bot's answer, which must be visible only to the member and ping no one."""
    assert (record.callback_type, record.ephemeral) == (4, True), record.callback
    assert record.callback["data"]["allowed_mentions"] == {"parse": []}
    return record.callback["data"]["content"]


def message_reads(rig: RunningBot, message: FakeMessage) -> int:
    """How often the bot read `message` through the channel endpoint."""
    path = f"/channels/{message.channel_id}/messages/{message.id}"
    return sum(1 for r in rig.discord.requests if r.method == "GET" and r.path.endswith(path))


def member_message_with_images(rig: RunningBot) -> tuple[FakeMessage, list[bytes]]:
    images = [make_image(320, 240, "PNG", seed=11), make_image(240, 320, "PNG", seed=12)]
    attachments = [rig.discord.make_attachment(f"ref-{i}.png", data) for i, data in enumerate(images, 1)]
    return rig.discord.post_message("like these", attachments=attachments), images


REMIXED = {
    "model": "doubao-seedream-5-0",
    "prompt": "a blue fox in the rain",
    "size": "16:9",
    "n": 3,
    "metadata": {"resolution": "3K", "watermark": False},
}


# --------------------------------------------------------------------------- Remix


async def test_a_remix_form_opened_before_a_restart_starts_the_remix_when_submitted_after_it(start_bot):
    rig = await start_bot()
    original, job = await imagined(
        rig, prompt="a red fox in snow", ratio="16:9", n=3, model="doubao-seedream-5-0", resolution="3K"
    )
    form = await open_remix(rig, original, job)

    again = await restart(rig, start_bot)
    record = await submit(again, form, {"Prompt": "a blue fox in the rain"})
    remixed = await again.finished(record)
    assert (
        record.ephemeral,
        status_of(remixed)[:1],
        remixed.embeds[0]["description"],
        again.toapis.submissions[1:],
    ) == (False, "✅", "a blue fox in the rain", [REMIXED])


async def test_a_remix_form_submitted_more_than_15_minutes_after_it_opened_still_starts_the_remix(start_bot):
    rig = await start_bot()
    original, job = await imagined(
        rig, prompt="a red fox in snow", ratio="16:9", n=3, model="doubao-seedream-5-0", resolution="3K"
    )
    form = await open_remix(rig, original, job)

    time_passes(rig, form)
    record = await submit(rig, form, {"Prompt": "a blue fox in the rain"})
    remixed = await rig.finished(record)  # answered and delivered with the submission's own token
    assert (record.ephemeral, status_of(remixed)[:1], rig.toapis.submissions[1:]) == (False, "✅", [REMIXED])


async def test_a_remix_form_whose_job_record_is_gone_says_so_privately_after_a_restart(start_bot):
    rig = await start_bot()
    original, job = await imagined(rig, prompt="a fox")
    form = await open_remix(rig, original, job)
    again = await restart(rig, start_bot)
    assert again.bot.store is not None
    async with again.bot.store.engine.begin() as conn:
        await conn.execute(jobs_table.delete().where(jobs_table.c.id == job.id))

    record = await submit(again, form, {"Prompt": "a blue fox"})
    assert (private_text(record), len(again.toapis.submissions), await job_count(again)) == (str(GONE), 1, 0)


# --------------------------------------------------------------------------- "Imagine with these images"


async def test_a_menu_form_opened_before_a_restart_reads_the_images_again_from_the_message(start_bot):
    rig = await start_bot()
    message, images = member_message_with_images(rig)
    form = await open_menu(rig, message)

    again = await restart(rig, start_bot)
    record = await submit(again, form, {"Prompt": "combine these", "Number of images": "2"})
    result = await again.finished(record)
    submitted = again.toapis.submissions[0]
    assert (
        record.ephemeral,
        status_of(result)[:1],
        message_reads(again, message),
        [u["bytes"] for u in again.toapis.uploads],
        (submitted["prompt"], submitted["n"], len(submitted["image_urls"])),
    ) == (False, "✅", 1, images, ("combine these", 2, 2))


async def test_a_menu_form_submitted_more_than_15_minutes_after_it_opened_uses_its_images(start_bot):
    rig = await start_bot()
    message, images = member_message_with_images(rig)
    form = await open_menu(rig, message)

    time_passes(rig, form)
    record = await submit(rig, form, {"Prompt": "combine these"})
    result = await rig.finished(record)  # answered and delivered with the submission's own token
    assert (
        record.ephemeral,
        status_of(result)[:1],
        [u["bytes"] for u in rig.toapis.uploads],
        rig.toapis.submissions[0]["prompt"],
    ) == (False, "✅", images, "combine these")


async def test_a_menu_form_submitted_a_day_later_reads_the_images_again_from_the_message(start_bot):
    rig = await start_bot()
    message, images = member_message_with_images(rig)
    form = await open_menu(rig, message)
    reads_before = message_reads(rig, message)

    time_passes(rig, form, seconds=25 * 60 * 60)  # Discord's signed links to the images have expired
    record = await submit(rig, form, {"Prompt": "combine these"})
    result = await rig.finished(record)
    assert (
        status_of(result)[:1],
        message_reads(rig, message) - reads_before,
        rig.toapis.uploads[0]["bytes"],
    ) == (
        "✅",
        1,
        images[0],
    )


async def test_a_menu_form_whose_message_was_deleted_says_so_privately_after_a_restart(start_bot):
    rig = await start_bot()
    message, _ = member_message_with_images(rig)
    form = await open_menu(rig, message)
    again = await restart(rig, start_bot)
    message.deleted = True

    record = await submit(again, form, {"Prompt": "combine these"})
    assert (
        private_text(record),
        again.toapis.submit_attempts,
        again.toapis.uploads,
        await job_count(again),
    ) == (
        str(MENU_MESSAGE_GONE),
        0,
        [],
        0,
    )


async def test_a_menu_form_whose_message_has_no_images_any_more_asks_to_open_it_again_after_a_restart(
    start_bot,
):
    rig = await start_bot()
    message, _ = member_message_with_images(rig)
    form = await open_menu(rig, message)
    again = await restart(rig, start_bot)
    message.attachments = []  # edited away (or hidden from the bot's own reads by Discord)

    record = await submit(again, form, {"Prompt": "combine these"})
    text = private_text(record)
    expired = text.startswith(str(EXPIRED))
    assert (expired, again.toapis.submit_attempts, await job_count(again)) == (True, 0, 0)
    assert text == str(MENU_IMAGES_GONE)


# --------------------------------------------------------------------------- forms the bot cannot read


@pytest.mark.parametrize(
    "custom_id",
    ["imagine:form:remix:", "imagine:form:menu:123", "imagine:form:poll:7"],
    ids=["no-job", "half-a-message", "unknown-kind"],
)
async def test_a_request_form_the_bot_cannot_read_answers_privately_that_it_expired(start_bot, custom_id):
    rig = await start_bot()
    payload = rig.discord.modal_submit(custom_id, {"prompt": "a fox"})
    record = await answered(rig, payload)
    assert (private_text(record), rig.toapis.submit_attempts, await job_count(rig)) == (str(EXPIRED), 0, 0)


async def test_a_remix_form_of_an_older_layout_without_a_prompt_answers_privately_that_it_expired(start_bot):
    rig = await start_bot()
    _, job = await imagined(rig, prompt="a fox")
    payload = rig.discord.modal_submit(f"imagine:form:remix:{job.id}", {"9f2c": "a blue fox"})
    record = await answered(rig, payload)
    assert (private_text(record), len(rig.toapis.submissions), await job_count(rig)) == (str(EXPIRED), 1, 1)
