"""The benchmark's webhooks scenario: the fake ToAPIs sends each job's signed event at its planned
moment (twice or never as planned) to a loopback receiver standing behind the public callback URL,
the scenario's two runs share their tasks, and the side-by-side table reports a bot that misses the
targets as FAIL rows, never a crash.

The fake is driven with plain aiohttp on loopback (a small aiohttp server stands in for the bot's
webhook route), so these test the benchmark, not the bot.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bench import webhooks
from bench.fakes import BenchToAPIs, EventPlan, JobPlan
from bench.report import FAIL, NA, PASS, PairRow, at_most, equals, render_pairs
from bench.run import SCENARIOS, Outcome, ScenarioRun, compare_with_twin, parse_args
from bot.webhooks.signing import parse_signing_secret, verify_signature
from tests.fakes.toapis import make_image

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
GENERATIONS = "/v1/images/generations"


@dataclass
class Receiver:
    """The bot's webhook route as the fake reaches it: records each delivery, answers `status`."""

    status: int = 200
    received: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)
    base_url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((time.monotonic(), dict(request.headers), await request.read()))
        return web.json_response({"received": True}, status=self.status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()
    app = web.Application()
    app.router.add_post("/toapis/events", got.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    got.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield got
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class Clock:
    """The fake's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plan(job: int, duration: float) -> JobPlan:
    return JobPlan(job, channel_id=1, n=1, duration=duration, queued=duration / 4, images=(0,))


async def submit(session: aiohttp.ClientSession, fake: BenchToAPIs, job: int, callback: bool = True) -> int:
    body: dict[str, object] = {"model": "doubao-seedream-5-0", "prompt": f"bench {job}", "n": 1}
    if callback:
        body["callback_url"] = webhooks.CALLBACK_URL
    async with session.post(fake.url(GENERATIONS), json=body, headers=AUTH) as response:
        await response.read()
        return response.status


async def query(session: aiohttp.ClientSession, fake: BenchToAPIs, task_id: str) -> str:
    async with session.get(fake.url(f"{GENERATIONS}/{task_id}"), headers=AUTH) as response:
        return str((await response.json())["status"])


async def started_fake(
    plans: dict[int, JobPlan], events: dict[int, EventPlan], receiver: Receiver
) -> BenchToAPIs:
    fake = BenchToAPIs([make_image(32, 32)], plans, api_key=KEY)
    fake.webhooks.event_plans = events
    fake.webhooks.configure(webhooks.CALLBACK_URL, deliver_to=receiver.base_url)
    await fake.start()
    return fake


# --------------------------------------------------------------------------- the events


def test_one_percent_of_the_jobs_get_their_event_twice_and_another_one_percent_never() -> None:
    events = webhooks.event_plans(list(range(1, 301)), seed=1)
    twice = {job for job, e in events.items() if e.twice}
    never = {job for job, e in events.items() if e.never}
    assert (len(twice), len(never), twice & never) == (3, 3, set())
    assert all(0.05 <= e.delay <= 0.3 for e in events.values())
    assert webhooks.event_plans(list(range(1, 301)), seed=1) == events  # seeded
    assert webhooks.event_plans(list(range(1, 301)), seed=2) != events


def test_a_small_run_still_loses_one_event_and_duplicates_another() -> None:
    events = webhooks.event_plans(list(range(1, 11)), seed=4)
    assert sorted((e.twice, e.never) for e in events.values()).count((True, False)) == 1
    assert sorted((e.twice, e.never) for e in events.values()).count((False, True)) == 1


async def test_the_event_is_sent_signed_its_planned_delay_after_the_completion(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    fake = await started_fake({1: plan(1, 0.4)}, {1: EventPlan(0.2)}, receiver)
    try:
        assert await submit(session, fake, 1) == 200
        task_id = fake.tasks_by_job[1][0]
        timeline = fake.timelines[task_id]
        await asyncio.wait_for(fake.webhooks.idle(), 5)
    finally:
        await fake.close()
    [(_, headers, body)] = receiver.received
    [delivery] = fake.webhooks.deliveries
    assert delivery.sent_at - timeline.completed_at >= 0.2 - 0.001  # never before its planned moment
    verify_signature(  # raises unless signed with the console's secret as documented
        [parse_signing_secret(fake.webhooks.secret)],
        event_id=headers["X-ToAPIs-Webhook-Id"],
        timestamp=headers["X-ToAPIs-Webhook-Timestamp"],
        signature=headers["X-ToAPIs-Webhook-Signature"],
        body=body,
        now=time.time(),
    )
    event = json.loads(body)
    assert (event["type"], event["data"]["task_id"], event["data"]["status"]) == (
        "generation.completed",
        task_id,
        "SUCCESS",
    )
    assert (timeline.detected_by, timeline.detected_at) == ("event", fake.webhooks.deliveries[0].answered_at)


async def test_a_duplicated_event_comes_twice_with_one_id_and_a_lost_one_never(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    plans = {1: plan(1, 0.2), 2: plan(2, 0.2)}
    fake = await started_fake(
        plans, {1: EventPlan(0.05, twice=True), 2: EventPlan(0.05, never=True)}, receiver
    )
    try:
        assert [await submit(session, fake, job) for job in (1, 2)] == [200, 200]
        await asyncio.wait_for(fake.webhooks.idle(), 5)  # both tasks' ends, and every delivery
        lost = fake.timelines[fake.tasks_by_job[2][0]]
        assert lost.detected_at is None  # nothing but a status query can find it now
        assert await query(session, fake, lost.task_id) == "completed"
    finally:
        await fake.close()
    ids = [headers["X-ToAPIs-Webhook-Id"] for _, headers, _ in receiver.received]
    assert len(ids) == 2 and ids[0] == ids[1]
    assert {json.loads(body)["data"]["task_id"] for _, _, body in receiver.received} == {
        fake.tasks_by_job[1][0]
    }
    assert lost.detected_by == "status query"


async def test_a_poll_that_saw_the_completion_first_keeps_the_detection(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    fake = await started_fake({1: plan(1, 0.2)}, {1: EventPlan(0.5)}, receiver)
    fake.clock = clock = Clock()
    try:
        assert await submit(session, fake, 1) == 200  # its event is due 0.7 s from now
        timeline = fake.timelines[fake.tasks_by_job[1][0]]
        clock.now += 0.25
        assert await query(session, fake, timeline.task_id) == "completed"
        clock.now += 1  # the event is answered later by the fake's clock too
        polled_at = timeline.detected_at
        await asyncio.wait_for(fake.webhooks.idle(), 5)
    finally:
        await fake.close()
    assert len(receiver.received) == 1
    assert (timeline.detected_by, timeline.detected_at) == ("status query", polled_at)


async def test_a_refused_delivery_is_recorded_and_detects_nothing(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.status = 401
    fake = await started_fake({1: plan(1, 0.1)}, {1: EventPlan(0.05)}, receiver)
    fake.webhooks.retry_scale = 0  # the provider's retries, 10 s … 24 h apart, at once
    try:
        assert await submit(session, fake, 1) == 200
        await asyncio.wait_for(fake.webhooks.idle(), 10)
        timeline = fake.timelines[fake.tasks_by_job[1][0]]
    finally:
        await fake.close()
    assert [d.status for d in fake.webhooks.deliveries] == [401] * 8  # the first and 7 retries
    assert timeline.detected_at is None


async def test_without_a_configured_webhook_nothing_is_sent_and_callback_url_is_refused(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    fake = BenchToAPIs([make_image(32, 32)], {1: plan(1, 0.1), 2: plan(2, 0.1)}, api_key=KEY)
    await fake.start()
    try:
        assert await submit(session, fake, 1, callback=False) == 200
        assert await submit(session, fake, 2) == 400  # webhook_not_configured, as documented
        await asyncio.wait_for(fake.webhooks.idle(), 5)  # nothing was scheduled to be sent
    finally:
        await fake.close()
    assert (receiver.received, fake.webhooks.deliveries, list(fake.tasks_by_job)) == ([], [], [1])


# --------------------------------------------------------------------------- the two runs


def test_both_runs_share_their_tasks_and_only_the_webhooks_run_configures_the_bot_for_events() -> None:
    opts = parse_args(["webhooks", "--jobs", "40", "--channels", "4"])
    pool = [make_image(32, 32)]
    twin = ScenarioRun(SCENARIOS["webhooks"], opts, pool)
    run = ScenarioRun(SCENARIOS["webhooks"], opts, pool, with_webhooks=True)
    assert [(p.n, p.duration, p.queued, p.images) for p in twin.plans.values()] == [
        (p.n, p.duration, p.queued, p.images) for p in run.plans.values()
    ]
    assert (twin.name, run.name) == ("webhooks-polling-only", "webhooks")
    env = run._webhook_env()
    assert twin._webhook_env() == {} and twin.toapis.webhooks.callback_url is None
    assert env["TOAPIS_CALLBACK_URL"].startswith("https://")
    assert env["TOAPIS_WEBHOOK_SECRETS"] == run.toapis.webhooks.secret
    # The public address reaches the bot's loopback port, as the operator's proxy forwards it.
    assert run.toapis.webhooks.delivery_url() == f"http://127.0.0.1:{env['HTTP_PORT']}/toapis/events"
    assert len(run.toapis.webhooks.event_plans) == 40 and not twin.toapis.webhooks.event_plans


def test_a_pair_row_judges_the_twin_only_when_asked() -> None:
    both = PairRow("lost", "lost", 0, "0", equals(0), {}, 3, "3", None, judge_twin=True)
    mine = PairRow("p50", "p50", 0.2, "0.20 s", at_most(0.3), {}, 4.0, "4.00 s", 0.05)
    unmeasured = PairRow("p50", "p50", None, "n/a", at_most(0.3))
    assert (both.verdict, mine.verdict, unmeasured.verdict) == (FAIL, PASS, NA)
    table = render_pairs("t", [both, mine], ("polling only", "webhooks"))
    assert "0 (both)" in table and "0.05" in table and table.endswith("1 of 2 targets met, 1 FAILED: FAIL")


@dataclass
class Sent:
    """What the figures read of a fired interaction."""

    id: int
    created_at: float
    acknowledged: bool = False
    ephemeral: bool = False
    callback: None = None


async def _submitted_run(run: ScenarioRun, session: aiohttp.ClientSession, *, polls_each: int) -> None:
    """Every job submitted to the run's fake (with the callback URL when it has webhooks) and its
    task queried `polls_each` times; nothing reaches Discord, as with a bot that delivers nothing."""
    run.fire_started = time.monotonic()
    run.records = {job: Sent(job, time.monotonic()) for job in run.plans}
    for job in run.plans:
        assert await submit(session, run.toapis, job, callback=run.with_webhooks) == 200
        for _ in range(polls_each):
            await query(session, run.toapis, run.toapis.tasks_by_job[job][0])


async def test_a_bot_that_delivers_nothing_and_polls_a_lot_gets_fail_rows_beside_its_twin(
    receiver: Receiver, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    opts = parse_args(
        ["webhooks", "--jobs", "10", "--channels", "2", "--min-seconds", "0.5", "--max-seconds", "0.6"]
    )
    pool = [make_image(32, 32)]
    twin = ScenarioRun(SCENARIOS["webhooks"], opts, pool)
    run = ScenarioRun(SCENARIOS["webhooks"], opts, pool, with_webhooks=True)
    run._webhook_env()
    run.toapis.webhooks.deliver_to = receiver.base_url  # no bot: the receiver answers instead
    twin.toapis.clock = twin_clock = Clock()
    for each in (twin, run):
        await each.toapis.start()
    try:
        await _submitted_run(twin, session, polls_each=1)
        await _submitted_run(run, session, polls_each=3)  # all three before its task completes
        await asyncio.wait_for(run.toapis.webhooks.idle(), 10)  # every event but the lost one sent
        twin_clock.now += 5
        for job in twin.plans:  # the twin's bot polls again 5 s after the submission
            await query(session, twin.toapis, twin.toapis.tasks_by_job[job][0])
        twin_outcome, outcome = (Outcome(each.sc, each.settings) for each in (twin, run))
        for each, result in ((twin, twin_outcome), (run, outcome)):
            result.rows, result.notes = each.figures()
            result.jobs = each.job_details
        combined = compare_with_twin(twin, twin_outcome, run, outcome)
    finally:
        for each in (twin, run):
            await each.toapis.close()
    rows = {row.key: row for row in combined.rows if isinstance(row, PairRow)}
    assert len(rows) == len(combined.rows)  # every figure beside its twin's
    assert rows["delivered"].verdict == FAIL
    assert rows["lost"].verdict == FAIL and rows["lost"].shown == "10"
    queries = rows["queries_per_job"]
    assert (queries.value, queries.twin_value, queries.verdict) == (3.0, 2.0, FAIL)
    assert queries.ratio == pytest.approx(1.5)
    detection = rows["detection_lag_p50"]
    # Known from the events, 50–300 ms after completion; the twin only from its poll 5 s in.
    durations = sorted(p.duration for p in twin.plans.values())
    assert detection.twin_value == pytest.approx(5 - (durations[4] + durations[5]) / 2)
    assert detection.value is not None and 0.05 <= detection.value < detection.twin_value
    assert detection.ratio is not None and detection.ratio < 1
    assert rows["detected_by"].shown == "9 · 0"  # the lost event's task was never queried again
    assert rows["events"].shown == "9 · 1 · 1" and rows["deliveries_refused"].verdict == PASS
    answered = rows["delivery_answer_p50"].value
    assert answered is not None and answered < 0.1  # the receiver answers at once
    assert rows["lost_events_delivered"].shown == "0 of 1" and rows["lost_events_delivered"].verdict == FAIL
    table = render_pairs(combined.title, list(rows.values()), ("polling only", "webhooks"))
    assert table.splitlines()[-1].endswith(": FAIL")
    document = combined.to_json()
    assert document["twin"]["scenario"] == "webhooks" and document["result"] == FAIL
    assert {entry["event"]["sent"] for entry in document["jobs"]} == {"once", "twice", "never"}
    twice = next(entry["event"] for entry in document["jobs"] if entry["event"]["sent"] == "twice")
    assert [status for _, _, status in twice["deliveries"]] == [200, 200]


def test_the_webhooks_scenario_spreads_its_jobs_within_the_providers_submission_rate_unless_told() -> None:
    pool = [make_image(32, 32)]
    paced = ScenarioRun(SCENARIOS["webhooks"], parse_args(["webhooks"]), pool, with_webhooks=True)
    burst = ScenarioRun(SCENARIOS["webhooks"], parse_args(["webhooks", "--fire-seconds", "0"]), pool)
    budget_run = ScenarioRun(SCENARIOS["budget"], parse_args(["budget"]), pool)
    assert (len(paced.plans), paced.channel_count) == (250, 25)
    assert len(paced.plans) / paced.fire_seconds < 5  # the default group's 5 submissions a second
    assert (burst.fire_seconds, budget_run.fire_seconds) == (0, 0)


async def test_deliveries_the_bot_left_unanswered_are_counted_by_answer(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    opts = parse_args(["webhooks", "--jobs", "3", "--min-seconds", "0.1", "--max-seconds", "0.1"])
    run = ScenarioRun(SCENARIOS["webhooks"], opts, [make_image(32, 32)], with_webhooks=True)
    run._webhook_env()  # the fake delivers to a port nobody listens on: no answer
    run.toapis.webhooks.retry_scale = 0
    await run.toapis.start()
    try:
        for job in run.plans:
            assert await submit(session, run.toapis, job) == 200
        await asyncio.wait_for(run.toapis.webhooks.idle(), 10)
        rows = {
            row.key: row for row in compare_with_twin(run, Outcome(run.sc, {}), run, Outcome(run.sc, {})).rows
        }
    finally:
        await run.toapis.close()
    posts = len(run.toapis.webhooks.deliveries)
    assert posts >= 8 and rows["deliveries_refused"].verdict == FAIL
    assert rows["deliveries_refused"].shown == f"{posts} of {posts}  ({posts} no answer)"
    assert rows["delivery_answer_p50"].value is None
