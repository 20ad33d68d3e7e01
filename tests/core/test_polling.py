"""Adaptive polling, simulated on clocks we control: found quickly, never polled more than advised."""

from __future__ import annotations

import functools
import itertools
import random
import statistics
from typing import Any

from bot.jobs.polling import ModelDurations, PollAdvice, PollPlanner

LATE = 0.1  # a poll goes out up to this long after it was planned (event-loop lag)
LATENCY = 0.03  # each way between the bot and the provider


def advice_most_polls(
    queued: float, duration: float, queued_fast: float = 2.0, running_fast: float = 3.0
) -> int:
    """The benchmark's judge (`advice_most_polls` in bench/run.py): the polls of a poller that polls
    as early as the advice allows after every look — the submission's answer the first — until a
    poll sees the task completed, that poll included."""
    at, count = 0.0, 0
    while at < duration:
        at += queued_fast if at < queued else running_fast
        count += 1
    return count


def greedy_poll(k: int, queued: float) -> float:
    """When that poller makes its k-th poll."""
    at = 0.0
    for _ in range(k):
        at += 2.0 if at < queued else 3.0
    return at


def status_at(
    t: float, queued: float, duration: float, *, progress: bool = True, paced_for: float | None = None
) -> tuple[str, int | None]:
    """The benchmark's task `t` s after it was created: queued until `queued`, then 0–90 % in ten
    equal steps, completed from `duration` on. `paced_for`: the steps are paced for a task that
    long, and it stalls at 90 % until `duration`."""
    if t >= duration:
        return "completed", 100
    if t < queued:
        return "queued", 0
    percent = min(90, int((t - queued) / ((paced_for or duration) - queued) * 10) * 10)
    return "in_progress", percent if progress else None


def run(
    queued: float,
    duration: float,
    rng: random.Random | None = None,
    *,
    advice: PollAdvice | None = None,
    typical: float | None = None,
    lost: float = 0.0,
    **task: Any,
) -> tuple[float, list[tuple[float, str]]]:
    """Poll a simulated task until a poll sees it completed: (detection lag, every look as (time, status)).

    Times are the provider's, from the task's creation; the submission's answer is the first look.
    With `rng`, the bot learns of the submission a little later, each poll goes out up to LATE
    after it was planned and reaches the provider up to LATENCY later — the moment its status is
    taken — and each answer takes up to LATENCY to come back; `lost` is the chance an answer is
    lost on the way back (the poll still counts at the provider).
    """
    noise = rng.uniform if rng else lambda _low, _high: 0.0
    planner = PollPlanner(started=noise(0, LATENCY), advice=advice or PollAdvice(), typical_duration=typical)
    state, progress = status_at(0.0, queued, duration, **task)
    looks = [(0.0, state)]
    now = planner.started
    planner.observe(now, state, progress, polled=False)
    while state != "completed":
        seen = planner.next_poll_at(now) + noise(0, LATE) + noise(0, LATENCY)
        state, progress = status_at(seen, queued, duration, **task)
        looks.append((seen, state))
        now = seen + noise(0, LATENCY)
        if rng and rng.random() < lost:
            planner.observe(now, None, None)
        else:
            planner.observe(now, state, progress)
    return looks[-1][0] - duration, looks


def polls(looks: list[tuple[float, str]]) -> int:
    return len(looks) - 1  # the submission's answer is no poll


def benchmark_tasks(count: int, seed: int) -> list[tuple[float, float]]:
    """(queued, duration) as the benchmark draws them: 8–60 s long, queued 1–3 s but at most a third."""
    rng = random.Random(seed)
    tasks = []
    for _ in range(count):
        duration = rng.uniform(8, 60)
        tasks.append((min(rng.uniform(1, 3), duration / 3), duration))
    return tasks


def over_the_advice(
    tasks: list[tuple[float, float]], rng: random.Random | None, **kwargs: Any
) -> list[tuple[float, float, int, int]]:
    """The tasks polled more often than the advice allows: (queued, duration, polls, most allowed)."""
    over = []
    for queued, duration in tasks:
        _, looks = run(queued, duration, rng, **kwargs)
        most = advice_most_polls(queued, duration)
        if polls(looks) > most:
            over.append((queued, duration, polls(looks), most))
    return over


@functools.cache
def benchmark_run() -> list[tuple[float, int, int, int]]:
    """600 benchmark-like tasks of one model on noisy clocks: (detection lag, polls, most allowed,
    polls sooner than the greedy poller's of the same number)."""
    rng = random.Random(11)
    history = ModelDurations()
    results = []
    for queued, duration in benchmark_tasks(600, seed=3):
        lag, looks = run(queued, duration, rng, typical=history.typical("m"))
        history.add("m", duration)
        early = sum(at < greedy_poll(k, queued) for k, (at, _) in enumerate(looks[1:], 1))
        results.append((lag, polls(looks), advice_most_polls(queued, duration), early))
    return results


def percentile(values: list[float], share: float) -> float:
    ranked = sorted(values)
    return ranked[round(share * (len(ranked) - 1))]


def gaps_after(looks: list[tuple[float, str]]) -> dict[str, set[float]]:
    """The waits between consecutive looks, by what the earlier one showed."""
    gaps: dict[str, set[float]] = {}
    for (at, state), (then, _) in itertools.pairwise(looks):
        gaps.setdefault(state, set()).add(round(then - at, 6))
    return gaps


def test_the_judge_counts_like_the_benchmark():
    assert advice_most_polls(2.0, 8.0) == 3  # polls at 2, 5 (a queued look, then one in progress), 8
    assert advice_most_polls(2.5, 20.0) == 8  # 2, 4 (both still queued), 7, 10, … 22
    assert advice_most_polls(3.0, 8.0) == 4  # 2, 4, 7, 10
    assert advice_most_polls(3.0, 8.0, 4.0, 6.0) == 2  # 4, 10


def test_the_later_a_task_leaves_the_queue_the_sooner_each_greedy_poll():
    # Why the planner may assume the earliest moment the looks allow: that puts every greedy poll latest.
    queue_times = [i / 100 for i in range(0, 1001)]
    for k in range(1, 25):
        times = [greedy_poll(k, queued) for queued in queue_times]
        assert all(a >= b for a, b in itertools.pairwise(times)), k
    assert greedy_poll(3, 0.5) > greedy_poll(3, 2.5)  # not merely constant


def test_no_task_is_polled_more_than_the_advice_allows():
    over = [(lag, count, most) for lag, count, most, _ in benchmark_run() if count > most]
    assert over == []


def test_no_poll_comes_before_the_greedy_pollers_poll_of_the_same_number():
    # What the planner promises: kept at every poll, no finish time could put a task over the advice.
    assert sum(early for *_, early in benchmark_run()) == 0


def test_finished_tasks_are_found_within_a_second_at_the_median():
    lags = [lag for lag, *_ in benchmark_run()]
    p50, p95 = statistics.median(lags), percentile(lags, 0.95)
    assert p50 <= 1.0, f"completion→detected p50 {p50:.2f} s, p95 {p95:.2f} s"


def test_it_saves_polls_while_the_finish_is_far():
    spare = statistics.mean(most - count for _, count, most, _ in benchmark_run())
    assert spare >= 1.0, f"on average {spare:.2f} polls below the most the advice allows"


def test_the_rule_holds_on_exact_clocks_and_awkward_queue_times():
    rng = random.Random(5)
    tasks = []
    for _ in range(300):
        queued = rng.choice([1.0, 2.0, 2.0 + 1e-9, 4.0, 6.0 - 1e-9, rng.uniform(1, 3)])
        tasks.append((queued, queued + rng.uniform(5, 60)))
    assert over_the_advice(tasks, None) == []


def test_a_slow_answer_does_not_stretch_the_queue_time_it_assumes():
    planner = PollPlanner(started=0.0, typical_duration=9.0)
    planner.observe(0.0, "queued", 0, polled=False)
    first = planner.next_poll_at(0.0)
    # The poll planned for 2.5 s shows `queued`, but its answer comes at 4.5 s: the task may have
    # left the queue right after 2.5 s, when the greedy poller's polls are at 2, 4, 7 and 10 s.
    planner.observe(4.5, "queued", 0)
    second = planner.next_poll_at(4.5)
    planner.observe(second, "in_progress", 50)
    third = planner.next_poll_at(second)
    planner.observe(third, "in_progress", 60)  # finishing at about 8 s: it wants to poll at once
    fourth = planner.next_poll_at(third)
    assert first == 2.5
    assert 10.0 <= fourth < 10.5, (first, second, third, fourth)


def test_a_task_without_progress_is_polled_on_the_advised_beat():
    _, looks = run(3.0, 30.0, progress=False)
    assert gaps_after(looks) == {"queued": {2.5}, "in_progress": {4.0}}
    assert polls(looks) <= advice_most_polls(3.0, 30.0)


def test_recent_durations_of_a_model_give_the_first_guess():
    history = ModelDurations()
    for seconds in (20, 30, 40):
        history.add("seedream", seconds)
    assert (history.typical("seedream"), history.typical("other")) == (30, None)


def test_a_known_typical_duration_finds_tasks_without_progress_sooner():
    rng = random.Random(2)
    tasks = [(2.0, rng.uniform(28, 32)) for _ in range(200)]
    assert over_the_advice(tasks, rng, typical=30.0, progress=False) == []
    guessed = statistics.median(run(q, d, rng, typical=30.0, progress=False)[0] for q, d in tasks)
    blind = statistics.median(run(q, d, rng, progress=False)[0] for q, d in tasks)
    assert guessed <= 1.0 < blind, (guessed, blind)


def test_a_task_that_stays_queued_long_is_within_the_advice_and_found_quickly():
    rng = random.Random(4)
    tasks = []
    for _ in range(200):
        queued = rng.uniform(10, 40)
        tasks.append((queued, queued + rng.uniform(8, 40)))
    assert over_the_advice(tasks, rng) == []
    assert statistics.median(run(q, d, rng)[0] for q, d in tasks) <= 1.0


def test_polls_that_got_no_answer_still_count():
    assert over_the_advice(benchmark_tasks(300, seed=9), random.Random(8), lost=0.3) == []


def test_a_task_that_stalls_near_the_end_falls_back_to_the_fastest_advised_beat():
    _, looks = run(2.0, 120.0, paced_for=40.0)
    stalled = [look for look in looks if look[0] > 60.0]
    assert polls(looks) <= advice_most_polls(2.0, 120.0)
    assert gaps_after(stalled) == {"in_progress": {3.0}}


def test_advice_scales_with_the_configured_intervals():
    assert PollAdvice.around(2.5, 4.0) == PollAdvice(2.0, 3.0, 3.0, 5.0, 0.5)
    advice = PollAdvice.around(5.0, 8.0)  # 4–6 s queued, 6–10 s running
    rng = random.Random(6)
    over = []
    for queued, duration in benchmark_tasks(200, seed=6):
        _, looks = run(queued, duration, rng, advice=advice)
        if polls(looks) > advice_most_polls(queued, duration, advice.queued_fast, advice.running_fast):
            over.append((queued, duration, polls(looks)))
    assert over == []
