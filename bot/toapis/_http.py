"""The raw HTTP answer that API calls and file downloads read into, and its size-capped reader."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp

USER_AGENT: Final = "imagine-bot"

_CHUNK_SIZE: Final = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, read in full: status, reason, headers and body."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300

    def json(self) -> object:
        """The body as JSON, or ``None`` when it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """Read the body in chunks; ``None`` when it grows beyond ``limit`` bytes."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(_CHUNK_SIZE):
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
