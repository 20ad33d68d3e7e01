"""The real bot fetches images only from public HTTPS addresses (or the image service's own host).

A result link or a redirect that leads into a private network fails that image with a clear
reason; the job still ends properly and nothing is sent or charged twice.
"""

from __future__ import annotations

import pytest

from bot.jobs.runner import NOT_DOWNLOADED
from tests.fakes.toapis import make_image
from tests.rig import embed_fields, status_of

pytestmark = pytest.mark.asyncio


async def test_a_result_redirected_to_the_cloud_metadata_address_fails_the_job_clearly(start_bot):
    rig = await start_bot()
    rig.toapis.inject("GET", "/files/", 302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    record = await rig.imagine(prompt="a fox")
    message = await rig.finished(record)
    assert (status_of(message).split("\n")[0], message.attachments, len(rig.toapis.submissions)) == (
        f"❌ {NOT_DOWNLOADED}",
        [],
        1,
    )


async def test_an_image_redirected_to_a_loopback_host_is_counted_lost_and_the_rest_delivered(start_bot):
    rig = await start_bot()
    # The image service's own file host, reached by another name: it would serve the file.
    loopback = rig.toapis.base_url.replace("127.0.0.1", "localhost") + "/files/elsewhere.jpg"
    rig.toapis.add_file("elsewhere.jpg", make_image(64, 64, "JPEG", seed=2))
    rig.toapis.inject("GET", "/files/", 302, headers={"Location": loopback})
    record = await rig.imagine(prompt="two foxes", n=2)
    message = await rig.finished(record)
    status = embed_fields(message.embeds[0])["Status"]
    assert (
        status.split("\n")[0].startswith("✅ 1 image in"),
        "1 image could not be downloaded." in status,
        len(message.attachments),
        len(rig.toapis.download_requests),  # the refused hop was never followed
        len(rig.toapis.submissions),
    ) == (True, True, 1, 2, 1)


async def test_a_reference_whose_link_leads_to_a_private_address_is_refused_before_anything_is_sent(
    start_bot,
):
    rig = await start_bot()
    photo = rig.discord.make_attachment("photo.jpg", make_image(320, 240, "JPEG", seed=1))
    # Discord's file server, reached by a name that is neither its API host nor the image service's.
    photo.url = photo.url.replace("127.0.0.1", "localhost")
    record = await rig.imagine(prompt="like this", image1=photo)
    message = await rig.finished(record)
    assert (
        status_of(message).split("\n")[0],
        rig.toapis.uploads,
        rig.toapis.submit_attempts,
    ) == ("❌ `photo.jpg` could not be downloaded from Discord. Attach it again and retry.", [], 0)
