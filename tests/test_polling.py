"""Adaptive polling, simulated on a clock we control: found quickly, never more polls than advised."""

from __future__ import annotations

import random
import statistics

from bot.polling import ModelDurations, PollAdvice, PollPlanner


def status_at(t: float, queued: float, duration: float) -> tuple[str, int]:
    """A task like the provider's: queued, then progress in 10 % steps, then completed."""
    if t >= duration:
        return "completed", 100
    if t < queued:
        return "queued", 0
    return "in_progress", int((t - queued) / (duration - queued) * 10) * 10


def run(
    planner: PollPlanner, queued: float, duration: float, *, stall_at: int | None = None
) -> tuple[float, int]:
    """Poll a simulated task to completion; (detection lag, polls)."""
    state, progress = status_at(0.0, queued, duration)
    planner.observe(0.0, state, progress, polled=False)
    t, polls = 0.0, 0
    while True:
        t = planner.next_poll_at(t)
        polls += 1
        state, progress = status_at(t, queued, duration)
        if stall_at is not None and state != "completed":
            progress = min(progress, stall_at)
        planner.observe(t, state, progress)
        if state == "completed":
            return t - duration, polls


def advice_budget(queued: float, duration: float) -> float:
    """Polls a poller at the advice's fastest beat makes, counting the one that finds the result."""
    return queued / 2 + (duration - queued) / 3 + 1


def tasks(count: int, seed: int = 7) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(rng.uniform(1, 3), rng.uniform(8, 60)) for _ in range(count)]


def test_finished_tasks_are_found_within_a_second_at_the_median():
    history = ModelDurations()
    lags = []
    for queued, duration in tasks(300):
        lag, _ = run(PollPlanner(started=0.0, typical_duration=history.typical("m")), queued, duration)
        history.add("m", duration)
        lags.append(lag)
    assert statistics.median(lags) <= 1.0


def test_no_task_is_polled_more_than_the_advice_allows():
    over = []
    for queued, duration in tasks(300):
        _, polls = run(PollPlanner(started=0.0), queued, duration)
        if polls > advice_budget(queued, duration) + 0.5:
            over.append((queued, duration, polls))
    assert over == []


def test_on_average_it_polls_less_than_the_fastest_advised_beat():
    results = [(run(PollPlanner(started=0.0), q, d)[1], advice_budget(q, d)) for q, d in tasks(300)]
    assert statistics.mean(p for p, _ in results) < statistics.mean(b for _, b in results)


def test_a_task_that_stalls_near_the_end_falls_back_to_the_advised_beat():
    _, polls = run(PollPlanner(started=0.0), 2.0, 120.0, stall_at=90)
    assert polls <= advice_budget(2.0, 120.0)


def test_without_any_clue_it_polls_on_the_advised_beat():
    planner = PollPlanner(started=0.0, advice=PollAdvice())
    planner.observe(0.0, "queued", 0, polled=False)
    queued_next = planner.next_poll_at(0.0)
    planner.observe(queued_next, "in_progress", 0)
    assert (queued_next, planner.next_poll_at(queued_next) - queued_next) == (2.5, 4.0)


def test_recent_durations_of_a_model_give_the_first_guess():
    history = ModelDurations()
    for seconds in (20, 30, 40):
        history.add("seedream", seconds)
    assert (history.typical("seedream"), history.typical("other")) == (30, None)


def test_advice_scales_with_the_configured_intervals():
    assert PollAdvice.around(2.5, 4.0) == PollAdvice(2.0, 3.0, 3.0, 5.0, 0.5)
