"""Make generated images fit Discord's upload size limit.

Seedream results are JPEGs of several MB each (a 3K 16:9 image is 4096×2304), which can
exceed the upload limit of a server without boosts. :func:`fit_image` passes an image
through untouched when it already fits, and otherwise re-encodes it as JPEG at falling
quality and, as a last resort, downscales it until it fits.

Everything here is synchronous CPU work except :func:`fit_images`, which runs the work in
a worker thread so the event loop keeps serving Discord. Nothing here imports discord.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from PIL import Image, ImageOps

from bot.i18n import Readable, _
from bot.text import byte_size

log = logging.getLogger(__name__)

# Refuse to decode anything larger than this many pixels. The provider's own ceiling for
# reference images is 6000×6000 (36 MP) and its largest outputs are far smaller; 48 MP
# leaves headroom while keeping a decoded RGBA frame under ~200 MB. We check the header
# ourselves instead of changing the process-wide Image.MAX_IMAGE_PIXELS, which other code
# (and other threads) may rely on.
MAX_PIXELS = 48_000_000

# Formats we are willing to decode. Restricting Pillow's plugins keeps exotic decoders
# (e.g. EPS, which shells out to Ghostscript) away from bytes fetched from the network.
# (Multi-picture camera JPEGs are opened by the JPEG plugin and reported as "MPO".)
_ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
#: The Pillow format names :func:`decode_image` accepts (public view of the list above).
ALLOWED_FORMATS: tuple[str, ...] = _ALLOWED_FORMATS

# Formats Discord shows inline; these pass through unchanged when they fit.
_PASSTHROUGH = {
    "JPEG": (".jpg", "image/jpeg"),
    "MPO": (".jpg", "image/jpeg"),
    "PNG": (".png", "image/png"),
    "WEBP": (".webp", "image/webp"),
    "GIF": (".gif", "image/gif"),
}

QUALITY_STEPS = (90, 80, 70, 60, 50)
DOWNSCALE_QUALITY_STEPS = (80, 60)
MIN_SIDE = 64
# Every downscale round shrinks each side by at least this factor, so the loop terminates.
_MAX_SCALE_PER_ROUND = 0.9

# EXIF orientations that swap width and height when applied (transpose / rotate 90°).
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# APNG chunks that carry a frame sequence number (0, 1, 2, … across both kinds).
_APNG_SEQUENCED = (b"fcTL", b"fdAT")
# PNG colour types :func:`png_bands` decodes (8 bits a channel, not interlaced): the ones
# Pillow holds at 4 bytes a pixel, so the ones where a full decode costs the most.
_BANDED_PNG_RAWMODES = {2: "RGB", 6: "RGBA"}


@dataclass(frozen=True)
class FittedImage:
    """An image ready for upload, plus what it looked like before fitting.

    ``width``/``height`` and ``original_width``/``original_height`` are display
    dimensions (EXIF orientation applied).
    """

    data: bytes
    filename: str
    content_type: str
    width: int
    height: int
    reduced: bool
    original_bytes: int
    original_width: int
    original_height: int


class ImageDecodeError(Exception):
    """The bytes are not an image we can (or are willing to) decode."""


class ImageTooManyPixelsError(ImageDecodeError):
    """The image declares more pixels than the decoder was allowed to decode.

    ``width``/``height`` are the declared (stored, not EXIF-rotated) dimensions, or None
    when Pillow's own decompression-bomb guard refused the file before reporting a size.
    """

    def __init__(self, message: str, *, width: int | None = None, height: int | None = None) -> None:
        super().__init__(message)
        self.width = width
        self.height = height


class ImageCorruptError(ImageDecodeError):
    """The header was readable but the pixel data is truncated or corrupt."""


class ImageTooLargeError(ValueError):
    """The image cannot be made to fit the limit without shrinking it to a thumbnail."""


def fit_image(data: bytes, *, limit: int, basename: str, keep_transparency: bool = False) -> FittedImage:
    """Return ``data`` as an image of at most ``limit`` bytes.

    Images that already fit and are JPEG/PNG/WebP/GIF are returned byte-identical with a
    matching extension. Anything else is flattened to RGB (transparency onto white) and
    re-encoded as progressive JPEG, first at quality 90→50, then downscaled with LANCZOS
    and retried at quality 80/60 until it fits. Animated images keep only their first
    frame when re-encoded. With ``keep_transparency`` (the layers of a decomposed image, which
    are nothing without it) an image with transparent pixels is downscaled as PNG instead.

    Synchronous and CPU-bound: call it through ``asyncio.to_thread``.

    Raises:
        ImageDecodeError: the bytes are not a decodable image (or are too many pixels).
        ImageTooLargeError: fitting would need a side below 64 px.
        ValueError: ``limit`` is not positive.
    """
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    image = open_image(data)
    stored_size = image.size

    passthrough = _PASSTHROUGH.get(image.format or "")
    if len(data) <= limit and passthrough is not None:
        # Passed on as is: vouch for every byte, but decode a JPEG at 1/8 scale (cheap).
        load_image(image, data, at_least=(stored_size[0] // 8, stored_size[1] // 8))
        shown = oriented_size(stored_size, exif_orientation(image))
        ext, content_type = passthrough
        return FittedImage(
            data=data,
            filename=basename + ext,
            content_type=content_type,
            width=shown[0],
            height=shown[1],
            reduced=False,
            original_bytes=len(data),
            original_width=shown[0],
            original_height=shown[1],
        )

    load_image(image, data)
    shown = oriented_size(stored_size, exif_orientation(image))
    # Re-encoding drops EXIF, so bake the orientation into the pixels first.
    upright = ImageOps.exif_transpose(image)
    transparent = _transparent_rgba(upright) if keep_transparency else None
    if transparent is not None:
        encoded, size = _shrink_png_to_fit(transparent, limit)
        ext, content_type, fmt = ".png", "image/png", "PNG"
    else:
        encoded, size = _shrink_to_fit(_flatten_to_rgb(upright), limit)
        ext, content_type, fmt = ".jpg", "image/jpeg", "JPEG"
    log.info(
        "Reduced %s from %s bytes (%sx%s %s) to %s bytes (%sx%s %s)",
        basename,
        len(data),
        shown[0],
        shown[1],
        image.format,
        len(encoded),
        size[0],
        size[1],
        fmt,
    )
    return FittedImage(
        data=encoded,
        filename=basename + ext,
        content_type=content_type,
        width=size[0],
        height=size[1],
        reduced=True,
        original_bytes=len(data),
        original_width=shown[0],
        original_height=shown[1],
    )


async def fit_images(datas: Sequence[bytes], *, limit: int, basename: str) -> list[FittedImage]:
    """Fit several images off the event loop, naming them ``{basename}-1``, ``-2``, ….

    Images are processed one at a time so at most one decoded image is in memory.
    The first failure (ImageDecodeError, ImageTooLargeError) propagates; call
    :func:`fit_image` per image if partial results are wanted.
    """
    fitted: list[FittedImage] = []
    for i, data in enumerate(datas, start=1):
        fitted.append(await asyncio.to_thread(fit_image, data, limit=limit, basename=f"{basename}-{i}"))
    return fitted


def describe_reduction(img: FittedImage) -> Readable:
    """Describe what fitting did, e.g. ``"4096×2304, 12.3 MB → 2560×1440 JPEG, 9.8 MB"``.

    Sizes use decimal units (MB = 1,000,000 bytes, see :func:`bot.text.byte_size`). For an image
    that was not reduced the text is ``"2048×2048, 3.1 MB (unchanged)"``.
    """
    before = f"{img.original_width}×{img.original_height}, {byte_size(img.original_bytes)}"
    if not img.reduced:
        # Translators: an image posted as it came; {before} is its size, e.g. "2048×2048, 3.1 MB".
        return _("{before} (unchanged)", before=before)
    fmt = img.content_type.removeprefix("image/").upper()
    return f"{before} → {img.width}×{img.height} {fmt}, {byte_size(len(img.data))}"


def decode_image(data: bytes, *, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode ``data`` (first frame only), refusing more than ``max_pixels``.

    ``max_pixels`` defaults to :data:`MAX_PIXELS` (read at call time).

    Only :data:`ALLOWED_FORMATS` are tried. The pixel count is checked from the header,
    before any pixel data is decoded; Pillow's own process-wide decompression-bomb guard
    still applies on top. Every failure is an :class:`ImageDecodeError`: specifically
    :class:`ImageTooManyPixelsError` for too many pixels and :class:`ImageCorruptError`
    for a readable header with broken pixel data.
    """
    image = open_image(data, max_pixels=max_pixels)
    load_image(image, data)
    return image


def open_image(data: bytes, *, max_pixels: int | None = None) -> Image.Image:
    """Read only the header of ``data`` (format and size), with the checks of :func:`decode_image`."""
    try:
        image = Image.open(io.BytesIO(data), formats=_ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooManyPixelsError("image has too many pixels to decode safely") from exc
    except Exception as exc:
        # Pillow raises a zoo of exception types for bad input; the message may quote
        # internals, so report a plain sentence and keep the cause for the log.
        raise ImageDecodeError("data is not a supported image (JPEG, PNG, WebP, GIF, BMP, TIFF)") from exc
    width, height = image.size
    if width * height > (MAX_PIXELS if max_pixels is None else max_pixels):
        raise ImageTooManyPixelsError(
            f"image is too large to decode safely ({width}×{height} pixels)", width=width, height=height
        )
    return image


def load_image(image: Image.Image, data: bytes, *, at_least: tuple[int, int] | None = None) -> None:
    """Decode the pixels of ``image``, opened from ``data`` by :func:`open_image`, or raise.

    Call it before anything else reads the image: Pillow decodes on first use, and a decode
    error raised (and swallowed) inside e.g. ``getexif()`` leaves an image whose later
    ``load()`` does nothing — a broken picture that looks fine. A PNG must also have an
    intact chunk structure (checksums, frame order, end chunk), which Pillow does not check.

    With ``at_least``, a JPEG is decoded at the smallest scale (1/2, 1/4, 1/8) that keeps it
    at least that large: every byte is still read (a truncated file still fails) for a
    fraction of the memory. ``image.size`` is then the decoded size.

    Raises:
        ImageCorruptError: the pixel data (or a PNG's structure) is truncated or corrupt.
    """
    if image.format == "PNG":
        damage = png_damage(data)
        if damage is not None:
            raise ImageCorruptError(f"PNG image is damaged: {damage}")
    if at_least is not None and image.format in ("JPEG", "MPO"):
        image.draft(image.mode, (max(1, at_least[0]), max(1, at_least[1])))
    try:
        image.load()
    except Exception as exc:
        raise ImageCorruptError(f"{image.format} image is truncated or corrupt") from exc


def png_damage(data: bytes) -> str | None:
    """What is wrong with a PNG file's chunks, or None when they are whole.

    Checks each chunk's length and checksum, that APNG frame sequence numbers run 0, 1, 2, …,
    and that the file reaches its end chunk. Pillow decodes the first frame without these
    checks, so a cut-off or garbled file can otherwise pass as an image. Reads only bytes:
    cheap next to decoding.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return "not a PNG signature"
    view = memoryview(data)
    position = len(_PNG_SIGNATURE)
    next_sequence = 0
    while True:
        if position + 8 > len(data):
            return "the file ends before its end chunk"
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > len(data):
            return "the file ends inside a chunk"
        if zlib.crc32(view[position + 4 : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
            return "a chunk's checksum does not match"
        if kind in _APNG_SEQUENCED:
            if length < 4 or int.from_bytes(view[position + 8 : position + 12], "big") != next_sequence:
                return "its animation frames are out of sequence"
            next_sequence += 1
        if kind == b"IEND":
            return None
        position = end


def png_decodes_in_bands(data: bytes) -> bool:
    """True when :func:`png_bands` can decode this PNG: 8-bit RGB or RGBA, not interlaced."""
    if not data.startswith(_PNG_SIGNATURE) or len(data) < 33 or data[12:16] != b"IHDR":
        return False
    depth, colour_type, compression, filtering, interlace = struct.unpack_from(">5B", data, 24)
    return (depth, compression, filtering, interlace) == (8, 0, 0, 0) and colour_type in _BANDED_PNG_RAWMODES


def png_bands(data: bytes, *, rows: int) -> Iterator[Image.Image]:
    """Decode a PNG (see :func:`png_decodes_in_bands`) ``rows`` rows at a time, top to bottom.

    Pillow decodes a whole PNG at once, 4 bytes a pixel: 256 MB for 8000×8000 RGB. Here the
    compressed rows are inflated a band at a time and each band is handed to Pillow's own PNG
    row decoder, preceded by the previous band's last row (the filters of a row refer to the
    one above), so only a band is decoded at any moment. Check the size with
    :func:`open_image` first.

    Raises:
        ImageCorruptError: the chunks are damaged or the compressed rows are cut short or garbled.
    """
    damage = png_damage(data)
    if damage is not None:
        raise ImageCorruptError(f"PNG image is damaged: {damage}")
    width, height = struct.unpack_from(">II", data, 16)
    rawmode = _BANDED_PNG_RAWMODES[data[25]]
    row_bytes = 1 + width * len(rawmode)  # a filter-type byte, then the pixels
    inflater = zlib.decompressobj()
    compressed = _png_image_data(data)
    pending = bytearray()
    above: bytes | None = None  # the previous band's last row, unfiltered
    top = 0
    try:
        while top < height:
            count = min(rows, height - top)
            wanted = count * row_bytes
            while len(pending) < wanted:
                piece = inflater.unconsumed_tail or next(compressed, None)
                if piece is None:
                    raise ImageCorruptError("PNG image data ends early")
                pending += inflater.decompress(piece, wanted)
            filtered = bytes(pending[:wanted])
            del pending[:wanted]
            if above is None:
                band = Image.frombytes(rawmode, (width, count), zlib.compress(filtered, 0), "zip", rawmode)
            else:
                # A row with filter type 0 ("none") carries the row above as it is.
                stream = zlib.compress(b"\0" + above + filtered, 0)
                band = Image.frombytes(rawmode, (width, count + 1), stream, "zip", rawmode)
                band = band.crop((0, 1, width, count + 1))
            above = band.crop((0, count - 1, width, count)).tobytes("raw", rawmode)
            top += count
            yield band
    except (zlib.error, ValueError) as exc:
        raise ImageCorruptError("PNG image data is corrupt") from exc


def _png_image_data(data: bytes) -> Iterator[memoryview]:
    """The payloads of a PNG's IDAT chunks, in order (the chunks are known to be whole)."""
    view = memoryview(data)
    position = len(_PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind == b"IDAT":
            yield view[position + 8 : position + 8 + length]
        elif kind == b"IEND":
            return
        position += 12 + length


def exif_orientation(image: Image.Image) -> int | None:
    """The EXIF orientation tag (1–8), or None when absent or unreadable.

    Call it after :func:`load_image`: for some formats Pillow reads EXIF by decoding first.
    """
    try:
        return image.getexif().get(_EXIF_ORIENTATION)
    except Exception:
        # The pixels are already decoded, so only EXIF parsing can fail here. Broken EXIF is
        # common and harmless: treat it as "no orientation".
        return None


def oriented_size(size: tuple[int, int], orientation: int | None) -> tuple[int, int]:
    """``size`` as a viewer shows it: width and height swap for rotated EXIF orientations."""
    width, height = size
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def eight_bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale (``I;16``, ``I;16B``, … as Pillow reads 16-bit PNG and TIFF) scaled to 8-bit ``L``.

    A plain ``convert("L")``/``convert("RGB")`` clips every value above 255, so a 16-bit
    image comes out almost pure white. Other modes are returned unchanged.
    """
    if image.mode.startswith("I;16"):
        return image.convert("I").point(lambda value: value / 256).convert("L")
    return image


def _flatten_to_rgb(image: Image.Image) -> Image.Image:
    """Convert to RGB, compositing any transparency onto white (JPEG has no alpha)."""
    image = eight_bit(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


def _transparent_rgba(image: Image.Image) -> Image.Image | None:
    """``image`` as RGBA when some pixel is not fully opaque, else None."""
    image = eight_bit(image)
    if image.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in image.info:
        return None
    rgba = image.convert("RGBA")
    lowest_alpha = rgba.getchannel("A").getextrema()[0]
    return rgba if isinstance(lowest_alpha, int | float) and lowest_alpha < 255 else None


def _encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _shrink_png_to_fit(rgba: Image.Image, limit: int) -> tuple[bytes, tuple[int, int]]:
    """Return PNG bytes ≤ limit (transparency kept) and their dimensions; PNG has no quality, only size."""
    encoded = _encode_png(rgba)
    width, height = rgba.size
    while len(encoded) > limit:
        # PNG size scales roughly with pixel count, as for JPEG below.
        scale = min(_MAX_SCALE_PER_ROUND, math.sqrt(limit / len(encoded)) * 0.9)
        width, height = int(width * scale), int(height * scale)
        if min(width, height) < MIN_SIDE:
            raise ImageTooLargeError(
                f"cannot fit a {rgba.width}×{rgba.height} image into {byte_size(limit)} "
                f"without shrinking it below {MIN_SIDE} px"
            )
        encoded = _encode_png(rgba.resize((width, height), Image.Resampling.LANCZOS))
        log.debug("PNG at %sx%s: %s bytes", width, height, len(encoded))
    return encoded, (width, height)


def _encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality, optimize=True, progressive=True)
    return buf.getvalue()


def _shrink_to_fit(rgb: Image.Image, limit: int) -> tuple[bytes, tuple[int, int]]:
    """Return JPEG bytes ≤ limit and their dimensions, trying quality before resolution."""
    encoded = b""
    for quality in QUALITY_STEPS:
        encoded = _encode_jpeg(rgb, quality)
        log.debug("JPEG q%s at %sx%s: %s bytes", quality, rgb.width, rgb.height, len(encoded))
        if len(encoded) <= limit:
            return encoded, rgb.size

    width, height = rgb.size
    while True:
        # File size scales roughly with pixel count, so scale each side by sqrt(ratio);
        # 0.9 leaves margin for JPEG overhead, and the cap guarantees progress.
        scale = min(_MAX_SCALE_PER_ROUND, math.sqrt(limit / len(encoded)) * 0.9)
        width, height = int(width * scale), int(height * scale)
        if min(width, height) < MIN_SIDE:
            raise ImageTooLargeError(
                f"cannot fit a {rgb.width}×{rgb.height} image into {byte_size(limit)} "
                f"without shrinking it below {MIN_SIDE} px"
            )
        # Always resample from the full-size image so quality does not degrade per round.
        scaled = rgb.resize((width, height), Image.Resampling.LANCZOS)
        for quality in DOWNSCALE_QUALITY_STEPS:
            encoded = _encode_jpeg(scaled, quality)
            log.debug("JPEG q%s at %sx%s: %s bytes", quality, width, height, len(encoded))
            if len(encoded) <= limit:
                return encoded, (width, height)
