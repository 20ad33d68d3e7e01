"""When to poll a task next: slowly while its finish is far, quickly around it, never more than advised.

The provider advises polling every 2–3 s while a task is queued and every 3–5 s while it
runs. The most polls that advice allows are those of a *greedy* poller: it polls as early
as allowed after every look — 2 s after one that showed `queued`, 3 s after one that
showed `in_progress`, the submission's answer being the first look — until a poll sees the
task finished, that poll included.

The rule: the planner never makes its k-th poll before the greedy poller's k-th poll.
That keeps it within the greedy count: if our N-th poll is the first to see the task
finished, our (N−1)-th did not, so the task finished after it — after the greedy poller's
(N−1)-th poll too, which therefore did not see it either: the greedy poller makes at least
N polls. Within the rule the planner polls at the slow end of the advice while the
expected finish is far off, falling behind the greedy poller, and spends that lead as the
finish nears: the polls the rule allows by the expected finish, spread over the time left
(every 0.5 s at the most often), then every 0.5 s as far as the rule lets it.

The greedy timeline depends on when the task stopped being queued, which the looks only
bound. The planner takes the earliest moment they allow — right after the last look that
showed `queued` — as that puts every greedy poll at its latest: the slower running beat
starts soonest (this needs the queued beat to be the faster one, as the provider has it).
Times count from `started`, when the bot learned of the submission, which is after the
provider created the task; a poll is dated by when it was planned for, less a margin for
clock drift, and it reaches the provider after that. So each time the planner reckons
with is at most the provider's, and request latency or a late poll can only leave the
provider seeing fewer polls than the rule allows.

The expected finish comes from the task's own progress (the rate it has been climbing
at), or, before there is any, from how long recent tasks of the same model took.
All times are seconds on one clock. Discord-free and I/O-free.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

MARGIN = 0.05  # seconds a poll is kept behind the greedy poller, for clock drift and rounding


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
    """Plans the polls of one task. Call `observe` after every look, then `next_poll_at`.

    The caller must not poll before the time `next_poll_at` returned.
    """

    started: float
    advice: PollAdvice = field(default_factory=PollAdvice)
    typical_duration: float | None = None
    _queued: bool = True  # what the last look showed, for the advised beat
    _queued_seen: float | None = None  # the latest look known to have shown `queued` (since `started`)
    _polls: int = 0
    _due: float | None = None  # when the poll being waited for was planned
    _first: tuple[float, int] | None = None  # first progress reading above 0: (time, percent)
    _latest: tuple[float, int] | None = None

    def observe(self, now: float, status: str | None, progress: int | None, *, polled: bool = True) -> None:
        """Record a look answered at `now`.

        `polled=False` for the submission's own answer; `status=None` for a poll that got no
        answer (it still counts).
        """
        if polled:
            self._polls += 1
            # Sent no sooner than planned (a poll planned for nothing is dated at the start).
            looked = (self._due if self._due is not None else self.started) - self.started - MARGIN
        else:
            looked = 0.0  # the submission's answer shows the task as it was created
        if status is None:
            return
        self._queued = status == "queued"
        if self._queued:  # (a task seen queued at all was queued when it was created)
            self._queued_seen = max(self._queued_seen or 0.0, looked)
        elif progress:
            if self._first is None:
                self._first = (now, progress)
            if self._latest is None or progress > self._latest[1]:
                self._latest = (now, progress)

    def expected_finish(self) -> tuple[float, float] | None:
        """(when the task should finish, how unsure that is), or None without a clue."""
        if self._first and self._latest and self._latest[1] > self._first[1]:
            (t0, p0), (t1, p1) = self._first, self._latest
            rate = (p1 - p0) / (t1 - t0)  # percent per second
            step = min(10.0, p1 - p0)  # progress arrives in steps: unsure by most of one (tuned)
            return t1 + (100 - p1) / rate, max(self.advice.near, min(0.75 * step / rate, 8.0))
        if self.typical_duration is not None:
            return self.started + self.typical_duration, max(2 * self.advice.near, self.typical_duration / 5)
        return None

    def _greedy_step(self, at: float) -> float:
        """The greedy poller's wait after a look at `at` (seconds since `started`), at the longest:
        the queued beat only while the task is known to have been queued."""
        queued = self._queued_seen is not None and at <= self._queued_seen
        return self.advice.queued_fast if queued else self.advice.running_fast

    def _greedy_poll(self, k: int) -> float:
        """When the greedy poller makes its k-th poll, in seconds since `started`, at the latest."""
        at = 0.0
        for _ in range(k):
            at += self._greedy_step(at)
        return at

    def _greedy_polls(self, elapsed: float) -> int:
        """How many polls the greedy poller has made `elapsed` seconds after `started`, at the least."""
        at, count = self._greedy_step(0.0), 0
        while at <= elapsed:
            at, count = at + self._greedy_step(at), count + 1
        return count

    def next_poll_at(self, now: float) -> float:
        """When to poll next: the wanted moment, or later if the greedy poller is not that far yet."""
        slow = self.advice.queued_slow if self._queued else self.advice.running_slow
        fastest = self.advice.queued_fast if self._queued else self.advice.running_fast
        expected = None if self._queued else self.expected_finish()
        if expected is None:
            wanted = now + (fastest + slow) / 2
        else:
            finish, unsure = expected
            if now < finish - unsure:
                wanted = min(now + slow, finish - unsure)
            else:  # the polls the rule allows until the expected finish, spread over the time left
                spare = self._greedy_polls(finish - self.started) - self._polls
                wanted = now + max(self.advice.near, (finish - now) / max(1, spare))
        allowed = self.started + self._greedy_poll(self._polls + 1) + MARGIN
        self._due = max(wanted, allowed)
        return self._due
