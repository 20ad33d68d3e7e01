"""Small text helpers shared by every message the bot writes (one copy of each)."""

from __future__ import annotations

from pathlib import Path

MESSAGE_LIMIT = 2000  # Discord's limit on a message's content, in characters


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``"1 image"``, ``"3 images"``; `many` for irregular plurals (``plural(2, "entry", "entries")``)."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…"


def byte_size(n: int) -> str:
    """A byte count in decimal units: ``"512 bytes"``, ``"87.2 kB"``, ``"12.3 MB"``.

    kB = 1,000 bytes and MB = 1,000,000 bytes (SI), matching how the numbers are labelled.
    """
    if n < 1000:
        return f"{n} bytes"
    if n < 1_000_000:
        return f"{n / 1000:.1f} kB"
    return f"{n / 1_000_000:.1f} MB"


def limit_size(n: int) -> str:
    """A limit set in binary units, as a whole number: ``50 * 1024 * 1024`` reads ``"50 MB"``.

    Limits are written in binary units (Discord's are); :func:`byte_size` would print such a
    limit as ``"52.4 MB"``, which reads like a different number from the one documented.
    """
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.0f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n} bytes"


def relative_time(when: float) -> str:
    """Discord's timestamp markup that shows `when` (Unix seconds) as "in 5 minutes" / "2 hours ago"."""
    return f"<t:{int(when)}:R>"


class UnreadableFileError(Exception):
    """A file the operator named cannot be read as UTF-8 text; ``str()`` says why, plainly."""


def read_text_file(path: Path) -> str:
    """The UTF-8 text of an operator's file (the model catalog, the blocklist), or why not."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UnreadableFileError("file not found") from None
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(f"not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise UnreadableFileError(f"cannot read the file ({exc.strerror or exc})") from None
