"""The benchmark's budget scenario: its fake ToAPIs enforces the documented buckets and keeps what it
refused per job, today's polling advice is judged exactly, and the scenario's figures report a bot
that misses them as FAIL rows (never a crash).

The fake is driven with plain aiohttp on loopback, so these test the benchmark, not the bot.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from bench import budget
from bench.fakes import BenchToAPIs, JobPlan
from bench.report import FAIL, PASS
from bench.run import SCENARIOS, ScenarioRun, parse_args
from tests.fakes.toapis import ProviderRateLimits, make_image

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
GENERATIONS = "/v1/images/generations"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plan(job: int, duration: float = 20.0) -> JobPlan:
    return JobPlan(job, channel_id=1, n=1, duration=duration, queued=2.0, images=(0,))


@pytest.fixture
async def fake() -> AsyncIterator[BenchToAPIs]:
    server = BenchToAPIs([make_image(32, 32)], {job: plan(job) for job in range(1, 61)}, api_key=KEY)
    server.clock = Clock()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def submit(session: aiohttp.ClientSession, fake: BenchToAPIs, job: int) -> int:
    body = {"model": "doubao-seedream-5-0", "prompt": f"bench {job}", "n": 1}
    async with session.post(fake.url(GENERATIONS), json=body, headers=AUTH) as response:
        await response.read()
        return response.status


async def query(session: aiohttp.ClientSession, fake: BenchToAPIs, task_id: str) -> int:
    async with session.get(fake.url(f"{GENERATIONS}/{task_id}"), headers=AUTH) as response:
        await response.read()
        return response.status


# --------------------------------------------------------------------------- the fake


async def test_the_bench_fake_refuses_submissions_beyond_the_default_burst_and_names_the_job(
    fake: BenchToAPIs, session: aiohttp.ClientSession
) -> None:
    statuses = [await submit(session, fake, job) for job in range(1, 52)]
    assert statuses.count(200) == 50 and statuses[-1] == 429
    assert fake.rate_limited["async_submit"] == 1
    assert fake.refused_submissions == {51: 1}
    assert 51 not in fake.tasks_by_job  # a refused submission creates no task


async def test_the_bench_fake_refuses_status_queries_beyond_their_bucket_and_keeps_when(
    fake: BenchToAPIs, session: aiohttp.ClientSession
) -> None:
    fake.rate_limits = ProviderRateLimits.group(submit=(5, 50), query=(50, 2))
    assert await submit(session, fake, 1) == 200
    task_id = fake.tasks_by_job[1][0]
    fake.clock.now += 6  # type: ignore[attr-defined]
    assert [await query(session, fake, task_id) for _ in range(3)] == [200, 200, 429]
    timeline = fake.timelines[task_id]
    assert len(timeline.polls) == 2 and timeline.refused == [1006.0]
    assert timeline.queries == [1006.0, 1006.0, 1006.0]
    assert fake.status_queries == 3 and fake.rate_limited["async_query"] == 1
    assert fake.queries_sooner_than(5.0) == 1  # the parent's count sees the bench's answered polls


async def test_the_bench_fake_shows_the_planned_timeline(
    fake: BenchToAPIs, session: aiohttp.ClientSession
) -> None:
    assert await submit(session, fake, 7) == 200
    task_id = fake.tasks_by_job[7][0]
    fake.clock.now += 19.9  # type: ignore[attr-defined]
    await query(session, fake, task_id)
    fake.clock.now += 0.2  # type: ignore[attr-defined]
    await query(session, fake, task_id)
    timeline = fake.timelines[task_id]
    assert [status for _, status in timeline.polls] == ["in_progress", "completed"]
    assert timeline.detected_at == pytest.approx(timeline.completed_at + 0.1)


# --------------------------------------------------------------------------- today's advice


def test_a_query_sooner_than_5_s_after_the_submission_or_the_previous_query_counts() -> None:
    assert budget.queries_sooner_than(0.0, [5.0, 10.0, 15.5]) == 0
    assert budget.queries_sooner_than(0.0, [4.9, 10.0]) == 1  # the first, to the submission
    assert budget.queries_sooner_than(0.0, [5.0, 9.0, 14.0]) == 1
    assert budget.queries_sooner_than(0.0, [9.9995, 5.0]) == 0  # in order; sub-millisecond slack


def test_the_most_queries_the_advice_allows_ends_with_the_one_that_sees_the_completion() -> None:
    assert budget.most_queries_allowed(4.0) == 1  # at 5 s, completed already
    assert budget.most_queries_allowed(10.0) == 2  # 5, 10
    assert budget.most_queries_allowed(10.5) == 3  # 5, 10, 15
    assert budget.most_queries_allowed(60.0) == 12


def test_the_baseline_poller_looks_at_5_s_then_every_5_to_10_s_until_it_sees_the_completion() -> None:
    rng = random.Random(3)
    assert budget.baseline_poll(100.0, 103.0, rng) == budget.BaselineLook(lag=2.0, queries=1)
    looks = [
        budget.baseline_poll(0.0, completed, rng) for completed in (12.0, 30.0, 59.0) for _ in range(200)
    ]
    assert all(0 <= look.lag < 10 for look in looks)
    # 59 s: the first query at 5 s, then at most 54 / 5 and at least 54 / 10 more gaps (rounded up)
    assert {look.queries for look in looks[400:]} <= set(range(7, 13))


def test_the_baseline_median_lag_is_what_a_uniform_5_to_10_s_gap_gives() -> None:
    rng = random.Random(5)
    lags = [budget.baseline_poll(0.0, rng.uniform(8, 60), rng).lag for _ in range(4000)]
    # Length-biased gaps of U(5, 10): the lag is uniform within the gap that holds the completion.
    assert 3.2 < budget.median(lags) < 4.3


# --------------------------------------------------------------------------- submissions


def test_the_submission_deadline_is_the_default_buckets_pace_at_90_percent() -> None:
    assert budget.submission_deadline(1000) == pytest.approx(211.1, abs=0.1)
    assert budget.submission_deadline(40) == 0  # within the burst


def test_jobs_and_channels_split_by_the_servers_shares() -> None:
    shares = (0.6, 0.1, 0.1, 0.1, 0.1)
    assert budget.split(1000, shares) == [600, 100, 100, 100, 100]
    assert budget.split(20, shares) == [12, 2, 2, 2, 2]
    assert budget.split(7, shares) == [3, 1, 1, 1, 1]
    assert sum(budget.split(3, shares)) == 3


def test_a_wait_that_never_ended_sorts_last_and_fails_the_ratio() -> None:
    assert budget.median([1.0, 3.0, math.inf]) == 3.0
    assert budget.median([1.0, math.inf]) == math.inf
    assert budget.wait_ratio(math.inf, 10.0) == math.inf
    assert budget.wait_ratio(5.0, math.inf) == 0.0
    assert budget.wait_ratio(10.0, 40.0) == 0.25


def test_the_budget_scenario_fires_five_servers_interleaved_and_the_quiet_job_mid_burst() -> None:
    run = ScenarioRun(SCENARIOS["budget"], parse_args(["budget"]), [make_image(32, 32)])
    assert len(run.plans) == 1001 and run.quiet_job == 1001
    assert run.server_jobs == [600, 100, 100, 100, 100, 1]
    channels = {
        server: {p.channel_id for p in run.plans.values() if p.server == server} for server in range(6)
    }
    assert [len(channels[s]) for s in range(6)] == [12, 2, 2, 2, 2, 1]
    assert len(set(run.discord.guild_ids)) == 6  # announced in READY
    assert run.fire_order.index(1001) == 500
    first_hundred = {run.plans[job].server for job in run.fire_order[:100]}
    assert first_hundred == {0, 1, 2, 3, 4}  # interleaved, not one server after another


# --------------------------------------------------------------------------- figures


@dataclass
class Sent:
    """What the figures read of a fired interaction: when it was sent."""

    created_at: float


async def test_a_bot_that_leaves_jobs_unsubmitted_and_unfair_gets_fail_rows(
    session: aiohttp.ClientSession,
) -> None:
    run = ScenarioRun(SCENARIOS["budget"], parse_args(["budget", "--jobs", "10", "--channels", "5"]), [b""])
    clock = Clock()
    run.toapis.clock = clock
    await run.toapis.start()
    try:
        run.fire_started = clock.now
        run.records = {job: Sent(clock.now) for job in run.plans}
        big = [job for job, p in run.plans.items() if p.server == 0]
        small = [job for job, p in run.plans.items() if p.server not in (0, 5)]
        for job in big:  # the big server first, at once
            assert await submit(session, run.toapis, job) == 200
        clock.now += 30
        for job in small[:-1]:  # the small ones 30 s later, one never
            assert await submit(session, run.toapis, job) == 200
        rows = {row.key: row for row in run._provider_rows([], judged=True)}
    finally:
        await run.toapis.close()
    assert rows["submission_throughput"].verdict == FAIL
    assert rows["submission_throughput"].shown.startswith(f"only {len(big) + len(small) - 1} of 11 submitted")
    assert rows["fairness_ratio"].verdict == FAIL and rows["fairness_ratio"].value == math.inf
    assert rows["quiet_server_wait"].verdict == FAIL and rows["quiet_server_wait"].shown == "never submitted"
    assert rows["provider_429_share"].verdict == PASS and rows["rate_limit_failures"].verdict == PASS


async def test_submissions_refused_with_429_show_in_the_share_and_fail_their_jobs_count(
    session: aiohttp.ClientSession,
) -> None:
    run = ScenarioRun(SCENARIOS["budget"], parse_args(["budget", "--jobs", "60"]), [b""])
    run.toapis.clock = Clock()
    await run.toapis.start()
    try:
        statuses = [await submit(session, run.toapis, job) for job in range(1, 56)]
        rows = {row.key: row for row in run._provider_rows([53, 54, 55], judged=True)}
    finally:
        await run.toapis.close()
    assert statuses.count(429) == 5
    assert rows["provider_429_share"].value == pytest.approx(100 * 5 / 55)
    assert rows["provider_429_share"].verdict == FAIL
    assert rows["rate_limit_failures"].value == 3 and rows["rate_limit_failures"].verdict == FAIL
