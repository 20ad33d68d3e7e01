"""The runner's status queries against the fake ToAPIs on loopback: the floor, the query budget,
429s, statuses published by webhook events, webhook mode and the deadline.

Floors here are small (tenths of a second) so the suite stays quick; the production floor's
arithmetic is checked on simulated clocks in `test_polling.py`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from bot.jobs.news import TaskNews
from bot.jobs.records import JobState, JobStore
from bot.jobs.runner import JobRunner, JobTimings
from bot.toapis import TaskStatus, ToAPIsClient
from bot.toapis.budget import Allowance, RateBudget, RateLimits
from tests.core.test_runner import RecordingObserver, new_job
from tests.fakes.toapis import FakeToAPIs, TaskPlan
from tests.rig import eventually

pytestmark = pytest.mark.asyncio

FLOOR = 0.1
WEBHOOK_WARNING = "webhooks configured but not arriving — check the ToAPIs console"


@pytest.fixture
async def toapis_fake() -> AsyncIterator[FakeToAPIs]:
    async with FakeToAPIs() as fake:
        yield fake


@pytest.fixture
async def client(toapis_fake: FakeToAPIs) -> AsyncIterator[ToAPIsClient]:
    client = ToAPIsClient(toapis_fake.base_url, toapis_fake.api_key, request_timeout=5.0)
    yield client
    await client.close()


@pytest.fixture
def jobs(store) -> JobStore:
    return JobStore(store)


def timings(floor: float = FLOOR, timeout: float = 30.0) -> JobTimings:
    return JobTimings(timeout=timeout, poll_queued=floor, poll_running=floor, progress_interval=0.0)


def status_queries(fake: FakeToAPIs) -> int:
    return sum(1 for r in fake.requests if r.method == "GET" and r.path.startswith("/v1/images/generations/"))


async def test_status_queries_keep_the_floor_and_each_takes_a_token(client, jobs, toapis_fake):
    budget = RateBudget(RateLimits.for_group("default"))
    runner = JobRunner(client, jobs, timings(), budget=budget)
    toapis_fake.plan = TaskPlan(advance="time", step_seconds=0.15)  # finished 0.45 s after submission
    runs = []
    for _ in range(5):
        job, request = await new_job(jobs, n=1)
        runs.append(runner.run(job, request, RecordingObserver()))
    finished = await asyncio.gather(*runs)
    assert [job.state for job in finished] == [JobState.DONE] * 5
    assert toapis_fake.queries_sooner_than(FLOOR) == 0
    assert budget.query.taken == status_queries(toapis_fake) == sum(runner.queries_per_job)


async def test_turns_delayed_by_a_short_budget_never_shorten_a_task_s_next_gap(client, jobs, toapis_fake):
    # Three queries a second for five tasks that would each like one every 0.1 s.
    budget = RateBudget(RateLimits(Allowance(50, 50), Allowance(3, 1)))
    runner = JobRunner(client, jobs, timings(), budget=budget)
    toapis_fake.plan = TaskPlan(advance="time", step_seconds=0.3)
    runs = []
    for _ in range(5):
        job, request = await new_job(jobs, n=1)
        runs.append(runner.run(job, request, RecordingObserver()))
    finished = await asyncio.gather(*runs)
    assert [job.state for job in finished] == [JobState.DONE] * 5
    assert (runner.poll_scheduler.waited > 0, toapis_fake.queries_sooner_than(FLOOR)) == (True, 0)
    assert (toapis_fake.rate_limited["async_query"], budget.query.taken) == (0, status_queries(toapis_fake))


async def test_a_429_on_a_status_query_backs_off_holds_the_bucket_and_never_fails_the_job(
    client, jobs, toapis_fake
):
    budget = RateBudget(RateLimits.for_group("default"))
    runner = JobRunner(client, jobs, timings(), budget=budget)
    toapis_fake.plan = TaskPlan(advance="time", step_seconds=0.1)
    toapis_fake.inject(
        "GET",
        "/v1/images/generations/",
        429,
        {"error": {"code": "rate_limit_exceeded"}},
        headers={"Retry-After": "0.5"},
        times=2,
    )
    job, request = await new_job(jobs, n=1)
    observer = RecordingObserver()
    started = time.monotonic()
    finished = await runner.run(job, request, observer)
    queries = status_queries(toapis_fake)
    assert (finished.state, observer.kinds(), runner.query_rate_limited) == (
        JobState.DONE,
        ["delivery_turn", "deliver"],
        2,
    )
    assert time.monotonic() - started >= 1.0  # each refusal's Retry-After (0.5 s) was waited out
    assert budget.query.taken == queries  # the refused queries took their tokens too
    assert toapis_fake.queries_sooner_than(FLOOR) == 0


async def test_a_published_status_ends_the_wait_before_the_next_query(client, jobs, toapis_fake, store):
    news = TaskNews()
    runner = JobRunner(client, jobs, timings(floor=30.0), news=news)
    toapis_fake.plan = TaskPlan(never_finish=True)
    job, request = await new_job(jobs, n=1)
    observer = RecordingObserver()
    run = asyncio.create_task(runner.run(job, request, observer))
    await eventually(lambda: toapis_fake.tasks, what="the task submitted")
    task_id = next(iter(toapis_fake.tasks))
    await asyncio.sleep(0.1)
    news.publish(
        TaskStatus(
            id=task_id, status="completed", progress=100, image_urls=tuple(toapis_fake.image_urls(task_id))
        )
    )
    finished = await asyncio.wait_for(run, 5)
    assert (finished.state, status_queries(toapis_fake), news.watched) == (JobState.DONE, 0, 0)


async def test_the_deadline_counts_from_the_submission_not_from_the_job_s_creation(client, jobs, toapis_fake):
    runner = JobRunner(client, jobs, timings(timeout=5.0))
    toapis_fake.plan = TaskPlan(advance="time", step_seconds=0.1)
    task = await client.submit(model="doubao-seedream-5-0", prompt="a red fox in snow", size="1:1", n=1)
    # It waited 20 minutes in line before it was sent, a moment ago.
    job, request = await new_job(
        jobs,
        n=1,
        state=JobState.RUNNING,
        task_id=task.id,
        submitted_at=time.time(),
        created_at=time.time() - 1200,
    )
    finished = await runner.run(job, request, RecordingObserver(), resumed=True)
    assert finished.state is JobState.DONE


async def test_a_task_unfinished_at_the_deadline_ends_timed_out(client, jobs, toapis_fake):
    runner = JobRunner(client, jobs, timings(timeout=1.0))
    toapis_fake.plan = TaskPlan(never_finish=True)
    job, request = await new_job(jobs, n=1)
    observer = RecordingObserver()
    started = time.monotonic()
    finished = await runner.run(job, request, observer)
    assert (finished.state, observer.calls[-1]) == (
        JobState.FAILED,
        ("fail", "Timed out after 1 second — the image service did not finish in time."),
    )
    assert 1.0 <= time.monotonic() - started < 3.0


async def publish_when_done(fake: FakeToAPIs, news: TaskNews, stop: asyncio.Event) -> None:
    """A webhook sender: publishes each task's completion as soon as its timeline finishes."""
    sent: set[str] = set()
    while not stop.is_set():
        for task_id, task in list(fake.tasks.items()):
            done_at = task.created + len(task.plan.steps) * task.plan.step_seconds
            if task_id not in sent and fake.clock() >= done_at:
                sent.add(task_id)
                news.publish(
                    TaskStatus(
                        id=task_id,
                        status="completed",
                        progress=100,
                        image_urls=tuple(fake.image_urls(task_id)),
                        completed_at=int(time.time()),
                    )
                )
        await asyncio.sleep(0.01)


async def test_in_webhook_mode_arriving_events_finish_jobs_without_queries(client, jobs, toapis_fake, caplog):
    news = TaskNews()
    runner = JobRunner(client, jobs, timings(), news=news, webhooks=True)
    toapis_fake.plan = TaskPlan(advance="time", step_seconds=0.05)
    stop = asyncio.Event()
    sender = asyncio.create_task(publish_when_done(toapis_fake, news, stop))
    try:
        for _ in range(4):
            job, request = await new_job(jobs, n=1)
            assert (await runner.run(job, request, RecordingObserver())).state is JobState.DONE
    finally:
        stop.set()
        await sender
    assert (status_queries(toapis_fake), runner.webhooks_active, WEBHOOK_WARNING in caplog.text) == (
        0,
        True,
        False,
    )


async def test_in_webhook_mode_tasks_are_queried_a_minute_of_floors_apart(client, jobs, toapis_fake):
    runner = JobRunner(client, jobs, timings(floor=0.05), news=TaskNews(), webhooks=True)
    toapis_fake.plan = TaskPlan(advance="time", step_seconds=0.4)  # finished 1.2 s after submission
    job, request = await new_job(jobs, n=1)
    assert (await runner.run(job, request, RecordingObserver())).state is JobState.DONE
    (times,) = toapis_fake.poll_times.values()
    created = next(iter(toapis_fake.tasks.values())).created
    # One query a minute at the production floor: here 12 floors, 0.6 s.
    assert [round(at - created, 1) for at in times] == [0.6, 1.2]


async def test_webhooks_that_never_arrive_send_the_bot_back_to_polling_with_one_warning(
    client, jobs, toapis_fake, caplog
):
    caplog.set_level(logging.WARNING)
    runner = JobRunner(client, jobs, timings(floor=0.05), news=TaskNews(), webhooks=True)
    toapis_fake.plan = TaskPlan(advance="time", step_seconds=0.02)
    for _ in range(3):
        job, request = await new_job(jobs, n=1)
        assert (await runner.run(job, request, RecordingObserver())).state is JobState.DONE
    assert (runner.webhooks_active, caplog.text.count(WEBHOOK_WARNING)) == (False, 1)
    toapis_fake.poll_times.clear()
    job, request = await new_job(jobs, n=1)
    assert (await runner.run(job, request, RecordingObserver())).state is JobState.DONE
    (times,) = toapis_fake.poll_times.values()
    task = toapis_fake.tasks[(await jobs.get(job.id)).task_id or ""]
    assert times[0] - task.created < 0.3  # polled as usual again, not a minute later
    assert caplog.text.count(WEBHOOK_WARNING) == 1
