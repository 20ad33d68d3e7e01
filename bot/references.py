"""Reference images for ``/imagine``: check them, then make them acceptable to ToAPIs.

ToAPIs takes reference images as ``image_urls`` and documents strict rules for them: at
most 10, reference images + ``n`` ≤ 15, each JPEG or PNG, ≤ 10 MB, width and height
> 14 px, aspect ratio (w/h) within [1/3, 3] and at most 6000×6000 = 36,000,000 pixels.

The bot works in two steps:

1. :func:`check_sources` runs on Discord's attachment metadata alone, before the bot
   answers the interaction, and refuses what can never work (too many images, not an
   image, too small, too narrow, too big to download).
2. :func:`prepare_reference` runs on the downloaded bytes (in a worker thread). It re-checks
   the real pixels, because metadata may be missing or wrong, passes acceptable JPEG/PNG
   files through byte-identical, converts other formats and downscales what is too large.
   Problems the member must fix (tiny, too narrow/tall, not an image, corrupt) are
   refused, never silently cropped; size problems the bot can fix are fixed.

Every refusal is a :class:`ReferenceRejectedError` whose text is written for the member (a
translatable text, `bot.i18n`): it names the file, the rule and what to do. Nothing here
imports discord.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import posixpath
import struct
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from PIL import Image

from bot.catalog import MAX_TOTAL_IMAGES
from bot.i18n import Readable, Text, TextError, _, _n, join
from bot.images import (
    ImageCorruptError,
    ImageDecodeError,
    ImageTooManyPixelsError,
    eight_bit,
    exif_orientation,
    load_image,
    open_image,
    oriented_size,
    png_bands,
    png_decodes_in_bands,
)
from bot.text import byte_size, clip

log = logging.getLogger(__name__)

#: ToAPIs: "image_urls … At most 10."
MAX_REFERENCES = 10
#: ToAPIs: width and height must be *greater than* 14 px, so 14 itself is refused.
MIN_SIDE_EXCLUSIVE = 14
#: ToAPIs: total pixels ≤ 6000×6000. Larger images are downscaled to fit, not refused.
MAX_PIXELS = 36_000_000
#: ToAPIs: aspect ratio (w/h) within [1/3, 3]; both ends are allowed.
MAX_ASPECT = 3
#: ToAPIs documents "≤ 10 MB" without saying whether MB is 10⁶ or 2²⁰ bytes.
PROVIDER_MAX_BYTES = 10 * 1024 * 1024
#: What the bot sends at most: 95 % of 10 MiB = 9,961,472 bytes. That is below both
#: readings of "10 MB" (10,485,760 and 10,000,000 bytes) and leaves a little slack for
#: however the provider counts. Larger files are re-encoded/downscaled to fit.
MAX_BYTES = PROVIDER_MAX_BYTES * 95 // 100
#: Hard cap on downloading one reference: 25 MiB, Discord's attachment limit without Nitro
#: or server boosts until 2024 (it is 10 MiB now), so ordinary attachments always fit and
#: only Nitro/boosted uploads can exceed it. It bounds memory: files are read whole.
MAX_DOWNLOAD_BYTES = 25 * 1024 * 1024
#: Largest image the bot will decode to downscale: 64 MP covers 61 MP cameras and
#: 8000×8000 scans. Pillow keeps RGB and RGBA at 4 bytes a pixel, so 64 MP decoded whole
#: is 256 MB; that is why large 8-bit PNGs are decoded a band at a time and large JPEGs at
#: half size. Above this the member must shrink it.
MAX_DECODE_PIXELS = 64_000_000
#: How many references are decoded at once in the whole process. An image that has to be
#: decoded whole (a 64 MP WebP, TIFF, or 16-bit or interlaced PNG) takes about 320 MB while
#: it is shrunk, so two at once would outgrow the ~400 MB the bot is meant to run in, and
#: ten members attaching at once would need gigabytes. Preparing one takes a second or two,
#: so the next waits little. Downloads and uploads are not limited by this.
PREPARATIONS_AT_ONCE = 1

# Discord content types of images bot.images can decode (its ALLOWED_FORMATS).
_READABLE_CONTENT_TYPES = frozenset(
    {
        "image/jpeg",
        "image/jpg",
        "image/pjpeg",
        "image/png",
        "image/apng",
        "image/webp",
        "image/gif",
        "image/bmp",
        "image/x-bmp",
        "image/x-ms-bmp",
        "image/tiff",
    }
)
# The formats the provider accepts, with the file extensions that may stay as they are
# (the first one is used when renaming).
_OUTPUT_EXTENSIONS = {"JPEG": ("jpg", "jpeg"), "PNG": ("png",)}
_CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}

JPEG_QUALITY = 90
# Every downscale round shrinks each side by at least this factor, and there are at most
# _MAX_ROUNDS rounds, so preparing an image always terminates.
_MAX_SCALE_PER_ROUND = 0.9
_MAX_ROUNDS = 40
# Filenames come from members: keep quoted names short enough for a Discord message.
_MAX_NAME_CHARS = 80
# Rows converted and shrunk at a time when halving a large image: the only full-size image
# alive is the decoded file itself (a band of 256 rows of an 8000-px RGB image is 8 MB).
_BAND_ROWS = 256
# How Pillow's transpose undoes each EXIF orientation (2–8; 1 is upright).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_T = TypeVar("_T")


@dataclass(frozen=True)
class ReferenceSource:
    """An image as Discord describes it (attachment or embed metadata).

    Everything but ``filename`` and ``url`` may be unknown (e.g. for embed images).
    """

    filename: str
    url: str
    content_type: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None


class ReferenceRejectedError(TextError):
    """A reference image the bot cannot use. ``text`` is written for the member, to be read in
    their language; ``str(exc)`` and ``message`` are its English (for logs and records).

    ``filenames`` names the offending files (empty for problems with the whole set, such
    as too many images).
    """

    def __init__(self, text: Readable, *, filenames: Sequence[str] = ()) -> None:
        super().__init__(text)
        self.message = str(self)
        self.filenames = tuple(filenames)


@dataclass(frozen=True)
class PreparedReference:
    """A reference image ready to upload to ToAPIs.

    Always JPEG or PNG, at most :data:`MAX_BYTES` and :data:`MAX_PIXELS`, sides above
    :data:`MIN_SIDE_EXCLUSIVE` and aspect ratio within [1/3, 3]. ``width``/``height`` are
    display dimensions (EXIF orientation applied). ``converted``: the format changed;
    ``downscaled``: it has fewer pixels than the original; ``reencoded``: the bytes are not
    the member's original bytes (true whenever either of the others is).
    """

    filename: str
    data: bytes = field(repr=False)  # may be ~10 MB: keep it out of logs and test output
    content_type: str
    width: int
    height: int
    converted: bool
    downscaled: bool
    original_bytes: int
    reencoded: bool = False
    original_filename: str = ""
    original_format: str = ""
    original_width: int = 0
    original_height: int = 0


# --------------------------------------------------------------------------- cheap checks


def check_sources(
    sources: Sequence[ReferenceSource], *, n: int, max_references: int, model_name: Readable
) -> None:
    """Refuse reference images that can never work, from Discord's metadata alone.

    Cheap enough to run before the bot answers the interaction. Checks, in order: the
    count against ``min(MAX_REFERENCES, max_references)``, references + ``n`` ≤ 15, then
    per file (only what the metadata tells): content type, size against
    :data:`MAX_DOWNLOAD_BYTES`, sides, aspect ratio and pixels against
    :data:`MAX_DECODE_PIXELS`. Files over 10 MB or 36 MP pass: they will be downscaled.

    A problem with the count is raised alone (fixing it changes the set). Otherwise every
    file with a problem is reported — its first problem, one line per file — so the member
    can fix them all in one go.

    Raises:
        ReferenceRejectedError: with a message for the member.
    """
    count = len(sources)
    if count == 0:
        return
    limit = max(0, min(MAX_REFERENCES, max_references))
    if limit == 0:
        raise ReferenceRejectedError(
            _(
                "{model} does not take reference images. Remove the attachments or pick another model.",
                model=model_name,
            )
        )
    if count > limit:
        raise ReferenceRejectedError(
            _n(
                "{model} takes at most {count} reference image; you attached {attached}. "
                "Remove {extra} and try again.",
                "{model} takes at most {count} reference images; you attached {attached}. "
                "Remove {extra} and try again.",
                limit,
                model=model_name,
                attached=str(count),
                extra=str(count - limit),
            )
        )
    if count + n > MAX_TOTAL_IMAGES:
        raise ReferenceRejectedError(
            _n(
                "With {count} reference image you can ask for at most {most} images; you asked for {n}. "
                "Lower `n`.",
                "With {count} reference images you can ask for at most {most} images; you asked for {n}. "
                "Lower `n`.",
                count,
                most=str(MAX_TOTAL_IMAGES - count),
                n=str(n),
            )
        )

    problems: list[tuple[str, Text]] = []
    for source in sources:
        problem = _source_problem(source)
        if problem is not None:
            problems.append((source.filename, problem))
    if problems:
        raise ReferenceRejectedError(
            join(problem for _name, problem in problems), filenames=[name for name, _problem in problems]
        )


def _not_an_image(name: str) -> Text:
    return _("{filename} is not an image — attach a JPEG, PNG, WebP or GIF.", filename=name)


def _source_problem(source: ReferenceSource) -> Text | None:
    name = quoted_filename(source.filename)
    if source.content_type is not None:
        content_type = source.content_type.split(";", 1)[0].strip().lower()
        if not content_type.startswith("image/"):
            return _not_an_image(name)
        if content_type not in _READABLE_CONTENT_TYPES:
            return _(
                "{filename} is an image type the bot cannot read ({content_type}) — "
                "attach a JPEG, PNG, WebP or GIF.",
                filename=name,
                content_type=content_type,
            )
    if source.size is not None and source.size > MAX_DOWNLOAD_BYTES:
        return _too_many_bytes(name, source.size)
    if source.width is not None and source.height is not None:
        return _dimension_problem(name, source.width, source.height)
    return None


# --------------------------------------------------------------------------- preparing


def prepare_reference(data: bytes, *, filename: str) -> PreparedReference:
    """Turn a downloaded reference image into one ToAPIs accepts, or refuse it.

    JPEG and PNG files within the limits are returned byte-identical. Other formats
    (WebP, GIF — first frame —, BMP, TIFF) are converted: to PNG when the image really
    has transparency, otherwise to JPEG (quality 90). Anything over :data:`MAX_PIXELS` is
    shrunk by a whole factor (halved, for anything the bot decodes) with a box filter — a
    JPEG already while it is decoded — which keeps memory low; anything still over
    :data:`MAX_BYTES` is downscaled (aspect ratio kept, LANCZOS) until it fits. EXIF
    orientation is baked into re-encoded pixels.

    Synchronous and CPU-bound: call it through :func:`prepare_reference_in_turn`, which
    keeps the number decoded at once small (one decoded image can take a few hundred MB).

    Raises:
        ReferenceRejectedError: not an image, corrupt, too many pixels to decode safely, too big
            to download, a side of 14 px or less, or an aspect ratio outside [1/3, 3].
    """
    name = quoted_filename(filename)
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise ReferenceRejectedError(_too_many_bytes(name, len(data)), filenames=[filename])
    try:
        # The pixel count is checked from the header, before any pixel is decoded.
        image = open_image(data, max_pixels=MAX_DECODE_PIXELS)
        stored_width, stored_height = image.size
        # Camera "multi-picture" JPEGs are JPEG files with extra images appended.
        source_format = "JPEG" if image.format == "MPO" else (image.format or "")
        as_is = (
            source_format in _OUTPUT_EXTENSIONS
            and len(data) <= MAX_BYTES
            and stored_width * stored_height <= MAX_PIXELS
        )
        shrink = 1 if as_is else _whole_reduction(stored_width, stored_height)
        shrunk: tuple[Image.Image, str] | None = None
        if shrink > 1 and png_decodes_in_bands(data):
            # Decoded and shrunk a band at a time: never the whole file at full size.
            shrunk = _shrunk_png(data, shrink)
        else:
            # A JPEG sent as is only needs vouching for (1/8 scale reads every byte); one to
            # be shrunk is decoded straight at the reduced size.
            scale = 8 if as_is else shrink
            load_image(image, data, at_least=(stored_width // scale, stored_height // scale))
    except ImageTooManyPixelsError as exc:
        if exc.width is not None and exc.height is not None:
            message = _too_many_pixels(name, exc.width, exc.height)
        else:
            message = _(
                "{filename} has too many pixels to open safely — make it smaller and try again.",
                filename=name,
            )
        raise ReferenceRejectedError(message, filenames=[filename]) from exc
    except ImageCorruptError as exc:
        raise ReferenceRejectedError(
            _(
                "{filename} could not be read: the file is damaged or incomplete — "
                "save it again and attach it.",
                filename=name,
            ),
            filenames=[filename],
        ) from exc
    except ImageDecodeError as exc:
        raise ReferenceRejectedError(_not_an_image(name), filenames=[filename]) from exc

    # An undecoded PNG would decode in full to look for EXIF after its pixels: only EXIF
    # before them counts then.
    orientation = exif_orientation(image) if shrunk is None or "exif" in image.info else None
    width, height = oriented_size((stored_width, stored_height), orientation)
    problem = _dimension_problem(name, width, height)
    if problem is not None:
        raise ReferenceRejectedError(problem, filenames=[filename])

    if as_is:
        log.debug(
            "Reference %s used as is (%s, %sx%s, %s bytes)", filename, source_format, width, height, len(data)
        )
        return PreparedReference(
            filename=_output_filename(filename, source_format),
            data=data,
            content_type=_CONTENT_TYPES[source_format],
            width=width,
            height=height,
            converted=False,
            downscaled=False,
            original_bytes=len(data),
            reencoded=False,
            original_filename=filename,
            original_format=source_format,
            original_width=width,
            original_height=height,
        )
    source_mode, icc_profile = image.mode, image.info.get("icc_profile")
    if shrunk is None:
        shrunk = _output_pixels(image)
    work, out_format = shrunk
    if work is not image:
        image.close()  # the decoded original is the largest thing here: free it before encoding
    return _reencode(
        work,
        out_format,
        data=data,
        filename=filename,
        source_format=source_format,
        source_mode=source_mode,
        icc_profile=icc_profile,
        size=(width, height),
        orientation=orientation,
    )


async def prepare_reference_in_turn(data: bytes, *, filename: str) -> PreparedReference:
    """:func:`prepare_reference` off the event loop, in one of the process's preparation slots.

    At most :data:`PREPARATIONS_AT_ONCE` references are decoded at once, whichever jobs they
    belong to; the rest wait their turn in order. Cancelling while waiting drops the work.

    Raises:
        ReferenceRejectedError: as :func:`prepare_reference`.
    """
    return await PREPARATION_SLOTS.run(lambda: prepare_reference(data, filename=filename))


class PreparationSlots:
    """Runs work in its own ``slots`` threads, so at most that many run at once in the process.

    Work beyond that waits in order without holding a thread of asyncio's default executor,
    which also resolves host names and fits result images. ``running`` and ``waiting`` count
    the work in each state.
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.running = 0
        self.waiting = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="reference-preparation")

    async def run(self, work: Callable[[], _T]) -> _T:
        """Return ``work()``, run in a slot as soon as one is free."""
        with self._lock:
            self.waiting += 1

        def in_slot() -> _T:
            with self._lock:
                self.waiting -= 1
                self.running += 1
            try:
                return work()
            finally:
                with self._lock:
                    self.running -= 1

        future = self._executor.submit(in_slot)
        future.add_done_callback(self._forget_if_dropped)
        return await asyncio.wrap_future(future)

    def _forget_if_dropped(self, future: Future[Any]) -> None:
        # Work cancelled before its turn never runs in_slot, which would have uncounted it.
        if future.cancelled():
            with self._lock:
                self.waiting -= 1


#: The process-wide slots every reference preparation goes through.
PREPARATION_SLOTS = PreparationSlots(PREPARATIONS_AT_ONCE)


def describe(prepared: PreparedReference) -> str:
    """A short note on what preparing did, e.g. ``"photo.webp converted to PNG"``.

    Other shapes: ``"huge.jpg downscaled 8000×6000 → 6928×5196"``, ``"scan.png converted
    to JPEG and downscaled 7000×7000 → 6000×6000"``, ``"big.jpg re-encoded to fit 10 MB"``
    and ``"photo.jpg used as is"``.
    """
    name = prepared.original_filename or prepared.filename
    fmt = prepared.content_type.removeprefix("image/").upper()
    before = f"{prepared.original_width or prepared.width}×{prepared.original_height or prepared.height}"
    after = f"{prepared.width}×{prepared.height}"
    if prepared.converted and prepared.downscaled:
        return f"{name} converted to {fmt} and downscaled {before} → {after}"
    if prepared.converted:
        return f"{name} converted to {fmt}"
    if prepared.downscaled:
        return f"{name} downscaled {before} → {after}"
    if prepared.reencoded:
        return f"{name} re-encoded to fit 10 MB"
    return f"{name} used as is"


def _reencode(
    work: Image.Image,
    out_format: str,
    *,
    data: bytes,
    filename: str,
    source_format: str,
    source_mode: str,
    icc_profile: bytes | None,
    size: tuple[int, int],
    orientation: int | None,
) -> PreparedReference:
    """Encode ``work`` (within MAX_PIXELS, in a mode ``out_format`` takes), downscaling until
    it fits MAX_BYTES. ``size`` is the original's display size."""
    name = quoted_filename(filename)
    transpose = _ORIENTATION_TRANSPOSE.get(orientation or 1)
    if transpose is not None:
        # Re-encoding drops EXIF, so the orientation goes into the (already smaller) pixels.
        work = work.transpose(transpose)
    # Keep the colour profile (e.g. Display P3 photos) unless the colour model changed.
    if icc_profile is not None and _colour_family(source_mode) != _colour_family(work.mode):
        icc_profile = None

    target = _fit_pixels(*work.size)
    encoded = b""
    for _round in range(_MAX_ROUNDS):
        # Always resample from the full-size image so quality does not degrade per round.
        scaled = work if target == work.size else work.resize(target, Image.Resampling.LANCZOS)
        encoded = _encode(scaled, out_format, icc_profile)
        del scaled
        log.debug("Reference %s as %s at %sx%s: %s bytes", filename, out_format, *target, len(encoded))
        if len(encoded) <= MAX_BYTES:
            break
        # File size scales roughly with pixel count, so scale each side by sqrt(ratio);
        # 0.95 leaves margin for encoder overhead, and the cap guarantees progress.
        factor = min(_MAX_SCALE_PER_ROUND, math.sqrt(MAX_BYTES / len(encoded)) * 0.95)
        target = _within_aspect(int(target[0] * factor), int(target[1] * factor))
        if min(target) <= MIN_SIDE_EXCLUSIVE:
            break
    if len(encoded) > MAX_BYTES:
        # Unreachable for real images (a 15×45 image is a few kB), but never loop forever.
        log.warning("Could not fit reference %s into %s bytes", filename, MAX_BYTES)
        raise ReferenceRejectedError(
            _("{filename} could not be made small enough to use — attach a smaller image.", filename=name),
            filenames=[filename],
        )

    width, height = target
    converted = out_format != source_format
    downscaled = width * height < size[0] * size[1]
    log.info(
        "Prepared reference %s: %s %sx%s, %s bytes → %s %sx%s, %s bytes",
        filename,
        source_format,
        size[0],
        size[1],
        len(data),
        out_format,
        width,
        height,
        len(encoded),
    )
    return PreparedReference(
        filename=_output_filename(filename, out_format),
        data=encoded,
        content_type=_CONTENT_TYPES[out_format],
        width=width,
        height=height,
        converted=converted,
        downscaled=downscaled,
        original_bytes=len(data),
        reencoded=True,
        original_filename=filename,
        original_format=source_format,
        original_width=size[0],
        original_height=size[1],
    )


def _whole_reduction(width: int, height: int) -> int:
    """The smallest whole factor that brings an image within MAX_PIXELS (1 when it fits)."""
    factor = 1
    while math.ceil(width / factor) * math.ceil(height / factor) > MAX_PIXELS:
        factor += 1
    return factor


def _output_pixels(image: Image.Image) -> tuple[Image.Image, str]:
    """A decoded image within MAX_PIXELS, in the mode of the format it will be sent as."""
    out_format, out_mode = _output_format(image)
    return _converted(image, out_mode, _whole_reduction(*image.size)), out_format


def _shrunk_png(data: bytes, factor: int) -> tuple[Image.Image, str]:
    """An 8-bit RGB(A) PNG shrunk by ``factor`` while it is decoded, a band of rows at a time,
    and the format to send it as (PNG only when some pixel is transparent)."""
    width, height = struct.unpack_from(">II", data, 16)
    result: Image.Image | None = None
    least_alpha: float = 255
    rows = max(factor, _BAND_ROWS // factor * factor)  # whole boxes per band
    for top, band in zip(range(0, height, rows), png_bands(data, rows=rows), strict=False):
        if result is None:
            result = Image.new(band.mode, (math.ceil(width / factor), math.ceil(height / factor)))
        if band.mode == "RGBA":
            least_alpha = min(least_alpha, _least_alpha(band))
        result.paste(band.reduce(factor), (0, top // factor))
    assert result is not None  # a PNG has at least one row
    if result.mode == "RGBA" and least_alpha == 255:
        return result.convert("RGB"), "JPEG"  # an alpha channel nothing uses: a JPEG is smaller
    return result, ("PNG" if result.mode == "RGBA" else "JPEG")


def _output_format(image: Image.Image) -> tuple[str, str]:
    """The format to send (PNG iff really transparent, else JPEG) and the mode its pixels take."""
    if _has_transparency(image):
        return "PNG", "RGBA"
    return "JPEG", ("L" if image.mode == "L" or image.mode.startswith("I;16") else "RGB")


def _converted(image: Image.Image, mode: str, factor: int) -> Image.Image:
    """``image`` in ``mode`` and shrunk by a whole ``factor`` (box filter; 1 = same size).

    A shrunk image is converted and reduced a band of rows at a time, so no second full-size
    copy of a large image is ever made.
    """
    if factor == 1:
        return _in_mode(image, mode)
    width, height = image.size
    result = Image.new(mode, (math.ceil(width / factor), math.ceil(height / factor)))
    rows = max(factor, _BAND_ROWS // factor * factor)  # whole boxes per band
    for top in range(0, height, rows):
        band = _in_mode(image.crop((0, top, width, min(height, top + rows))), mode)
        result.paste(band.reduce(factor), (0, top // factor))
    return result


def _in_mode(image: Image.Image, mode: str) -> Image.Image:
    """``image`` converted to ``mode``; 16-bit greyscale is scaled to 8 bits, not clipped."""
    image = eight_bit(image)
    return image if image.mode == mode else image.convert(mode)


def _least_alpha(image: Image.Image) -> float:
    """The lowest alpha in ``image``, whose last band is alpha, read in place (no copy)."""
    extrema = image.getextrema()  # one (min, max) pair per band
    alpha = extrema[-1]
    assert isinstance(alpha, tuple)  # only a single-band image gives a bare (min, max)
    return alpha[0]


def _has_transparency(image: Image.Image) -> bool:
    """True when some pixel is not fully opaque (an unused alpha channel does not count)."""
    if image.mode in ("RGBA", "LA"):
        return _least_alpha(image) < 255
    if image.mode.startswith("I;16") or (
        image.mode not in ("PA", "RGBa", "La") and "transparency" not in image.info
    ):
        return False
    # Palette or keyed transparency: look a band at a time rather than copy the whole image.
    width, height = image.size
    for top in range(0, height, _BAND_ROWS):
        band = image.crop((0, top, width, min(height, top + _BAND_ROWS))).convert("RGBA")
        if _least_alpha(band) < 255:
            return True
    return False


def _colour_family(mode: str) -> str:
    if mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16"):
        return "grey"
    if mode in ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA"):
        return "rgb"
    return mode  # CMYK, YCbCr, LAB…: a profile for these does not describe RGB output


def _encode(image: Image.Image, out_format: str, icc_profile: bytes | None) -> bytes:
    buf = io.BytesIO()
    options: dict[str, object] = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if out_format == "JPEG":
        image.save(buf, "JPEG", quality=JPEG_QUALITY, **options)
    else:
        image.save(buf, "PNG", **options)
    return buf.getvalue()


def _fit_pixels(width: int, height: int) -> tuple[int, int]:
    """The largest size with the same aspect ratio and at most MAX_PIXELS pixels."""
    if width * height <= MAX_PIXELS:
        return width, height
    scale = math.sqrt(MAX_PIXELS / (width * height))
    width, height = _within_aspect(int(width * scale), int(height * scale))
    # Guard against float rounding landing a pixel over.
    while width * height > MAX_PIXELS:
        if width >= height:
            width -= 1
        else:
            height -= 1
    return width, height


def _within_aspect(width: int, height: int) -> tuple[int, int]:
    """Undo rounding that would push an image at exactly 3:1 (or 1:3) just past it."""
    width, height = max(1, width), max(1, height)
    return min(width, MAX_ASPECT * height), min(height, MAX_ASPECT * width)


def _output_filename(filename: str, out_format: str) -> str:
    """The member's file name with an extension matching ``out_format``."""
    base = posixpath.basename(filename.replace("\\", "/")).strip() or "reference"
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem:
        stem, ext = base, ""
    extensions = _OUTPUT_EXTENSIONS[out_format]
    if ext.lower() in extensions:
        return base
    return f"{stem}.{extensions[0]}"


# --------------------------------------------------------------------------- messages


def _dimension_problem(name: str, width: int, height: int) -> Text | None:
    """The member-facing problem with an image of this size, or None when it is usable."""
    if min(width, height) <= MIN_SIDE_EXCLUSIVE:
        return _(
            "{filename} is {size} pixels; reference images must be more than "
            "{least} pixels wide and tall — use a larger image.",
            filename=name,
            size=f"{width}×{height}",
            least=str(MIN_SIDE_EXCLUSIVE),
        )
    if width > MAX_ASPECT * height or height > MAX_ASPECT * width:
        return _(
            "{filename} is {size} pixels ({ratio}); reference images must be "
            "between {tallest} and {widest} — crop it and try again.",
            filename=name,
            size=f"{width}×{height}",
            ratio=_ratio(width, height),
            tallest=f"1:{MAX_ASPECT}",
            widest=f"{MAX_ASPECT}:1",
        )
    if width * height > MAX_DECODE_PIXELS:
        return _too_many_pixels(name, width, height)
    return None


def _too_many_pixels(name: str, width: int, height: int) -> Text:
    return _(
        "{filename} is {size} pixels ({megapixels} MP); the bot can shrink "
        "reference images of up to {most} MP — make it smaller and try again.",
        filename=name,
        size=f"{width}×{height}",
        megapixels=f"{width * height / 1e6:.1f}",
        most=str(MAX_DECODE_PIXELS // 1_000_000),
    )


def _too_many_bytes(name: str, size: int) -> Text:
    return _(
        "{filename} is {size}; the bot can only use reference images up to "
        "{most} — save a smaller copy and try again.",
        filename=name,
        size=byte_size(size),
        most=byte_size(MAX_DOWNLOAD_BYTES),
    )


def _ratio(width: int, height: int) -> Readable:
    """``"1:5"``, ``"3.5:1"``; never shows a refused ratio as exactly 3:1."""
    value = max(width, height) / min(width, height)
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    if float(text) <= MAX_ASPECT:
        # e.g. 3001×1000 would round to "3:1", which reads as allowed.
        if width > height:
            # Translators: an image's shape, e.g. "just wider than 3:1" (the widest allowed).
            return _("just wider than {ratio}", ratio=f"{MAX_ASPECT}:1")
        # Translators: an image's shape, e.g. "just taller than 1:3" (the tallest allowed).
        return _("just taller than {ratio}", ratio=f"1:{MAX_ASPECT}")
    return f"{text}:1" if width > height else f"1:{text}"


def quoted_filename(filename: str) -> str:
    """The file name as shown to members: in backticks, shortened, without backticks inside."""
    name = posixpath.basename(filename.replace("\\", "/")).replace("`", "'").strip() or "attachment"
    return f"`{clip(name, _MAX_NAME_CHARS)}`"
