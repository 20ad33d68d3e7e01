"""When to poll a task next: slowly while its finish is far, quickly around it, never more than advised.

The provider advises polling every 2–3 s while a task is queued and every 3–5 s while it
runs. Polling on a fixed beat finds a finished task 1.5–2.5 s late on average. The
planner keeps a *budget* — the number of polls the advice's fastest beat would have
made by now (`queued_seconds / 2 + running_seconds / 3`) — and spends it where it
matters: it polls at the slow end of the advice while the expected finish is far off,
saving budget, and spends the savings polling every ~0.5 s around the expected finish.

The expected finish comes from the task's own progress (the rate it has been climbing
at), or, before there is any, from how long recent tasks of the same model took.
All times are seconds on one monotonic clock. Discord-free and I/O-free.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PollAdvice:
    """The provider's advice, scaled by the configured intervals (defaults: 2–3 s queued, 3–5 s running)."""

    queued_fast: float = 2.0
    queued_slow: float = 3.0
    running_fast: float = 3.0
    running_slow: float = 5.0
    near: float = 0.5  # the beat around the expected finish

    @classmethod
    def around(cls, queued: float, running: float) -> PollAdvice:
        """From the middle of each advised range (POLL_INTERVAL_*_SECONDS: 2.5 and 4 by default)."""
        return cls(queued * 0.8, queued * 1.2, running * 0.75, running * 1.25, running / 8)


class ModelDurations:
    """How long recent tasks of each model took (submission to completion), for first guesses."""

    def __init__(self, keep: int = 50) -> None:
        self._keep = keep
        self._seen: dict[str, deque[float]] = {}

    def add(self, model: str, seconds: float) -> None:
        self._seen.setdefault(model, deque(maxlen=self._keep)).append(seconds)

    def typical(self, model: str) -> float | None:
        seen = self._seen.get(model)
        return statistics.median(seen) if seen and len(seen) >= 3 else None


@dataclass
class PollPlanner:
    """Plans the polls of one task. Call `observe` after every status, then `next_poll_at`."""

    started: float
    advice: PollAdvice = field(default_factory=PollAdvice)
    typical_duration: float | None = None
    _phase: str = "queued"
    _last: float | None = None
    _allowance: float = 0.0  # polls the advice would have made so far
    _polls: int = 0
    _first: tuple[float, int] | None = None  # first progress reading above 0: (time, percent)
    _latest: tuple[float, int] | None = None

    def observe(self, now: float, status: str, progress: int | None, *, polled: bool = True) -> None:
        """Record a status seen at `now` (`polled=False` for the submission's own answer)."""
        since = self._last if self._last is not None else self.started
        fastest = self.advice.queued_fast if self._phase == "queued" else self.advice.running_fast
        self._allowance += max(0.0, now - since) / fastest
        self._last = now
        self._polls += polled
        self._phase = "queued" if status == "queued" else "running"
        if self._phase == "running" and progress:
            if self._first is None:
                self._first = (now, progress)
            if self._latest is None or progress > self._latest[1]:
                self._latest = (now, progress)

    def expected_finish(self) -> tuple[float, float] | None:
        """(when the task should finish, how unsure that is), or None without a clue."""
        if self._first and self._latest and self._latest[1] > self._first[1]:
            (t0, p0), (t1, p1) = self._first, self._latest
            rate = (p1 - p0) / (t1 - t0)  # percent per second
            step = min(10.0, p1 - p0)  # progress arrives in steps; one step is the uncertainty
            return t1 + (100 - p1) / rate, max(self.advice.near, min(step / rate, 8.0))
        if self.typical_duration is not None:
            return self.started + self.typical_duration, max(2 * self.advice.near, self.typical_duration / 5)
        return None

    def next_poll_at(self, now: float) -> float:
        """When to poll next: the wanted moment, delayed if the budget is spent."""
        queued = self._phase == "queued"
        slow = self.advice.queued_slow if queued else self.advice.running_slow
        fastest = self.advice.queued_fast if queued else self.advice.running_fast
        expected = None if queued else self.expected_finish()
        if expected is None:
            wanted = now + (self.advice.queued_fast + slow) / 2 if queued else now + (fastest + slow) / 2
        else:
            finish, unsure = expected
            wanted = now + self.advice.near if now >= finish - unsure else min(now + slow, finish - unsure)
        # The budget grows by one poll per `fastest` seconds; never get ahead of it.
        short = self._polls + 1 - self._allowance
        affordable = now + max(0.0, short) * fastest
        return max(wanted, affordable, now + self.advice.near / 2)
