"""Quotas are money: atomic reservation with the job, exactly-once settlement, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.config import database_url_for_sqlalchemy
from bot.jobs.records import JobState, JobStore, NewJob
from bot.quota import (
    Cooldown,
    Limit,
    QuotaExceededError,
    QuotaLedger,
    QuotaPlan,
    charge_many,
    next_day,
    next_month,
    settle,
)
from bot.schema import MIGRATIONS, jobs_table, schema_version
from bot.store import Store

ROOT = Path(__file__).resolve().parents[2]
JOB = NewJob(
    guild_id=1,
    channel_id=2,
    user_id=3,
    application_id=4,
    upload_limit=10_000_000,
    prompt="a fox",
    model="doubao-seedream-5-0",
    ratio="1:1",
    n=1,
)


def plan(
    n: int = 1,
    *,
    member: int | None = 5,
    server: int | None = None,
    active: int | None = None,
    cooldown: int = 0,
) -> QuotaPlan:
    return QuotaPlan(
        images=n,
        image_limits=(Limit("m:1:3:day", member, "member_daily"), Limit("g:1:day", server, "server_daily")),
        active_limits=(Limit("am:1:3", active, "member_active"),),
        cooldown=Cooldown("cd:1:3", cooldown) if cooldown else None,
    )


async def test_a_job_within_the_quota_reserves_its_images(store):
    jobs, ledger = JobStore(store), QuotaLedger(store)
    await jobs.create(dataclasses.replace(JOB, n=3), quota=plan(3))
    assert await ledger.values(["m:1:3:day", "g:1:day", "am:1:3"]) == {
        "m:1:3:day": 3,
        "g:1:day": 3,
        "am:1:3": 1,
    }


async def test_a_refused_job_charges_nothing_anywhere(store):
    jobs, ledger = JobStore(store), QuotaLedger(store)
    await jobs.create(JOB, quota=plan(2, member=10, server=3))
    with pytest.raises(QuotaExceededError) as refused:
        await jobs.create(JOB, quota=plan(2, member=10, server=3))
    values = await ledger.values(["m:1:3:day", "g:1:day", "am:1:3"])
    assert (refused.value.limit.rule, refused.value.used, values, len(await jobs.unfinished())) == (
        "server_daily",
        2,
        {"m:1:3:day": 2, "g:1:day": 2, "am:1:3": 1},
        1,
    )


async def test_asking_for_more_than_the_whole_quota_is_refused(store):
    with pytest.raises(QuotaExceededError):
        await JobStore(store).create(JOB, quota=plan(6, member=5))


async def test_many_requests_at_once_get_exactly_the_quota(store):
    jobs = JobStore(store)

    async def attempt() -> bool:
        try:
            await jobs.create(JOB, quota=plan(1, member=7))
        except QuotaExceededError:
            return False
        return True

    results = await asyncio.gather(*(attempt() for _ in range(30)))
    assert (sum(results), (await QuotaLedger(store).values(["m:1:3:day"]))["m:1:3:day"]) == (7, 7)


def member_plan(
    member: int,
    n: int,
    *,
    prefix: str = "",
    member_limit: int | None = None,
    server_limit: int | None = None,
    active: int | None = None,
    cooldown: int = 0,
) -> QuotaPlan:
    """A plan like the bot's: the member's own counters plus counters the whole server shares."""
    return QuotaPlan(
        images=n,
        image_limits=(
            Limit(f"{prefix}m:{member}", member_limit, "member_daily"),
            Limit(f"{prefix}g", server_limit, "server_daily"),
        ),
        active_limits=(
            Limit(f"{prefix}am:{member}", active, "member_active"),
            Limit(f"{prefix}ag", None, "x"),
        ),
        cooldown=Cooldown(f"{prefix}cd:{member}", cooldown) if cooldown else None,
    )


async def burst(jobs: JobStore, plans: list[QuotaPlan]) -> list[Any]:
    """Create one job per plan, all at once (they share a transaction); each a record or its refusal."""

    async def attempt(number: int, quota: QuotaPlan) -> object:
        try:
            return await jobs.create(dataclasses.replace(JOB, user_id=number, n=quota.images), quota=quota)
        except QuotaExceededError as exc:
            return exc

    return await asyncio.gather(*(attempt(i, p) for i, p in enumerate(plans)))


async def test_a_burst_from_many_members_is_recorded_and_charged_in_a_few_statements(store):
    jobs, ledger = JobStore(store), QuotaLedger(store)
    plans = [
        member_plan(m, 1 + m % 4, member_limit=10, server_limit=500, active=2, cooldown=30) for m in range(60)
    ]
    statements: list[str] = []
    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    outcomes = await burst(jobs, plans)
    counters = await ledger.values([f"m:{m}" for m in range(60)] + ["g", "ag"])
    assert [(o.user_id, o.n) for o in outcomes] == [(m, 1 + m % 4) for m in range(60)]  # each its own record
    assert counters == {
        **{f"m:{m}": 1 + m % 4 for m in range(60)},
        "g": sum(p.images for p in plans),
        "ag": 60,
    }
    # charges, cooldown stamps, the inserts (and on PostgreSQL the counters locked in key order):
    # not one statement per job
    expected = 5 if store.engine.dialect.name == "postgresql" else 4
    assert len([s for s in statements if not s.startswith(("BEGIN", "COMMIT"))]) <= expected, statements


async def test_a_burst_that_would_pass_a_limit_is_decided_in_order_one_by_one(store):
    jobs, ledger = JobStore(store), QuotaLedger(store)
    outcomes = await burst(jobs, [member_plan(m, 2, server_limit=10) for m in range(8)])
    refused = [o for o in outcomes[5:] if isinstance(o, QuotaExceededError)]
    assert [isinstance(o, QuotaExceededError) for o in outcomes] == [False] * 5 + [True] * 3
    assert [r.limit.rule for r in refused] == ["server_daily"] * 3
    assert await ledger.values(["g", "m:5", "am:6", "m:4"]) == {"g": 10, "m:5": 0, "am:6": 0, "m:4": 2}


async def test_a_burst_refuses_only_the_member_still_in_their_cooldown(store):
    now = [2_000_000.0]
    jobs, ledger = JobStore(store, clock=lambda: now[0]), QuotaLedger(store)
    await jobs.create(JOB, quota=member_plan(1, 1, cooldown=30))
    now[0] += 10
    outcomes = await burst(jobs, [member_plan(m, 3, cooldown=30) for m in (0, 1, 2)])
    assert [type(o).__name__ for o in outcomes] == ["JobRecord", "QuotaExceededError", "JobRecord"]
    assert (outcomes[1].limit.rule, outcomes[1].retry_at) == ("cooldown", 2_000_030.0)
    assert await ledger.values(["m:1", "am:1", "g"]) == {"m:1": 1, "am:1": 1, "g": 7}  # only the earlier job


async def test_one_member_twice_in_a_burst_under_a_cooldown_gets_one_job(store):
    jobs, ledger = JobStore(store), QuotaLedger(store)
    outcomes = await burst(jobs, [member_plan(7, 2, cooldown=60), member_plan(7, 2, cooldown=60)])
    assert [type(o).__name__ for o in outcomes] == ["JobRecord", "QuotaExceededError"]
    assert await ledger.values(["m:7", "am:7"]) == {"m:7": 2, "am:7": 1}


async def test_a_burst_decides_exactly_as_charging_one_by_one_would(store):
    rng = random.Random(7)
    shapes: list[dict[str, Any]] = [
        dict(
            member=rng.randrange(6),
            n=rng.randint(1, 4),
            member_limit=rng.choice([None, 4, 6]),
            server_limit=rng.choice([None, 25]),
            active=rng.choice([None, 3]),
            cooldown=rng.choice([0, 0, 30]),
        )
        for _ in range(40)
    ]
    jobs, ledger = JobStore(store), QuotaLedger(store)
    together = await burst(jobs, [member_plan(**shape, prefix="t") for shape in shapes])
    alone = [(await burst(jobs, [member_plan(**shape, prefix="a")]))[0] for shape in shapes]
    keys = [f"m:{m}" for m in range(6)] + [f"am:{m}" for m in range(6)] + ["g", "ag"]
    assert [type(o).__name__ for o in together] == [type(o).__name__ for o in alone]
    assert await ledger.values("t" + k for k in keys) == {
        "t" + k: v for k, v in (await ledger.values("a" + k for k in keys)).items() for k in [k[1:]]
    }
    assert any(isinstance(o, QuotaExceededError) for o in together)  # the limits were reached


async def test_a_failed_job_refunds_every_image_and_frees_its_slot(store):
    jobs, ledger = JobStore(store), QuotaLedger(store)
    job = await jobs.create(dataclasses.replace(JOB, n=4), quota=plan(4))
    await jobs.finish(job.id, JobState.FAILED, delivered_images=0, error="refused")
    assert await ledger.values(["m:1:3:day", "am:1:3"]) == {"m:1:3:day": 0, "am:1:3": 0}


async def test_a_partial_job_settles_to_the_images_delivered(store):
    jobs, ledger = JobStore(store), QuotaLedger(store)
    job = await jobs.create(dataclasses.replace(JOB, n=4), quota=plan(4))
    await jobs.finish(job.id, JobState.DONE, delivered_images=2)
    assert await ledger.values(["m:1:3:day", "g:1:day"]) == {"m:1:3:day": 2, "g:1:day": 2}


async def test_a_job_is_settled_only_once(store):
    jobs, ledger = JobStore(store), QuotaLedger(store)
    job = await jobs.create(dataclasses.replace(JOB, n=4), quota=plan(4))
    await jobs.create(JOB, quota=plan(1))  # another job keeps its own reservation
    await jobs.finish(job.id, JobState.FAILED, delivered_images=0)
    settled = await jobs.finish(job.id, JobState.FAILED, delivered_images=0)
    assert (settled.quota_settled, (await ledger.values(["m:1:3:day"]))["m:1:3:day"]) == (True, 1)


async def test_the_running_job_limit_frees_up_when_a_job_ends(store):
    jobs = JobStore(store)
    first = await jobs.create(JOB, quota=plan(1, active=1))
    with pytest.raises(QuotaExceededError) as refused:
        await jobs.create(JOB, quota=plan(1, active=1))
    await jobs.finish(first.id, JobState.DONE, delivered_images=1)
    await jobs.create(JOB, quota=plan(1, active=1))
    assert refused.value.limit.rule == "member_active"


async def test_cooldown_refuses_a_second_request_until_it_passes(store):
    now = [1_000_000.0]
    jobs = JobStore(store, clock=lambda: now[0])
    await jobs.create(JOB, quota=plan(1, cooldown=30))
    with pytest.raises(QuotaExceededError) as refused:
        await jobs.create(JOB, quota=plan(1, cooldown=30))
    now[0] += 30
    await jobs.create(JOB, quota=plan(1, cooldown=30))
    assert (refused.value.limit.rule, refused.value.retry_at) == ("cooldown", 1_000_030.0)


def test_days_and_months_reset_at_utc_midnight():
    # 2026-12-31 23:30 UTC
    now = 1798759800.0
    assert (next_day(now), next_month(now)) == (1798761600.0, 1798761600.0)


_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from bot.config import database_url_for_sqlalchemy
    from bot.jobs.records import JobStore, NewJob
    from bot.quota import Limit, QuotaExceededError, QuotaPlan
    from bot.store import Store

    async def main(url, attempts):
        store = Store.open(database_url_for_sqlalchemy(url))
        jobs = JobStore(store)
        plan = QuotaPlan(images=1, image_limits=(Limit("g:9:day", 11, "server_daily"),))
        job = NewJob(guild_id=9, channel_id=2, user_id=3, application_id=4, upload_limit=1, prompt="p",
                     model="m", ratio="1:1", n=1)

        async def attempt():
            try:
                await jobs.create(job, quota=plan)
                return 1
            except QuotaExceededError:
                return 0

        got = sum(await asyncio.gather(*(attempt() for _ in range(attempts))))
        await store.close()
        print(got)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def test_two_processes_sharing_the_database_never_exceed_the_quota(store, database_url):
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER,
            database_url,
            "15",
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [await asyncio.wait_for(w.communicate(), 120) for w in workers]
    granted = [int(out.decode().strip() or -1) for out, _ in outputs]
    errors = [err.decode()[-2000:] for _, err in outputs if err.strip()]
    value = (await QuotaLedger(store).values(["g:9:day"]))["g:9:day"]
    assert (sum(granted), value, errors) == (11, 11, [])


async def test_a_database_from_before_quotas_gains_the_columns_and_keeps_its_jobs(store, database_url):
    jobs = JobStore(store)
    old = await jobs.create(JOB)
    quota_columns = ("quota_reserved", "quota_keys", "active_keys", "quota_settled")
    async with store.engine.begin() as conn:
        for column in quota_columns:
            await conn.execute(sa.text(f'ALTER TABLE jobs DROP COLUMN "{column}"'))
        await conn.execute(sa.text("DROP TABLE counters"))
        await conn.execute(sa.text("DROP TABLE guild_settings"))
        await conn.execute(schema_version.update().values(version=2))

    again = Store.open(database_url_for_sqlalchemy(database_url))
    try:
        version = await again.migrate()
        async with again.engine.connect() as conn:
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("jobs")}
            )
            row = (await conn.execute(sa.select(jobs_table).where(jobs_table.c.id == old.id))).one()
        reread = await JobStore(again).get(old.id)
    finally:
        await again.close()
    assert (
        version,
        set(quota_columns) <= columns,
        row.quota_reserved,
        json.loads(row.quota_keys),
        reread is not None and reread.prompt,
    ) == (len(MIGRATIONS), True, 0, [], "a fox")


async def test_pruning_removes_counters_whose_period_is_long_over_and_keeps_the_rest(store):
    now = [1_000_000.0]
    jobs, ledger = JobStore(store, clock=lambda: now[0]), QuotaLedger(store, clock=lambda: now[0])
    old = QuotaPlan(images=1, image_limits=(Limit("m:old", 5, "member_daily", resets_at=now[0] + 10),))
    await jobs.create(JOB, quota=old)
    now[0] += 3 * 86400
    current = QuotaPlan(
        images=1,
        image_limits=(Limit("m:today", 5, "member_daily", resets_at=now[0] + 10),),
        active_limits=(Limit("am:1:3", None, "member_active"),),  # no period: never pruned
    )
    await jobs.create(JOB, quota=current)
    pruned = await ledger.prune()
    assert (pruned, await ledger.values(["m:old", "m:today", "am:1:3"])) == (
        1,
        {"m:old": 0, "m:today": 1, "am:1:3": 1},
    )


async def test_reserving_and_settling_at_once_on_two_connections_never_deadlocks(store, database_url):
    """Reserving takes the running-job counters with the image counters, settling takes them back:
    both must take the rows in one order, or two connections doing them at once deadlock."""
    shared = QuotaPlan(
        images=1,
        image_limits=(Limit("u:3:day", None, "member_global"), Limit("g:1:day", None, "server_daily")),
        active_limits=(Limit("am:1:3", None, "member_active"), Limit("ag:1", None, "server_active")),
    )
    jobs = JobStore(store)
    created = [await jobs.create(JOB, quota=shared) for _ in range(60)]
    other = Store.open(database_url_for_sqlalchemy(database_url))  # a second process's connections
    errors: list[str] = []

    async def reserve(db: Store) -> None:
        async with db.engine.begin() as conn:
            await charge_many(conn, [shared], 1_700_000_000.0)

    async def settle_job(db: Store, job_id: int) -> None:
        async with db.engine.begin() as conn:
            await settle(conn, job_id, 0)

    async def one(db: Store, job_id: int) -> None:
        try:
            await asyncio.gather(reserve(db), settle_job(db, job_id))
        except sa.exc.DBAPIError as exc:
            errors.append(type(exc.orig).__name__ + ": " + str(exc.orig).splitlines()[0])

    try:
        await asyncio.gather(*(one(store if i % 2 else other, job.id) for i, job in enumerate(created)))
    finally:
        await other.close()
    values = await QuotaLedger(store).values(["am:1:3", "ag:1", "u:3:day"])
    assert (errors, values) == ([], {"am:1:3": 60, "ag:1": 60, "u:3:day": 60})


_RESERVE_AND_SETTLE_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    import sqlalchemy as sa
    from bot.config import database_url_for_sqlalchemy
    from bot.quota import Limit, QuotaPlan, charge_many, settle
    from bot.store import Store

    PLAN = QuotaPlan(
        images=1,
        image_limits=(Limit("u:3:day", None, "member_global"), Limit("g:1:day", None, "server_daily")),
        active_limits=(Limit("am:1:3", None, "member_active"), Limit("ag:1", None, "server_active")),
    )

    async def main(url, job_ids):
        store = Store.open(database_url_for_sqlalchemy(url))
        errors = []

        async def one(job_id):
            async def reserve():
                async with store.engine.begin() as conn:
                    await charge_many(conn, [PLAN], 1_700_000_000.0)

            async def settle_job():
                async with store.engine.begin() as conn:
                    await settle(conn, job_id, 0)

            try:
                await asyncio.gather(reserve(), settle_job())
            except sa.exc.DBAPIError as exc:
                errors.append(type(exc.orig).__name__ + ": " + str(exc.orig).splitlines()[0])

        await asyncio.gather(*(one(job_id) for job_id in job_ids))
        await store.close()
        print(json.dumps(errors))

    asyncio.run(main(sys.argv[1], [int(i) for i in sys.argv[2].split(",")]))
    """
)


async def test_two_processes_reserving_and_settling_at_once_never_deadlock(store, database_url):
    """The same as above with two real processes, as two bot processes sharing PostgreSQL run."""
    shared = QuotaPlan(
        images=1,
        image_limits=(Limit("u:3:day", None, "member_global"), Limit("g:1:day", None, "server_daily")),
        active_limits=(Limit("am:1:3", None, "member_active"), Limit("ag:1", None, "server_active")),
    )
    jobs = JobStore(store)
    created = [await jobs.create(JOB, quota=shared) for _ in range(80)]
    halves = [",".join(str(job.id) for job in created[i::2]) for i in range(2)]
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _RESERVE_AND_SETTLE_WORKER,
            database_url,
            half,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for half in halves
    ]
    outputs = [await asyncio.wait_for(w.communicate(), 120) for w in workers]
    errors = [
        json.loads(out) if out.strip() else [f"no output: {err.decode()[-500:]}"] for out, err in outputs
    ]
    values = await QuotaLedger(store).values(["am:1:3", "ag:1", "u:3:day"])
    # Each job's reservation is settled (-1 running job) and a new one reserved (+1): 80 each.
    assert (errors, values) == ([[], []], {"am:1:3": 80, "ag:1": 80, "u:3:day": 80})
