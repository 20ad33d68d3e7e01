"""Tests for bot.images: fitting result images under Discord's upload limit."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from bot.images import (
    FittedImage,
    ImageDecodeError,
    ImageTooLargeError,
    describe_reduction,
    fit_image,
    fit_images,
    format_size,
)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _noise(width: int, height: int, mode: str = "RGB") -> Image.Image:
    # Random noise is the worst case for JPEG: it barely compresses at any quality.
    channels = len(mode)
    return Image.frombytes(mode, (width, height), os.urandom(width * height * channels))


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
    r, g, b = decoded.getpixel((5, 5))
    assert min(r, g, b) > 230


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


def _fitted(**overrides) -> FittedImage:
    fields = dict(
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
    assert describe_reduction(img) == "2048×2048, 3.1 MB (unchanged)"


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 bytes"), (999, "999 bytes"), (1000, "1.0 kB"), (87_249, "87.2 kB"), (12_345_678, "12.3 MB")],
)
def test_format_size(n, text):
    assert format_size(n) == text


def test_a_truncated_jpeg_within_the_limit_is_refused_not_passed_on():
    buffer = io.BytesIO()
    Image.frombytes("RGB", (400, 300), os.urandom(400 * 300 * 3)).save(buffer, "JPEG", quality=90)
    whole = buffer.getvalue()
    with pytest.raises(ImageDecodeError):
        fit_image(whole[: len(whole) // 2], limit=len(whole) * 2, basename="half")
