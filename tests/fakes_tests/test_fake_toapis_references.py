"""The fake ToAPIs refuses reference images and uploads the way the documentation says the real one does.

These talk to the fake with plain aiohttp, so they test the fake itself, not the bot's client.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.fakes.toapis import MAX_UPLOAD_BYTES, FakeToAPIs, make_image

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY = {"model": "doubao-seedream-4-0", "prompt": "a cat in the style of the reference", "n": 1}


@pytest.fixture
async def fake() -> AsyncIterator[FakeToAPIs]:
    async with FakeToAPIs(api_key=KEY) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def _upload(
    session: aiohttp.ClientSession, fake: FakeToAPIs, data: bytes, filename: str = "ref.png"
) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    async with session.post(fake.url("/v1/uploads/images"), data=form, headers=AUTH) as response:
        return response.status, await response.json()


async def _uploaded_url(session: aiohttp.ClientSession, fake: FakeToAPIs, data: bytes) -> str:
    status, body = await _upload(session, fake, data)
    assert status == 200, body
    return body["data"]["url"]


async def _submit(
    session: aiohttp.ClientSession, fake: FakeToAPIs, image_urls: list[str], **changes: Any
) -> tuple[int, dict[str, Any]]:
    body = {**BODY, "image_urls": image_urls, **changes}
    async with session.post(fake.url("/v1/images/generations"), json=body, headers=AUTH) as response:
        return response.status, await response.json()


def _valid_reference(fake: FakeToAPIs) -> str:
    return fake.add_file("ok.jpg", make_image(64, 48))


async def _refusal(session: aiohttp.ClientSession, fake: FakeToAPIs, image_urls: list[str]) -> str:
    status, body = await _submit(session, fake, image_urls)
    assert status == 400, body
    assert (fake.submissions, fake.tasks) == ([], {})
    return body["error"]["message"]


# --------------------------------------------------------------------------- submissions


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
async def test_uploaded_jpeg_and_png_are_accepted_as_references(
    session: aiohttp.ClientSession, fake: FakeToAPIs, fmt: str
) -> None:
    url = await _uploaded_url(session, fake, make_image(64, 48, fmt))
    status, body = await _submit(session, fake, [url])
    assert (status, fake.submissions[0]["image_urls"]) == (200, [url]), body


@pytest.mark.parametrize("fmt", ["WEBP", "GIF"])
async def test_uploaded_webp_and_gif_are_not_valid_references(
    session: aiohttp.ClientSession, fake: FakeToAPIs, fmt: str
) -> None:
    url = await _uploaded_url(session, fake, make_image(64, 48, fmt))  # the upload itself is fine
    message = await _refusal(session, fake, [_valid_reference(fake), url])
    assert message == f"image_urls[1]: unsupported image format {fmt}: only JPEG and PNG are supported"


@pytest.mark.parametrize(
    ("size", "complaint"),
    [
        ((10, 10), "image width and height must be greater than 14px, got 10x10"),
        ((100, 14), "image width and height must be greater than 14px, got 100x14"),
        ((500, 100), "image aspect ratio must be between 1:3 and 3:1, got 500x100"),
        ((100, 301), "image aspect ratio must be between 1:3 and 3:1, got 100x301"),
        ((7000, 7000), "image must not exceed 6000x6000 (36000000 pixels), got 7000x7000"),
    ],
    ids=["10x10", "side-14", "5:1", "just-over-1:3", "49MP"],
)
async def test_hosted_references_breaking_a_documented_rule_are_refused(
    session: aiohttp.ClientSession, fake: FakeToAPIs, size: tuple[int, int], complaint: str
) -> None:
    url = fake.add_file("ref.png", make_image(*size, "PNG"), "image/png")
    assert await _refusal(session, fake, [url]) == f"image_urls[0]: {complaint}"


@pytest.mark.parametrize("size", [(15, 15), (300, 100), (100, 300), (6000, 6000)])
async def test_hosted_references_at_the_documented_limits_are_accepted(
    session: aiohttp.ClientSession, fake: FakeToAPIs, size: tuple[int, int]
) -> None:
    url = fake.add_file("ref.png", make_image(*size, "PNG"), "image/png")
    status, body = await _submit(session, fake, [url])
    assert status == 200, body


async def test_a_hosted_reference_over_10_mb_is_refused(
    session: aiohttp.ClientSession, fake: FakeToAPIs
) -> None:
    data = make_image(64, 64, "PNG")
    data += b"\0" * (MAX_UPLOAD_BYTES + 1 - len(data))  # PNG readers ignore trailing bytes
    url = fake.add_file("big.png", data, "image/png")
    message = await _refusal(session, fake, [url])
    assert message == f"image_urls[0]: image size {MAX_UPLOAD_BYTES + 1} bytes exceeds the 10MB limit"


async def test_a_hosted_non_image_is_refused(session: aiohttp.ClientSession, fake: FakeToAPIs) -> None:
    url = fake.add_file("notes.txt", b"hello", "text/plain")
    assert await _refusal(session, fake, [url]) == "image_urls[0]: could not decode the image"


async def test_a_hosted_url_without_a_file_is_refused(
    session: aiohttp.ClientSession, fake: FakeToAPIs
) -> None:
    message = await _refusal(session, fake, [fake.url("/files/gone.png")])
    assert message == "image_urls[0]: failed to download the image (HTTP 404)"


async def test_the_stream_and_slow_variants_of_a_hosted_file_are_checked_too(
    session: aiohttp.ClientSession, fake: FakeToAPIs
) -> None:
    fake.add_file("anim.gif", make_image(64, 48, "GIF"), "image/gif")
    for url in (fake.stream_url("anim.gif"), fake.slow_url("anim.gif")):
        assert "unsupported image format GIF" in await _refusal(session, fake, [url])


async def test_a_result_image_of_an_earlier_task_can_be_a_reference(
    session: aiohttp.ClientSession, fake: FakeToAPIs
) -> None:
    status, task = await _submit(session, fake, [])
    assert status == 200
    status, body = await _submit(session, fake, fake.image_urls(task["id"]))
    assert status == 200, body


async def test_references_on_other_hosts_are_accepted_unchecked(
    session: aiohttp.ClientSession, fake: FakeToAPIs
) -> None:
    status, body = await _submit(session, fake, ["https://example.com/anything.webp"])
    assert status == 200, body


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        (
            "data:image/png;base64,iVBORw0KGgo=",
            "base64/data URLs are not supported, use a public http(s) URL",
        ),
        ("ftp://example.com/ref.png", "must be a public http(s) URL"),
        ("https://", "must be a public http(s) URL"),
        ("iVBORw0KGgoAAAANSUhEUgAA", "must be a public http(s) URL"),
    ],
    ids=["data-url", "ftp", "no-host", "bare-base64"],
)
async def test_non_http_references_are_refused(
    session: aiohttp.ClientSession, fake: FakeToAPIs, url: str, complaint: str
) -> None:
    assert await _refusal(session, fake, [url]) == f"image_urls[0]: {complaint}"


# --------------------------------------------------------------------------- uploads


async def test_an_upload_of_exactly_10_mb_is_accepted_and_one_byte_more_refused(
    session: aiohttp.ClientSession, fake: FakeToAPIs
) -> None:
    data = make_image(64, 64, "PNG")
    data += b"\0" * (MAX_UPLOAD_BYTES - len(data))
    assert (await _upload(session, fake, data))[0] == 200
    status, body = await _upload(session, fake, data + b"\0")
    assert (status, body) == (400, {"success": False, "message": "File Too Large"})
    assert len(fake.uploads) == 1


@pytest.mark.parametrize(
    "data", [make_image(64, 48, "BMP"), b"hello, world", b""], ids=["bmp", "text", "empty"]
)
async def test_uploads_other_than_jpeg_png_webp_gif_are_refused(
    session: aiohttp.ClientSession, fake: FakeToAPIs, data: bytes
) -> None:
    status, body = await _upload(session, fake, data, filename="x.bin")
    assert (status, body["success"], fake.uploads) == (400, False, [])


async def test_a_camera_multi_picture_jpeg_uploads_and_works_as_a_jpeg(
    session: aiohttp.ClientSession, fake: FakeToAPIs
) -> None:
    frames = [Image.new("RGB", (64, 48), (200, 0, 0)), Image.new("RGB", (64, 48), (0, 0, 200))]
    buf = io.BytesIO()
    frames[0].save(buf, "MPO", save_all=True, append_images=frames[1:])
    status, body = await _upload(session, fake, buf.getvalue(), filename="camera.jpg")
    assert (status, body["data"]["mime_type"]) == (200, "image/jpeg")
    assert (await _submit(session, fake, [body["data"]["url"]]))[0] == 200


async def test_an_upload_without_a_file_part_is_refused(
    session: aiohttp.ClientSession, fake: FakeToAPIs
) -> None:
    form = aiohttp.FormData()
    form.add_field("purpose", "generation")
    async with session.post(fake.url("/v1/uploads/images"), data=form, headers=AUTH) as response:
        assert (response.status, (await response.json())["success"]) == (400, False)
