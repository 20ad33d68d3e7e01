"""When to ask for a task's status next: never sooner than the provider advises, and where it helps.

The provider's advice (``../shared/docs/toapis-api.md`` §2): the first status query 5 s after
submitting, then no faster than every 5–10 s, with random jitter. `PollRules.floor_*` is that
5 s (an operator may raise it, never lower it); it is a hard rule here: the planner never
plans a query sooner than the floor after the *answer* to the previous query of the task (or
after the submission's answer), and an answer comes after the provider counted the query, so
the provider never sees two queries of one task closer than the floor — however late a query
actually went out, the next one is planned from when its answer came.

Within that rule the planner spends queries where they help. A task's progress climbs from
the moment it leaves the queue (`q`) to its finish (`q + r`); each answer bounds both: it
showed `p` % at a moment between sending and answering, and progress comes in steps of `g` %
(read from the values seen), so `q + r·p/100` was before the answer and `q + r·(p+g)/100`
after the query went out. Those bounds cut out a convex region of possible (`q`, `r`), and
with it the earliest and latest possible finish. The planner then either

* **aims**: asks just after the latest possible finish, so the query sees the task completed
  (detection lag: how far the finish was from that latest moment), or
* **probes**: asks at the moment whose answer, whatever it shows, narrows the finish the most
  (a step boundary), when that promises a smaller lag than aiming now — and, while the finish
  is far, asks only at the slow end of the advice (every 7.5–10 s), saving queries.

The first query goes as soon as the advice allows: the progress it shows says more than any
guess. Without progress (a queued task, a model that reports none) the guess is how long recent
tasks of the same model took (`ModelDurations`). After a refusal for rate (429) or a
failed query the gap doubles per failure, and a `Retry-After` is honoured.

Webhook mode: the provider calls webhooks its primary signal, so with webhooks configured a
task is queried only rarely — about a minute after submission, then every minute, plus once
shortly after its expected finish — as a safety net.

All times are seconds on one clock (the runner's). Discord-free and I/O-free.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import statistics
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.toapis.budget import TokenBucket

# The provider's advice: never two status queries of one task closer than this (seconds).
ADVISED_FLOOR = 5.0
# Kept on top of the floor for clock drift and rounding: our clock and the provider's may differ
# by a few parts in ten thousand over a gap.
FLOOR_MARGIN = 0.02
_LONGEST = 24 * 3600.0  # seconds: the widest a task's timeline is assumed to be
_CANDIDATES = 9  # probe moments weighed per plan
# Progress cannot have started long before the bot learned of the submission: the task was
# created after the submission went out, a moment (a round trip) before its answer came.
_SUBMIT_SLACK_SHARE = 0.02  # of the floor: 0.1 s at 5 s


@dataclass(frozen=True)
class PollRules:
    """The floors and beats of polling, all derived from the floor so tests can shrink them together."""

    queued_floor: float = ADVISED_FLOOR  # least gap after a look that showed the task waiting
    running_floor: float = ADVISED_FLOOR  # least gap after a look that showed it running
    slow_factor: float = 2.0  # the slow end of the advice: 5–10 s
    jitter_share: float = 0.1  # probes get up to this share of the floor as random jitter
    aim_share: float = 0.04  # an aimed query goes this share of the floor after the latest finish
    webhook_factor: float = 12.0  # with webhooks: one query a minute

    @classmethod
    def from_intervals(cls, queued: float, running: float) -> PollRules:
        """From POLL_INTERVAL_QUEUED_SECONDS / POLL_INTERVAL_RUNNING_SECONDS (the two floors)."""
        return cls(queued_floor=queued, running_floor=running)

    def floor(self, queued: bool) -> float:
        return self.queued_floor if queued else self.running_floor

    @property
    def base(self) -> float:
        """The larger floor: the unit the other beats are measured in."""
        return max(self.queued_floor, self.running_floor)

    @property
    def webhook_interval(self) -> float:
        return self.base * self.webhook_factor


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


Vertex = tuple[float, float]  # (q, r): when progress started, how long it runs to 100 %


def clip(polygon: list[Vertex], a: float, b: float, c: float) -> list[Vertex]:
    """The part of a convex polygon where a·q + b·r ≤ c (Sutherland–Hodgman against one line)."""
    kept: list[Vertex] = []
    count = len(polygon)
    for index in range(count):
        p, n = polygon[index], polygon[(index + 1) % count]
        pv, nv = a * p[0] + b * p[1] - c, a * n[0] + b * n[1] - c
        if pv <= 0:
            kept.append(p)
        if (pv < 0 < nv) or (nv < 0 < pv):
            share = pv / (pv - nv)
            kept.append((p[0] + share * (n[0] - p[0]), p[1] + share * (n[1] - p[1])))
    return kept


def _area(polygon: list[Vertex]) -> float:
    """The area of a polygon (shoelace)."""
    count = len(polygon)
    twice = sum(
        polygon[i][0] * polygon[(i + 1) % count][1] - polygon[(i + 1) % count][0] * polygon[i][1]
        for i in range(count)
    )
    return abs(twice) / 2


@dataclass(frozen=True)
class Look:
    """One answer about the task: sent at `sent`, answered at `answered`."""

    sent: float
    answered: float
    queued: bool
    progress: int | None


def _constraints(look: Look, step: int) -> list[tuple[float, float, float]]:
    """The half-planes a·q + b·r ≤ c a look puts on (q, r)."""
    if look.queued:
        return [(-1.0, 0.0, -look.sent)]  # still waiting when the query went out: q ≥ sent
    # Running when answered (q ≤ answered), unfinished when sent (q + r ≥ sent).
    cuts = [(1.0, 0.0, look.answered), (-1.0, -1.0, -look.sent)]
    if look.progress is not None:
        p = max(0, min(99, look.progress))
        cuts.append((1.0, p / 100, look.answered))  # reached p % before the answer
        upper = min(100, p + step)
        cuts.append((-1.0, -upper / 100, -look.sent))  # not yet p+step % when sent
    return cuts


def _step_of(progresses: list[int]) -> int:
    """The step progress comes in: the coarsest of 20/10/5/1 % that divides every value seen."""
    for step in (20, 10, 5):
        if all(p % step == 0 for p in progresses):
            return step
    return 1


@dataclass
class PollPlanner:
    """Plans the status queries of one task. Feed it every look, then ask `next_query_at`.

    `started` is when the submission's answer came (the task existed by then). The caller must
    not query before `next_query_at()`; a late query is fine (the next is planned from its answer).
    """

    started: float
    rules: PollRules = field(default_factory=PollRules)
    typical_duration: float | None = None
    rng: Callable[[], float] = random.random
    webhooks: bool = False  # query rarely: webhooks are expected to say when the task is done
    queries: int = 0  # status queries answered or attempted for this task
    _looks: list[Look] = field(default_factory=list)
    _region: list[Vertex] | None = None  # possible (q, r), None before any progress
    _step: int = 20
    _queued: bool = True  # what the latest look showed
    _last: float | None = None  # when the latest query was answered (or given up on)
    _failures: int = 0  # queries in a row that got no status
    _hold_until: float = 0.0  # Retry-After
    _finish_checked: bool = False  # webhook mode: the query after the expected finish was made
    _planned: float | None = None

    # ---------------------------------------------------------------- what was seen

    def observe(self, sent: float, answered: float, status: str | None, progress: int | None) -> None:
        """A look at the task: a query sent at `sent` and answered at `answered`, or the
        submission's answer / a published event (`sent == answered`, no query)."""
        if status is None:
            return
        self._failures = 0
        if status in ("completed", "failed"):
            return
        queued = status in ("queued", "submitted")
        self._queued = queued and self._region is None
        look = Look(sent, answered, queued, progress if not queued else None)
        self._looks.append(look)
        if not queued and progress is not None and progress > 0:
            step = _step_of([lk.progress for lk in self._looks if lk.progress])
            if step != self._step:
                self._step = step
                self._rebuild()
                return
        self._cut(look)

    def queried(self, sent: float, answered: float, status: str | None, progress: int | None) -> None:
        """A status query made at `sent`, answered (or given up on) at `answered`; `status` None
        when it got no status (an error: the next gap doubles)."""
        self.queries += 1
        self._last = answered
        if self.webhooks and self._planned_finish_check(sent):
            self._finish_checked = True
        if status is None:
            self._failures += 1
        self.observe(sent, answered, status, progress)

    def refused(self, answered: float, retry_after: float | None) -> None:
        """The query was refused for rate (429): wait at least `retry_after`, and back off."""
        if retry_after is not None:
            self._hold_until = max(self._hold_until, answered + retry_after)

    def _cut(self, look: Look) -> None:
        if self._region is None and (look.queued or look.progress is None):
            return  # nothing to go by before a progress value
        if self._region is None:
            self._region = self._box()
            for earlier in self._looks[:-1]:
                self._region = self._apply(self._region, earlier)
        self._region = self._apply(self._region, look)
        if not self._region:  # the task does not move as the model says: keep the latest bounds only
            self._region = self._apply(self._box(), look)

    def _rebuild(self) -> None:
        region = self._box()
        for look in self._looks:
            trial = self._apply(region, look)
            region = trial or self._apply(self._box(), look)
        self._region = region

    def _box(self) -> list[Vertex]:
        low, high = self.started - _SUBMIT_SLACK_SHARE * self.rules.base, self.started + _LONGEST
        short = 0.01
        return [(low, short), (high, short), (high, _LONGEST), (low, _LONGEST)]

    def _apply(self, region: list[Vertex], look: Look) -> list[Vertex]:
        for a, b, c in _constraints(look, self._step):
            region = clip(region, a, b, c)
            if not region:
                break
        return region

    # ---------------------------------------------------------------- what to expect

    def finish_range(self) -> tuple[float, float] | None:
        """(earliest, latest) possible finish from the progress seen, or None before any."""
        if not self._region:
            return None
        ends = [q + r for q, r in self._region]
        return min(ends), max(ends)

    def expected_finish(self) -> float | None:
        """The best guess of when the task finishes (None without a clue): for the scheduler's order."""
        span = self.finish_range()
        if span is not None:
            return (span[0] + span[1]) / 2
        if self.typical_duration is not None:
            return self.started + self.typical_duration
        return None

    def earliest(self) -> float:
        """The soonest the next query may go: the floor after the last answer, more after failures."""
        last = self._last if self._last is not None else self.started
        gap = self.rules.floor(self._queued) + FLOOR_MARGIN
        if self._failures:
            gap = max(gap, min(self.rules.base * 2**self._failures, self.rules.webhook_interval))
        return max(last + gap, self._hold_until)

    # ---------------------------------------------------------------- when to ask

    def next_query_at(self) -> float:
        """When to query next (never before `earliest()`)."""
        earliest = self.earliest()
        plan = self._webhook_plan(earliest) if self.webhooks else self._plan(earliest)
        self._planned = max(earliest, plan)
        return self._planned

    def _jitter(self, share: float = 1.0) -> float:
        return self.rng() * self.rules.jitter_share * self.rules.base * share

    def _plan(self, earliest: float) -> float:
        last = self._last if self._last is not None else self.started
        slow = self.rules.slow_factor * self.rules.floor(self._queued)
        span = self.finish_range()
        if span is None:
            if self._last is None:
                # The first look as soon as the advice allows: the progress it shows says more
                # than any guess.
                return earliest + self._jitter()
            # No progress to go by: the model's typical duration, else the middle of the advice.
            if self.typical_duration is not None:
                aim = self.started + self.typical_duration + self.rules.aim_share * self.rules.base
                return min(max(earliest, aim), last + slow) + self._jitter(0.25)
            return min(earliest + (slow - self.rules.floor(self._queued)) / 2, last + slow) + self._jitter()
        low, high = span
        margin = self.rules.aim_share * self.rules.base
        aim = high + margin * (1 + self.rng())
        if aim <= earliest:
            return earliest + self._jitter(0.25)  # it may be finished already: ask as soon as allowed
        floor = self.rules.running_floor
        if low - floor > last + slow + floor:
            # Far off: one query at the slow end of the advice, where it narrows the finish most.
            best = self._best_probe(max(earliest, last + 0.75 * slow), last + slow, floor, margin)
            return (best[1] if best else last + slow) + self._jitter()
        best = self._best_probe(earliest, min(last + slow, high), floor, margin)
        if best is not None and best[0] < aim - (low + high) / 2 + 0.1 * floor:
            return best[1] + self._jitter(0.25)
        return aim

    def _best_probe(
        self, start: float, end: float, floor: float, margin: float
    ) -> tuple[float, float] | None:
        """(expected detection lag after it, moment) of the most telling query in [start, end]."""
        if end < start or not self._region:
            return None
        best: tuple[float, float] | None = None
        count = 1 if end - start < 1e-6 else _CANDIDATES
        for index in range(count):
            at = start + (end - start) * index / max(1, count - 1)
            lag = self._lag_after(at, floor, margin)
            # Ties go to the later moment: fewer queries for the same knowledge.
            if best is None or lag <= best[0] + 1e-9:
                best = (lag, at)
        return best

    def _lag_after(self, at: float, floor: float, margin: float) -> float:
        """How late, on average, the finish is seen if the next query goes at `at`, then an aimed one
        (each answer it may get weighed by its share of the possible timelines)."""
        assert self._region is not None
        fractions = [(at - q) / r for q, r in self._region]
        low_f, high_f = min(fractions), max(fractions)
        total, weighted = 0.0, 0.0
        if high_f >= 1.0:  # it may be done by then: seen at `at`
            finished = clip(self._region, 1.0, 1.0, at)
            if len(finished) >= 3:
                ends = [q + r for q, r in finished]
                share = _area(finished)
                total += share
                weighted += share * (at - (min(ends) + max(ends)) / 2)
        step = self._step
        first = max(0, math.floor(max(0.0, low_f) * 100 / step))
        last = min(100 // step - 1, math.floor(min(0.9999, high_f) * 100 / step))
        for k in range(first, last + 1):
            look = Look(at, at, False, k * step)
            region = self._apply(self._region, look)
            if len(region) < 3:
                continue
            ends = [q + r for q, r in region]
            share = _area(region)
            seen = max(at + floor, max(ends) + margin)
            total += share
            weighted += share * (seen - (min(ends) + max(ends)) / 2)
        return weighted / total if total > 0 else math.inf

    def _planned_finish_check(self, sent: float) -> bool:
        expected = self._expected_for_webhooks()
        return expected is not None and sent >= expected

    def _expected_for_webhooks(self) -> float | None:
        span = self.finish_range()
        if span is not None:
            return span[1] + self.rules.base
        if self.typical_duration is not None:
            return self.started + self.typical_duration + self.rules.base
        return None

    def _webhook_plan(self, earliest: float) -> float:
        """Once a minute from the submission, and once shortly after the expected finish."""
        interval = self.rules.webhook_interval
        last = self._last if self._last is not None else self.started
        ticks = math.floor((last - self.started) / interval) + 1
        tick = self.started + ticks * interval
        check = None if self._finish_checked else self._expected_for_webhooks()
        if check is not None and check < tick:
            return max(earliest, check) + self._jitter(0.25)
        return max(earliest, tick) + self._jitter()


class PollScheduler:
    """Grants status-query turns within the query budget; when tokens are short, the tasks most
    likely finished go first.

    A job asks for a turn once its planner's moment has come (`turn`); with a token at hand the
    turn is granted at once, otherwise the waiting jobs are served as tokens come, by priority: the
    earliest expected finish first (the furthest past it is the likeliest done). Granting later
    never shortens a task's next gap: its planner counts the floor from the answer.
    """

    def __init__(
        self,
        bucket: TokenBucket | None,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._bucket = bucket
        self._sleep = sleep
        self._waiting: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._dispatcher: asyncio.Task[None] | None = None
        self.granted = 0  # turns given (status queries made)
        self.waited = 0  # turns that had to wait for a token

    @property
    def waiting(self) -> int:
        """Jobs waiting for a token now."""
        return sum(not future.done() for _, _, future in self._waiting)

    async def turn(self, priority: float) -> None:
        """Wait for a query token; a lower `priority` (an earlier expected finish) is served first."""
        bucket = self._bucket
        if bucket is None or (not self._waiting and bucket.try_take()):
            self.granted += 1
            return
        self.waited += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), future))
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch(bucket), name="poll-scheduler")
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                bucket.give_back()  # granted, but the job is gone: the query was never sent
                self.granted -= 1
            raise

    async def _dispatch(self, bucket: TokenBucket) -> None:
        while self._waiting:
            if bucket.try_take():
                while self._waiting:
                    _, _, future = heapq.heappop(self._waiting)
                    if not future.done():
                        future.set_result(None)
                        self.granted += 1
                        break
                else:
                    bucket.give_back()  # everyone waiting left meanwhile
                continue
            await self._sleep(max(bucket.wait_time(), 0.001))
