"""Reference images end to end: /imagine's image options and the "Imagine with these images" message menu.

The real bot, driven through the fake Discord gateway, downloads members' images from the fake
Discord CDN, prepares them, uploads them to the fake ToAPIs and submits the uploaded copies.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import sqlalchemy as sa
from PIL import Image

from bot import references
from bot.jobs.records import JobRecord, JobState
from bot.schema import jobs_table
from tests.fakes.discord import FakeAttachment, FakeMessage, InteractionRecord
from tests.fakes.toapis import make_image
from tests.rig import RunningBot, embed_fields, eventually, status_of

pytestmark = pytest.mark.asyncio

MENU = "Imagine with these images"
TEN_MB = 10 * 1024 * 1024
MAX_PIXELS = 36_000_000


# --------------------------------------------------------------------------- images, made once


def _encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _animated_gif() -> bytes:
    """Two frames: red, then blue."""
    frames = [Image.new("RGB", (120, 90), colour) for colour in ((220, 20, 20), (20, 20, 220))]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _transparent_webp() -> bytes:
    image = Image.new("RGBA", (160, 120), (30, 160, 60, 255))
    image.paste((30, 160, 60, 0), (0, 0, 80, 120))  # left half fully transparent
    return _encode(image, "WEBP", lossless=True)


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    """Every test image of this module, encoded once (the big ones take a moment)."""
    jpeg = make_image(640, 480, "JPEG", seed=1)
    return {
        "photo.jpg": jpeg,
        "drawing.png": make_image(300, 400, "PNG", seed=2),
        "sticker.webp": _transparent_webp(),
        "animated.gif": _animated_gif(),
        # ~20 MB: random pixels do not compress, so this PNG is as big as its pixels.
        "huge.png": make_image(2600, 2600, "PNG", noisy=True),
        # 42 MP but tiny in bytes: over the provider's 36 MP.
        "panorama.png": make_image(7000, 6000, "PNG", seed=3),
        "tiny.png": make_image(10, 10, "PNG", seed=4),
        "strip.png": make_image(40, 200, "PNG", seed=5),
        "broken.jpg": jpeg[: len(jpeg) // 2],  # the header reads fine, the pixels stop halfway
        "notes.txt": b"not an image, just some words\n",
    }


def numbered(count: int) -> list[tuple[str, bytes]]:
    """`count` distinct small PNGs, named ref-01.png, ref-02.png, ..."""
    return [(f"ref-{i:02d}.png", make_image(64 + i, 64, "PNG", seed=i)) for i in range(1, count + 1)]


# --------------------------------------------------------------------------- helpers


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def path_of(url: str) -> str:
    return urlsplit(url).path


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, f"{url} -> {response.status}"
        return await response.read()


def attach(rig: RunningBot, images: dict[str, bytes], *names: str) -> list[FakeAttachment]:
    """Host the named test images on the fake Discord CDN, like a member's uploads."""
    content_types = {"notes.txt": "text/plain"}
    return [rig.discord.make_attachment(name, images[name], content_types.get(name)) for name in names]


def as_options(attachments: list[FakeAttachment]) -> dict[str, FakeAttachment]:
    return {f"image{i}": a for i, a in enumerate(attachments, start=1)}


async def private_answer(rig: RunningBot, record: InteractionRecord) -> str:
    """The text of the bot's first response, which must be visible only to the member."""
    await rig.discord.wait_for(lambda _: record.acknowledged)
    assert (record.callback_type, record.ephemeral) == (4, True), record.callback
    return record.callback["data"]["content"]


async def job_of(rig: RunningBot, record: InteractionRecord, *, final: bool = True) -> JobRecord:
    """The stored job behind an interaction (once its record is final, unless told otherwise)."""
    assert rig.bot.store is not None
    deadline = time.monotonic() + 10
    while True:
        async with rig.bot.store.engine.connect() as conn:
            query = sa.select(jobs_table.c.id).where(jobs_table.c.interaction_id == record.id)
            job_id = (await conn.execute(query)).scalar_one_or_none()
        job = None if job_id is None else await rig.bot.jobs.get(job_id)
        if job is not None and (job.is_final or not final):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"no {'final ' if final else ''}job for interaction {record.id}: {job}")
        await asyncio.sleep(0.02)


async def job_count(rig: RunningBot) -> int:
    assert rig.bot.store is not None
    async with rig.bot.store.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(jobs_table))).scalar_one()


async def open_menu(rig: RunningBot, message: FakeMessage) -> InteractionRecord:
    """Right-click `message` → Apps → "Imagine with these images"; wait for the bot's answer."""
    record = await rig.discord.send_interaction(rig.discord.message_command(MENU, message))
    await rig.discord.wait_for(lambda _: record.acknowledged)
    return record


async def submit_modal(rig: RunningBot, menu: InteractionRecord, **answers: str) -> InteractionRecord:
    """Fill in the modal the menu opened (by label) and submit it; returns the submit's record."""
    assert menu.callback_type == 9, f"the menu answered {menu.callback}"
    labels = {"prompt": "Prompt", "ratio": "Ratio", "n": "Number of images", "model": "Model"}
    payload = rig.discord.modal_reply(menu, {labels[k]: v for k, v in answers.items()})
    return await rig.discord.send_interaction(payload)


def uploaded(rig: RunningBot) -> list[bytes]:
    return [u["bytes"] for u in rig.toapis.uploads]


# --------------------------------------------------------------------------- what is uploaded and submitted


async def test_jpeg_and_png_references_are_uploaded_unchanged_and_the_submission_carries_the_uploaded_copies(
    start_bot, images
):
    rig = await start_bot()
    photo, drawing = attach(rig, images, "photo.jpg", "drawing.png")
    record = await rig.imagine(prompt="a fox in this style", image1=photo, image2=drawing)
    message = await rig.finished(record)
    job = await job_of(rig, record)
    submitted = rig.toapis.submissions[0]["image_urls"] if rig.toapis.submissions else []
    assert (
        status_of(message)[:1],
        uploaded(rig),
        [u["content_type"] for u in rig.toapis.uploads],
        len(submitted),
        list(job.reference_urls),
        job.state,
    ) == ("✅", [photo.data, drawing.data], ["image/jpeg", "image/png"], 2, submitted, JobState.DONE)
    # The submitted URLs are the uploaded copies, in the member's order.
    assert [await fetch(url) for url in submitted] == [photo.data, drawing.data]


@pytest.mark.parametrize(
    ("name", "fmt", "check"),
    [
        pytest.param(
            "sticker.webp",
            "PNG",
            lambda image: image.size == (160, 120) and image.getchannel("A").getextrema() == (0, 255),
            id="webp-with-transparency-to-png",
        ),
        pytest.param(
            "animated.gif",
            "JPEG",
            lambda image: (
                image.size == (120, 90)
                and all(abs(a - b) < 30 for a, b in zip(image.getpixel((60, 45)), (220, 20, 20), strict=True))
            ),
            id="animated-gif-first-frame-to-jpeg",
        ),
    ],
)
async def test_webp_and_gif_references_are_converted_to_png_or_jpeg_the_service_accepts(
    start_bot, images, name, fmt, check
):
    rig = await start_bot()
    (reference,) = attach(rig, images, name)
    record = await rig.imagine(prompt="like this", image1=reference)
    message = await rig.finished(record)
    assert rig.toapis.uploads, status_of(message)
    upload = rig.toapis.uploads[0]
    image = decode(upload["bytes"])
    extension = {"PNG": ".png", "JPEG": ".jpg"}[fmt]
    assert (
        status_of(message)[:1],
        image.format,
        upload["content_type"],
        upload["filename"],
        check(image.convert("RGBA" if fmt == "PNG" else "RGB")),
        len(rig.toapis.submissions),
    ) == ("✅", fmt, f"image/{fmt.lower()}", name.rsplit(".", 1)[0] + extension, True, 1)


@pytest.mark.parametrize(
    ("name", "original"),
    [
        pytest.param("huge.png", (2600, 2600), id="20-mb-noisy-png"),
        pytest.param("panorama.png", (7000, 6000), id="42-megapixel-png"),
    ],
)
async def test_a_reference_too_big_for_the_service_is_downscaled_to_fit_and_the_job_succeeds(
    start_bot, images, name, original
):
    rig = await start_bot()
    (big,) = attach(rig, images, name)
    # Discord's metadata tells the truth: too many bytes or pixels for the service, fine for the bot.
    assert (big.size, big.width, big.height) == (len(images[name]), *original)
    assert big.size > TEN_MB or big.width * big.height > MAX_PIXELS
    record = await rig.imagine(prompt="like this", image1=big)
    message = await rig.finished(record, timeout=30)
    assert rig.toapis.uploads, status_of(message)
    upload = rig.toapis.uploads[0]["bytes"]
    width, height = decode(upload).size
    assert (
        status_of(message)[:1],
        len(upload) <= TEN_MB,
        width * height <= MAX_PIXELS,
        abs(width / height - original[0] / original[1]) < 0.01,
        len(rig.toapis.submissions),
    ) == ("✅", True, True, True, 1)


# --------------------------------------------------------------------------- refused before any charge


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        pytest.param(
            "tiny.png",
            "`tiny.png` is 10×10 pixels; reference images must be more than 14 pixels wide and tall",
            id="10x10",
        ),
        pytest.param(
            "strip.png",
            "`strip.png` is 40×200 pixels (1:5); reference images must be between 1:3 and 3:1",
            id="1-to-5",
        ),
        pytest.param("notes.txt", "`notes.txt` is not an image", id="text-file"),
    ],
)
async def test_an_unusable_reference_discord_describes_is_refused_instantly_and_privately(
    start_bot, images, name, rule
):
    rig = await start_bot()
    good, bad = attach(rig, images, "photo.jpg", name)
    record = await rig.imagine(prompt="like this", image1=good, image2=bad)
    text = await private_answer(rig, record)
    assert (
        rule in text,
        rig.toapis.submit_attempts,
        rig.toapis.uploads,
        rig.discord.cdn_requests,
        await job_count(rig),
    ) == (True, 0, [], [], 0), text


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        pytest.param(
            "tiny.png",
            "`tiny.png` is 10×10 pixels; reference images must be more than 14 pixels wide and tall",
            id="10x10",
        ),
        pytest.param(
            "strip.png",
            "`strip.png` is 40×200 pixels (1:5); reference images must be between 1:3 and 3:1",
            id="1-to-5",
        ),
    ],
)
async def test_an_unusable_reference_whose_metadata_lies_is_refused_after_the_placeholder_unsubmitted(
    start_bot, images, name, rule
):
    rig = await start_bot()
    good, bad = attach(rig, images, "photo.jpg", name)
    bad.width, bad.height = 512, 512  # Discord's metadata says it is fine
    record = await rig.imagine(prompt="like this", image1=good, image2=bad)
    message = await rig.finished(record)
    job = await job_of(rig, record)
    assert (
        record.ephemeral,
        status_of(record.callback["data"]).split(" · ")[0],
        status_of(message).startswith(f"❌ {rule}"),
        rig.toapis.submit_attempts,
        job.state,
    ) == (False, "📎 Preparing 2 reference images…", True, 0, JobState.FAILED), status_of(message)


async def test_an_embed_image_without_a_size_is_checked_after_download_and_a_1_to_5_one_is_refused(
    start_bot, images
):
    rig = await start_bot()
    embed = rig.discord.image_embed("strip.png", images["strip.png"], sized=False)
    target = rig.discord.post_message("look", embeds=[embed])
    menu = await open_menu(rig, target)
    record = await submit_modal(rig, menu, prompt="like this")
    message = await rig.finished(record)
    assert (
        status_of(message).split("\n")[0],
        rig.toapis.uploads,
        rig.toapis.submit_attempts,
        (await job_of(rig, record)).state,
    ) == (
        "❌ `strip.png` is 40×200 pixels (1:5); reference images must be between 1:3 and 3:1 "
        "— crop it and try again.",
        [],
        0,
        JobState.FAILED,
    )


async def test_a_corrupt_image_is_reported_as_unreadable_and_nothing_is_submitted(start_bot, images):
    rig = await start_bot()
    (broken,) = attach(rig, images, "broken.jpg")
    assert (broken.content_type, broken.width) == ("image/jpeg", 640)  # Discord read its header
    record = await rig.imagine(prompt="like this", image1=broken)
    message = await rig.finished(record)
    assert (
        status_of(message).split("\n")[0],
        rig.toapis.uploads,
        rig.toapis.submit_attempts,
    ) == (
        "❌ `broken.jpg` could not be read: the file is damaged or incomplete — save it again and attach it.",
        [],
        0,
    )


async def test_more_references_than_the_model_takes_are_refused_privately_naming_its_maximum(
    start_bot, images, tmp_path: Path
):
    catalog = tmp_path / "models.toml"
    catalog.write_text('[models."doubao-seedream-4-0"]\nmax_reference_images = 3\n')
    rig = await start_bot(model_catalog_file=catalog)
    refs = [rig.discord.make_attachment(name, data) for name, data in numbered(4)]
    record = await rig.imagine(prompt="like these", model="doubao-seedream-4-0", **as_options(refs))
    text = await private_answer(rig, record)
    assert (text, rig.toapis.submit_attempts, rig.toapis.uploads, rig.discord.cdn_requests) == (
        "Seedream 4.0 takes at most 3 reference images; you attached 4. Remove 1 and try again.",
        0,
        [],
        [],
    )


async def test_five_images_from_the_menu_on_a_model_taking_four_are_refused_privately_on_submit(
    start_bot, tmp_path: Path
):
    catalog = tmp_path / "models.toml"
    catalog.write_text('[models."doubao-seedream-4-0"]\nmax_reference_images = 4\n')
    rig = await start_bot(model_catalog_file=catalog)
    refs = [rig.discord.make_attachment(name, data) for name, data in numbered(5)]
    menu = await open_menu(rig, rig.discord.post_message(attachments=refs))
    record = await submit_modal(rig, menu, prompt="like these", model="doubao-seedream-4-0")
    text = await private_answer(rig, record)
    assert (text, rig.toapis.submit_attempts, rig.toapis.uploads, rig.discord.cdn_requests) == (
        "Seedream 4.0 takes at most 4 reference images; you attached 5. Remove 1 and try again.",
        0,
        [],
        [],
    )


async def test_references_plus_images_over_fifteen_are_refused_privately_naming_the_largest_n(start_bot):
    rig = await start_bot()
    refs = [rig.discord.make_attachment(name, data) for name, data in numbered(4)]
    record = await rig.imagine(prompt="like these", n=12, **as_options(refs))
    text = await private_answer(rig, record)
    assert (text, rig.toapis.submit_attempts, rig.toapis.uploads) == (
        "With 4 reference images you can ask for at most 11 images; you asked for 12. Lower `n`.",
        0,
        [],
    )


# --------------------------------------------------------------------------- the auto ratio


async def test_auto_ratio_with_a_reference_on_seedream_4_0_is_submitted_as_auto(start_bot, images):
    rig = await start_bot()
    (photo,) = attach(rig, images, "photo.jpg")
    record = await rig.imagine(prompt="like this", ratio="auto", model="doubao-seedream-4-0", image1=photo)
    message = await rig.finished(record)
    submission = rig.toapis.submissions[0] if rig.toapis.submissions else {}
    assert (status_of(message)[:1], submission.get("size"), embed_fields(message.embeds[0])["Ratio"]) == (
        "✅",
        "auto",
        "auto",
    )


async def test_auto_ratio_without_a_reference_is_refused_privately(start_bot):
    rig = await start_bot()
    record = await rig.imagine(prompt="a fox", ratio="auto", model="doubao-seedream-4-0")
    text = await private_answer(rig, record)
    assert ("needs at least one image" in text, rig.toapis.submit_attempts) == (True, 0), text


async def test_auto_ratio_on_a_model_without_it_is_refused_privately_naming_the_models_that_have_it(
    start_bot, images
):
    rig = await start_bot()
    (photo,) = attach(rig, images, "photo.jpg")
    record = await rig.imagine(prompt="like this", ratio="auto", model="doubao-seedream-5-0", image1=photo)
    text = await private_answer(rig, record)
    assert (
        text.startswith("Seedream 5.0 does not support the `auto` ratio."),
        text.endswith("Models that can: `Seedream 4.0`."),
        rig.toapis.submit_attempts,
        rig.toapis.uploads,
    ) == (True, True, 0, []), text


# --------------------------------------------------------------------------- the message menu


async def test_the_menu_on_a_message_with_ten_images_opens_a_modal_and_its_submit_makes_images_from_all_ten(
    start_bot,
):
    rig = await start_bot()
    refs = [rig.discord.make_attachment(name, data) for name, data in numbered(10)]
    menu = await open_menu(rig, rig.discord.post_message("my sketches", attachments=refs))
    assert menu.callback_type == 9, menu.callback
    n_select = next(c for c in menu.callback["data"]["components"] if c.get("label") == "Number of images")
    record = await submit_modal(rig, menu, prompt="combine these", n="5", model="doubao-seedream-4-0")
    message = await rig.finished(record)
    job = await job_of(rig, record)
    submission = rig.toapis.submissions[0] if rig.toapis.submissions else {}
    final = message.embeds[0]
    links = " ".join(f"[{i}]({url})" for i, url in enumerate(job.reference_urls, start=1))
    assert (
        [o["value"] for o in n_select["component"]["options"]],
        record.ephemeral,
        status_of(record.callback["data"]).split(" · ")[0],
        status_of(message)[:1],
        uploaded(rig),
        submission.get("image_urls"),
        submission.get("n"),
        len(message.attachments),
        embed_fields(final)["References"],
        final.get("thumbnail", {}).get("url"),
    ) == (
        ["1", "2", "3", "4", "5"],
        False,
        "📎 Preparing 10 reference images…",
        "✅",
        [r.data for r in refs],
        list(job.reference_urls),
        5,
        5,
        f"10 images: {links}",
        job.reference_urls[0] if job.reference_urls else None,
    )


async def test_the_menu_takes_embed_images_through_discords_proxy_after_the_attachments(start_bot):
    rig = await start_bot()
    files = numbered(10)
    refs = [rig.discord.make_attachment(name, data) for name, data in files[:7]]
    embeds = [rig.discord.image_embed(name, data) for name, data in files[7:9]]
    embeds.append(rig.discord.image_embed(*files[9], thumbnail=True))  # a link preview
    menu = await open_menu(rig, rig.discord.post_message(attachments=refs, embeds=embeds))
    record = await submit_modal(rig, menu, prompt="combine these", n="5")
    message = await rig.finished(record)
    assert (
        status_of(message)[:1],
        uploaded(rig),
        len((rig.toapis.submissions or [{}])[0].get("image_urls", [])),
        embed_fields(message.embeds[0])["References"].split(":")[0],
    ) == ("✅", [data for _, data in files], 10, "10 images")


async def test_the_menu_on_a_message_with_more_than_ten_images_uses_only_the_first_ten(start_bot):
    rig = await start_bot()
    refs = [rig.discord.make_attachment(name, data) for name, data in numbered(12)]
    menu = await open_menu(rig, rig.discord.post_message(attachments=refs))
    record = await submit_modal(rig, menu, prompt="combine these")
    message = await rig.finished(record)
    assert (
        status_of(message)[:1],
        uploaded(rig),
        rig.discord.cdn_requests,
        len((rig.toapis.submissions or [{}])[0].get("image_urls", [])),
    ) == ("✅", [r.data for r in refs[:10]], [path_of(r.url) for r in refs[:10]], 10)


async def test_the_menu_uses_a_messages_image_and_leaves_out_its_video(start_bot, images):
    rig = await start_bot()
    (photo,) = attach(rig, images, "photo.jpg")
    clip = rig.discord.make_attachment("clip.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(256), "video/mp4")
    clip.width, clip.height = 1280, 720  # Discord reports a video's size as it does an image's
    menu = await open_menu(rig, rig.discord.post_message("a photo and a clip", attachments=[photo, clip]))
    assert menu.callback_type == 9, f"expected the modal, got: {menu.callback}"
    record = await submit_modal(rig, menu, prompt="like this")
    message = await rig.finished(record)
    assert (status_of(message)[:1], uploaded(rig), rig.discord.cdn_requests) == (
        "✅",
        [photo.data],
        [path_of(photo.url)],
    )


async def test_the_menu_on_a_message_without_images_answers_privately(start_bot, images):
    rig = await start_bot()
    (notes,) = attach(rig, images, "notes.txt")
    link = {"type": "rich", "title": "a link", "description": "no picture here"}
    menu = await open_menu(rig, rig.discord.post_message("hello", attachments=[notes], embeds=[link]))
    text = await private_answer(rig, menu)
    assert (text.startswith("That message has no images"), rig.discord.cdn_requests) == (True, []), text


async def test_the_menu_on_a_message_with_a_too_small_image_is_refused_privately_without_a_modal(
    start_bot, images
):
    rig = await start_bot()
    photo, tiny = attach(rig, images, "photo.jpg", "tiny.png")
    menu = await open_menu(rig, rig.discord.post_message(attachments=[photo, tiny]))
    text = await private_answer(rig, menu)
    assert (text.startswith("`tiny.png` is 10×10 pixels"), rig.discord.cdn_requests) == (True, []), text


# --------------------------------------------------------------------------- what members see


async def test_the_placeholder_says_references_are_being_prepared_and_the_result_links_the_uploaded_copies(
    start_bot, images
):
    rig = await start_bot()
    photo, drawing = attach(rig, images, "photo.jpg", "drawing.png")
    record = await rig.imagine(prompt="like these", image1=photo, image2=drawing)
    message = await rig.finished(record)
    job = await job_of(rig, record)
    placeholder = record.callback["data"]["embeds"][0]
    final = message.embeds[0]
    links = " ".join(f"[{i}]({url})" for i, url in enumerate(job.reference_urls, start=1))
    assert (
        record.ephemeral,
        status_of(record.callback["data"]).split(" · ")[0],
        embed_fields(placeholder)["References"],
        bool(placeholder.get("thumbnail", {}).get("url")),
        embed_fields(final)["References"],
        final.get("thumbnail", {}).get("url"),
    ) == (
        False,
        "📎 Preparing 2 reference images…",
        "2 images",
        True,
        f"2 images: {links}",
        job.reference_urls[0] if job.reference_urls else None,
    )


# --------------------------------------------------------------------------- failures while preparing


async def test_a_reference_discord_no_longer_serves_fails_the_job_saying_it_could_not_be_downloaded(
    start_bot, images
):
    rig = await start_bot()
    (photo,) = attach(rig, images, "photo.jpg")
    payload = rig.discord.slash_command("imagine", {"prompt": "like this", "image1": photo})
    del rig.discord.attachments[photo.id]  # the CDN now answers 404 for it
    record = await rig.discord.send_interaction(payload)
    message = await rig.finished(record)
    assert (
        status_of(record.callback["data"]).split(" · ")[0],
        status_of(message).split("\n")[0],
        rig.toapis.uploads,
        rig.toapis.submit_attempts,
        (await job_of(rig, record)).state,
    ) == (
        "📎 Preparing 1 reference image…",
        "❌ `photo.jpg` could not be downloaded from Discord. Attach it again and retry.",
        [],
        0,
        JobState.FAILED,
    )


async def test_an_upload_the_service_refuses_fails_the_job_naming_the_file_and_the_reason(start_bot, images):
    rig = await start_bot()
    rig.toapis.inject("POST", "/v1/uploads/images", 400, {"success": False, "message": "File Too Large"})
    (photo,) = attach(rig, images, "photo.jpg")
    record = await rig.imagine(prompt="like this", image1=photo)
    message = await rig.finished(record)
    assert (
        status_of(message).split("\n")[0],
        rig.toapis.submit_attempts,
        (await job_of(rig, record)).state,
    ) == ("❌ The image service refused the reference image `photo.jpg`: File Too Large", 0, JobState.FAILED)


# --------------------------------------------------------------------------- what the bot fetches


async def test_references_are_downloaded_only_from_the_addresses_discord_gave(start_bot, images):
    rig = await start_bot()
    photo, drawing = attach(rig, images, "photo.jpg", "drawing.png")
    record = await rig.imagine(prompt="like these", image1=photo, image2=drawing)
    await rig.finished(record)
    assert rig.discord.cdn_requests == [path_of(photo.url), path_of(drawing.url)]


async def test_an_embed_images_original_address_is_never_fetched_only_discords_proxy_copy(start_bot, images):
    rig = await start_bot()
    embed = rig.discord.image_embed("drawing.png", images["drawing.png"])
    menu = await open_menu(rig, rig.discord.post_message("look at this", embeds=[embed]))
    record = await submit_modal(rig, menu, prompt="like this")
    message = await rig.finished(record)
    assert (
        status_of(message)[:1],
        rig.discord.cdn_requests,
        path_of(embed["image"]["url"]) in rig.discord.cdn_requests,
        uploaded(rig),
    ) == ("✅", [path_of(embed["image"]["proxy_url"])], False, [images["drawing.png"]])


async def test_a_members_reference_waits_while_another_is_being_prepared_then_the_job_succeeds(
    start_bot, images
):
    rig = await start_bot()
    # Another job's large reference holds the process's only preparation slot.
    release = threading.Event()
    occupying = asyncio.create_task(references.PREPARATION_SLOTS.run(lambda: release.wait(30)))
    await eventually(lambda: references.PREPARATION_SLOTS.running == 1, what="the slot taken")

    (drawing,) = attach(rig, images, "drawing.png")
    record = await rig.imagine(prompt="a fox in this style", image1=drawing)
    await eventually(lambda: references.PREPARATION_SLOTS.waiting == 1, what="the reference waiting")
    uploads_while_waiting = len(rig.toapis.uploads)

    release.set()
    await occupying
    message = await rig.finished(record)
    assert (uploads_while_waiting, status_of(message)[:1], uploaded(rig)) == (0, "✅", [drawing.data])
