"""Result buttons end to end: Reroll, Vary, Remix, Delete and Details under a result, and /imagine-history.

The real bot, driven through the fake Discord gateway (members click the buttons the bot posted),
against the fake ToAPIs. Every new job a button starts is checked like /imagine: what the member
sees, what reaches the image service, and who is charged for it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import sqlalchemy as sa

from bot.jobs.records import JobRecord, JobState
from bot.quota import day_key
from bot.schema import jobs_table
from cogs.actions import ALREADY, GONE
from tests.fakes.discord import (
    DEFAULT_MEMBER_PERMISSIONS,
    MANAGE_MESSAGES,
    FakeMessage,
    InteractionRecord,
)
from tests.fakes.toapis import TaskPlan, make_image
from tests.rig import RunningBot, embed_fields, eventually, status_of

pytestmark = pytest.mark.asyncio

ACTIONS = ("reroll", "vary", "remix", "delete", "details")
DONE_BUTTONS = ["Reroll", "Vary", "Remix", "Delete", "Details"]
FAILED_BUTTONS = ["Reroll", "Remix", "Details"]
# Slow enough that a job shows progress edits between its placeholder and its result.
VISIBLE_PROGRESS = TaskPlan(steps=[("queued", 0), ("in_progress", 50)], advance="time", step_seconds=0.5)
REFUSE_DELETE = "Only the member who asked for this image, or a moderator with Manage Messages"


# --------------------------------------------------------------------------- helpers


async def job_of(rig: RunningBot, record: InteractionRecord, *, final: bool = True) -> JobRecord:
    """The stored job an interaction started (once final, unless told otherwise)."""

    async def found() -> JobRecord | None:
        assert rig.bot.store is not None
        async with rig.bot.store.engine.connect() as conn:
            query = sa.select(jobs_table.c.id).where(jobs_table.c.interaction_id == record.id)
            job_id = (await conn.execute(query)).scalar_one_or_none()
        job = None if job_id is None else await rig.bot.jobs.get(job_id)
        return job if job is not None and (job.is_final or not final) else None

    deadline = time.monotonic() + 20
    while (job := await found()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {'final ' if final else ''}job for interaction {record.id}")
        await asyncio.sleep(0.02)
    return job


async def job_count(rig: RunningBot) -> int:
    assert rig.bot.store is not None
    async with rig.bot.store.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(jobs_table))).scalar_one()


async def imagined(rig: RunningBot, **options: Any) -> tuple[FakeMessage, JobRecord]:
    """Run /imagine to the end: its final message and its final job record."""
    record = await rig.imagine(**options)
    message = await rig.finished(record)
    return message, await job_of(rig, record)


async def click(
    rig: RunningBot,
    message: FakeMessage,
    custom_id: str,
    *,
    user_id: int | None = None,
    permissions: int = DEFAULT_MEMBER_PERMISSIONS,
    values: list[str] | None = None,
) -> InteractionRecord:
    """A member clicks a component of `message` (a select when `values` are given); waits for the answer."""
    payload = rig.discord.component_interaction(
        message,
        custom_id,
        component_type=2 if values is None else 3,
        values=values,
        user_id=user_id,
        permissions=permissions,
    )
    record = await rig.discord.send_interaction(payload)
    await rig.discord.wait_for(lambda _: record.acknowledged)
    return record


def button(action: str, job: JobRecord | int) -> str:
    return f"imagine:{action}:{job if isinstance(job, int) else job.id}"


def private_text(record: InteractionRecord) -> str:
    """The bot's answer, which must be visible only to the member who clicked."""
    assert (record.callback_type, record.ephemeral) == (4, True), record.callback
    assert record.callback["data"]["allowed_mentions"] == {"parse": []}, "a private answer must ping no one"
    return record.callback["data"].get("content") or ""


def labels(message: FakeMessage) -> list[str | None]:
    return [c.get("label") for c in message.component_list]


def result_downloads(rig: RunningBot, job: JobRecord) -> list[str]:
    """Downloads of one job's result files from the image service's file host."""
    assert job.task_id is not None
    return [r.path for r in rig.toapis.download_requests if job.task_id in r.path]


def channel_deletes(rig: RunningBot) -> list[str]:
    return [r.path for r in rig.discord.requests if r.method == "DELETE" and "/messages/" in r.path]


def modal_inputs(record: InteractionRecord) -> dict[str, dict[str, Any]]:
    """The modal the bot opened, as {label: its input component}."""
    assert record.callback_type == 9, record.callback
    return {
        row["label"]: row["component"]
        for row in record.callback["data"]["components"]
        if row.get("type") == 18
    }


def defaults(select: dict[str, Any]) -> list[str]:
    return [o["value"] for o in select["options"] if o.get("default")]


# --------------------------------------------------------------------------- the buttons themselves


async def test_a_finished_result_carries_the_five_buttons_naming_its_job(start_bot):
    rig = await start_bot()
    message, job = await imagined(rig, prompt="a fox", n=2)
    assert (labels(message), message.custom_ids) == (
        DONE_BUTTONS,
        [f"imagine:{a}:{job.id}" for a in ACTIONS],
    )


async def test_a_failed_result_carries_only_reroll_remix_and_details(start_bot):
    rig = await start_bot()
    rig.toapis.plan = TaskPlan(outcome="failed")
    message, job = await imagined(rig, prompt="a fox")
    assert (status_of(message)[:1], job.state, labels(message), message.custom_ids) == (
        "❌",
        JobState.FAILED,
        FAILED_BUTTONS,
        [f"imagine:{a}:{job.id}" for a in ("reroll", "remix", "details")],
    )


# --------------------------------------------------------------------------- Reroll


async def test_reroll_posts_a_new_public_message_with_its_own_progress_then_sends_the_same_request(start_bot):
    rig = await start_bot()
    # The reroll shows progress; the original shows none, so the channel's pacing (3 progress
    # edits per 5 s) has room for the reroll's.
    rig.toapis.plans = [TaskPlan(steps=[("queued", 0)]), VISIBLE_PROGRESS]
    original, job = await imagined(
        rig, prompt="a red fox in snow", ratio="16:9", n=2, model="doubao-seedream-5-0", resolution="3K"
    )
    writes_before = len(original.history)

    record = await click(rig, original, button("reroll", job))
    rerolled = await rig.finished(record)
    statuses = [status_of(body) for body in rerolled.history]
    new_job = await job_of(rig, record)
    assert (
        record.callback_type,
        record.ephemeral,
        rerolled.id != original.id,
        statuses[0].startswith("⏳ Queued"),
        any(s.startswith("🎨 Generating") for s in statuses[1:-1]),
        statuses[-1].startswith("✅ 2 images"),
        len(rerolled.attachments),
        rerolled.custom_ids[0],
        len(original.history),
        original.deleted,
    ) == (4, False, True, True, True, True, 2, button("reroll", new_job), writes_before, False)
    assert len(rig.toapis.submissions) == 2
    assert (
        rig.toapis.submissions[1]
        == rig.toapis.submissions[0]
        == {
            "model": "doubao-seedream-5-0",
            "prompt": "a red fox in snow",
            "size": "16:9",
            "n": 2,
            "metadata": {"resolution": "3K", "watermark": False},
        }
    )


async def test_reroll_of_a_job_with_references_reuses_the_uploaded_copies_without_uploading_again(start_bot):
    rig = await start_bot()
    photo = rig.discord.make_attachment("photo.jpg", make_image(320, 240, "JPEG", seed=7))
    original, job = await imagined(rig, prompt="a fox in this style", image1=photo)
    uploads_before = len(rig.toapis.uploads)
    cdn_before = len(rig.discord.cdn_requests)

    record = await click(rig, original, button("reroll", job))
    await rig.finished(record)
    new_job = await job_of(rig, record)
    first, second = rig.toapis.submissions
    assert (
        uploads_before,
        len(rig.toapis.uploads),
        len(rig.discord.cdn_requests),
        second,
        new_job.reference_urls,
        new_job.state,
    ) == (1, 1, cdn_before, first, job.reference_urls, JobState.DONE)
    assert len(second["image_urls"]) == 1


async def test_a_reroll_by_another_member_is_their_job_and_counted_in_their_quota(start_bot):
    rig = await start_bot()
    guild, asker, clicker = rig.discord.guild_id, rig.discord.user_id, rig.discord.snowflake()
    await rig.bot.guild_settings.update(guild, lambda s: s.replace(daily_member_quota=10))
    original, job = await imagined(rig, prompt="a fox", n=3)

    record = await click(rig, original, button("reroll", job), user_id=clicker)
    rerolled = await rig.finished(record)
    new_job = await job_of(rig, record)
    day = day_key(new_job.created_at)
    used = await rig.bot.ledger.values([f"m:{guild}:{asker}:{day}", f"m:{guild}:{clicker}:{day}"])
    assert (
        new_job.user_id,
        embed_fields(rerolled.embeds[0])["Requested by"],
        f"m:{guild}:{clicker}:{day}" in new_job.quota_keys,
        list(used.values()),
        len(rig.toapis.submissions),
    ) == (clicker, f"<@{clicker}>", True, [3, 3], 2)


async def test_reroll_with_the_daily_member_quota_used_up_is_refused_privately_and_nothing_is_sent(start_bot):
    rig = await start_bot()
    await rig.bot.guild_settings.update(rig.discord.guild_id, lambda s: s.replace(daily_member_quota=2))
    original, job = await imagined(rig, prompt="a fox", n=2)

    record = await click(rig, original, button("reroll", job))
    assert private_text(record).startswith("Daily limit of 2 images reached — resets <t:")
    assert (rig.toapis.submit_attempts, await job_count(rig), len(rig.discord.messages)) == (
        1,
        1,
        2,  # the result, and the private refusal
    )


# --------------------------------------------------------------------------- Vary


async def test_vary_with_several_images_offers_a_private_picker_and_varies_image_two_as_posted(start_bot):
    rig = await start_bot()
    original, job = await imagined(rig, prompt="three foxes", n=3, ratio="4:3")
    assert job.task_id is not None
    result_files_fetched = result_downloads(rig, job)

    record = await click(rig, original, button("vary", job))
    picker = record.original
    assert picker is not None
    assert (
        private_text(record),
        picker.custom_ids,
        [o["label"] for o in picker.component_list[0]["options"]],
    ) == (
        "Which image should the new ones vary?",
        [f"imagine:varypick:{job.id}"],
        ["Image 1", "Image 2", "Image 3"],
    )
    assert (len(rig.toapis.submissions), rig.toapis.uploads) == (1, [])

    picked = await click(rig, picker, f"imagine:varypick:{job.id}", values=["2"])
    varied = await rig.finished(picked)
    new_job = await job_of(rig, picked)
    posted = original.attachments
    uploaded = [u["bytes"] for u in rig.toapis.uploads]
    submission = rig.toapis.submissions[1]
    assert (
        picked.callback_type,
        picked.ephemeral,
        status_of(varied)[:1],
        uploaded == [posted[1].data],
        posted[1].data != posted[0].data,
        submission["prompt"],
        submission["size"],
        submission["n"],
        len(submission["image_urls"]),
        list(new_job.reference_urls) == submission["image_urls"],
        result_downloads(rig, job),
    ) == (4, False, "✅", True, True, "three foxes", "4:3", 3, 1, True, result_files_fetched)


async def test_vary_of_a_single_image_starts_at_once_from_the_clicked_message(start_bot):
    rig = await start_bot()
    original, job = await imagined(rig, prompt="one fox")
    result_files_fetched = result_downloads(rig, job)

    record = await click(rig, original, button("vary", job))
    varied = await rig.finished(record)
    fetched_messages = [r for r in rig.discord.requests if r.method == "GET" and "/messages/" in r.path]
    assert (
        record.callback_type,
        record.ephemeral,
        status_of(varied)[:1],
        [u["bytes"] for u in rig.toapis.uploads] == [original.attachments[0].data],
        len(rig.toapis.submissions[1]["image_urls"]),
        fetched_messages,
        result_downloads(rig, job),
    ) == (4, False, "✅", True, 1, [], result_files_fetched)


async def test_vary_of_an_image_past_the_tenth_reads_it_from_the_reply_that_carries_it(start_bot):
    rig = await start_bot()
    original, job = await imagined(rig, prompt="twelve foxes", n=12)
    assert job.delivered is not None
    reply_id = job.delivered["message_ids"][1]
    reply = rig.discord.messages[reply_id]
    result_files_fetched = result_downloads(rig, job)

    record = await click(rig, original, button("vary", job))
    assert record.original is not None
    assert len(record.original.component_list[0]["options"]) == 12
    picked = await click(rig, record.original, f"imagine:varypick:{job.id}", values=["11"])
    varied = await rig.finished(picked, timeout=30)
    fetched = [r.path for r in rig.discord.requests if r.method == "GET" and r.path.endswith(f"/{reply_id}")]
    assert (
        reply.message_reference["message_id"],
        status_of(varied)[:1],
        len(fetched),
        [u["bytes"] for u in rig.toapis.uploads] == [reply.attachments[0].data],
        reply.attachments[0].data not in [a.data for a in original.attachments],
        rig.toapis.submissions[1]["n"],
        result_downloads(rig, job),
    ) == (str(original.id), "✅", 1, True, True, 12, result_files_fetched)


# --------------------------------------------------------------------------- Remix


async def test_remix_opens_the_request_form_filled_in_with_the_job_and_runs_the_edited_prompt(start_bot):
    rig = await start_bot()
    original, job = await imagined(
        rig, prompt="a red fox in snow", ratio="16:9", n=3, model="doubao-seedream-5-0", resolution="3K"
    )

    record = await click(rig, original, button("remix", job))
    form = modal_inputs(record)
    assert (
        record.callback["data"]["title"],
        form["Prompt"]["value"],
        defaults(form["Ratio"]),
        defaults(form["Number of images"]),
        defaults(form["Model"]),
        len(rig.toapis.submissions),
    ) == ("Remix", "a red fox in snow", ["16:9"], ["3"], ["doubao-seedream-5-0"], 1)

    submit = await rig.discord.send_interaction(
        rig.discord.modal_reply(record, {"Prompt": "a blue fox in the rain"})
    )
    remixed = await rig.finished(submit)
    assert (submit.ephemeral, remixed.embeds[0]["description"], rig.toapis.submissions[1]) == (
        False,
        "a blue fox in the rain",
        {
            "model": "doubao-seedream-5-0",
            "prompt": "a blue fox in the rain",
            "size": "16:9",
            "n": 3,
            "metadata": {"resolution": "3K", "watermark": False},
        },
    )


# --------------------------------------------------------------------------- Delete


async def test_the_requester_deletes_the_result_and_every_reply_carrying_its_images(start_bot):
    rig = await start_bot()
    original, job = await imagined(rig, prompt="twelve foxes", n=12)
    assert job.delivered is not None
    reply = rig.discord.messages[job.delivered["message_ids"][1]]

    record = await click(rig, original, button("delete", job))
    assert (private_text(record), original.deleted, reply.deleted) == ("Deleted.", True, True)


async def test_another_member_without_manage_messages_cannot_delete_a_result(start_bot):
    rig = await start_bot()
    original, job = await imagined(rig, prompt="a fox")

    record = await click(rig, original, button("delete", job), user_id=rig.discord.snowflake())
    assert REFUSE_DELETE in private_text(record)
    assert (original.deleted, channel_deletes(rig)) == (False, [])


async def test_a_moderator_with_manage_messages_deletes_another_members_result(start_bot):
    rig = await start_bot()
    original, job = await imagined(rig, prompt="a fox")

    record = await click(
        rig,
        original,
        button("delete", job),
        user_id=rig.discord.snowflake(),
        permissions=DEFAULT_MEMBER_PERMISSIONS | MANAGE_MESSAGES,
    )
    assert (private_text(record), original.deleted) == ("Deleted.", True)


# --------------------------------------------------------------------------- Details


async def test_details_shows_privately_everything_about_the_job(start_bot):
    rig = await start_bot()
    prompt = "a red fox in snow, " + "with soft morning light over the hills and a frozen river, " * 14
    photo = rig.discord.make_attachment("photo.jpg", make_image(320, 240, "JPEG", seed=3))
    original, job = await imagined(
        rig,
        prompt=prompt.strip(),
        ratio="16:9",
        n=2,
        model="doubao-seedream-5-0",
        resolution="3K",
        image1=photo,
    )

    record = await click(rig, original, button("details", job))
    private_text(record)
    embed = record.callback["data"]["embeds"][0]
    fields = embed_fields(embed)
    timings = fields["Timings"]
    assert (
        len(prompt) > 800,
        embed["description"],
        fields["Model"],
        fields["Ratio"],
        fields["Resolution"],
        fields["Images"],
        fields["References"],
        fields["Task id"],
        [line.split(" <t:")[0] for line in timings.splitlines()][:3],
        "Took " in timings,
    ) == (
        True,
        prompt.strip(),
        "Seedream 5.0 (`doubao-seedream-5-0`)",
        "16:9",
        "3K",
        "2 of 2 delivered",
        f"1 image: [1]({job.reference_urls[0]})",
        f"`{job.task_id}`",
        ["Asked", "Sent", "Ended"],
        True,
    )


async def test_details_of_the_largest_job_fits_every_discord_embed_limit(start_bot, tmp_path):
    # Everything at its largest: an operator's model with the longest id and name and a 6,000
    # character prompt limit, four references behind long signed links, the longest task id the
    # database keeps and the longest refusal the provider can give.
    model_id, name = "m" * 100, "N" * 100
    catalog = tmp_path / "models.toml"
    catalog.write_text(f'[models."{model_id}"]\ndisplay_name = "{name}"\nmax_prompt_length = 6000\n')
    rig = await start_bot(model_catalog_file=catalog)
    rig.toapis.models.add(model_id)
    rig.toapis.upload_url_query = "signature=" + "s" * 180
    rig.toapis.plan = TaskPlan(outcome="failed", failure_message="refused " * 60, task_id="t" * 200)
    prompt = ("a red fox in snow " * 400)[:5999] + "!"
    refs = {
        f"image{i}": rig.discord.make_attachment(f"ref{i}.jpg", make_image(320, 240, "JPEG", seed=i))
        for i in range(1, 5)
    }
    original, job = await imagined(rig, prompt=prompt, model=model_id, **refs)
    assert (len(job.prompt), len(job.reference_urls), len(job.task_id or "")) == (6000, 4, 200)

    record = await click(rig, original, button("details", job))
    private_text(record)
    embed = record.callback["data"]["embeds"][0]
    fields = embed_fields(embed)
    total = len(embed["title"]) + len(embed["description"])
    total += sum(len(f["name"]) + len(f["value"]) for f in embed["fields"])
    shown, note = embed["description"].rsplit("…", 1)
    assert (
        total <= 6000,
        len(embed["description"]) <= 4096,
        max(len(v) for v in fields.values()) <= 1024,
        prompt.startswith(shown),
        len(shown) > 3000,
        note,
        fields["References"].count("](http"),
        fields["Task id"],
        fields["Model"],
    ) == (
        True,
        True,
        True,
        True,
        True,
        "\n*(prompt shortened to fit Discord's limits; it has 6,000 characters)*",
        4,
        f"`{'t' * 200}`",
        f"{name} (`{model_id}`)",
    )


# --------------------------------------------------------------------------- after a restart


async def test_buttons_of_a_result_posted_before_a_restart_still_work(start_bot):
    rig = await start_bot()
    original, job = await imagined(rig, prompt="a fox that outlives the bot")
    await rig.bot.close()

    again = await start_bot()
    details = await click(again, original, button("details", job))
    private_text(details)
    reroll = await click(again, original, button("reroll", job))
    rerolled = await again.finished(reroll)
    new_job = await job_of(again, reroll)
    assert (
        embed_fields(details.callback["data"]["embeds"][0])["Task id"],
        reroll.ephemeral,
        status_of(rerolled)[:1],
        new_job.prompt,
        len(again.toapis.submissions),
        again.toapis.submissions[1] == again.toapis.submissions[0],
    ) == (f"`{job.task_id}`", False, "✅", "a fox that outlives the bot", 2, True)


# --------------------------------------------------------------------------- double clicks


async def test_a_double_click_on_reroll_starts_one_job_and_another_member_still_gets_their_own(start_bot):
    rig = await start_bot()
    original, job = await imagined(rig, prompt="a fox")
    other = rig.discord.snowflake()
    payloads = [
        rig.discord.component_interaction(original, button("reroll", job)),
        rig.discord.component_interaction(original, button("reroll", job)),
        rig.discord.component_interaction(original, button("reroll", job), user_id=other),
    ]
    first, second, theirs = await asyncio.gather(*(rig.discord.send_interaction(p) for p in payloads))
    await eventually(
        lambda: all(r.acknowledged for r in (first, second, theirs)), what="every click answered"
    )

    mine = [r for r in (first, second) if not r.ephemeral]
    repeats = [r.callback["data"]["content"] for r in (first, second) if r.ephemeral]
    assert (len(mine), repeats, theirs.ephemeral) == (1, [str(ALREADY)], False)
    await rig.finished(mine[0])
    await rig.finished(theirs)
    my_job, their_job = await job_of(rig, mine[0]), await job_of(rig, theirs)
    assert (
        len(rig.toapis.submissions),
        rig.toapis.submit_attempts,
        await job_count(rig),
        (my_job.user_id, their_job.user_id),
    ) == (3, 3, 3, (rig.discord.user_id, other))


# --------------------------------------------------------------------------- records that are gone


async def test_every_button_of_a_job_whose_record_was_deleted_says_so_privately(start_bot):
    rig = await start_bot()
    original, job = await imagined(rig, prompt="a fox", n=2)
    vary = await click(rig, original, button("vary", job))  # the picker, opened before the record went
    assert rig.bot.store is not None
    async with rig.bot.store.engine.begin() as conn:
        await conn.execute(jobs_table.delete().where(jobs_table.c.id == job.id))

    answers = []
    for action in ACTIONS:
        answers.append(private_text(await click(rig, original, button(action, job))))
    assert vary.original is not None
    answers.append(private_text(await click(rig, vary.original, f"imagine:varypick:{job.id}", values=["1"])))
    assert (answers, len(rig.toapis.submissions), original.deleted) == ([str(GONE)] * 6, 1, False)
    assert "no longer in the bot's records" in str(GONE)


async def test_the_buttons_of_a_message_naming_a_job_that_never_existed_say_so_privately(start_bot):
    rig = await start_bot()
    original, job = await imagined(rig, prompt="a fox")
    never = job.id + 1000
    # A result message the bot posted against another database (say, before it was replaced).
    stale = rig.discord.bot_message(
        embeds=original.embeds,
        components=[
            {
                "type": 1,
                "components": [
                    {"type": 2, "style": 2, "label": action.title(), "custom_id": button(action, never)}
                    for action in ACTIONS
                ],
            }
        ],
    )

    answers = [private_text(await click(rig, stale, button(action, never))) for action in ACTIONS]
    assert (answers, len(rig.toapis.submissions), await job_count(rig), stale.deleted) == (
        [str(GONE)] * 5,
        1,
        1,
        False,
    )


# --------------------------------------------------------------------------- /imagine-history


async def history(rig: RunningBot, *, user_id: int | None = None) -> str:
    record = await rig.discord.send_interaction(
        rig.discord.slash_command("imagine-history", {}, user_id=user_id)
    )
    await rig.discord.wait_for(lambda _: record.acknowledged)
    return private_text(record)


def link(job: JobRecord) -> str:
    return f"https://discord.com/channels/{job.guild_id}/{job.channel_id}/{job.message_id}"


async def imagine_in_turn(rig: RunningBot, prompts: list[str], **who: Any) -> list[JobRecord]:
    """/imagine once per prompt, one after the other, each in a channel of its own; their final jobs."""
    records = []
    for prompt in prompts:
        payload = rig.discord.slash_command(
            "imagine", {"prompt": prompt}, channel_id=rig.discord.snowflake(), **who
        )
        records.append(await rig.discord.send_interaction(payload))
        await rig.discord.wait_for(lambda _: records[-1].acknowledged)
    return [await job_of(rig, r) for r in records]


async def test_history_lists_the_members_last_ten_jobs_here_newest_first_with_links(start_bot):
    rig = await start_bot()
    jobs = await imagine_in_turn(rig, [f"fox number {i}" for i in range(11)])
    foreign = [
        *await imagine_in_turn(rig, ["a cat"], user_id=rig.discord.snowflake()),
        *await imagine_in_turn(rig, ["a dog"], guild_id=rig.discord.snowflake()),
    ]

    text = await history(rig)
    lines = text.splitlines()
    newest_first = list(reversed(jobs))[:10]
    assert (
        len(lines),
        [line.split(" · ")[0] for line in lines],
        all(f"[open]({link(j)})" in line for j, line in zip(newest_first, lines, strict=True)),
        "fox number 0" in text,
        [f"**{j.id}**" in text or link(j) in text for j in foreign],
    ) == (10, [f"**{j.id}**" for j in newest_first], True, False, [False, False])
    assert "“fox number 10”" in lines[0] and "✅ 1 image" in lines[0]


async def test_history_of_a_member_without_jobs_here_says_there_are_none(start_bot):
    rig = await start_bot()
    await imagined(rig, prompt="someone else's fox")
    assert await history(rig, user_id=rig.discord.snowflake()) == "You have no images here yet. Try /imagine."


async def test_history_keeps_all_ten_links_whole_when_the_prompts_are_long(start_bot):
    rig = await start_bot()
    prompts = [
        f"fox {i}: a detailed oil painting of a red fox asleep in deep snow at dusk" for i in range(10)
    ]
    jobs = await imagine_in_turn(rig, prompts)

    text = await history(rig)
    assert len(text) <= 2000
    assert [f"[open]({link(j)})" in text for j in reversed(jobs)] == [True] * 10, text[-300:]


async def test_reroll_of_a_job_that_failed_before_its_references_were_uploaded_never_drops_them(start_bot):
    rig = await start_bot()
    photo = rig.discord.make_attachment("photo.jpg", make_image(320, 240, "JPEG", seed=5))
    rig.toapis.inject("POST", "/v1/uploads/images", 503, {"error": {"message": "busy"}})
    failed, job = await imagined(rig, prompt="a fox in the style of this photo", image1=photo)
    assert (status_of(failed)[:1], rig.toapis.submit_attempts, job.reference_urls) == ("❌", 0, ())

    record = await click(rig, failed, button("reroll", job))  # the natural retry after "busy"
    if not record.ephemeral:
        await rig.finished(record)
    # Either the reroll works from the member's photo again, or it says privately why it can't;
    # it must not quietly make (and charge for) a picture that ignores the photo.
    without_references = [s for s in rig.toapis.submissions if not s.get("image_urls")]
    assert without_references == [], "the reroll was sent (and charged) without the member's photo"


async def test_clicking_reroll_again_after_a_quota_refusal_repeats_the_refusal_not_already_on_its_way(
    start_bot,
):
    rig = await start_bot()
    await rig.bot.guild_settings.update(rig.discord.guild_id, lambda s: s.replace(daily_member_quota=1))
    original, job = await imagined(rig, prompt="a fox")

    first = await click(rig, original, button("reroll", job))
    again = await click(rig, original, button("reroll", job))
    assert private_text(first).startswith("Daily limit of 1 images reached")
    assert private_text(again) == private_text(first)
