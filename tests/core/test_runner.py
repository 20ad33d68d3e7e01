"""The job runner on its own: real HTTP to the fake ToAPIs on loopback, a real store, no Discord.

The chat adapter is replaced by `RecordingObserver`, which keeps every call the runner makes,
so each test reads as "what the member would have been shown" plus "what the record keeps".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.catalog import builtin_catalog
from bot.i18n import Readable
from bot.jobs.progress import JobProgress, Phase
from bot.jobs.records import JobRecord, JobState, JobStore, NewJob
from bot.jobs.request import ImagineRequest, request_for_job
from bot.jobs.runner import RESULTS_EXPIRED, JobOutcome, JobRunner, JobTimings
from bot.quota import Limit, QuotaLedger, QuotaPlan
from bot.toapis import ToAPIsClient
from tests.fakes.toapis import FakeToAPIs, TaskPlan, make_image

pytestmark = pytest.mark.asyncio

MODEL = "doubao-seedream-5-0"
DAILY = "m:1:3:day"
ACTIVE = "am:1:3"
FIRST_MESSAGE_ID = 5000
REFUSAL = "The prompt was rejected by the content policy"


class RecordingObserver:
    """A `JobObserver` that records every call, in order, as (what, detail) pairs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.outcomes: list[JobOutcome] = []
        self._seen = asyncio.Event()

    @property
    def progress(self) -> list[JobProgress]:
        return [detail for what, detail in self.calls if what == "progress"]

    async def show_progress(self, state: JobProgress) -> None:
        self.calls.append(("progress", state))
        self._seen.set()

    def references_ready(self, urls: tuple[str, ...]) -> None:
        self.calls.append(("references_ready", urls))

    @contextlib.asynccontextmanager
    async def delivery_turn(self) -> AsyncIterator[None]:
        self.calls.append(("delivery_turn", None))
        yield

    async def deliver(self, outcome: JobOutcome) -> list[int | None]:
        self.calls.append(("deliver", len(outcome.images)))
        self.outcomes.append(outcome)
        # Every image in one message, as an album would be posted.
        return [FIRST_MESSAGE_ID] * len(outcome.images)

    async def fail(self, message: Readable, elapsed: float) -> None:
        self.calls.append(("fail", str(message)))  # its English

    async def hold(self) -> None:
        self.calls.append(("hold", None))

    def result_kept(self) -> bool:
        return False

    async def until_progress_count(self, count: int) -> None:
        """Wait until `count` progress states were shown (the throttle sends in the background)."""
        async with asyncio.timeout(5):
            while len(self.progress) < count:
                self._seen.clear()
                await self._seen.wait()

    def kinds(self) -> list[str]:
        """The calls other than progress, in order."""
        return [what for what, _ in self.calls if what != "progress"]


class PollPacer:
    """Stands in for the runner's sleep between polls: instead of waiting, it lets the progress
    the runner just offered reach the observer, so every state a poll revealed is recorded."""

    def __init__(self, observer: RecordingObserver) -> None:
        self.observer = observer
        self.naps = 0

    async def __call__(self, _delay: float) -> None:
        self.naps += 1
        await self.observer.until_progress_count(self.naps)


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
def observer() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
def jobs(store) -> JobStore:
    return JobStore(store)


@pytest.fixture
def runner(client: ToAPIsClient, jobs: JobStore, observer: RecordingObserver) -> JobRunner:
    timings = JobTimings(timeout=30.0, poll_queued=0.01, poll_running=0.01, progress_interval=0.0)
    return JobRunner(client, jobs, timings, sleep=PollPacer(observer))


def quota(images: int) -> QuotaPlan:
    return QuotaPlan(
        images=images,
        image_limits=(Limit(DAILY, 100, "member_daily"),),
        active_limits=(Limit(ACTIVE, 5, "member_active"),),
    )


async def new_job(jobs: JobStore, *, n: int, **fields: Any) -> tuple[JobRecord, ImagineRequest]:
    """A job as /imagine records it once its placeholder is posted, charged `n` images in quota."""
    recorded = NewJob(
        guild_id=10,
        channel_id=30,
        user_id=3,
        application_id=1,
        interaction_token="itok",
        token_expires_at=time.time() + 900,
        upload_limit=10 * 1024 * 1024,
        prompt="a red fox in snow",
        model=MODEL,
        ratio="1:1",
        n=n,
    )
    job = await jobs.create(recorded, quota=quota(n))
    # Then as the job's life has taken it so far (its placeholder posted, maybe sent already).
    job = await jobs.update(job.id, message_id=4000, **fields)
    return job, request_for_job(job, builtin_catalog())


async def counters(store) -> dict[str, int]:
    return await QuotaLedger(store).values([DAILY, ACTIVE])


async def test_a_job_with_three_images_shows_each_step_delivers_all_three_and_is_done(
    runner, jobs, observer, store, toapis_fake
):
    toapis_fake.plan = TaskPlan(image_size=(80, 48))
    job, request = await new_job(jobs, n=3)

    finished = await runner.run(job, request, observer)

    stored = await jobs.get(job.id)
    assert (
        observer.progress,
        observer.kinds(),
        [(image.width, image.height) for image in observer.outcomes[0].images],
        stored.state,
        stored.delivered_message_ids,
        len(stored.delivered_images),
        finished.state,
        await counters(store),
    ) == (
        [
            JobProgress(Phase.QUEUED, 0),
            JobProgress(Phase.GENERATING, 40),
            JobProgress(Phase.GENERATING, 80),
        ],
        ["delivery_turn", "deliver"],
        [(80, 48)] * 3,
        JobState.DONE,
        (FIRST_MESSAGE_ID,),
        3,
        JobState.DONE,
        {DAILY: 3, ACTIVE: 0},
    )


async def test_a_task_the_service_fails_ends_in_plain_words_with_the_quota_refunded(
    runner, jobs, observer, store, toapis_fake
):
    toapis_fake.plan = TaskPlan(outcome="failed", failure_message=REFUSAL)
    job, request = await new_job(jobs, n=2)

    await runner.run(job, request, observer)

    stored = await jobs.get(job.id)
    expected = f"The image service could not make this image: {REFUSAL}"
    assert (
        observer.calls[-1],
        observer.kinds(),
        (stored.state, stored.error, stored.quota_settled),
        await counters(store),
    ) == (
        ("fail", expected),
        ["fail"],
        (JobState.FAILED, expected, True),
        {DAILY: 0, ACTIVE: 0},
    )


async def test_results_expired_before_delivery_fail_the_job_without_downloading(
    runner, jobs, observer, store, toapis_fake
):
    url = toapis_fake.add_file("late.jpg", make_image(64, 64))
    job, request = await new_job(
        jobs,
        n=1,
        state=JobState.DELIVERING,
        task_id="task_img_expired",
        result_urls=(url,),
        result_expires_at=time.time() - 60,
    )

    await runner.run(job, request, observer, resumed=True)

    stored = await jobs.get(job.id)
    assert (
        observer.kinds(),
        observer.calls[-1],
        toapis_fake.downloads,
        (stored.state, stored.error),
        await counters(store),
    ) == (
        ["delivery_turn", "fail"],
        ("fail", str(RESULTS_EXPIRED)),
        0,
        (JobState.FAILED, str(RESULTS_EXPIRED)),
        {DAILY: 0, ACTIVE: 0},
    )


async def test_a_damaged_image_among_good_ones_is_left_out_and_refunded(
    runner, jobs, observer, store, toapis_fake
):
    urls = (
        toapis_fake.add_file("one.jpg", make_image(64, 64, seed=1)),
        toapis_fake.add_file("two.png", b"\x89PNG\r\n\x1a\n not really a picture", "image/png"),
        toapis_fake.add_file("three.jpg", make_image(64, 64, seed=3)),
    )
    job, request = await new_job(
        jobs,
        n=3,
        state=JobState.DELIVERING,
        task_id="task_img_damaged",
        result_urls=urls,
        result_expires_at=time.time() + 3600,
    )

    await runner.run(job, request, observer, resumed=True)

    stored = await jobs.get(job.id)
    outcome = observer.outcomes[0]
    assert (
        observer.kinds(),
        [image.data for image in outcome.images],
        (outcome.requested, outcome.returned, outcome.lost),
        stored.state,
        len(stored.delivered_images),
        await counters(store),
    ) == (
        ["delivery_turn", "deliver"],
        [make_image(64, 64, seed=1), make_image(64, 64, seed=3)],
        (3, 3, 1),
        JobState.DONE,
        2,
        {DAILY: 2, ACTIVE: 0},
    )


async def test_a_running_job_resumed_after_a_restart_is_polled_not_sent_again(
    runner, jobs, observer, store, client, toapis_fake
):
    toapis_fake.plan = TaskPlan(steps=[("queued", 0), ("in_progress", 50)])
    task = await client.submit(model=MODEL, prompt="a red fox in snow", size="1:1", n=2)
    job, request = await new_job(
        jobs, n=2, state=JobState.RUNNING, task_id=task.id, submitted_at=time.time() - 1, progress=0
    )

    await runner.run(job, request, observer, resumed=True)

    stored = await jobs.get(job.id)
    assert (
        len(toapis_fake.submissions),
        observer.kinds(),
        observer.progress[-1],
        (stored.state, stored.task_id, len(stored.delivered_images)),
        await counters(store),
    ) == (
        1,
        ["delivery_turn", "deliver"],
        JobProgress(Phase.GENERATING, 50),
        (JobState.DONE, task.id, 2),
        {DAILY: 2, ACTIVE: 0},
    )


async def test_once_submissions_stop_an_unsent_job_is_held_accepted_for_the_next_start(
    runner, jobs, observer, store, toapis_fake
):
    job, request = await new_job(jobs, n=2)
    runner.stop_submitting()

    returned = await runner.run(job, request, observer)

    stored = await jobs.get(job.id)
    assert (
        observer.kinds(),
        toapis_fake.submit_attempts,
        (returned.state, stored.state, stored.quota_settled),
        await counters(store),
    ) == (
        ["hold"],
        0,
        (JobState.ACCEPTED, JobState.ACCEPTED, False),
        {DAILY: 2, ACTIVE: 1},
    )
