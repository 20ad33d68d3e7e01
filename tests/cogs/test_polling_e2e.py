"""Status queries through the real bot: a burst of jobs against the rate-limited fake ToAPIs."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes.toapis import ProviderRateLimits, TaskPlan
from tests.rig import eventually, status_of

pytestmark = pytest.mark.asyncio

FLOOR = 0.2  # the in-process rig's floor (production: 5 s, which Settings never let lower)
JOBS = 24
CHANNELS = 8


async def test_a_burst_of_jobs_against_the_rate_limited_service_is_all_delivered_within_the_floor(start_bot):
    rig = await start_bot(poll_interval_queued=FLOOR, poll_interval_running=FLOOR)
    # A small query allowance: two dozen tasks polled every 0.2 s would need 120 queries a second.
    rig.toapis.rate_limits = ProviderRateLimits.group(submit=(50, 100), query=(20, 10))
    rig.toapis.plan = TaskPlan(advance="time", step_seconds=0.5)  # each task takes 1.5 s
    channels = [rig.discord.snowflake() for _ in range(CHANNELS)]
    payloads = [
        rig.discord.slash_command(
            "imagine", {"prompt": f"fox {i}"}, channel_id=channels[i % CHANNELS], user_id=100 + i
        )
        for i in range(JOBS)
    ]
    records = await asyncio.gather(*(rig.discord.send_interaction(p) for p in payloads))
    finals = await asyncio.gather(*(rig.finished(record, timeout=60) for record in records))
    await eventually(lambda: len(rig.toapis.submissions) == JOBS, what="every job submitted once")
    assert [status_of(message).split(" ")[0] for message in finals] == ["✅"] * JOBS
    assert rig.toapis.queries_sooner_than(FLOOR) == 0
    # More status queries than the allowance's burst: the limit was in play, and no job failed for it.
    assert sum(rig.toapis.polls.values()) > 10
