"""Tests for bot.references: checking reference images and making them acceptable to ToAPIs."""

from __future__ import annotations

import ast
import asyncio
import io
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest
from PIL import Image

from bot import references
from bot.references import (
    MAX_BYTES,
    MAX_DOWNLOAD_BYTES,
    MAX_PIXELS,
    MIN_SIDE_EXCLUSIVE,
    PreparationSlots,
    PreparedReference,
    ReferenceSource,
    check_sources,
    describe,
    prepare_reference,
    prepare_reference_in_turn,
)
from tests.fakes.toapis import make_image
from tests.rig import eventually

RefError = references.ReferenceRejectedError

RED = (220, 20, 30)
BLUE = (20, 40, 220)


# --------------------------------------------------------------------------- helpers


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _flat(width: int, height: int, fmt: str, colour: tuple[int, ...] = RED, mode: str = "RGB") -> bytes:
    return _encode(Image.new(mode, (width, height), colour), fmt)


def _rgb(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    """The pixel at ``xy`` of a multi-band image, one value per band."""
    pixel = image.getpixel(xy)
    assert isinstance(pixel, tuple)
    return pixel


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _assert_acceptable(prepared: PreparedReference) -> Image.Image:
    """Everything ToAPIs documents for an image_urls entry holds for the prepared bytes."""
    image = _open(prepared.data)
    assert image.format in ("JPEG", "PNG")
    assert prepared.content_type == f"image/{image.format.lower()}"
    assert prepared.filename.lower().endswith((".jpg", ".jpeg") if image.format == "JPEG" else ".png")
    assert len(prepared.data) <= MAX_BYTES
    width, height = image.size
    assert width * height <= MAX_PIXELS
    assert min(width, height) > MIN_SIDE_EXCLUSIVE
    assert width <= 3 * height and height <= 3 * width
    return image


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width``×``height`` but that holds almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))


def _source(name: str = "photo.png", **kwargs: object) -> ReferenceSource:
    fields: dict[str, object] = {"url": f"https://cdn.discordapp.com/attachments/1/2/{name}"}
    fields.update(kwargs)
    return ReferenceSource(filename=name, **fields)  # type: ignore[arg-type]


def _check(sources: list[ReferenceSource], *, n: int = 1, max_references: int = 10) -> None:
    check_sources(sources, n=n, max_references=max_references, model_name="Seedream 4.5")


def _refusal(sources: list[ReferenceSource], **kwargs: int) -> str:
    with pytest.raises(RefError) as info:
        _check(sources, **kwargs)
    return str(info.value)


def _prepare_refusal(data: bytes, filename: str) -> str:
    with pytest.raises(RefError) as info:
        prepare_reference(data, filename=filename)
    return str(info.value)


# --------------------------------------------------------------------------- check_sources


def test_no_references_pass_the_checks() -> None:
    _check([], n=15)


def test_unknown_metadata_passes_the_checks() -> None:
    _check([_source("embed-image")])


def test_more_references_than_the_model_takes_are_refused() -> None:
    message = _refusal([_source(f"{i}.png") for i in range(4)], max_references=3)
    assert message == "Seedream 4.5 takes at most 3 reference images; you attached 4. Remove 1 and try again."


def test_exactly_the_models_maximum_is_allowed() -> None:
    _check([_source(f"{i}.png") for i in range(3)], max_references=3)


def test_a_model_without_references_refuses_any() -> None:
    with pytest.raises(RefError) as info:
        check_sources([_source()], n=1, max_references=0, model_name="Seedream X")
    assert str(info.value) == (
        "Seedream X does not take reference images. Remove the attachments or pick another model."
    )


def test_the_provider_maximum_of_10_applies_even_if_the_model_claims_more() -> None:
    message = _refusal([_source(f"{i}.png") for i in range(11)], max_references=12, n=1)
    assert message.startswith("Seedream 4.5 takes at most 10 reference images; you attached 11.")


def test_references_plus_n_over_15_names_the_largest_n_allowed() -> None:
    message = _refusal([_source(f"{i}.png") for i in range(4)], n=12)
    assert (
        message == "With 4 reference images you can ask for at most 11 images; you asked for 12. Lower `n`."
    )


def test_references_plus_n_of_exactly_15_is_allowed() -> None:
    _check([_source(f"{i}.png") for i in range(4)], n=11)


def test_one_reference_is_counted_in_the_singular() -> None:
    message = _refusal([_source()], n=15)
    assert message.startswith("With 1 reference image you can ask for at most 14 images;")


def test_a_file_that_is_not_an_image_is_refused_by_content_type() -> None:
    message = _refusal([_source("notes.txt", content_type="text/plain; charset=utf-8")])
    assert message == "`notes.txt` is not an image — attach a JPEG, PNG, WebP or GIF."


def test_an_image_type_the_bot_cannot_read_is_refused() -> None:
    message = _refusal([_source("photo.heic", content_type="image/heic")])
    assert message == (
        "`photo.heic` is an image type the bot cannot read (image/heic) — attach a JPEG, PNG, WebP or GIF."
    )


@pytest.mark.parametrize(
    "content_type", ["image/jpeg", "image/png", "image/webp", "image/gif", "IMAGE/PNG", "image/bmp"]
)
def test_readable_image_types_pass(content_type: str) -> None:
    _check([_source(content_type=content_type)])


def test_a_file_too_large_to_download_is_refused() -> None:
    message = _refusal([_source("huge.png", size=MAX_DOWNLOAD_BYTES + 1)])
    assert message == (
        "`huge.png` is 26.2 MB; the bot can only use reference images up to 26.2 MB "
        "— save a smaller copy and try again."
    )


def test_files_over_10_mb_and_36_mp_pass_because_they_will_be_downscaled() -> None:
    _check([_source("big.jpg", size=20 * 1024 * 1024, width=8000, height=6000)])


def test_tiny_dimensions_from_metadata_are_refused() -> None:
    message = _refusal([_source("tiny.png", width=10, height=10)])
    assert message == (
        "`tiny.png` is 10×10 pixels; reference images must be more than 14 pixels wide and tall "
        "— use a larger image."
    )


def test_a_side_of_exactly_14_is_refused_and_15_allowed() -> None:
    assert "more than 14 pixels" in _refusal([_source(width=14, height=40)])
    _check([_source(width=15, height=40)])


def test_a_too_tall_aspect_ratio_from_metadata_is_refused() -> None:
    message = _refusal([_source("banner.png", width=1000, height=5000)])
    assert message == (
        "`banner.png` is 1000×5000 pixels (1:5); reference images must be between 1:3 and 3:1 "
        "— crop it and try again."
    )


def test_exactly_3_to_1_and_1_to_3_pass_the_checks() -> None:
    _check([_source("wide.png", width=3000, height=1000), _source("tall.png", width=1000, height=3000)])


def test_a_ratio_just_over_3_to_1_is_not_shown_as_3_to_1() -> None:
    message = _refusal([_source("wide.png", width=3001, height=1000)])
    assert "(just wider than 3:1)" in message


def test_more_pixels_than_the_bot_can_decode_are_refused() -> None:
    message = _refusal([_source("scan.png", width=9000, height=9000)])
    assert message == (
        "`scan.png` is 9000×9000 pixels (81.0 MP); the bot can shrink reference images of up to 64 MP "
        "— make it smaller and try again."
    )


def test_every_bad_file_is_reported_one_line_each() -> None:
    sources = [
        _source("ok.png", content_type="image/png", width=100, height=100),
        _source("notes.txt", content_type="text/plain"),
        _source("banner.png", content_type="image/png", width=1000, height=5000),
    ]
    with pytest.raises(RefError) as info:
        _check(sources)
    assert str(info.value).splitlines() == [
        "`notes.txt` is not an image — attach a JPEG, PNG, WebP or GIF.",
        "`banner.png` is 1000×5000 pixels (1:5); reference images must be between 1:3 and 3:1 "
        "— crop it and try again.",
    ]
    assert info.value.filenames == ("notes.txt", "banner.png")


def test_file_names_are_shown_without_backticks_and_shortened() -> None:
    message = _refusal([_source("a`b" + "x" * 200 + ".txt", content_type="text/plain")])
    name = message.split("`")[1]
    assert name.startswith("a'bxxx") and name.endswith("…") and len(name) == 80


# --------------------------------------------------------------------------- prepare: passthrough


@pytest.mark.parametrize(
    ("fmt", "name", "content_type"), [("JPEG", "photo.jpg", "image/jpeg"), ("PNG", "photo.png", "image/png")]
)
def test_jpeg_and_png_within_limits_are_sent_byte_identical(fmt: str, name: str, content_type: str) -> None:
    data = _flat(64, 48, fmt)
    prepared = prepare_reference(data, filename=name)
    assert prepared.data == data
    assert (prepared.filename, prepared.content_type, prepared.width, prepared.height) == (
        name,
        content_type,
        64,
        48,
    )
    assert (prepared.converted, prepared.downscaled, prepared.reencoded) == (False, False, False)
    assert prepared.original_bytes == len(data)
    assert describe(prepared) == f"{name} used as is"


def test_png_with_transparency_stays_png() -> None:
    data = _flat(64, 64, "PNG", colour=(10, 20, 30, 0), mode="RGBA")
    prepared = prepare_reference(data, filename="logo.png")
    assert (prepared.data, prepared.content_type) == (data, "image/png")


def test_a_jpeg_named_png_keeps_its_bytes_and_gets_a_jpeg_name() -> None:
    data = _flat(64, 64, "JPEG")
    prepared = prepare_reference(data, filename="photo.png")
    assert (prepared.data, prepared.filename, prepared.content_type) == (data, "photo.jpg", "image/jpeg")


def test_a_camera_multi_picture_jpeg_is_sent_as_a_jpeg() -> None:
    frames = [Image.new("RGB", (64, 48), RED), Image.new("RGB", (64, 48), BLUE)]
    data = _encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    prepared = prepare_reference(data, filename="camera.jpg")
    assert (prepared.data, prepared.content_type) == (data, "image/jpeg")


def test_passthrough_reports_the_exif_rotated_size() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: stored 80×40, shown 40×80
    data = _encode(Image.new("RGB", (80, 40), RED), "JPEG", exif=exif)
    prepared = prepare_reference(data, filename="phone.jpg")
    assert (prepared.data, prepared.width, prepared.height) == (data, 40, 80)


# --------------------------------------------------------------------------- prepare: conversion


def test_opaque_webp_is_converted_to_jpeg() -> None:
    prepared = prepare_reference(_flat(64, 48, "WEBP"), filename="photo.webp")
    image = _assert_acceptable(prepared)
    assert (image.format, image.size, prepared.filename) == ("JPEG", (64, 48), "photo.jpg")
    assert (prepared.converted, prepared.downscaled, prepared.reencoded) == (True, False, True)
    assert describe(prepared) == "photo.webp converted to JPEG"


def test_webp_with_transparency_is_converted_to_png_keeping_the_alpha() -> None:
    data = _flat(64, 48, "WEBP", colour=(10, 20, 30, 0), mode="RGBA")
    prepared = prepare_reference(data, filename="sticker.webp")
    image = _assert_acceptable(prepared)
    assert (image.format, prepared.filename, image.getpixel((0, 0))[3]) == ("PNG", "sticker.png", 0)
    assert describe(prepared) == "sticker.webp converted to PNG"


def test_an_unused_alpha_channel_does_not_force_png() -> None:
    data = _flat(64, 48, "WEBP", colour=(10, 20, 30, 255), mode="RGBA")
    assert prepare_reference(data, filename="opaque.webp").content_type == "image/jpeg"


def test_animated_gif_is_converted_from_its_first_frame() -> None:
    frames = [Image.new("RGB", (60, 40), RED), Image.new("RGB", (60, 40), BLUE)]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    prepared = prepare_reference(data, filename="anim.gif")
    image = _assert_acceptable(prepared)
    assert (image.format, image.size, prepared.filename) == ("JPEG", (60, 40), "anim.jpg")
    red, _green, blue = _rgb(image.convert("RGB"), (30, 20))
    assert red > 180 and blue < 80  # the red first frame, not the blue second one


def test_gif_with_a_transparent_colour_is_converted_to_png() -> None:
    image = Image.new("P", (40, 40), 0)
    image.putpalette([*RED, *BLUE] + [0] * 762)
    image.paste(1, (0, 0, 20, 40))
    data = _encode(image, "GIF", transparency=1)
    prepared = prepare_reference(data, filename="cutout.gif")
    result = _assert_acceptable(prepared).convert("RGBA")
    assert (prepared.content_type, result.getpixel((5, 5))[3], result.getpixel((30, 5))[3]) == (
        "image/png",
        0,
        255,
    )


def test_bmp_is_converted_to_jpeg() -> None:
    prepared = prepare_reference(_flat(64, 48, "BMP"), filename="scan.bmp")
    assert (_assert_acceptable(prepared).format, prepared.filename) == ("JPEG", "scan.jpg")


def test_exif_orientation_is_applied_when_re_encoding() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 80×40 with the red half on the left; shown rotated 90° clockwise
    stored = Image.new("RGB", (80, 40), BLUE)
    stored.paste(RED, (0, 0, 40, 40))
    data = _encode(stored, "WEBP", exif=exif, lossless=True)
    prepared = prepare_reference(data, filename="phone.webp")
    image = _assert_acceptable(prepared).convert("RGB")
    assert image.size == (40, 80) == (prepared.width, prepared.height)
    top, bottom = image.getpixel((20, 10)), image.getpixel((20, 70))
    assert top[0] > 180 and bottom[2] > 180  # the left (red) half is now on top


# --------------------------------------------------------------------------- prepare: size limits


def test_a_20_mb_transparent_png_is_downscaled_below_the_limits() -> None:
    noise = Image.frombytes("RGBA", (2300, 2300), os.urandom(2300 * 2300 * 4))
    data = _encode(noise, "PNG", compress_level=1)
    assert len(data) > 20_000_000
    prepared = prepare_reference(data, filename="noise.png")
    image = _assert_acceptable(prepared)
    assert image.format == "PNG" and image.width == image.height < 2300
    assert (prepared.converted, prepared.downscaled, prepared.original_bytes) == (False, True, len(data))
    assert describe(prepared) == f"noise.png downscaled 2300×2300 → {image.width}×{image.height}"


def test_an_opaque_png_over_10_mb_becomes_a_jpeg_at_full_size() -> None:
    data = make_image(2100, 2100, "PNG", noisy=True)
    assert len(data) > 10 * 1024 * 1024
    prepared = prepare_reference(data, filename="noise.png")
    image = _assert_acceptable(prepared)
    assert (image.format, image.size, prepared.downscaled) == ("JPEG", (2100, 2100), False)


def test_a_jpeg_over_10_mb_is_re_encoded_to_fit() -> None:
    noise = Image.frombytes("RGB", (2400, 2400), os.urandom(2400 * 2400 * 3))
    data = _encode(noise, "JPEG", quality=100)
    assert len(data) > MAX_BYTES
    prepared = prepare_reference(data, filename="big.jpg")
    image = _assert_acceptable(prepared)
    assert image.size == (2400, 2400)
    assert describe(prepared) == "big.jpg re-encoded to fit 10 MB"


def test_a_7000_by_7000_image_is_halved_to_fit_36_megapixels() -> None:
    data = make_image(7000, 7000, "PNG")
    assert len(data) < MAX_BYTES  # only the pixel count is over
    prepared = prepare_reference(data, filename="flat.png")
    image = _assert_acceptable(prepared)
    assert image.size == (3500, 3500) == (prepared.width, prepared.height)
    assert prepared.downscaled


def test_an_8000_by_6000_jpeg_keeps_its_aspect_ratio_when_downscaled() -> None:
    prepared = prepare_reference(make_image(8000, 6000, "JPEG"), filename="huge.jpg")
    _assert_acceptable(prepared)
    assert describe(prepared) == "huge.jpg downscaled 8000×6000 → 4000×3000"


def test_more_pixels_than_the_bot_decodes_are_refused() -> None:
    message = _prepare_refusal(_png_header_only(9000, 9000), "scan.png")
    assert message.startswith("`scan.png` is 9000×9000 pixels (81.0 MP); the bot can shrink")


def test_more_bytes_than_the_download_cap_are_refused_without_decoding() -> None:
    message = _prepare_refusal(b"\0" * (MAX_DOWNLOAD_BYTES + 1), "huge.png")
    assert message.startswith("`huge.png` is 26.2 MB; the bot can only use reference images up to")


# --------------------------------------------------------------------------- prepare: refusals


def test_a_10_by_10_image_is_refused() -> None:
    message = _prepare_refusal(_flat(10, 10, "PNG"), "tiny.png")
    assert message == (
        "`tiny.png` is 10×10 pixels; reference images must be more than 14 pixels wide and tall "
        "— use a larger image."
    )


def test_a_side_of_14_is_refused_but_15_accepted() -> None:
    assert "more than 14 pixels" in _prepare_refusal(_flat(14, 30, "PNG"), "thin.png")
    _assert_acceptable(prepare_reference(_flat(15, 30, "PNG"), filename="ok.png"))


def test_a_1_to_5_image_is_refused_even_when_metadata_said_otherwise() -> None:
    message = _prepare_refusal(_flat(200, 1000, "PNG"), "banner.png")
    assert message == (
        "`banner.png` is 200×1000 pixels (1:5); reference images must be between 1:3 and 3:1 "
        "— crop it and try again."
    )


@pytest.mark.parametrize("size", [(300, 100), (100, 300)])
def test_exactly_3_to_1_is_accepted(size: tuple[int, int]) -> None:
    data = _flat(*size, "PNG")
    assert prepare_reference(data, filename="wide.png").data == data


def test_just_over_3_to_1_is_refused() -> None:
    assert "between 1:3 and 3:1" in _prepare_refusal(_flat(301, 100, "PNG"), "wide.png")


def test_a_webp_over_3_to_1_is_refused_not_cropped() -> None:
    assert "(4:1)" in _prepare_refusal(_flat(400, 100, "WEBP"), "strip.webp")


def test_corrupt_image_bytes_are_refused() -> None:
    data = make_image(200, 200, "JPEG", noisy=True)
    message = _prepare_refusal(data[: len(data) // 2], "broken.jpg")
    assert message == (
        "`broken.jpg` could not be read: the file is damaged or incomplete — save it again and attach it."
    )


@pytest.mark.parametrize("data", [b"hello, this is a text file\n" * 20, b""], ids=["text", "empty"])
def test_bytes_that_are_not_an_image_are_refused(data: bytes) -> None:
    message = _prepare_refusal(data, "notes.txt")
    assert message == "`notes.txt` is not an image — attach a JPEG, PNG, WebP or GIF."


def test_refusals_name_the_file_in_the_exception() -> None:
    with pytest.raises(RefError) as info:
        prepare_reference(b"nope", filename="notes.txt")
    assert info.value.filenames == ("notes.txt",)


# --------------------------------------------------------------------------- misc


async def test_prepare_runs_in_a_worker_thread() -> None:
    data = _flat(32, 32, "WEBP")
    prepared = await asyncio.to_thread(prepare_reference, data, filename="a.webp")
    assert prepared.content_type == "image/jpeg"


def test_prepared_reference_repr_leaves_out_the_bytes() -> None:
    prepared = prepare_reference(_flat(32, 32, "PNG"), filename="a.png")
    assert "data=" not in repr(prepared)


def test_describe_works_with_only_the_basic_fields() -> None:
    prepared = PreparedReference(
        filename="x.jpg",
        data=b"",
        content_type="image/jpeg",
        width=10,
        height=10,
        converted=False,
        downscaled=True,
        original_bytes=0,
    )
    assert describe(prepared) == "x.jpg downscaled 10×10 → 10×10"


def test_the_module_never_imports_discord() -> None:
    tree = ast.parse(Path(references.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.split(".")[0] == "discord" for name in imported)


# --------------------------------------------------------------------------- large images, memory


def _flat_big(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A mostly flat picture with a few distinct blocks (cheap to encode at tens of megapixels)."""
    image = Image.new(mode, (width, height), (40, 90, 160, 255)[: len(mode)])
    image.paste((200, 60, 30, 255)[: len(mode)], (0, 0, width // 2, height // 3))
    image.paste((250, 250, 20, 255)[: len(mode)], (width // 3, height // 2, width - 7, height - 5))
    return image


def test_a_large_transparent_png_is_shrunk_to_exactly_what_a_whole_decode_gives() -> None:
    image = _flat_big(6002, 6001, "RGBA")
    image.paste((0, 0, 0, 0), (100, 100, 2001, 1501))  # a transparent hole
    data = _encode(image, "PNG")
    expected = image.reduce(2)
    del image

    prepared = prepare_reference(data, filename="cutout.png")

    result = _assert_acceptable(prepared)
    assert (result.format, result.mode, result.size) == ("PNG", "RGBA", (3001, 3001))
    assert result.tobytes() == expected.tobytes()
    assert describe(prepared) == "cutout.png downscaled 6002×6001 → 3001×3001"


def test_a_large_opaque_rgba_png_is_sent_as_a_jpeg() -> None:
    data = _encode(_flat_big(6002, 6001, "RGBA"), "PNG")
    prepared = prepare_reference(data, filename="opaque.png")
    assert (_assert_acceptable(prepared).format, prepared.filename) == ("JPEG", "opaque.jpg")


def test_a_large_png_with_a_garbled_data_stream_is_refused_as_damaged() -> None:
    data = _encode(_flat_big(6002, 6001), "PNG")
    position = 8
    while data[position + 4 : position + 8] != b"IDAT":
        position += 12 + struct.unpack_from(">I", data, position)[0]
    (length,) = struct.unpack_from(">I", data, position)
    payload = bytearray(data[position + 8 : position + 8 + length])
    payload[length // 2 : length // 2 + 200] = os.urandom(200)
    crc = struct.pack(">I", zlib.crc32(b"IDAT" + payload))
    damaged = data[: position + 8] + bytes(payload) + crc + data[position + 12 + length :]

    assert _prepare_refusal(damaged, "scan.png") == (
        "`scan.png` could not be read: the file is damaged or incomplete — save it again and attach it."
    )


_PEAK_RSS_SCRIPT = """
import resource, sys
from bot.references import prepare_reference
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
prepared = prepare_reference(data, filename=sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024, prepared.width, prepared.height)
"""


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_preparing_an_8000_by_8000_image_stays_far_below_its_decoded_size(tmp_path: Path, fmt: str) -> None:
    # Decoded whole, 8000×8000 is 256 MB in Pillow, and downscaling it took ~570 MB. Measured
    # in a fresh process so nothing else this test run allocated counts.
    path = tmp_path / f"scan.{fmt.lower()}"
    _flat_big(8000, 8000).save(path, fmt)
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    growth_mb, width, height = map(int, done.stdout.split())
    assert (width, height) == (4000, 4000)
    assert growth_mb < 200, f"preparing took {growth_mb} MB more at its peak"


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims ``width``×``height``."""
    data = bytearray(_flat(64, 48, "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def test_a_jpeg_over_the_decode_limit_is_refused_though_it_could_be_decoded_at_half_size() -> None:
    message = _prepare_refusal(_jpeg_claiming(9000, 9000), "scan.jpg")
    assert message.startswith("`scan.jpg` is 9000×9000 pixels (81.0 MP); the bot can shrink")


def test_an_absurd_pixel_count_is_refused_before_anything_is_decoded() -> None:
    message = _prepare_refusal(_png_header_only(100_000, 100_000), "bomb.png")
    assert message == "`bomb.png` has too many pixels to open safely — make it smaller and try again."


def test_a_16_bit_greyscale_reference_keeps_its_gradient() -> None:
    ramp = b"".join(struct.pack("<H", x * 256) for _ in range(128) for x in range(256))
    data = _encode(Image.frombytes("I;16", (256, 128), ramp), "TIFF")
    prepared = prepare_reference(data, filename="scan.tif")
    row = [_open(prepared.data).convert("L").getpixel((x, 64)) for x in (2, 128, 253)]
    assert row[0] < 10 and 110 < row[1] < 145 and row[2] > 245, row


# --------------------------------------------------------------------------- one preparation at a time


class _Blocker:
    """Work that records when it starts and ends, and ends only when released."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log
        self.release = threading.Event()

    def __call__(self) -> str:
        self.log.append(f"{self.name} starts")
        assert self.release.wait(30), f"{self.name} was never released"
        self.log.append(f"{self.name} ends")
        return self.name


async def test_work_beyond_the_slots_waits_until_a_slot_is_free() -> None:
    slots = PreparationSlots(2)
    log: list[str] = []
    first, second = _Blocker("first", log), _Blocker("second", log)
    running = [asyncio.create_task(slots.run(first)), asyncio.create_task(slots.run(second))]
    await eventually(lambda: len(log) == 2, what="both slots taken")

    def third_work() -> str:
        log.append("third runs")
        return "third"

    third = asyncio.create_task(slots.run(third_work))
    await eventually(lambda: slots.waiting == 1, what="the third waiting")
    assert (slots.running, log) == (2, ["first starts", "second starts"])

    first.release.set()
    assert await third == "third"
    second.release.set()
    assert [await task for task in running] == ["first", "second"]
    assert log.index("third runs") > log.index("first ends")
    assert (slots.running, slots.waiting) == (0, 0)


async def test_a_preparation_cancelled_while_waiting_never_runs() -> None:
    slots = PreparationSlots(1)
    log: list[str] = []
    blocker = _Blocker("first", log)
    running = asyncio.create_task(slots.run(blocker))
    await eventually(lambda: log == ["first starts"], what="the slot taken")
    waiting = asyncio.create_task(slots.run(lambda: log.append("cancelled work ran")))
    await eventually(lambda: slots.waiting == 1, what="the second waiting")

    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    blocker.release.set()
    await running
    assert (log, slots.waiting, slots.running) == (["first starts", "first ends"], 0, 0)


async def test_every_reference_preparation_in_the_process_takes_its_turn() -> None:
    assert references.PREPARATIONS_AT_ONCE == 1
    log: list[str] = []
    blocker = _Blocker("other job's reference", log)
    occupying = asyncio.create_task(references.PREPARATION_SLOTS.run(blocker))
    await eventually(lambda: log == ["other job's reference starts"], what="the slot taken")

    mine = asyncio.create_task(prepare_reference_in_turn(_flat(64, 64, "WEBP"), filename="a.webp"))
    await eventually(lambda: references.PREPARATION_SLOTS.waiting == 1, what="the reference waiting")
    assert not mine.done()

    blocker.release.set()
    prepared = await mine
    await occupying
    assert (prepared.filename, log[-1]) == ("a.jpg", "other job's reference ends")
