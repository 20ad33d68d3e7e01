"""Polling by the provider's advice, simulated on clocks we control.

The floor (5 s between queries of a task, the first 5 s after submitting) must hold on every
timeline, with jitter, late queries, slow answers, failures and 429s; within it the planner must
see finishes much sooner than a poller following the advice literally, with fewer queries.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics

import pytest

from bot.jobs.polling import ModelDurations, PollPlanner, PollRules, PollScheduler
from bot.toapis.budget import Allowance, TokenBucket

FLOOR = 5.0
LATE = 0.05  # a query goes out up to this long after it was planned (event-loop lag)
LATENCY = 0.01  # each way between the bot and the provider


def status_at(t: float, queued: float, duration: float, *, progress: bool = True) -> tuple[str, int | None]:
    """The benchmark's task `t` s after it was created: queued until `queued`, then 0–90 % in ten
    equal steps (bench/fakes.py `step_starts`), completed from `duration` on."""
    if t >= duration:
        return "completed", 100
    if t < queued:
        return "queued", 0
    percent = min(90, int((t - queued) / (duration - queued) * 10) * 10)
    return "in_progress", percent if progress else None


def follow(
    queued: float,
    duration: float,
    rng: random.Random,
    *,
    typical: float | None = None,
    failing: float = 0.0,
    rules: PollRules | None = None,
    progress: bool = True,
    webhooks: bool = False,
) -> tuple[float, list[float]]:
    """Query a simulated task until a query sees it completed: (detection lag, the provider's
    times of every query). Times are the provider's, from the task's creation; the bot learns of
    the submission a little later, each query goes out up to LATE after it was planned and takes
    up to LATENCY each way. `failing`: the chance a query is refused for rate (429, Retry-After 1)."""
    started = rng.uniform(0.001, LATENCY)
    planner = PollPlanner(
        started=started,
        rules=rules or PollRules(),
        typical_duration=typical,
        rng=rng.random,
        webhooks=webhooks,
    )
    seen_at: list[float] = []
    while True:
        sent = planner.next_query_at() + rng.uniform(0, LATE)
        at = sent + rng.uniform(0, LATENCY)
        answered = at + rng.uniform(0, LATENCY)
        seen_at.append(at)
        if rng.random() < failing:
            planner.queried(sent, answered, None, None)
            planner.refused(answered, 1.0)
            continue
        state, percent = status_at(at, queued, duration, progress=progress)
        planner.queried(sent, answered, state, percent)
        if state == "completed":
            return at - duration, seen_at


def literal_advice(duration: float, rng: random.Random) -> tuple[float, int]:
    """The benchmark's baseline: first query at 5 s, then every 7.5 ± 2.5 s: (lag, queries)."""
    at, count = 5.0, 1
    while at < duration:
        at += rng.uniform(5.0, 10.0)
        count += 1
    return at - duration, count


def benchmark_tasks(count: int, seed: int) -> list[tuple[float, float]]:
    """(queued, duration) as the benchmark draws them: 8–60 s long, queued 1–3 s but at most a third."""
    rng = random.Random(seed)
    tasks = []
    for _ in range(count):
        duration = rng.uniform(8, 60)
        tasks.append((min(rng.uniform(1, 3), duration / 3), duration))
    return tasks


def gaps(times: list[float]) -> list[float]:
    """From the task's creation to the first query, then between queries."""
    return [b - a for a, b in itertools.pairwise([0.0, *times])]


def test_no_query_comes_sooner_than_the_floor_on_any_timeline():
    rng = random.Random(5)
    shortest = min(
        min(gaps(follow(queued, duration, rng, failing=failing, progress=progress)[1]))
        for queued, duration in benchmark_tasks(300, seed=8)
        for failing, progress in ((0.0, True), (0.2, True), (0.0, False))
    )
    assert shortest >= FLOOR


def test_a_raised_floor_holds_too_and_the_first_query_waits_for_it():
    rng = random.Random(6)
    rules = PollRules.from_intervals(7.0, 9.0)
    first, shortest_running = [], []
    for queued, duration in benchmark_tasks(200, seed=9):
        _, times = follow(queued, duration, rng, rules=rules)
        first.append(times[0])
        shortest_running.extend(gaps(times)[1:])
    assert (min(first) >= 7.0, min(shortest_running, default=9.0) >= 9.0) == (True, True)


def test_queries_carry_random_jitter():
    rng = random.Random(7)
    firsts = {round(follow(2.0, 40.0, rng)[1][0], 3) for _ in range(20)}
    assert len(firsts) > 10


def test_finishes_are_seen_in_half_the_literal_advices_median_lag_with_fewer_queries():
    rng, literal_rng = random.Random(1), random.Random(2)
    history = ModelDurations()
    ours, ours_queries, literal, literal_queries = [], [], [], []
    for queued, duration in benchmark_tasks(1000, seed=3):
        lag, times = follow(queued, duration, rng, typical=history.typical("m"))
        history.add("m", duration)
        ours.append(lag)
        ours_queries.append(len(times))
        base_lag, base_queries = literal_advice(duration, literal_rng)
        literal.append(base_lag)
        literal_queries.append(base_queries)
    # The benchmark's target. On other seeds the ratio lands at 0.44–0.47, the queries ~12 % fewer.
    assert statistics.median(ours) <= 0.5 * statistics.median(literal)
    assert statistics.mean(ours_queries) <= statistics.mean(literal_queries)


def test_an_aimed_query_lands_just_after_the_finish_progress_points_to():
    planner = PollPlanner(started=0.0, rng=lambda: 0.0)
    # A task climbing 10 % every 2 s from t = 1: 0 % at 1.0, 50 % at 11.0, finished at 21.0.
    for sent, percent in ((5.0, 20), (10.5, 40), (15.2, 70)):
        planner.queried(sent, sent + 0.01, "in_progress", percent)
    low, high = planner.finish_range() or (0.0, 0.0)
    planned = planner.next_query_at()
    assert (low <= 21.0 <= high, high - low < 4.0, high <= planned < high + 0.5) == (True, True, True)
    assert planned - 15.21 >= FLOOR


def test_while_the_finish_is_far_queries_stay_at_the_slow_end_of_the_advice():
    rng = random.Random(2)
    _, times = follow(2.0, 200.0, rng)
    far = [gap for gap, at in zip(gaps(times)[1:], times[1:], strict=True) if at < 150]
    assert min(far) >= 7.5


def test_before_any_progress_recent_durations_of_the_model_give_the_first_guess():
    history = ModelDurations()
    for seconds in (29.0, 30.0, 31.0):
        history.add("m", seconds)
    rng = random.Random(4)
    guessed = [follow(2.0, 30.0, rng, typical=history.typical("m"), progress=False) for _ in range(30)]
    blind = [follow(2.0, 30.0, rng, progress=False) for _ in range(30)]
    assert statistics.median(lag for lag, _ in guessed) < statistics.median(lag for lag, _ in blind)
    assert statistics.mean(len(t) for _, t in guessed) <= statistics.mean(len(t) for _, t in blind)
    assert ModelDurations().typical("m") is None  # too few to go by


def test_failed_queries_back_off_exponentially_and_honour_retry_after():
    planner = PollPlanner(started=0.0, rng=lambda: 0.0)
    at = planner.next_query_at()
    planner.queried(at, at, None, None)  # the first query failed
    planned_gaps = []
    for _ in range(4):
        nxt = planner.next_query_at()
        planned_gaps.append(round(nxt - at, 2))
        at = nxt
        planner.queried(at, at, None, None)
    planner.refused(at, 90.0)
    assert planned_gaps == [10.0, 20.0, 40.0, 60.0]
    assert planner.next_query_at() >= at + 90.0


def test_webhook_mode_queries_a_minute_apart_and_once_after_the_expected_finish():
    planner = PollPlanner(started=0.0, typical_duration=20.0, rng=lambda: 0.0, webhooks=True)
    planned = []
    for _ in range(4):
        at = planner.next_query_at()
        planned.append(round(at))
        planner.queried(at, at, "in_progress", None)
    assert planned == [25, 60, 120, 180]


def test_webhook_mode_without_a_clue_asks_every_minute():
    planner = PollPlanner(started=0.0, rng=lambda: 0.0, webhooks=True)
    planned = []
    for _ in range(3):
        at = planner.next_query_at()
        planned.append(round(at))
        planner.queried(at, at, "queued", None)
    assert planned == [60, 120, 180]


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_when_tokens_are_short_the_task_furthest_past_its_expected_finish_goes_first():
    clock = ManualClock()
    bucket = TokenBucket(Allowance(1.0, 1.0), clock=clock, sleep=clock.sleep)
    scheduler = PollScheduler(bucket, sleep=clock.sleep)
    await scheduler.turn(0.0)  # the only token
    order: list[str] = []

    async def ask(name: str, expected_finish: float) -> None:
        await scheduler.turn(expected_finish)
        order.append(name)

    # Asked in this order; expected to finish at 30, 10 and 20.
    await asyncio.gather(ask("late", 30.0), ask("overdue", 10.0), ask("middle", 20.0))
    assert (order, scheduler.granted, bucket.taken) == (["overdue", "middle", "late"], 4, 4)


@pytest.mark.asyncio
async def test_without_a_budget_turns_are_granted_at_once():
    scheduler = PollScheduler(None)
    await asyncio.wait_for(asyncio.gather(*(scheduler.turn(0.0) for _ in range(100))), 1)
    assert (scheduler.granted, scheduler.waited) == (100, 0)


@pytest.mark.asyncio
async def test_a_turn_given_up_while_waiting_takes_no_token():
    clock = ManualClock()
    bucket = TokenBucket(Allowance(1.0, 1.0), clock=clock, sleep=clock.sleep)
    scheduler = PollScheduler(bucket, sleep=asyncio.sleep)
    await scheduler.turn(0.0)
    waiting = asyncio.create_task(scheduler.turn(1.0))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    clock.now += 5.0
    await scheduler.turn(2.0)
    assert (scheduler.granted, bucket.taken) == (2, 2)
