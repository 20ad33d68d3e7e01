"""Signed webhook requests: the signing secrets and the signature check ToAPIs documents.

ToAPIs signs each delivery with HMAC-SHA256 over `event_id + "." + timestamp + "." + raw_body`
and sends the hex digest as `X-ToAPIs-Webhook-Signature: v1=<hex>[,v1=<hex>]` (two values for
24 hours after the secret is rotated in its console). A request is genuine when any `v1=` value
matches a digest made with any secret the bot holds, compared in constant time, and its
timestamp is within five minutes of the local clock (an old, captured request cannot be
replayed later).

The console gives a 32-byte secret. The documentation does not say whether the HMAC key is
those 32 bytes or the text the console shows, so a signature made with either is accepted:
both come from the one secret, and a forger needs it either way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "WEBHOOK_ID_HEADER",
    "SignatureError",
    "SigningSecret",
    "parse_signing_secret",
    "verify_signature",
]

WEBHOOK_ID_HEADER = "X-ToAPIs-Webhook-Id"
TIMESTAMP_HEADER = "X-ToAPIs-Webhook-Timestamp"
SIGNATURE_HEADER = "X-ToAPIs-Webhook-Signature"
TOLERANCE_SECONDS = 5 * 60
SECRET_BYTES = 32
# Some consoles show secrets with a prefix saying what they are; it is not part of the key.
_PREFIX = "whsec_"


@dataclass(frozen=True)
class SigningSecret:
    """One signing secret, with the HMAC keys it stands for. Never shown in a repr or a log."""

    keys: tuple[bytes, ...] = field(repr=False)
    # How the secret may be written (as typed, without its prefix, in hex): what the log scrubs.
    texts: tuple[str, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        return "SigningSecret(…)"


def parse_signing_secret(text: str) -> SigningSecret:
    """Read a 32-byte secret written as 64 hex characters or as base64 (standard or URL-safe,
    padded or not), with an optional `whsec_` prefix.

    Raises ValueError with a message that never contains the secret.
    """
    value = text.strip()
    encoded = value.removeprefix(_PREFIX)
    decoded = _decode(encoded)
    if decoded is None or len(decoded) != SECRET_BYTES:
        raise ValueError(
            f"expected the {SECRET_BYTES}-byte secret from the ToAPIs console, written as 64 hex "
            "characters or in base64 (a whsec_ prefix is allowed)"
        )
    # The decoded bytes, then the text as shown (see the module docstring), without duplicates.
    keys = tuple(dict.fromkeys((decoded, value.encode(), encoded.encode())))
    texts = tuple(dict.fromkeys((value, encoded, decoded.hex())))
    return SigningSecret(keys=keys, texts=texts)


def _decode(encoded: str) -> bytes | None:
    if len(encoded) == 2 * SECRET_BYTES:
        try:
            return bytes.fromhex(encoded)
        except ValueError:
            pass
    padded = encoded + "=" * (-len(encoded) % 4)
    for alphabet in (b"+/", b"-_"):
        try:
            return base64.b64decode(padded, altchars=alphabet, validate=True)
        except (binascii.Error, ValueError):
            continue
    return None


class SignatureError(Exception):
    """A delivery that is not provably from ToAPIs. `status` is the HTTP answer: 400 for a
    malformed request, 401 for a signature or timestamp that does not hold. `reason` is short
    and safe to log (it never holds a secret or a signature)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _signatures(header: str) -> list[bytes]:
    """The `v1=` values of the signature header (other schemes are ignored), lower-cased."""
    found: list[bytes] = []
    for part in header.replace(" ", ",").split(","):
        scheme, sep, value = part.strip().partition("=")
        if sep and scheme == "v1" and value:
            found.append(value.strip().lower().encode("ascii", "replace"))
    return found


def verify_signature(
    secrets: Sequence[SigningSecret],
    *,
    event_id: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance: float = TOLERANCE_SECONDS,
) -> None:
    """Raise `SignatureError` unless the delivery is signed by one of `secrets` and is fresh."""
    if not event_id or not timestamp or not signature:
        raise SignatureError(400, "a webhook header is missing")
    try:
        sent_at = int(timestamp.strip())
    except ValueError:
        raise SignatureError(400, "the timestamp header is not a number") from None
    if abs(now - sent_at) > tolerance:
        raise SignatureError(401, "the timestamp is more than 5 minutes from the local clock")
    offered = _signatures(signature)
    if not offered:
        raise SignatureError(401, "no v1 signature")
    signed = event_id.encode() + b"." + timestamp.encode() + b"." + body
    matched = False
    for secret in secrets:
        for key in secret.keys:
            expected = hmac.new(key, signed, hashlib.sha256).hexdigest().encode()
            for candidate in offered:
                # Every comparison runs (no early exit), each in constant time.
                matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError(401, "the signature does not match the signing secret")
