"""/imagine end to end: the real bot, driven through the fake Discord gateway, against the fake ToAPIs."""

from __future__ import annotations

import gc
import io
import itertools
import logging
import re

import discord
import pytest
from PIL import Image

from tests.fakes.toapis import TaskPlan
from tests.rig import embed_fields, eventually, status_of

pytestmark = pytest.mark.asyncio


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_placeholder_is_the_public_first_response_with_prompt_settings_and_queued(start_bot):
    rig = await start_bot()
    record = await rig.imagine(
        prompt="a red fox in snow", ratio="16:9", n=4, model="doubao-seedream-5-0", resolution="3K"
    )
    await rig.discord.wait_for(lambda _: record.acknowledged)
    embed = record.callback["data"]["embeds"][0]
    fields = embed_fields(embed)
    assert (
        record.callback_type,
        record.ephemeral,
        embed["description"],
        fields["Model"],
        fields["Ratio"],
        fields["Resolution"],
        fields["Images"],
        fields["Requested by"],
        fields["Status"].split(" · ")[0],
    ) == (
        4,
        False,
        "a red fox in snow",
        "Seedream 5.0",
        "16:9",
        "3K",
        "4",
        f"<@{rig.discord.user_id}>",
        "⏳ Queued",
    )


async def test_every_log_line_about_a_job_names_its_server_and_member(start_bot, caplog):
    rig = await start_bot()
    with caplog.at_level(logging.INFO):
        record = await rig.imagine(prompt="a red fox in snow", n=2)
        await rig.finished(record)
        await eventually(lambda: "image(s) in" in caplog.text, what="the delivery logged")
    about_jobs = [r.getMessage() for r in caplog.records if re.match(r"job \d", r.getMessage())]
    named = rf"job \d+ \(guild {rig.discord.guild_id}, user {rig.discord.user_id}\): "
    assert (
        any(": accepted" in line for line in about_jobs),
        [line for line in about_jobs if not re.match(named, line)],
    ) == (True, [])


async def test_request_reaches_the_image_service_as_documented(start_bot):
    rig = await start_bot()
    record = await rig.imagine(
        prompt="  a red fox in snow  ", ratio="16:9", n=4, model="doubao-seedream-5-0", resolution="3K"
    )
    await rig.finished(record)
    assert rig.toapis.submissions == [
        {
            "model": "doubao-seedream-5-0",
            "prompt": "a red fox in snow",
            "size": "16:9",
            "n": 4,
            "metadata": {"resolution": "3K", "watermark": False},
        }
    ]


async def test_progress_edits_show_the_bar_and_only_visible_changes(start_bot):
    rig = await start_bot()
    steps = [("queued", 0)] + [("in_progress", p) for p in (10, 10, 10, 35, 35, 60, 60, 85, 85, 85)]
    rig.toapis.plan = TaskPlan(steps=steps)
    record = await rig.imagine(prompt="a lighthouse")
    message = await rig.finished(record)
    progress = [status_of(body) for body in message.history[1:-1]]
    assert progress, "no progress edit was sent"
    assert all("▰" in s or "▱" in s for s in progress if s.startswith("🎨"))
    assert all(a != b for a, b in itertools.pairwise(progress)), progress


async def test_progress_edits_are_never_closer_than_the_configured_interval(start_bot):
    rig = await start_bot(progress_edit_interval=0.2)
    rig.toapis.plan = TaskPlan(steps=[("queued", 0)] + [("in_progress", p) for p in range(5, 100, 5)])
    record = await rig.imagine(prompt="a lighthouse")
    message = await rig.finished(record)
    # The placeholder (callback) counts as the first visible state; the final edit is not a progress edit.
    times = [record.callback_at, *message.edits[:-1]]
    assert len(times) >= 3, "too few progress edits to check the spacing"
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.2


async def test_final_message_shows_every_image_as_an_attachment_within_the_limit(start_bot):
    rig = await start_bot()
    rig.toapis.plan = TaskPlan(image_size=(96, 64))
    record = await rig.imagine(prompt="four foxes", n=4, ratio="3:2")
    message = await rig.finished(record)
    fields = embed_fields(message.embeds[0])
    assert (
        len(message.attachments),
        {decode(a.data).size for a in message.attachments},
        max(a.size for a in message.attachments) <= record.attachment_size_limit,
        fields["Status"].split(" in ")[0],
        fields["Model"],
        fields["Ratio"],
        fields["Images"],
    ) == (4, {(96, 64)}, True, "✅ 4 images", "Seedream 5.0", "3:2", "4")


async def test_final_message_says_how_long_it_took_and_who_asked(start_bot):
    rig = await start_bot()
    record = await rig.imagine(prompt="a fox")
    message = await rig.finished(record)
    fields = embed_fields(message.embeds[0])
    assert (
        re.fullmatch(r"✅ 1 image in \d+ seconds?", fields["Status"]) is not None,
        fields["Requested by"],
        message.embeds[0]["description"],
    ) == (True, f"<@{rig.discord.user_id}>", "a fox")


async def test_fifteen_images_are_split_ten_in_the_message_and_five_in_a_reply(start_bot):
    rig = await start_bot()
    record = await rig.imagine(prompt="many foxes", n=15)
    message = await rig.finished(record)
    reply = await rig.discord.wait_for_message(
        lambda m: m.message_reference is not None and m.message_reference.get("message_id") == str(message.id)
    )
    assert (
        len(message.attachments),
        len(reply.attachments),
        reply.content,
        all(decode(a.data) for a in [*message.attachments, *reply.attachments]),
    ) == (10, 5, "Images 11–15 of 15", True)


def open_image_buffers() -> list[io.BytesIO]:
    """In-memory files still holding an image (PNG or JPEG bytes), reachable or not."""
    found = []
    for obj in gc.get_objects():
        if (
            isinstance(obj, io.BytesIO)
            and not obj.closed
            and obj.getvalue()[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0")
        ):
            found.append(obj)
    return found


async def test_uploaded_images_leave_memory_as_soon_as_they_are_delivered(start_bot):
    rig = await start_bot()
    gc.collect()
    gc.disable()  # what only a later garbage collection would free counts as kept
    try:
        before = len(open_image_buffers())
        record = await rig.imagine(prompt="many foxes", n=12)
        message = await rig.finished(record)
        await rig.discord.wait_for_message(lambda m: m.message_reference is not None)
        kept = len(open_image_buffers()) - before
    finally:
        gc.enable()
    assert (len(message.attachments), kept) == (10, 0)


async def test_images_past_ten_go_in_a_follow_up_when_the_bot_cannot_post_in_the_channel(start_bot):
    rig = await start_bot()
    rig.discord.inject("POST", r"/channels/\d+/messages", 403)
    record = await rig.imagine(prompt="many foxes", n=12)
    await rig.finished(record)
    followups = await rig.discord.wait_for(lambda _: record.followups or None)
    assert (len(followups[0].attachments), followups[0].content) == (2, "Images 11–12 of 12")


async def test_oversize_results_are_reduced_to_fit_the_upload_limit(start_bot):
    limit = 150_000
    rig = await start_bot()
    rig.toapis.plan = TaskPlan(image_size=(700, 500), noisy=True)
    record = await rig.imagine(prompt="static", n=2, attachment_size_limit=limit)
    message = await rig.finished(record)
    sizes = [a.size for a in message.attachments]
    fields = embed_fields(message.embeds[0])
    assert (
        len(sizes),
        max(sizes) <= limit,
        all(decode(a.data).format == "JPEG" for a in message.attachments),
        "Reduced images" in fields,
    ) == (2, True, True, True)
    assert "Image 1:" in fields["Reduced images"] and "Image 2:" in fields["Reduced images"]


async def test_images_within_the_limit_are_delivered_byte_for_byte(start_bot):
    rig = await start_bot()
    rig.toapis.plan = TaskPlan(image_size=(80, 80), image_format="PNG")
    record = await rig.imagine(prompt="a png")
    message = await rig.finished(record)
    task_id = next(iter(rig.toapis.tasks))
    original = await _fetch(rig.toapis.image_urls(task_id)[0])
    assert (message.attachments[0].data == original, message.attachments[0].filename.endswith(".png")) == (
        True,
        True,
    )


async def _fetch(url: str) -> bytes:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.read()


async def test_fewer_images_than_asked_are_delivered_with_a_note(start_bot):
    rig = await start_bot()
    rig.toapis.plan = TaskPlan(image_count=2)
    record = await rig.imagine(prompt="foxes", n=4)
    message = await rig.finished(record)
    assert (
        len(message.attachments),
        "The model made 2 of the 4 images asked for." in status_of(message),
    ) == (2, True)


@pytest.mark.parametrize("shape", ["data", "images", "images_nested", "url"])
async def test_every_documented_result_shape_delivers_images(start_bot, shape):
    rig = await start_bot()
    rig.toapis.plan = TaskPlan(result_shape=shape)
    record = await rig.imagine(prompt="shapes", n=1)
    message = await rig.finished(record)
    assert len(message.attachments) == 1


async def test_provider_refusal_is_shown_in_plain_words(start_bot):
    rig = await start_bot()
    rig.toapis.plan = TaskPlan(
        outcome="failed", failure_message="The prompt was rejected by the content policy"
    )
    record = await rig.imagine(prompt="something forbidden")
    message = await rig.finished(record)
    status = status_of(message)
    assert status.startswith(
        "❌ The image service could not make this image: The prompt was rejected by the content policy"
    )
    assert "{" not in status and "Traceback" not in status and message.attachments == []


async def test_busy_service_asks_the_member_to_try_again_in_a_minute(start_bot):
    rig = await start_bot()
    rig.toapis.inject("POST", "/v1/images/generations", 500, {"error": {"message": "upstream overloaded"}})
    record = await rig.imagine(prompt="a fox")
    message = await rig.finished(record)
    assert (status_of(message).split("\n")[0], rig.toapis.submit_attempts) == (
        "❌ The image service is busy right now — try again in a minute.",
        1,
    )


async def test_rejected_request_shows_the_providers_reason(start_bot):
    rig = await start_bot()
    rig.toapis.inject(
        "POST", "/v1/images/generations", 400, {"success": False, "message": "Sensitive content"}
    )
    record = await rig.imagine(prompt="a fox")
    message = await rig.finished(record)
    assert status_of(message).startswith("❌ The image service refused this request: Sensitive content")


async def test_a_submission_whose_answer_was_lost_is_not_sent_again(start_bot):
    rig = await start_bot()
    rig.toapis.inject("POST", "/v1/images/generations", None, accept_then_drop=True)
    record = await rig.imagine(prompt="a fox")
    message = await rig.finished(record)
    assert (
        len(rig.toapis.submissions),
        status_of(message).startswith("❌ The image service did not confirm the request"),
    ) == (1, True)


async def test_a_job_that_never_finishes_times_out_in_plain_words(start_bot):
    rig = await start_bot(job_timeout_seconds=1.0)
    rig.toapis.plan = TaskPlan(never_finish=True)
    record = await rig.imagine(prompt="forever")
    message = await rig.finished(record)
    assert status_of(message).startswith(
        "❌ Timed out after 1 second — the image service did not finish in time."
    )


async def test_polling_errors_are_retried_until_the_task_completes(start_bot):
    rig = await start_bot()
    rig.toapis.inject("GET", "/v1/images/generations/", 503, times=6)
    record = await rig.imagine(prompt="patience")
    message = await rig.finished(record)
    assert (len(message.attachments), len(rig.toapis.submissions)) == (1, 1)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"model": "doubao-seedream-4-0", "resolution": "3K"},
            "Seedream 4.0 does not offer resolution `3K`. Choose one of: `1K`, `2K`, `4K`.",
        ),
        (
            {"model": "doubao-seedream-4-5", "resolution": "3K"},
            "Seedream 4.5 does not offer resolution `3K`. Choose one of: `2K`, `4K`.",
        ),
        (
            {"model": "doubao-seedream-5-0", "resolution": "4K"},
            "Seedream 5.0 does not offer resolution `4K`. Choose one of: `2K`, `3K`.",
        ),
        (
            {"model": "doubao-seedream-5-0-pro", "resolution": "3K"},
            "Seedream 5.0 Pro does not offer resolution `3K`. Choose one of: `1K`, `2K`.",
        ),
        (
            {"model": "doubao-seedream-5-0-pro", "n": 11},
            "Seedream 5.0 Pro makes 1 to 10 images per request; you asked for 11.",
        ),
        (
            {"model": "doubao-seedream-5-0", "speed": "fast"},
            "Seedream 5.0 has no `fast` speed — leave `speed` empty, or pick another model. "
            "Models that have it: `Seedream 4.0`, `Seedream 4.5`.",
        ),
        (
            {"model": "doubao-seedream-4-0", "prompt": "x" * 1001},
            "Your prompt is 1,001 characters long; Seedream 4.0 accepts at most 1,000. "
            "Shorten it and try again.",
        ),
        ({"prompt": "   "}, "Your prompt is empty — describe the image you want to see."),
        (
            {"model": "doubao-seedream-4-0", "ratio": "auto"},
            "The `auto` ratio matches a reference image, so it needs at least one image: "
            "attach one, or choose a ratio.",
        ),
    ],
)
async def test_unsupported_options_are_refused_privately_before_any_submission(start_bot, options, expected):
    rig = await start_bot()
    record = await rig.imagine(**{"prompt": "a fox", **options})
    await rig.discord.wait_for(lambda _: record.acknowledged)
    assert (record.ephemeral, record.callback["data"]["content"], rig.toapis.submit_attempts) == (
        True,
        expected,
        0,
    )


async def test_everyone_in_a_prompt_pings_no_one(start_bot):
    rig = await start_bot()
    record = await rig.imagine(prompt="@everyone look at <@&123> and <@456>", n=12)
    await rig.finished(record)
    await rig.discord.wait_for_message(lambda m: m.message_reference is not None)
    writes = [
        r
        for r in rig.discord.requests
        if r.method in ("POST", "PATCH")
        and r.json is not None
        and ("embeds" in r.json or "content" in r.json or "data" in r.json)
    ]
    mentions = [((r.json.get("data") or r.json).get("allowed_mentions")) for r in writes]
    assert len(writes) >= 3 and all(
        m is not None and m.get("parse") == [] and not m.get("replied_user") for m in mentions
    ), mentions
    assert all(not m.pings for m in rig.discord.messages.values())


async def test_a_request_body_discord_would_reject_is_refused_and_recorded(start_bot):
    rig = await start_bot()
    channel = rig.bot.get_partial_messageable(rig.discord.channel_id)
    with pytest.raises(discord.HTTPException) as caught:
        await channel.send("x" * 2001)
    assert (caught.value.status, caught.value.code, len(rig.discord.violations)) == (400, 50035, 1)
    rig.discord.violations.clear()  # this test caused it on purpose
