"""The runner's submissions through the fair queue, against the fake ToAPIs on loopback and a real
store: refusals for rate never fail a job and never charge twice, waiting too long gives the
quota back, the placeholder shows the place in line, stopping holds waiting jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.catalog import builtin_catalog
from bot.jobs.progress import Phase
from bot.jobs.queue import SubmitQueue
from bot.jobs.records import JobRecord, JobState, JobStore, NewJob
from bot.jobs.request import ImagineRequest, request_for_job
from bot.jobs.runner import BUSY, JobRunner, JobTimings
from bot.quota import Limit, QuotaLedger, QuotaPlan
from bot.toapis import ToAPIsClient
from bot.toapis.budget import Allowance, RateBudget, RateLimits
from tests.core.test_runner import RecordingObserver
from tests.fakes.toapis import GENERATIONS_PATH, FakeToAPIs, ProviderRateLimits, TaskPlan
from tests.rig import eventually

pytestmark = pytest.mark.asyncio

MODEL = "doubao-seedream-5-0"
TIMINGS = JobTimings(timeout=30.0, poll_queued=0.01, poll_running=0.01, progress_interval=0.0)
LIMITER_DOWN = {
    "error": {
        "message": "Rate limiter unavailable",
        "type": "rate_limit_error",
        "code": "rate_limit_unavailable",
    }
}


@pytest.fixture
async def toapis_fake() -> AsyncIterator[FakeToAPIs]:
    async with FakeToAPIs() as fake:
        fake.plan = TaskPlan(image_size=(32, 32))
        yield fake


@pytest.fixture
def jobs(store) -> JobStore:
    return JobStore(store)


def daily(user_id: int) -> str:
    return f"m:{user_id}:day"


async def new_job(
    jobs: JobStore, *, guild_id: int | None = 10, user_id: int = 3, n: int = 1
) -> tuple[JobRecord, ImagineRequest]:
    """A job as /imagine records it once its placeholder is posted, charged `n` images in quota."""
    recorded = NewJob(
        guild_id=guild_id,
        channel_id=30,
        user_id=user_id,
        application_id=1,
        interaction_token="itok",
        token_expires_at=time.time() + 900,
        upload_limit=10 * 1024 * 1024,
        prompt=f"a fox for {user_id}",
        model=MODEL,
        ratio="1:1",
        n=n,
    )
    job = await jobs.create(
        recorded, quota=QuotaPlan(images=n, image_limits=(Limit(daily(user_id), 100, "member_daily"),))
    )
    job = await jobs.update(job.id, message_id=4000 + job.id)
    return job, request_for_job(job, builtin_catalog())


async def make_runner(
    fake: FakeToAPIs, jobs: JobStore, *, limits: RateLimits, **queue_options: Any
) -> tuple[JobRunner, ToAPIsClient]:
    budget = RateBudget(limits)
    client = ToAPIsClient(fake.base_url, fake.api_key, request_timeout=5.0, rate_budget=budget)
    queue = SubmitQueue(budget.submit, **queue_options)
    return JobRunner(client, jobs, TIMINGS, budget=budget, submit_queue=queue), client


GENEROUS = RateLimits(Allowance(100, 10), Allowance(1000, 1000))


async def test_submissions_refused_for_rate_go_again_and_every_job_is_delivered_charged_once(
    toapis_fake, jobs, store
):
    # Our budget is larger than the account's (as if another deployment spent part of it): the
    # provider refuses some submissions with 429; none of those jobs fails or is charged twice.
    toapis_fake.rate_limits = ProviderRateLimits.group(submit=(20, 3), query=(1000, 1000))
    runner, client = await make_runner(toapis_fake, jobs, limits=GENEROUS)
    made = [await new_job(jobs, user_id=user_id, n=2) for user_id in range(1, 7)]
    observers = [RecordingObserver() for _ in made]
    try:
        finished = await asyncio.gather(
            *(
                runner.run(job, request, observer)
                for (job, request), observer in zip(made, observers, strict=True)
            )
        )
    finally:
        await client.close()
    used = await QuotaLedger(store).values([daily(user_id) for user_id in range(1, 7)])
    refused = toapis_fake.rate_limited["async_submit"]
    assert (
        [job.state for job in finished],
        len(toapis_fake.submissions),
        toapis_fake.submit_attempts,
        runner.submit_queue.rate_limited,
        [kind for observer in observers for kind in observer.kinds() if kind == "fail"],
        set(used.values()),
        refused > 0,
    ) == ([JobState.DONE] * 6, 6, 6 + refused, refused, [], {2}, True)


async def test_the_submit_limiter_being_down_never_fails_a_job(toapis_fake, jobs, store):
    toapis_fake.inject("POST", GENERATIONS_PATH, 503, LIMITER_DOWN, times=3)
    runner, client = await make_runner(toapis_fake, jobs, limits=GENEROUS, backoff=0.01)
    job, request = await new_job(jobs)
    observer = RecordingObserver()
    try:
        finished = await runner.run(job, request, observer)
    finally:
        await client.close()
    assert (
        finished.state,
        len(toapis_fake.submissions),
        toapis_fake.submit_attempts,
        runner.submit_queue.limiter_unavailable,
        await QuotaLedger(store).values([daily(3)]),
    ) == (JobState.DONE, 1, 4, 3, {daily(3): 1})


async def test_the_service_unavailable_three_times_ends_the_job_as_busy_with_the_quota_back(
    toapis_fake, jobs, store
):
    toapis_fake.inject("POST", GENERATIONS_PATH, 503, {"success": False, "message": "overloaded"}, times=5)
    runner, client = await make_runner(toapis_fake, jobs, limits=GENEROUS, backoff=0.01)
    job, request = await new_job(jobs, n=3)
    observer = RecordingObserver()
    try:
        finished = await runner.run(job, request, observer)
    finally:
        await client.close()
    assert (
        finished.state,
        finished.error,
        toapis_fake.submit_attempts,
        toapis_fake.submissions,
        await QuotaLedger(store).values([daily(3)]),
    ) == (JobState.FAILED, str(BUSY), 3, [], {daily(3): 0})


async def test_a_job_waiting_longer_than_the_queue_timeout_ends_with_its_quota_back(toapis_fake, jobs, store):
    runner, client = await make_runner(toapis_fake, jobs, limits=GENEROUS, timeout=0.3, refresh=0.05)
    runner.submit_queue.hold_off(3600)  # the provider asked for a long pause: nothing can go
    job, request = await new_job(jobs, n=2)
    observer = RecordingObserver()
    try:
        finished = await runner.run(job, request, observer)
    finally:
        await client.close()
    message = [detail for kind, detail in observer.calls if kind == "fail"]
    assert (
        finished.state,
        message,
        toapis_fake.submit_attempts,
        await QuotaLedger(store).values([daily(3)]),
        len(runner.submit_queue),
    ) == (
        JobState.FAILED,
        [
            "The bot was too busy to send your request to the image service within 1 second, so it was "
            "not sent and nothing was charged. Try again in a few minutes."
        ],
        0,
        {daily(3): 0},
        0,
    )


async def test_a_waiting_job_shows_its_place_in_line_then_runs(toapis_fake, jobs):
    runner, client = await make_runner(toapis_fake, jobs, limits=GENEROUS, refresh=0.02)
    first_job, first_request = await new_job(jobs, user_id=1)
    second_job, second_request = await new_job(jobs, user_id=2)
    # Held off once both records exist (their writes may take a while), so both jobs join the line.
    runner.submit_queue.hold_off(1.0)
    observers = [RecordingObserver(), RecordingObserver()]
    try:
        finished = await asyncio.gather(
            runner.run(first_job, first_request, observers[0]),
            runner.run(second_job, second_request, observers[1]),
        )
    finally:
        await client.close()
    waiting = [
        [(p.ahead, p.wait) for p in observer.progress if p.phase is Phase.WAITING] for observer in observers
    ]
    assert (
        [job.state for job in finished],
        [places[0] for places in waiting],
        [observer.progress[-1].phase for observer in observers],
    ) == ([JobState.DONE] * 2, [(0, 5.0), (1, 5.0)], [Phase.GENERATING] * 2)


async def test_stopping_holds_every_waiting_job_unsent_for_the_next_start(toapis_fake, jobs):
    runner, client = await make_runner(toapis_fake, jobs, limits=GENEROUS)
    runner.submit_queue.hold_off(3600)
    made = [await new_job(jobs, user_id=user_id) for user_id in (1, 2, 3)]
    observers = [RecordingObserver() for _ in made]
    try:
        running = [
            asyncio.create_task(runner.run(job, request, observer))
            for (job, request), observer in zip(made, observers, strict=True)
        ]
        await eventually(lambda: len(runner.submit_queue) == 3, what="three jobs in line")
        drained = await runner.drain_submissions(within=5)
        finished = await asyncio.gather(*running)
    finally:
        await client.close()
    assert (
        drained,
        [job.state for job in finished],
        [observer.kinds() for observer in observers],
        toapis_fake.submit_attempts,
    ) == (True, [JobState.ACCEPTED] * 3, [["hold"]] * 3, 0)


async def test_waiting_jobs_resumed_after_a_restart_are_sent_in_fair_order_and_none_fails(toapis_fake, jobs):
    # Left `accepted` by the last run: two of server 10's member 1, one of member 2, one of server 20.
    made = [
        await new_job(jobs, guild_id=10, user_id=1),
        await new_job(jobs, guild_id=10, user_id=1),
        await new_job(jobs, guild_id=10, user_id=2),
        await new_job(jobs, guild_id=20, user_id=4),
    ]
    # One submission on the wire at a time: the order they reach the service is the order of turns.
    runner, client = await make_runner(
        toapis_fake, jobs, limits=RateLimits(Allowance(50, 1), Allowance(1000, 1000)), slots=1
    )
    observers = [RecordingObserver() for _ in made]
    try:
        finished = await asyncio.gather(
            *(
                runner.run(job, request, observer, resumed=True)
                for (job, request), observer in zip(made, observers, strict=True)
            )
        )
    finally:
        await client.close()
    ids = [job.id for job, _ in made]
    sent = [body["prompt"] for body in toapis_fake.submissions]
    assert ([job.state for job in finished], sent, ids == sorted(ids)) == (
        [JobState.DONE] * 4,
        ["a fox for 1", "a fox for 4", "a fox for 2", "a fox for 1"],
        True,
    )
