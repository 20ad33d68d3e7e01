"""Tests for bot.images: fitting result images under Discord's upload limit."""

from __future__ import annotations

import io
import os
import struct
import zlib
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.images import (
    FittedImage,
    ImageCorruptError,
    ImageDecodeError,
    ImageTooLargeError,
    describe_reduction,
    fit_image,
    fit_images,
    png_bands,
    png_decodes_in_bands,
)
from tests.fakes.toapis import TaskPlan
from tests.rig import eventually, status_of


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _noise(width: int, height: int, mode: str = "RGB") -> Image.Image:
    # Random noise is the worst case for JPEG: it barely compresses at any quality.
    channels = len(mode)
    return Image.frombytes(mode, (width, height), os.urandom(width * height * channels))


def _rgb(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    """The pixel at ``xy`` of a multi-band image, one value per band."""
    pixel = image.getpixel(xy)
    assert isinstance(pixel, tuple)
    return pixel


def _level(image: Image.Image, xy: tuple[int, int]) -> float:
    """The pixel at ``xy`` of a single-band image."""
    pixel = image.getpixel(xy)
    assert isinstance(pixel, int | float)
    return pixel


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_small_jpeg_passes_through_unchanged():
    data = _encode(Image.new("RGB", (64, 48), (200, 30, 30)), "JPEG")
    fitted = fit_image(data, limit=1_000_000, basename="result")
    assert fitted.data == data
    assert fitted.filename == "result.jpg"
    assert fitted.content_type == "image/jpeg"
    assert (fitted.width, fitted.height) == (64, 48)
    assert (fitted.original_width, fitted.original_height) == (64, 48)
    assert fitted.original_bytes == len(data)
    assert fitted.reduced is False


def test_small_png_passes_through_unchanged():
    data = _encode(Image.new("RGBA", (32, 32), (0, 0, 255, 128)), "PNG")
    fitted = fit_image(data, limit=len(data), basename="x")  # exactly at the limit still fits
    assert fitted.data == data
    assert fitted.filename == "x.png"
    assert fitted.content_type == "image/png"
    assert fitted.reduced is False


@pytest.mark.parametrize(("fmt", "ext"), [("WEBP", ".webp"), ("GIF", ".gif")])
def test_other_discord_formats_keep_their_extension(fmt, ext):
    data = _encode(Image.new("RGB", (16, 16), (1, 2, 3)), fmt)
    fitted = fit_image(data, limit=1_000_000, basename="b")
    assert fitted.data == data
    assert fitted.filename == "b" + ext


def test_formats_discord_does_not_embed_are_reencoded_even_when_small():
    data = _encode(Image.new("RGB", (16, 16), (1, 2, 3)), "BMP")
    fitted = fit_image(data, limit=1_000_000, basename="b")
    assert fitted.filename == "b.jpg"
    assert fitted.reduced is True
    assert _decode(fitted.data).format == "JPEG"


def test_incompressible_jpeg_is_brought_under_the_limit():
    data = _encode(_noise(1500, 1500), "JPEG", quality=95)
    limit = 300_000
    assert len(data) > limit
    fitted = fit_image(data, limit=limit, basename="noise")
    assert len(fitted.data) <= limit
    assert fitted.reduced is True
    assert fitted.filename == "noise.jpg"
    assert fitted.content_type == "image/jpeg"
    decoded = _decode(fitted.data)
    assert decoded.format == "JPEG"
    assert decoded.size == (fitted.width, fitted.height)
    assert (fitted.original_width, fitted.original_height) == (1500, 1500)
    assert fitted.original_bytes == len(data)


def test_quality_steps_alone_suffice_for_a_compressible_image():
    # Lossless PNG of noise is ~3.5x the size of a quality-90 JPEG, so re-encoding alone fits.
    data = _encode(_noise(400, 400), "PNG")
    limit = len(data) // 2
    fitted = fit_image(data, limit=limit, basename="g")
    assert len(fitted.data) <= limit
    assert (fitted.width, fitted.height) == (400, 400)
    assert fitted.reduced is True


def test_png_with_alpha_becomes_a_jpeg_on_white():
    image = _noise(300, 300, "RGBA")
    # Make the top-left corner fully transparent so we can check the white background.
    image.paste((0, 0, 0, 0), (0, 0, 20, 20))
    data = _encode(image, "PNG")
    limit = len(data) // 2
    fitted = fit_image(data, limit=limit, basename="alpha")
    assert len(fitted.data) <= limit
    assert fitted.filename == "alpha.jpg"
    decoded = _decode(fitted.data)
    assert decoded.mode == "RGB"
    r, g, b = _rgb(decoded, (5, 5))
    assert min(r, g, b) > 230


def _transparent_layer(width: int, height: int) -> Image.Image:
    """A layer of a decomposed image: noise in a box, fully transparent around it."""
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    image.paste(_noise(width // 2, height // 2, "RGBA").convert("RGB").convert("RGBA"), (10, 10))
    return image


def test_a_transparent_layer_that_must_shrink_stays_a_transparent_png():
    data = _encode(_transparent_layer(600, 400), "PNG")
    limit = len(data) // 3
    fitted = fit_image(data, limit=limit, basename="layer", keep_transparency=True)
    decoded = _decode(fitted.data)
    assert (
        len(fitted.data) <= limit,
        fitted.filename,
        fitted.content_type,
        decoded.format,
        decoded.mode,
        _rgb(decoded, (decoded.width - 1, decoded.height - 1))[3],
        _rgb(decoded, (decoded.width // 4, decoded.height // 4))[3],
        fitted.reduced,
        (decoded.width, decoded.height) == (fitted.width, fitted.height),
        fitted.width < 600,
    ) == (True, "layer.png", "image/png", "PNG", "RGBA", 0, 255, True, True, True)


def test_an_opaque_image_that_must_shrink_becomes_a_jpeg_even_when_transparency_is_kept():
    data = _encode(_noise(300, 300, "RGB").convert("RGBA"), "PNG")
    fitted = fit_image(data, limit=len(data) // 2, basename="opaque", keep_transparency=True)
    assert (fitted.filename, _decode(fitted.data).format) == ("opaque.jpg", "JPEG")


def test_tiny_limit_forces_downscaling():
    data = _encode(_noise(400, 300), "JPEG", quality=95)
    limit = 20_000  # noise at 400×300 and quality 50 is far bigger than this
    fitted = fit_image(data, limit=limit, basename="small")
    assert len(fitted.data) <= limit
    assert fitted.width < 400 and fitted.height < 300
    # Aspect ratio is kept (to within rounding).
    assert abs(fitted.width / fitted.height - 4 / 3) < 0.05
    assert _decode(fitted.data).size == (fitted.width, fitted.height)


def test_impossible_limit_raises_instead_of_looping():
    data = _encode(_noise(300, 300), "JPEG")
    with pytest.raises(ImageTooLargeError) as excinfo:
        fit_image(data, limit=100, basename="x")
    assert isinstance(excinfo.value, ValueError)
    assert "64 px" in str(excinfo.value)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"definitely not an image",
        _encode(Image.new("RGB", (50, 50)), "PNG")[:60],  # truncated PNG
        _encode(_noise(64, 64), "JPEG")[:300],  # truncated JPEG
    ],
    ids=["empty", "garbage", "truncated-png", "truncated-jpeg"],
)
def test_corrupt_bytes_raise_image_decode_error(data):
    with pytest.raises(ImageDecodeError) as excinfo:
        fit_image(data, limit=1_000_000, basename="x")
    message = str(excinfo.value)
    assert message
    assert "\\x" not in message and "b'" not in message


def test_refuses_decompression_bombs(monkeypatch):
    import bot.images

    monkeypatch.setattr(bot.images, "MAX_PIXELS", 100 * 100)
    data = _encode(Image.new("RGB", (200, 200)), "PNG")
    with pytest.raises(ImageDecodeError, match="too large"):
        fit_image(data, limit=1_000_000, basename="x")


def test_non_positive_limit_is_rejected():
    data = _encode(Image.new("RGB", (8, 8)), "PNG")
    with pytest.raises(ValueError, match="limit"):
        fit_image(data, limit=0, basename="x")


def test_exif_rotation_is_applied_when_reencoding():
    image = _noise(120, 80)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    data = _encode(image, "JPEG", quality=95, exif=exif.tobytes())
    limit = len(data) - 1
    fitted = fit_image(data, limit=limit, basename="r")
    assert (fitted.original_width, fitted.original_height) == (80, 120)
    assert _decode(fitted.data).size == (fitted.width, fitted.height)
    assert fitted.width < fitted.height


async def test_fit_images_names_and_fits_each_image():
    small = _encode(Image.new("RGB", (20, 20), (9, 9, 9)), "PNG")
    big = _encode(_noise(300, 300), "JPEG", quality=95)
    limit = len(big) // 2
    results = await fit_images([small, big], limit=limit, basename="gen")
    assert [r.filename for r in results] == ["gen-1.png", "gen-2.jpg"]
    assert results[0].data == small and results[0].reduced is False
    assert len(results[1].data) <= limit and results[1].reduced is True


async def test_fit_images_propagates_decode_errors():
    with pytest.raises(ImageDecodeError):
        await fit_images([b"nope"], limit=1000, basename="gen")


async def test_fit_images_empty():
    assert await fit_images([], limit=1000, basename="gen") == []


def _fitted(**overrides: Any) -> FittedImage:
    fields: dict[str, Any] = dict(
        data=b"x" * 9_800_000,
        filename="a.jpg",
        content_type="image/jpeg",
        width=2560,
        height=1440,
        reduced=True,
        original_bytes=12_300_000,
        original_width=4096,
        original_height=2304,
    )
    fields.update(overrides)
    return FittedImage(**fields)


def test_describe_reduction():
    assert describe_reduction(_fitted()) == "4096×2304, 12.3 MB → 2560×1440 JPEG, 9.8 MB"


def test_describe_reduction_unchanged():
    img = _fitted(
        data=b"x" * 3_100_000,
        reduced=False,
        width=2048,
        height=2048,
        original_bytes=3_100_000,
        original_width=2048,
        original_height=2048,
    )
    assert str(describe_reduction(img)) == "2048×2048, 3.1 MB (unchanged)"


def test_a_truncated_jpeg_within_the_limit_is_refused_not_passed_on():
    buffer = io.BytesIO()
    Image.frombytes("RGB", (400, 300), os.urandom(400 * 300 * 3)).save(buffer, "JPEG", quality=90)
    whole = buffer.getvalue()
    with pytest.raises(ImageDecodeError):
        fit_image(whole[: len(whole) // 2], limit=len(whole) * 2, basename="half")


# --------------------------------------------------------------------------- damaged PNGs
#
# Each file is a real Pillow PNG with a few bytes changed the way a broken download or a
# buggy encoder changes them. Pillow opens every one of them without complaint.


def _chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, type, payload length) of every chunk of a PNG."""
    found, position = [], 8
    while position < len(data):
        (length,) = struct.unpack_from(">I", data, position)
        found.append((position, data[position + 4 : position + 8], length))
        position += 12 + length
    return found


def _rewrite_chunk(data: bytes, offset: int, payload: bytes) -> bytes:
    """Replace the payload of the chunk at ``offset`` (same length) with a correct checksum."""
    kind = data[offset + 4 : offset + 8]
    crc = struct.pack(">I", zlib.crc32(kind + payload))
    return data[: offset + 8] + payload + crc + data[offset + 12 + len(payload) :]


def _png() -> bytes:
    return _encode(_noise(120, 90), "PNG")


def _broken_data_stream() -> bytes:
    # Garbage inside the compressed pixels, checksum recomputed: only decoding notices.
    data = _png()
    offset, _, length = next(c for c in _chunks(data) if c[1] == b"IDAT")
    payload = bytearray(data[offset + 8 : offset + 8 + length])
    payload[length // 3 : length // 3 + 64] = b"\xff" * 64
    return _rewrite_chunk(data, offset, bytes(payload))


def _truncated_end_chunk() -> bytes:
    data = _png()
    offset = next(c[0] for c in _chunks(data) if c[1] == b"IEND")
    return data[: offset + 6]


def _missing_end_chunk() -> bytes:
    data = _png()
    return data[: next(c[0] for c in _chunks(data) if c[1] == b"IEND")]


def _apng_with_frame_sequence_errors() -> bytes:
    frames = [_noise(60, 40) for _ in range(3)]
    data = _encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100)
    offset, _, length = [c for c in _chunks(data) if c[1] == b"fcTL"][1]
    payload = struct.pack(">I", 7) + data[offset + 12 : offset + 8 + length]  # should be 1
    return _rewrite_chunk(data, offset, payload)


DAMAGED_PNGS = {
    "broken-data-stream": _broken_data_stream,
    "truncated-end-chunk": _truncated_end_chunk,
    "missing-end-chunk": _missing_end_chunk,
    "apng-frame-sequence-errors": _apng_with_frame_sequence_errors,
}


@pytest.mark.parametrize("make", DAMAGED_PNGS.values(), ids=DAMAGED_PNGS.keys())
@pytest.mark.parametrize("fits", [True, False], ids=["passed-on", "re-encoded"])
def test_a_damaged_png_is_unreadable_never_passed_on(make, fits):
    data = make()
    Image.open(io.BytesIO(data))  # the header is fine: only the pixels or chunks are broken
    limit = len(data) * 2 if fits else len(data) // 4
    with pytest.raises(ImageCorruptError):
        fit_image(data, limit=limit, basename="broken")


def test_an_intact_animated_png_is_still_passed_on():
    frames = [_noise(60, 40) for _ in range(3)]
    data = _encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100)
    assert fit_image(data, limit=len(data), basename="anim").data == data


async def test_a_damaged_result_png_is_reported_and_the_others_delivered(start_bot):
    rig = await start_bot()
    # Held before completion so the second result can be damaged before the bot fetches it.
    rig.toapis.plan = plan = TaskPlan(
        image_count=2, image_size=(96, 64), image_format="PNG", never_finish=True
    )
    record = await rig.imagine(prompt="two foxes", n=2)
    task = await eventually(lambda: next(iter(rig.toapis.tasks.values()), None), what="a submitted task")
    good = await _fetch(rig.toapis.image_urls(task.id)[0])
    rig.toapis.add_file(task.image_names[1], _broken_data_stream(), "image/png")
    plan.never_finish = False

    message = await rig.finished(record)

    assert (
        [attachment.data for attachment in message.attachments],
        "1 image could not be downloaded." in status_of(message),
        status_of(message).startswith("✅ 1 image"),
    ) == ([good], True, True)


async def _fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, url
        return await response.read()


# --------------------------------------------------------------------------- 16-bit greyscale


def _gradient_16bit(fmt: str) -> bytes:
    """A 256×64 left-to-right ramp over the 16-bit range, with noise in the low byte (so a PNG
    of it is far bigger than a JPEG)."""
    ramp = bytearray()
    for _ in range(64):
        for x in range(256):
            ramp += struct.pack("<H", x * 256 + os.urandom(1)[0])
    return _encode(Image.frombytes("I;16", (256, 64), bytes(ramp)), fmt)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_a_16_bit_greyscale_image_keeps_its_gradient_when_reencoded(fmt):
    data = _gradient_16bit(fmt)
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    fitted = fit_image(data, limit=len(data) // 2, basename="ramp")
    assert fitted.reduced
    row = [_level(_decode(fitted.data).convert("L"), (x, 32)) for x in (2, 64, 128, 192, 253)]
    assert row == sorted(row) and row[0] < 20 and row[-1] > 235 and 100 < row[2] < 156, row


# --------------------------------------------------------------------------- PNG a band at a time


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("rows", [1, 7, 64, 1000])
def test_a_png_decoded_in_bands_has_exactly_the_pixels_of_a_whole_decode(mode, rows):
    image = _noise(173, 131, mode)  # noise makes the encoder use every row filter
    image.paste(Image.linear_gradient("L").convert(mode).resize((90, 60)), (20, 30))
    data = _encode(image, "PNG")
    assert png_decodes_in_bands(data)

    bands = list(png_bands(data, rows=rows))

    assert [band.height for band in bands[:-1]] == [rows] * (len(bands) - 1)
    whole = Image.new(mode, image.size)
    top = 0
    for band in bands:
        whole.paste(band, (0, top))
        top += band.height
    assert (top, whole.tobytes()) == (131, _decode(data).tobytes())


@pytest.mark.parametrize(
    "image",
    [Image.new("L", (20, 20)), Image.new("P", (20, 20)), Image.new("I;16", (20, 20))],
    ids=["greyscale", "palette", "16-bit"],
)
def test_only_8_bit_rgb_and_rgba_pngs_are_decoded_in_bands(image):
    assert not png_decodes_in_bands(_encode(image, "PNG"))


def test_an_interlaced_png_is_not_decoded_in_bands():
    data = _encode(_noise(20, 20), "PNG")  # Pillow writes no interlaced PNGs: mark the header as one
    header = data[16:28] + b"\x01"
    assert not png_decodes_in_bands(_rewrite_chunk(data, 8, header))


@pytest.mark.parametrize("make", DAMAGED_PNGS.values(), ids=DAMAGED_PNGS.keys())
def test_a_damaged_png_decoded_in_bands_is_unreadable(make):
    with pytest.raises(ImageCorruptError):
        list(png_bands(make(), rows=16))
