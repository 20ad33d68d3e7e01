"""The `webhooks` scenario as the benchmark judges it: how the provider's events are delivered, the
targets, and the comparison with the polling-only twin that ran the same tasks.

The provider calls webhooks the primary completion signal and status queries the fallback
(``../shared/docs/toapis-api.md`` §2–§3). Events here come 50–300 ms after a task's completion;
1 % of the jobs get theirs twice (delivery is at least once) and 1 % never (a lost event): those
jobs must still be delivered, by the status queries that stay as the safety net.

Pure functions of seeds and recorded figures, tested on their own
(``tests/fakes_tests/test_bench_webhooks.py``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from bench.fakes import EventPlan

# When an event is sent, after its task's completion (uniform).
EVENT_DELAY = (0.05, 0.3)
# Shares of the jobs whose event is sent twice, and never (each at least one job).
DUPLICATED_SHARE = 0.01
LOST_SHARE = 0.01
# Targets of the webhooks run.
DETECTION_P50_TARGET = 0.3  # seconds from completion to the bot knowing it (median)
QUERIES_PER_JOB_TARGET = 1.5  # status queries per job (mean)
# The public address the bot is configured with; the fake forwards it to the bot's loopback port,
# as the operator's reverse proxy would (the host is never resolved: `--check` is not run).
CALLBACK_URL = "https://imagine.bench.example/toapis/events"


def some(count: int, share: float) -> int:
    """`share` of `count` jobs, rounded, but at least one when there are any."""
    return min(count, max(1, round(count * share))) if count else 0


def event_plans(jobs: Sequence[int], seed: int) -> dict[int, EventPlan]:
    """Each job's event: a delay drawn from `EVENT_DELAY`; `DUPLICATED_SHARE` of the jobs sent twice
    and `LOST_SHARE` never, never the same job (seeded, and independent of the jobs' own plans, so
    both runs and every other scenario keep their tasks)."""
    rng = random.Random(f"{seed}:webhooks:events")
    delays = {job: rng.uniform(*EVENT_DELAY) for job in jobs}
    chosen = rng.sample(
        list(jobs), min(len(jobs), some(len(jobs), DUPLICATED_SHARE) + some(len(jobs), LOST_SHARE))
    )
    twice = set(chosen[: some(len(jobs), DUPLICATED_SHARE)])
    never = set(chosen[len(twice) :])
    return {job: EventPlan(delays[job], twice=job in twice, never=job in never) for job in jobs}


def ratio(value: float | None, twin: float | None) -> float | None:
    """`value` ÷ `twin` (the webhooks run over the polling-only one); None when either is missing or
    the twin's is 0 (nothing to compare with)."""
    if value is None or twin is None or twin == 0 or math.isinf(twin):
        return None
    return value / twin
