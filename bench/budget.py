"""The provider's budget as the benchmark judges it: today's polling advice, the account's rate
limits, how fast and how fairly submissions leave, and the literal-advice poller we compare with.

The numbers are the provider's (``../shared/docs/toapis-api.md`` §2 and §6, default group): the
first status query 5 s after the submission, then none closer than 5 s to the previous one of the
same task, every 5–10 s with jitter; submissions 5 per second with a burst of 50.

Everything here is a pure function of what the fakes recorded (times on the benchmark's clock),
so it is tested on its own (``tests/fakes_tests/test_bench_budget.py``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Today's polling advice (§2): the first look this long after submitting …
ADVICE_FIRST = 5.0
# … then never two looks of one task closer than this.
ADVICE_FLOOR = 5.0
# The baseline poller follows the advice literally: the first look at 5 s, then every 7.5 ± 2.5 s.
BASELINE_GAP = (5.0, 10.0)
# A query this much sooner than the floor still counts as on time: the fake stamps a query when it
# arrives, and two arrivals of queries sent exactly 5 s apart can differ by a few microseconds.
CLOCK_SLACK = 0.001

# The default group's submission bucket (§6) and the share of its ceiling the bot must reach.
SUBMIT_PER_SECOND = 5.0
SUBMIT_BURST = 50
THROUGHPUT_SHARE = 0.9
# Fairness: the small servers' median wait at most this share of the big server's …
FAIR_WAIT_RATIO = 1 / 3
# … and a quiet server's single job submitted within this many seconds of being sent.
QUIET_WITHIN = 5.0
# Provider 429s: at most this share (%) of the requests to the rate-limited endpoints.
MOST_429_PERCENT = 1.0


def submission_deadline(jobs: int) -> float:
    """Seconds after the burst by which every submission must have been accepted: past the burst
    allowance, the bucket's rate, at `THROUGHPUT_SHARE` of it ((1000 − 50) / 5 / 0.9 ≈ 211 s)."""
    return max(0, jobs - SUBMIT_BURST) / SUBMIT_PER_SECOND / THROUGHPUT_SHARE


def split(total: int, shares: Sequence[float]) -> list[int]:
    """`total` split by `shares` (largest remainders), every part at least 1 when there is enough."""
    weights = [s / sum(shares) for s in shares]
    parts = [max(1, math.floor(total * w)) if total >= len(shares) else 0 for w in weights]
    order = sorted(range(len(shares)), key=lambda i: total * weights[i] - parts[i], reverse=True)
    index = 0
    while sum(parts) < total:
        parts[order[index % len(order)]] += 1
        index += 1
    while sum(parts) > total:  # only when the minimum of 1 pushed it over
        largest = max(range(len(parts)), key=lambda i: parts[i])
        parts[largest] -= 1
    return parts


def queries_sooner_than(submitted: float, queries: Iterable[float], floor: float = ADVICE_FLOOR) -> int:
    """Status queries closer than `floor` to the previous query of their task (the first: to the
    submission's acceptance). Every query the provider received counts, refused ones too: the
    advice is about when a client asks, not about what it was answered."""
    count, previous = 0, submitted
    for at in sorted(queries):
        count += at - previous < floor - CLOCK_SLACK
        previous = at
    return count


def most_queries_allowed(duration: float) -> int:
    """The most status queries the advice allows a task of `duration` seconds until a query sees
    it completed, that one included: the poller that looks as early as allowed, at 5 s and then
    every 5 s, makes the most (looking earlier is not allowed, later never allows more)."""
    at, count = ADVICE_FIRST, 1
    while at < duration:
        at += ADVICE_FLOOR
        count += 1
    return count


@dataclass(frozen=True)
class BaselineLook:
    """What the literal-advice poller saw of one task."""

    lag: float  # its first query that saw the task completed, minus the completion
    queries: int  # its queries until then, that one included


def baseline_poll(submitted: float, completed: float, rng: random.Random) -> BaselineLook:
    """Poll one task as the advice reads literally: the first query `ADVICE_FIRST` after the
    submission, then every `BASELINE_GAP` (uniform), until a query at or after the completion."""
    at, queries = submitted + ADVICE_FIRST, 1
    while at < completed:
        at += rng.uniform(*BASELINE_GAP)
        queries += 1
    return BaselineLook(at - completed, queries)


def median(values: Sequence[float]) -> float | None:
    """The median (mean of the middle two); `math.inf` entries (never happened) sort last."""
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    low, high = ordered[middle - 1], ordered[middle]
    return high if math.isinf(high) else (low + high) / 2


def wait_ratio(small: float | None, big: float | None) -> float | None:
    """The small servers' median wait over the big server's (inf: the small ones never left)."""
    if small is None or big is None:
        return None
    if math.isinf(small):
        return math.inf
    if math.isinf(big) or big <= 0:
        return 0.0 if small <= 0 or math.isinf(big) else math.inf
    return small / big
