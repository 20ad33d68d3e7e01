"""Layers end to end: Seedream 5.0 Pro splits its image into transparent layers, delivered in z order."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.cogs.test_actions_e2e import button, click, imagined, job_of, private_text
from tests.fakes.toapis import TaskPlan
from tests.rig import embed_fields

pytestmark = pytest.mark.asyncio

PRO = "doubao-seedream-5-0-pro"


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def lowest_alpha(image: Image.Image) -> int:
    """0 when some pixel is fully transparent; 255 for an opaque image."""
    if image.mode != "RGBA":
        return 255
    low = image.getchannel("A").getextrema()[0]
    assert isinstance(low, int)
    return low


async def test_layers_on_5_0_pro_deliver_the_base_and_every_transparent_layer_in_z_order(start_bot):
    rig = await start_bot()
    message, job = await imagined(rig, prompt="a fox in a forest", model=PRO, layers=True)

    images = [decode(a.data) for a in message.attachments]
    fields = embed_fields(message.embeds[0])
    assert (
        rig.toapis.submissions[0]["layer_decomposition"],
        [(image.format, lowest_alpha(image)) for image in images],
        fields["Layers"].splitlines(),
        fields["Status"].split(" in ")[0],
        job.quota_reserved,
        job.generated_images,
    ) == (
        True,
        [("JPEG", 255), ("PNG", 0), ("PNG", 0), ("PNG", 0)],
        [
            "Image 1 · **base image**",
            "Image 2 · **Layer 1** — Part 1 of the picture",
            "Image 3 · **Layer 2** — Part 2 of the picture",
            "Image 4 · **Layer 3** — Part 3 of the picture",
        ],
        "✅ 1 image and 3 layers",
        1,
        1,
    )


async def test_without_layers_5_0_pro_sends_no_layer_decomposition(start_bot):
    rig = await start_bot()
    message, _ = await imagined(rig, prompt="a fox in a forest", model=PRO)
    assert ("layer_decomposition" in rig.toapis.submissions[0], len(message.attachments)) == (False, 1)


@pytest.mark.parametrize("model", ["doubao-seedream-4-0", "doubao-seedream-4-5", "doubao-seedream-5-0"])
async def test_layers_are_refused_privately_on_a_model_without_them_and_nothing_is_sent(start_bot, model):
    rig = await start_bot()
    record = await rig.imagine(prompt="a fox", model=model, layers=True)
    await rig.discord.wait_for(lambda _: record.acknowledged)
    name = {"doubao-seedream-4-0": "4.0", "doubao-seedream-4-5": "4.5", "doubao-seedream-5-0": "5.0"}[model]
    assert (record.ephemeral, record.callback["data"]["content"], rig.toapis.submit_attempts) == (
        True,
        f"Seedream {name} cannot split an image into layers — leave `layers` off, or pick a model "
        "that can. Models that can: `Seedream 5.0 Pro`.",
        0,
    )


async def test_more_than_ten_layered_files_continue_in_a_reply_in_z_order(start_bot):
    rig = await start_bot()
    rig.toapis.plan = TaskPlan(layer_count=11)
    message, job = await imagined(rig, prompt="a busy street", model=PRO, layers=True)
    reply = await rig.discord.wait_for_message(
        lambda m: m.message_reference is not None and m.message_reference.get("message_id") == str(message.id)
    )
    layer_lines = embed_fields(message.embeds[0])["Layers"].splitlines()
    assert (
        len(message.attachments),
        [lowest_alpha(decode(a.data)) for a in reply.attachments],
        reply.content,
        layer_lines[0],
        layer_lines[-1],
        [image.layer.z_index if image.layer else None for image in job.delivered_images],
        [image.message_id for image in job.delivered_images].count(reply.id),
    ) == (
        10,
        [0, 0],
        "Images 11–12 of 12",
        "Image 1 · **base image**",
        "Image 12 · **Layer 11** — Part 11 of the picture",
        list(range(12)),
        2,
    )


async def test_details_lists_the_layers_kept_with_the_job(start_bot):
    rig = await start_bot()
    original, job = await imagined(rig, prompt="a fox in a forest", model=PRO, layers=True)

    record = await click(rig, original, button("details", job))
    private_text(record)
    fields = embed_fields(record.callback["data"]["embeds"][0])
    assert (fields["Images"], fields["Layers"].splitlines()[1:], job.layers) == (
        "1 of 1 delivered",
        [
            "Image 2 · **Layer 1** — Part 1 of the picture",
            "Image 3 · **Layer 2** — Part 2 of the picture",
            "Image 4 · **Layer 3** — Part 3 of the picture",
        ],
        True,
    )


async def test_a_reroll_of_a_layered_job_asks_for_layers_again(start_bot):
    rig = await start_bot()
    original, job = await imagined(rig, prompt="a fox in a forest", model=PRO, layers=True)
    record = await click(rig, original, button("reroll", job))
    again = await job_of(rig, record)
    assert ([s.get("layer_decomposition") for s in rig.toapis.submissions], again.layers) == (
        [True, True],
        True,
    )


async def test_a_remix_onto_a_model_without_layers_runs_without_them(start_bot):
    rig = await start_bot()
    original, job = await imagined(rig, prompt="a fox in a forest", model=PRO, layers=True)
    record = await click(rig, original, button("remix", job))
    submit = await rig.discord.send_interaction(
        rig.discord.modal_reply(record, {"Prompt": "a fox in the snow", "Model": ["doubao-seedream-5-0"]})
    )
    remixed = await rig.finished(submit)
    assert (
        "layer_decomposition" in rig.toapis.submissions[-1],
        rig.toapis.submissions[-1]["model"],
        len(remixed.attachments),
    ) == (False, "doubao-seedream-5-0", 1)
