"""Every model, resolution, speed and watermark choice end to end: the real bot, the fake Discord and
the fake ToAPIs, which refuses what the provider documents it refuses."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.cogs.test_actions_e2e import button, click, imagined, private_text
from tests.fakes.toapis import TaskPlan
from tests.rig import embed_fields, status_of

pytestmark = pytest.mark.asyncio

STANDARD = {"optimize_prompt_options": {"mode": "standard"}}
# model -> (its resolutions, what it sends besides resolution and watermark when `speed` is left empty)
MODELS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "doubao-seedream-4-0": (("1K", "2K", "4K"), STANDARD),
    "doubao-seedream-4-5": (("2K", "4K"), STANDARD),
    "doubao-seedream-5-0": (("2K", "3K"), {}),
    "doubao-seedream-5-0-pro": (("1K", "2K"), {}),
}


@pytest.mark.parametrize("model", list(MODELS))
async def test_each_model_and_resolution_reaches_the_image_service_as_documented(start_bot, model):
    rig = await start_bot()
    resolutions, extra = MODELS[model]
    for resolution in resolutions:
        message = await rig.finished(await rig.imagine(prompt="a fox", model=model, resolution=resolution))
        assert status_of(message).startswith("✅"), status_of(message)
    assert rig.toapis.submissions == [
        {
            "model": model,
            "prompt": "a fox",
            "size": "1:1",
            "n": 1,
            "metadata": {"resolution": resolution, "watermark": False, **extra},
        }
        for resolution in resolutions
    ]


async def test_a_model_without_the_resolution_asked_is_refused_naming_what_it_offers(start_bot):
    rig = await start_bot()
    record = await rig.imagine(prompt="a fox", model="doubao-seedream-5-0-pro", resolution="4K")
    await rig.discord.wait_for(lambda _: record.acknowledged)
    assert (record.ephemeral, record.callback["data"]["content"], rig.toapis.submit_attempts) == (
        True,
        "Seedream 5.0 Pro does not offer resolution `4K`. Choose one of: `1K`, `2K`.",
        0,
    )


async def test_the_resolution_choices_are_every_resolution_of_any_model(start_bot):
    rig = await start_bot()
    imagine = next(c for c in rig.discord.commands["global"] if c["name"] == "imagine")
    options = {o["name"]: o for o in imagine["options"]}
    assert (
        [c["value"] for c in options["resolution"]["choices"]],
        [c["value"] for c in options["speed"]["choices"]],
        [c["name"] for c in options["model"]["choices"]],
    ) == (
        ["1K", "2K", "3K", "4K"],
        ["standard", "fast"],
        ["Seedream 4.0", "Seedream 4.5", "Seedream 5.0", "Seedream 5.0 Pro"],
    )


async def test_seedream_5_pro_makes_ten_images_and_refuses_eleven_before_sending(start_bot):
    rig = await start_bot()
    message = await rig.finished(await rig.imagine(prompt="foxes", model="doubao-seedream-5-0-pro", n=10))
    refused = await rig.imagine(prompt="foxes", model="doubao-seedream-5-0-pro", n=11)
    await rig.discord.wait_for(lambda _: refused.acknowledged)
    assert (
        len(message.attachments),
        [s["n"] for s in rig.toapis.submissions],
        refused.ephemeral,
        refused.callback["data"]["content"],
    ) == (10, [10], True, "Seedream 5.0 Pro makes 1 to 10 images per request; you asked for 11.")


# --------------------------------------------------------------------------- speed


@pytest.mark.parametrize("model", ["doubao-seedream-4-0", "doubao-seedream-4-5"])
async def test_fast_speed_is_sent_as_the_prompt_optimisation_mode(start_bot, model):
    rig = await start_bot()
    await rig.finished(await rig.imagine(prompt="a fox", model=model, speed="fast"))
    assert rig.toapis.submissions[0]["metadata"] == {
        "resolution": "2K",
        "watermark": False,
        "optimize_prompt_options": {"mode": "fast"},
    }


@pytest.mark.parametrize("model", ["doubao-seedream-5-0", "doubao-seedream-5-0-pro"])
async def test_standard_speed_on_a_model_without_modes_sends_no_mode(start_bot, model):
    rig = await start_bot()
    await rig.finished(await rig.imagine(prompt="a fox", model=model, speed="standard"))
    assert rig.toapis.submissions[0]["metadata"] == {"resolution": "2K", "watermark": False}


@pytest.mark.parametrize(
    ("model", "name"),
    [("doubao-seedream-5-0", "Seedream 5.0"), ("doubao-seedream-5-0-pro", "Seedream 5.0 Pro")],
)
async def test_fast_speed_on_a_model_without_modes_is_refused_privately(start_bot, model, name):
    rig = await start_bot()
    record = await rig.imagine(prompt="a fox", model=model, speed="fast")
    await rig.discord.wait_for(lambda _: record.acknowledged)
    assert (record.ephemeral, record.callback["data"]["content"], rig.toapis.submit_attempts) == (
        True,
        f"{name} has no `fast` speed — leave `speed` empty, or pick another model. "
        "Models that have it: `Seedream 4.0`, `Seedream 4.5`.",
        0,
    )


async def test_a_reroll_keeps_the_speed_and_details_show_speed_and_watermark(start_bot):
    rig = await start_bot()
    original, job = await imagined(rig, prompt="a fox", model="doubao-seedream-4-0", speed="fast")
    rerolled = await click(rig, original, button("reroll", job))
    await rig.finished(rerolled)
    details = await click(rig, original, button("details", job))
    private_text(details)
    fields = embed_fields(details.callback["data"]["embeds"][0])
    assert (
        [s["metadata"]["optimize_prompt_options"] for s in rig.toapis.submissions],
        job.speed,
        fields["Speed"],
        fields["Watermark"],
    ) == ([{"mode": "fast"}] * 2, "fast", "fast", "no")


# --------------------------------------------------------------------------- watermark


@pytest.mark.parametrize("model", list(MODELS))
async def test_by_default_no_image_is_watermarked_even_where_the_provider_would(start_bot, model):
    rig = await start_bot()
    await rig.finished(await rig.imagine(prompt="a fox", model=model))
    [task] = rig.toapis.tasks.values()
    assert (rig.toapis.submissions[0]["metadata"]["watermark"], task.watermarked) == (False, False)


async def test_the_operators_watermark_setting_is_sent_and_shown_in_details(start_bot):
    rig = await start_bot(watermark=True)
    original, job = await imagined(rig, prompt="a fox", model="doubao-seedream-5-0")
    details = await click(rig, original, button("details", job))
    fields = embed_fields(details.callback["data"]["embeds"][0])
    [task] = rig.toapis.tasks.values()
    assert (rig.toapis.submissions[0]["metadata"]["watermark"], task.watermarked, job.watermark) == (
        True,
        True,
        True,
    )
    assert fields["Watermark"] == "yes"


# --------------------------------------------------------------------------- 4K results


async def test_a_4k_result_over_the_upload_limit_is_fitted_and_delivered(start_bot):
    limit = 10 * 1024 * 1024
    rig = await start_bot()
    rig.toapis.plan = TaskPlan(image_size=(4096, 4096), noisy=True)
    record = await rig.imagine(
        prompt="static", model="doubao-seedream-4-0", resolution="4K", attachment_size_limit=limit
    )
    message = await rig.finished(record, timeout=60)
    [task_id] = rig.toapis.tasks
    async with aiohttp.ClientSession() as session, session.get(rig.toapis.image_urls(task_id)[0]) as response:
        original = await response.read()
    [attachment] = message.attachments
    image = Image.open(io.BytesIO(attachment.data))
    image.load()
    fields = embed_fields(message.embeds[0])
    assert (
        len(original) > limit,
        attachment.size <= limit,
        image.format,
        "Reduced images" in fields,
        status_of(message).startswith("✅ 1 image"),
    ) == (True, True, "JPEG", True, True)
