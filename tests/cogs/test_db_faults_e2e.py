"""A database blip must not strand a job: real database errors injected at each write of a job's life,
through the real bot against the fake Discord and the fake ToAPIs. Every job ends delivered or failed,
its quota settled exactly once, and its message says so."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from bot.jobs.records import JobState
from bot.jobs.runner import NOT_POSTED
from bot.schema import counters_table, jobs_table
from bot.store import Retry
from cogs.app import ImagineBot
from cogs.launcher import JobLauncher
from tests.cogs.test_durable_e2e import STALLED, final_job_of, job_of, let_tasks_finish, showing, until
from tests.rig import RunningBot, eventually, status_of

pytestmark = pytest.mark.asyncio

Match = Callable[[str, Any], bool]


class DatabaseFaults:
    """Makes the bot's real database engine fail statements the way a locked SQLite file does.

    The error is the driver's own `OperationalError("database is locked")`, raised as the statement
    is sent, so SQLAlchemy wraps and rolls it back exactly as it would a real one.
    """

    def __init__(self, engine: Any) -> None:
        self.hits: list[str] = []
        self._match: Match = lambda statement, parameters: False
        self._left = 0
        sa.event.listen(engine.sync_engine, "before_cursor_execute", self._before)

    def fail(self, match: Match, times: int) -> None:
        """Fail the next `times` statements that `match` (statement, parameters)."""
        self._match, self._left = match, times

    def stop(self) -> None:
        self._left = 0

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self._left > 0 and self._match(statement, parameters):
            self._left -= 1
            self.hits.append(statement.split()[0])
            raise conn.dialect.dbapi.OperationalError("database is locked")


def job_write(state: str) -> Match:
    """An UPDATE of a job's record that writes this state."""
    return lambda statement, parameters: statement.startswith("UPDATE jobs") and state in str(parameters)


# Each write of a job's life, as the statement that carries it.
WRITES: dict[str, Match] = {
    "create": lambda statement, _: statement.startswith("INSERT INTO jobs"),
    "message id": lambda statement, _: statement.startswith("UPDATE jobs SET message_id"),
    "submitting": job_write("submitting"),
    "running with its task id": lambda statement, _: (
        statement.startswith("UPDATE jobs")
        and "task_id" in statement.split(" WHERE ")[0]  # set, not returned
    ),
    "delivering": job_write("delivering"),
    "finish": lambda statement, _: statement.startswith("UPDATE jobs SET quota_settled"),
}


async def counters(rig: RunningBot) -> dict[str, int]:
    """Every quota counter (images per member/server/day/month, running jobs); cooldown stamps left out."""
    assert rig.bot.store is not None
    async with rig.bot.store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(counters_table.c.key, counters_table.c.value))).all()
    return {key: int(value) for key, value in rows if not key.startswith("cd:")}


async def stored_token(rig: RunningBot, job_id: int) -> str | None:
    assert rig.bot.store is not None
    async with rig.bot.store.engine.connect() as conn:
        query = sa.select(jobs_table.c.interaction_token).where(jobs_table.c.id == job_id)
        return (await conn.execute(query)).scalar_one()


KINDS = ["ag", "am", "g", "m", "u"]  # running jobs per server/member; images per server/member/bot-wide


def settled_as_delivered(counts: dict[str, int], n: int) -> dict[str, int]:
    """What the counters hold after one delivered job of `n` images: its images, no running slot."""
    assert sorted({key.split(":")[0] for key in counts}) == KINDS, counts
    return {key: (0 if key.startswith(("am:", "ag:")) else n) for key in counts}


@pytest.mark.parametrize("write", list(WRITES))
async def test_a_database_error_at_any_write_of_a_job_is_retried_and_the_images_arrive(
    start_bot, store, database_url, write
):
    rig = await start_bot(database_url=database_url)
    assert rig.bot.store is not None
    faults = DatabaseFaults(rig.bot.store.engine)
    faults.fail(WRITES[write], times=2)

    record = await rig.imagine(prompt="a fox in the rain", n=2)
    message = await rig.finished(record)
    job = await final_job_of(rig, record)
    kinds = await counters(rig)
    assert (
        len(faults.hits),
        status_of(message).startswith("✅ 2 images"),
        len(message.attachments),
        job.state,
        job.quota_settled,
        kinds,
        len(rig.toapis.submissions),
        await stored_token(rig, job.id),
    ) == (2, True, 2, JobState.DONE, True, settled_as_delivered(kinds, 2), 1, None)


async def test_a_job_whose_runner_gave_up_on_the_database_is_resumed_by_the_sweeper(start_bot, monkeypatch):
    monkeypatch.setattr(ImagineBot, "sweep_interval", 0.1)
    monkeypatch.setattr(JobLauncher, "orphan_grace", 0.3)
    rig = await start_bot()
    assert rig.bot.store is not None
    rig.bot.jobs.retry = Retry(within=0.2, first_delay=0.05)  # the runner gives up quickly
    faults = DatabaseFaults(rig.bot.store.engine)
    rig.toapis.plan = STALLED
    record = await rig.imagine(prompt="a fox under a storm", n=2)
    await showing(rig, record, "50%")
    job = await job_of(rig, record)

    # The database refuses every job write while the task completes: the runner's writes and its
    # attempt to record a failure all give up, and it stops with the job still `running`.
    faults.fail(lambda statement, _: statement.startswith("UPDATE jobs"), times=10_000)
    let_tasks_finish(rig.toapis)
    await eventually(lambda: job.id not in rig.bot.launcher.running_job_ids, what="the runner gave up")
    stranded = await rig.bot.jobs.get(job.id)
    faults.stop()

    message = await rig.finished(record)
    final = await final_job_of(rig, record)
    kinds = await counters(rig)
    assert (
        stranded is not None and stranded.state,
        status_of(message).startswith("✅ 2 images"),
        len(message.attachments),
        final.state,
        final.quota_settled,
        kinds,
        len(rig.toapis.submissions),
    ) == (JobState.RUNNING, True, 2, JobState.DONE, True, settled_as_delivered(kinds, 2), 1)


async def test_the_sweeper_never_starts_a_second_runner_for_a_job_that_has_one(start_bot):
    rig = await start_bot()
    assert rig.bot.store is not None
    rig.toapis.plan = STALLED
    record = await rig.imagine(prompt="a patient fox", n=2)
    await showing(rig, record, "50%")
    job = await job_of(rig, record)
    async with rig.bot.store.engine.begin() as conn:  # untouched for an hour, as a long poll leaves it
        await conn.execute(
            jobs_table.update().where(jobs_table.c.id == job.id).values(updated_at=time.time() - 3600)
        )

    resumed = await rig.bot.launcher.sweep()
    let_tasks_finish(rig.toapis)
    message = await rig.finished(record)
    await final_job_of(rig, record)
    with_images = [r for r in rig.discord.requests if r.method in ("PATCH", "POST") and r.files]
    assert (resumed, status_of(message).startswith("✅ 2 images"), len(with_images)) == (0, True, 1)


async def test_a_result_no_route_could_post_fails_the_job_refunds_it_and_says_why(start_bot):
    rig = await start_bot()
    rig.toapis.plan = STALLED
    record = await rig.imagine(prompt="a fox nobody sees", n=2)
    await showing(rig, record, "50%")
    # Every route for the images is refused once: the webhook edit, the channel edit, a new
    # channel message and a follow-up.
    rig.discord.inject("PATCH", r"/webhooks/\d+/[^/]+/messages/\d+$", 403)
    rig.discord.inject("PATCH", r"/channels/\d+/messages/\d+$", 403)
    rig.discord.inject("POST", r"/channels/\d+/messages$", 403)
    rig.discord.inject("POST", r"/webhooks/\d+/[^/]+$", 403)
    let_tasks_finish(rig.toapis)

    job = await final_job_of(rig, record)
    notice = await rig.discord.wait_for_message(lambda m: bool(m.embeds) and str(NOT_POSTED) in str(m.embeds))
    kinds = await counters(rig)
    assert (
        job.state,
        job.error,
        job.quota_settled,
        kinds,
        f"<@{job.user_id}>" in notice.content,
        notice.attachments,
    ) == (JobState.FAILED, str(NOT_POSTED), True, settled_as_delivered(kinds, 0), True, [])


async def test_quota_counters_are_pruned_while_the_bot_runs_not_only_at_start(start_bot, monkeypatch):
    monkeypatch.setattr(ImagineBot, "sweep_interval", 0.05)
    monkeypatch.setattr(ImagineBot, "prune_interval", 0.1)
    rig = await start_bot()
    assert rig.bot.store is not None
    async with rig.bot.store.engine.begin() as conn:  # a counter whose day ended two days ago
        await conn.execute(
            counters_table.insert().values(
                key="m:1:2:2000-01-01", value=3, expires_at=time.time() - 2 * 86400
            )
        )

    async def gone() -> bool:
        assert rig.bot.store is not None
        async with rig.bot.store.engine.connect() as conn:
            count = sa.select(sa.func.count()).select_from(counters_table)
            return (await conn.execute(count)).scalar_one() == 0

    assert await until(gone)


async def test_a_paid_task_id_is_stored_even_when_the_database_is_down_longer_than_usual(start_bot):
    rig = await start_bot()
    assert rig.bot.store is not None
    # Other writes give up after a tenth of a second; the task id must outlast that.
    rig.bot.jobs.retry = Retry(within=0.1, first_delay=0.01, max_delay=0.05)
    faults = DatabaseFaults(rig.bot.store.engine)
    faults.fail(WRITES["running with its task id"], times=12)

    record = await rig.imagine(prompt="a fox worth paying for", n=2)
    message = await rig.finished(record)
    job = await final_job_of(rig, record)
    kinds = await counters(rig)
    assert (
        len(faults.hits),
        status_of(message).startswith("✅ 2 images"),
        job.task_id == next(iter(rig.toapis.tasks)),
        kinds,
        len(rig.toapis.submissions),
    ) == (12, True, True, settled_as_delivered(kinds, 2), 1)
