"""The provider's account-wide rate limits, kept on our side so that we never meet them.

ToAPIs limits every account with two token buckets (``../shared/docs/toapis-api.md`` §6):
submissions and status queries, each refilled at a steady rate up to a burst. Every key and
every process of the account draws from the same buckets, and a request over the limit is
answered 429 (it costs nothing, but it costs a member time). So the bot keeps its own copy of
each bucket, a little smaller than the provider's (`SAFETY_MARGIN`), takes a token before each
request, and corrects its copy from what the provider says: the ``X-RateLimit-Remaining`` /
``-Reset`` headers and ``Retry-After``.

Several processes of one deployment split the account's allowance by their share of the shards
(`RateLimits.share`): each process owns its shards' jobs, so its own share is all it may spend,
and together they never exceed the account's limits, with no coordination at run time.

Who gets the next token is not decided here: the submission queue and the poll scheduler ask
for tokens in their own order (`TokenBucket.take`). Discord-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from bot.toapis.models import parse_retry_after

# Our buckets are this much smaller than the provider's, in rate and in burst: clocks differ and
# a request is counted when it arrives, not when we sent it.
SAFETY_MARGIN = 0.05
# A reset time above this is a Unix time; below, seconds from now.
_EPOCH_THRESHOLD = 1_000_000_000
_EPSILON = 1e-6  # of a token


@dataclass(frozen=True)
class Allowance:
    """One bucket: `per_second` tokens refilled every second, holding at most `burst`."""

    per_second: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and self.burst >= 1):
            raise ValueError("an allowance needs a positive rate and a burst of at least 1")

    def scaled(self, factor: float) -> Allowance:
        """This allowance times `factor` (the burst never below one request)."""
        return Allowance(self.per_second * factor, max(1.0, self.burst * factor))


@dataclass(frozen=True)
class RateLimits:
    """The account's two buckets: submissions and status queries."""

    submit: Allowance
    query: Allowance

    @classmethod
    def for_group(cls, group: str) -> RateLimits:
        """The documented limits of a rate group (`default`, `vip`, `svip`)."""
        try:
            return RATE_GROUPS[group]
        except KeyError:
            raise ValueError(f"unknown rate group {group!r}: use one of {', '.join(RATE_GROUPS)}") from None

    def share(self, fraction: float) -> RateLimits:
        """The part one process may spend when it owns `fraction` of the shards (0 < fraction ≤ 1)."""
        if not 0 < fraction <= 1:
            raise ValueError("a share is a fraction in (0, 1]")
        return RateLimits(self.submit.scaled(fraction), self.query.scaled(fraction))

    def with_margin(self, margin: float = SAFETY_MARGIN) -> RateLimits:
        """These limits less a safety margin (what the bot's own buckets hold)."""
        return RateLimits(self.submit.scaled(1 - margin), self.query.scaled(1 - margin))


# ../shared/docs/toapis-api.md §6: per second, and the burst per 10 s.
RATE_GROUPS: Mapping[str, RateLimits] = {
    "default": RateLimits(Allowance(5, 50), Allowance(50, 500)),
    "vip": RateLimits(Allowance(1000 / 60, 167), Allowance(10_000 / 60, 1667)),
    "svip": RateLimits(Allowance(2000 / 60, 334), Allowance(500, 5000)),
}


@dataclass(frozen=True)
class RateLimitNotice:
    """What an answer said about a bucket (any field may be missing)."""

    remaining: int | None = None
    reset_in: float | None = None  # seconds until the provider's bucket is full again (informative)
    retry_after: float | None = None  # seconds to wait before the next request of this kind

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], *, now: float | None = None) -> RateLimitNotice:
        """Read ``X-RateLimit-Remaining``, ``X-RateLimit-Reset`` (seconds or a Unix time) and
        ``Retry-After``; anything unreadable is left out."""
        now = time.time() if now is None else now
        remaining: int | None = None
        reset_in: float | None = None
        with contextlib.suppress(ValueError):
            remaining = max(0, int(float(headers.get("X-RateLimit-Remaining", ""))))
        try:
            reset = float(headers.get("X-RateLimit-Reset", ""))
            if math.isfinite(reset) and reset >= 0:
                reset_in = max(0.0, reset - now) if reset > _EPOCH_THRESHOLD else reset
        except ValueError:
            pass
        return cls(remaining, reset_in, parse_retry_after(headers.get("Retry-After"), now=now))

    @property
    def empty(self) -> bool:
        return self.remaining is None and self.reset_in is None and self.retry_after is None


class TokenBucket:
    """Our copy of one provider bucket. Callers `take` a token before each request.

    Waiters are served in the order they asked. `hold_off` (after a 429 or Retry-After) empties
    the bucket and pauses refilling; `observe` lowers our count to what the provider reports.
    """

    def __init__(
        self,
        allowance: Allowance,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.allowance = allowance
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(allowance.burst)
        self._updated = clock()
        self._paused_until = 0.0  # no refill before this (a Retry-After)
        self._lock = asyncio.Lock()  # waiters take tokens one after another, in order
        self.taken = 0  # tokens handed out since start (for metrics)

    def _refill(self) -> None:
        now = self._clock()
        since = max(self._updated, self._paused_until)
        if now > since:
            self._tokens = min(self.allowance.burst, self._tokens + (now - since) * self.allowance.per_second)
        self._updated = max(now, self._updated)

    @property
    def tokens(self) -> float:
        """Tokens available now (fractional while refilling)."""
        self._refill()
        return self._tokens

    def wait_time(self) -> float:
        """Seconds until one token is available (0 if one is now)."""
        self._refill()
        now = self._clock()
        start = max(now, self._paused_until)
        missing = 1.0 - self._tokens
        if missing <= _EPSILON:  # rounding must not leave a waiter sleeping for nothing, forever
            missing = 0.0
        return max(0.0, start - now) + missing / self.allowance.per_second

    def try_take(self) -> bool:
        """Take a token if one is available now, without waiting (ignores waiters in line)."""
        if self.wait_time() > 0:
            return False
        self._take_one()
        return True

    async def take(self) -> None:
        """Wait for a token and take it; callers are served first come, first served."""
        async with self._lock:
            while (wait := self.wait_time()) > 0:
                await self._sleep(wait)
            self._take_one()

    def _take_one(self) -> None:
        self._tokens = max(0.0, self._tokens - 1.0) if self._tokens < 1.0 else self._tokens - 1.0
        self.taken += 1

    def give_back(self) -> None:
        """Return a token taken for a request that was never sent (the provider did not count it)."""
        self._refill()
        self._tokens = min(self.allowance.burst, self._tokens + 1.0)
        self.taken -= 1

    def hold_off(self, seconds: float) -> None:
        """The provider refused for rate: nothing left now, and no refill for `seconds`."""
        self._refill()
        self._tokens = min(self._tokens, 0.0)
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def observe(self, notice: RateLimitNotice) -> None:
        """Correct our count from the provider's headers (only ever downwards)."""
        if notice.empty:
            return
        self._refill()
        if notice.remaining is not None:
            # Our bucket is smaller than the provider's: keep our margin below what it reports.
            margin = self.allowance.burst * SAFETY_MARGIN
            self._tokens = min(self._tokens, max(0.0, notice.remaining - margin))
        if notice.retry_after is not None:
            self.hold_off(notice.retry_after)

    def in_use(self) -> float:
        """How much of the burst is spent right now, 0–1 (for metrics)."""
        return 1.0 - self.tokens / self.allowance.burst


class RateBudget:
    """Both buckets of this process: one for submissions, one for status queries."""

    def __init__(
        self,
        limits: RateLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limits = limits
        self.submit = TokenBucket(limits.submit, clock=clock, sleep=sleep)
        self.query = TokenBucket(limits.query, clock=clock, sleep=sleep)
