"""The hook where Discord's rate limits go: a policy that decides, per request, whether it is limited."""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

from .records import RecordedRequest


class RateLimitPolicy:
    """Decides rate-limit headers and 429s for every REST request, in one place.

    The default is generous (1000 requests per bucket per second) so discord.py never
    waits; a stricter policy (e.g. Discord's ~5 messages / 5 s per channel) can subclass
    this and override :meth:`limit_for`.
    """

    def __init__(self, limit: int = 1000, window: float = 1.0) -> None:
        """``limit`` requests per ``window`` seconds per bucket + major parameter."""
        self.limit = limit
        self.window = window
        self._windows: dict[str, tuple[float, int]] = {}

    def limit_for(self, request: RecordedRequest) -> tuple[int, float]:
        """``(limit, window_seconds)`` for this request's bucket (override for real limits)."""
        return self.limit, self.window

    @staticmethod
    def bucket(request: RecordedRequest) -> str:
        """A stable bucket hash per route template, like Discord's ``X-RateLimit-Bucket``."""
        key = f"{request.method} {request.route or request.path}"
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    @staticmethod
    def major(request: RecordedRequest) -> str:
        """Discord's major parameters (channel, guild, webhook) for this request."""
        p = request.params
        parts = [
            p.get(k) for k in ("channel_id", "guild_id", "webhook_id", "webhook_token", "interaction_id")
        ]
        return "+".join(x for x in parts if x)

    def decide(self, request: RecordedRequest) -> tuple[dict[str, Any] | None, dict[str, str]]:
        """Return ``(429 body or None, headers)`` and count the request in its window."""
        limit, window = self.limit_for(request)
        bucket = self.bucket(request)
        key = f"{bucket}:{self.major(request)}"
        now = request.at
        start, count = self._windows.get(key, (now, 0))
        if now - start >= window:
            start, count = now, 0
        reset_after = max(window - (now - start), 0.001)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        }
        if count >= limit:
            headers.update(
                {
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Scope": "user",
                    "Retry-After": str(math.ceil(reset_after)),
                }
            )
            body = {
                "message": "You are being rate limited.",
                "retry_after": round(reset_after, 3),
                "global": False,
            }
            return body, headers
        self._windows[key] = (start, count + 1)
        headers["X-RateLimit-Remaining"] = str(limit - count - 1)
        return None, headers
