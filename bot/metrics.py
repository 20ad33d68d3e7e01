"""A small health monitor: event-loop lag and memory, logged as one line every few seconds.

Enabled by METRICS_LOG_SECONDS. The line is stable and easy to parse:

    metrics loop_lag_p99_ms=12.3 loop_lag_max_ms=45.6 rss_mb=123.4 peak_rss_mb=130.2 jobs_running=17
        jobs_waiting=40 submit_budget_used=0.95 query_budget_used=0.12 submit_429s=0

(on one line; the queue and budget figures appear when the bot has them). `jobs_waiting` is the
submission queue's length, `*_budget_used` how much of each provider bucket's burst is spent
right now (0–1), `submit_429s` the provider's 429s on submissions since start.

Loop lag is how late a timer fires compared with when it was due (a blocked event
loop delays every job); the figures are cumulative since start.
"""

from __future__ import annotations

import asyncio
import bisect
import ctypes
import ctypes.util
import logging
import resource
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.jobs.queue import SubmitQueue
    from bot.toapis.budget import RateBudget

log = logging.getLogger(__name__)

TICK = 0.05  # how often the loop is probed
# Lag histogram bucket edges in milliseconds (fixed memory however long the bot runs).
_EDGES = [0.5 * 1.25**i for i in range(48)]


def memory_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB."""
    try:
        fields = dict(
            line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line
        )
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak


def keep_large_buffers_out_of_the_heap() -> bool:
    """Ask glibc to give every buffer over 128 KiB its own mapping, returned to the system when freed.

    By default glibc raises that threshold as large blocks are freed, so multi-megabyte image
    buffers end up in the heap and fragment it: RSS then only grows. Best effort (glibc only);
    True if applied.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024))
    except (OSError, AttributeError):
        return False


_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h


class LoopLagMonitor:
    """Measures event-loop lag and logs the metrics line every `every` seconds."""

    def __init__(
        self,
        every: float,
        *,
        jobs_running: Callable[[], int] = lambda: 0,
        observe: Callable[[float], None] | None = None,
        queue: SubmitQueue | None = None,
        budget: RateBudget | None = None,
    ) -> None:
        """`every` 0 logs nothing (the lag is still measured, e.g. for `observe`, which gets each
        sample in seconds: the Prometheus histogram)."""
        self._every = every
        self._jobs_running = jobs_running
        self._observe = observe
        self._queue = queue
        self._budget = budget
        self._counts = [0] * (len(_EDGES) + 1)
        self._samples = 0
        self._max_ms = 0.0

    def record(self, lag_ms: float) -> None:
        self._counts[bisect.bisect_left(_EDGES, lag_ms)] += 1
        self._samples += 1
        self._max_ms = max(self._max_ms, lag_ms)
        if self._observe is not None:
            self._observe(lag_ms / 1000)

    def percentile(self, fraction: float) -> float:
        """Upper edge of the bucket holding the given fraction of samples (ms)."""
        if not self._samples:
            return 0.0
        wanted = fraction * self._samples
        seen = 0
        for index, count in enumerate(self._counts):
            seen += count
            if seen >= wanted:
                return _EDGES[index] if index < len(_EDGES) else self._max_ms
        return self._max_ms

    def line(self) -> str:
        rss, peak = memory_mb()
        text = (
            f"metrics loop_lag_p99_ms={self.percentile(0.99):.1f} loop_lag_max_ms={self._max_ms:.1f} "
            f"rss_mb={rss:.1f} peak_rss_mb={peak:.1f} jobs_running={self._jobs_running()}"
        )
        if self._queue is not None:
            text += f" jobs_waiting={len(self._queue)}"
        if self._budget is not None:
            text += (
                f" submit_budget_used={self._budget.submit.in_use():.2f}"
                f" query_budget_used={self._budget.query.in_use():.2f}"
            )
        if self._queue is not None:
            text += f" submit_429s={self._queue.rate_limited}"
        return text

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_log = loop.time() + self._every
        while True:
            due = loop.time() + TICK
            await asyncio.sleep(TICK)
            now = loop.time()
            self.record(max(0.0, now - due) * 1000)
            if self._every > 0 and now >= next_log:
                log.info("%s", self.line())
                next_log = now + self._every
