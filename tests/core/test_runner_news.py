"""The runner with webhooks configured: a job waits between status queries on its task's news, so a
published status (from a webhook event) moves it on at once — queries 30 s apart never come."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bot.jobs.news import TaskNews
from bot.jobs.records import JobState, JobStore
from bot.jobs.runner import JobRunner, JobTimings
from bot.telemetry import Telemetry
from bot.toapis import TaskStatus, ToAPIsClient
from tests.core.test_runner import RecordingObserver, new_job
from tests.fakes.toapis import FakeToAPIs, TaskPlan
from tests.rig import eventually

CALLBACK = "https://imagine.example.com/toapis/events"


@pytest.fixture
async def toapis_fake() -> AsyncIterator[FakeToAPIs]:
    async with FakeToAPIs() as fake:
        fake.plan = TaskPlan(steps=[("queued", 0), ("in_progress", 30)], never_finish=True)
        yield fake


@pytest.fixture
async def client(toapis_fake: FakeToAPIs) -> AsyncIterator[ToAPIsClient]:
    client = ToAPIsClient(toapis_fake.base_url, toapis_fake.api_key, request_timeout=5.0)
    yield client
    await client.close()


async def started(
    store, client: ToAPIsClient, news: TaskNews, telemetry: Telemetry | None = None
) -> tuple[asyncio.Task, RecordingObserver, JobStore]:
    jobs = JobStore(store)
    timings = JobTimings(timeout=60.0, poll_queued=30.0, poll_running=30.0, progress_interval=0.0)
    runner = JobRunner(client, jobs, timings, news=news, telemetry=telemetry)
    observer = RecordingObserver()
    job, request = await new_job(jobs, n=2)
    run = asyncio.create_task(runner.run(job, request, observer))
    await eventually(lambda: news.watched == 1, within=10, what="the job waits on its task's news")
    return run, observer, jobs


async def test_a_published_completion_delivers_the_job_without_a_status_query(
    store, client, toapis_fake
) -> None:
    news = TaskNews()
    run, _, _ = await started(store, client, news)
    (task_id,) = news.watched_tasks()
    news.publish(
        TaskStatus(
            id=task_id, status="completed", progress=100, image_urls=tuple(toapis_fake.image_urls(task_id))
        )
    )
    job = await asyncio.wait_for(run, 10)
    assert (job.state, len(job.delivered_images), toapis_fake.polls[task_id], news.watched) == (
        JobState.DONE,
        2,
        0,
        0,
    )


async def test_a_published_failure_fails_the_job_with_the_providers_reason(
    store, client, toapis_fake
) -> None:
    news = TaskNews()
    run, _, _ = await started(store, client, news)
    (task_id,) = news.watched_tasks()
    news.publish(
        TaskStatus(id=task_id, status="failed", error_message="Too spicy", error_code="generation_failed")
    )
    job = await asyncio.wait_for(run, 10)
    assert (job.state, job.error, toapis_fake.polls[task_id]) == (
        JobState.FAILED,
        "The image service could not make this image: Too spicy",
        0,
    )


async def test_news_of_another_task_does_not_move_the_job(store, client, toapis_fake) -> None:
    news = TaskNews()
    run, _, _ = await started(store, client, news)
    refused = news.publish(
        TaskStatus(id="task_of_someone_else", status="completed", image_urls=("https://x/1.jpg",))
    )
    await asyncio.sleep(0)
    still_running = not run.done()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert (refused, still_running) == (False, True)


async def test_every_submission_carries_the_callback_url(toapis_fake) -> None:
    toapis_fake.webhooks.callback_url = CALLBACK
    async with ToAPIsClient(toapis_fake.base_url, toapis_fake.api_key, callback_url=CALLBACK) as client:
        await client.submit(model="doubao-seedream-5-0", prompt="a fox", size="1:1", n=1)
    assert toapis_fake.submissions[0]["callback_url"] == CALLBACK


async def test_without_a_webhook_in_the_console_the_submission_is_sent_again_without_it(
    toapis_fake, caplog
) -> None:
    async with ToAPIsClient(toapis_fake.base_url, toapis_fake.api_key, callback_url=CALLBACK) as client:
        first = await client.submit(model="doubao-seedream-5-0", prompt="a fox", size="1:1", n=1)
        second = await client.submit(model="doubao-seedream-5-0", prompt="a wolf", size="1:1", n=1)
    assert (
        bool(first.id and second.id),
        toapis_fake.submit_attempts,
        [("callback_url" in body) for body in toapis_fake.submissions],
        caplog.text.count("webhook_not_configured"),
    ) == (True, 3, [False, False], 1)


async def test_the_time_from_the_providers_finish_to_the_posted_images_is_measured(
    store, client, toapis_fake
) -> None:
    news, telemetry = TaskNews(), Telemetry()
    run, _, _ = await started(store, client, news, telemetry)
    (task_id,) = news.watched_tasks()
    finished = int(time.time()) - 5  # the provider finished 5 s before the bot heard of it
    news.publish(
        TaskStatus(
            id=task_id,
            status="completed",
            completed_at=finished,
            image_urls=tuple(toapis_fake.image_urls(task_id)),
        )
    )
    await asyncio.wait_for(run, 10)
    count = telemetry.registry.get_sample_value("imagine_completion_to_final_message_seconds_count")
    total = telemetry.registry.get_sample_value("imagine_completion_to_final_message_seconds_sum")
    assert (count, 5 <= total < 60) == (1.0, True)
