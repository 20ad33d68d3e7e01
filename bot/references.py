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

Every refusal is a :class:`ReferenceError` whose message is written for the member: it
names the file, the rule and what to do. Nothing here imports discord.
"""

from __future__ import annotations

import io
import logging
import math
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageOps

from bot.images import (
    ImageCorruptError,
    ImageDecodeError,
    ImageTooManyPixelsError,
    decode_image,
    display_size,
    format_size,
)

log = logging.getLogger(__name__)

#: ToAPIs: "image_urls … At most 10."
MAX_REFERENCES = 10
#: ToAPIs: "Reference images + generated images ≤ 15."
MAX_TOTAL_IMAGES = 15
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
#: 8000×8000 scans. A decoded 64 MP image is ~192 MB (RGB) to ~256 MB (RGBA), which is why
#: references should be prepared one at a time. Above this the member must shrink it.
MAX_DECODE_PIXELS = 64_000_000

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
_WHAT_TO_ATTACH = "attach a JPEG, PNG, WebP or GIF"

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


class ReferenceError(Exception):
    """A reference image the bot cannot use. ``str(exc)`` is written for the member.

    ``filenames`` names the offending files (empty for problems with the whole set, such
    as too many images). Note: this shadows Python's built-in ``ReferenceError`` (weak
    references) inside modules that import it by name; import the module instead if that
    matters.
    """

    def __init__(self, message: str, *, filenames: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
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
    sources: Sequence[ReferenceSource], *, n: int, max_references: int, model_name: str
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
        ReferenceError: with a message for the member.
    """
    count = len(sources)
    if count == 0:
        return
    limit = max(0, min(MAX_REFERENCES, max_references))
    if limit == 0:
        raise ReferenceError(
            f"{model_name} does not take reference images. Remove the attachments or pick another model."
        )
    if count > limit:
        raise ReferenceError(
            f"{model_name} takes at most {_count(limit, 'reference image')}; you attached {count}. "
            f"Remove {count - limit} and try again."
        )
    if count + n > MAX_TOTAL_IMAGES:
        raise ReferenceError(
            f"With {_count(count, 'reference image')} you can ask for at most "
            f"{MAX_TOTAL_IMAGES - count} images; you asked for {n}. Lower `n`."
        )

    problems: list[tuple[str, str]] = []
    for source in sources:
        problem = _source_problem(source)
        if problem is not None:
            problems.append((source.filename, problem))
    if problems:
        raise ReferenceError(
            "\n".join(message for _, message in problems), filenames=[name for name, _ in problems]
        )


def _source_problem(source: ReferenceSource) -> str | None:
    name = quoted_filename(source.filename)
    if source.content_type is not None:
        content_type = source.content_type.split(";", 1)[0].strip().lower()
        if not content_type.startswith("image/"):
            return f"{name} is not an image — {_WHAT_TO_ATTACH}."
        if content_type not in _READABLE_CONTENT_TYPES:
            return f"{name} is an image type the bot cannot read ({content_type}) — {_WHAT_TO_ATTACH}."
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
    has transparency, otherwise to JPEG (quality 90). Anything over :data:`MAX_BYTES` or
    :data:`MAX_PIXELS` is re-encoded by the same rule and downscaled (aspect ratio kept,
    LANCZOS) until it fits both. EXIF orientation is baked into re-encoded pixels.

    Synchronous and CPU-bound: call it through ``asyncio.to_thread``, one image at a time
    (a decoded image can take a few hundred MB).

    Raises:
        ReferenceError: not an image, corrupt, too many pixels to decode safely, too big
            to download, a side of 14 px or less, or an aspect ratio outside [1/3, 3].
    """
    name = quoted_filename(filename)
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise ReferenceError(_too_many_bytes(name, len(data)), filenames=[filename])
    try:
        image = decode_image(data, max_pixels=MAX_DECODE_PIXELS)
    except ImageTooManyPixelsError as exc:
        if exc.width is not None and exc.height is not None:
            message = _too_many_pixels(name, exc.width, exc.height)
        else:
            message = f"{name} has too many pixels to open safely — make it smaller and try again."
        raise ReferenceError(message, filenames=[filename]) from exc
    except ImageCorruptError as exc:
        raise ReferenceError(
            f"{name} could not be read: the file is damaged or incomplete — save it again and attach it.",
            filenames=[filename],
        ) from exc
    except ImageDecodeError as exc:
        raise ReferenceError(f"{name} is not an image — {_WHAT_TO_ATTACH}.", filenames=[filename]) from exc

    # Camera "multi-picture" JPEGs are JPEG files with extra images appended.
    source_format = "JPEG" if image.format == "MPO" else (image.format or "")
    width, height = display_size(image)
    problem = _dimension_problem(name, width, height)
    if problem is not None:
        raise ReferenceError(problem, filenames=[filename])

    if source_format in _OUTPUT_EXTENSIONS and len(data) <= MAX_BYTES and width * height <= MAX_PIXELS:
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
    return _reencode(image, data=data, filename=filename, source_format=source_format, size=(width, height))


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
    image: Image.Image, *, data: bytes, filename: str, source_format: str, size: tuple[int, int]
) -> PreparedReference:
    """Convert and/or downscale until the image fits MAX_PIXELS and MAX_BYTES."""
    name = quoted_filename(filename)
    source_mode = image.mode
    icc_profile = image.info.get("icc_profile")
    _apply_exif_orientation(image)
    work, out_format = _for_output(image)
    # Keep the colour profile (e.g. Display P3 photos) unless the colour model changed.
    if icc_profile is not None and _colour_family(source_mode) != _colour_family(work.mode):
        icc_profile = None

    target = _fit_pixels(*work.size)
    encoded = b""
    for _ in range(_MAX_ROUNDS):
        # Always resample from the full-size image so quality does not degrade per round.
        scaled = work if target == work.size else work.resize(target, Image.Resampling.LANCZOS)
        encoded = _encode(scaled, out_format, icc_profile)
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
        raise ReferenceError(
            f"{name} could not be made small enough to use — attach a smaller image.", filenames=[filename]
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


def _apply_exif_orientation(image: Image.Image) -> None:
    """Rotate/flip the pixels as EXIF says, in place (re-encoding drops the EXIF tag)."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:
        # Broken EXIF is common; an unrotated reference beats refusing the image.
        log.debug("Ignoring unreadable EXIF orientation", exc_info=True)


def _for_output(image: Image.Image) -> tuple[Image.Image, str]:
    """The image in a mode the output format takes, and that format (PNG iff transparent)."""
    if image.mode.startswith("I;16"):
        # 16-bit greyscale: scale to 8 bits (a plain convert would clip almost all to white).
        image = image.convert("I").point(lambda v: v / 256).convert("L")
    if _has_transparency(image):
        return (image if image.mode == "RGBA" else image.convert("RGBA")), "PNG"
    return (image if image.mode in ("RGB", "L") else image.convert("RGB")), "JPEG"


def _has_transparency(image: Image.Image) -> bool:
    """True when some pixel is not fully opaque (an unused alpha channel does not count)."""
    if image.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in image.info:
        return False
    alpha = (
        image.getchannel("A") if image.mode in ("RGBA", "LA", "PA") else image.convert("RGBA").getchannel("A")
    )
    return alpha.getextrema()[0] < 255


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


def _dimension_problem(name: str, width: int, height: int) -> str | None:
    """The member-facing problem with an image of this size, or None when it is usable."""
    if min(width, height) <= MIN_SIDE_EXCLUSIVE:
        return (
            f"{name} is {width}×{height} pixels; reference images must be more than "
            f"{MIN_SIDE_EXCLUSIVE} pixels wide and tall — use a larger image."
        )
    if width > MAX_ASPECT * height or height > MAX_ASPECT * width:
        return (
            f"{name} is {width}×{height} pixels ({_ratio(width, height)}); reference images must be "
            f"between 1:{MAX_ASPECT} and {MAX_ASPECT}:1 — crop it and try again."
        )
    if width * height > MAX_DECODE_PIXELS:
        return _too_many_pixels(name, width, height)
    return None


def _too_many_pixels(name: str, width: int, height: int) -> str:
    return (
        f"{name} is {width}×{height} pixels ({width * height / 1e6:.1f} MP); the bot can shrink "
        f"reference images of up to {MAX_DECODE_PIXELS // 1_000_000} MP — make it smaller and try again."
    )


def _too_many_bytes(name: str, size: int) -> str:
    return (
        f"{name} is {format_size(size)}; the bot can only use reference images up to "
        f"{format_size(MAX_DOWNLOAD_BYTES)} — save a smaller copy and try again."
    )


def _ratio(width: int, height: int) -> str:
    """``"1:5"``, ``"3.5:1"``; never shows a refused ratio as exactly 3:1."""
    value = max(width, height) / min(width, height)
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    if float(text) <= MAX_ASPECT:
        # e.g. 3001×1000 would round to "3:1", which reads as allowed.
        return f"just wider than {MAX_ASPECT}:1" if width > height else f"just taller than 1:{MAX_ASPECT}"
    return f"{text}:1" if width > height else f"1:{text}"


def quoted_filename(filename: str) -> str:
    """The file name as shown to members: in backticks, shortened, without backticks inside."""
    name = posixpath.basename(filename.replace("\\", "/")).replace("`", "'").strip() or "attachment"
    if len(name) > _MAX_NAME_CHARS:
        name = name[: _MAX_NAME_CHARS - 1] + "…"
    return f"`{name}`"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
