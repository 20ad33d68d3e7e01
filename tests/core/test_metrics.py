"""The metrics line: the queue's length, how much of each provider bucket is in use, the provider's
429s on submissions — what an operator reads to see the bot keeping within its budget."""

from __future__ import annotations

import re

import pytest

from bot.jobs.queue import SubmitQueue
from bot.metrics import LoopLagMonitor
from bot.toapis.budget import Allowance, RateBudget, RateLimits

pytestmark = pytest.mark.asyncio


async def test_the_metrics_line_shows_the_queue_and_the_budget_in_use() -> None:
    now = [0.0]
    budget = RateBudget(RateLimits(Allowance(5, 50), Allowance(50, 500)), clock=lambda: now[0])
    queue = SubmitQueue(budget.submit, clock=lambda: now[0])
    for _ in range(50):
        budget.query.try_take()
    queue.hold_off(60)  # the provider asked for a pause: the submit bucket is spent, the jobs wait
    for job_id in range(3):
        queue.join(job_id, 10, job_id)
    queue.refused_for_rate(limiter_down=False)
    line = LoopLagMonitor(10, jobs_running=lambda: 7, queue=queue, budget=budget).line()
    queue.close()
    assert re.search(r"jobs_running=\S+ .*", line).group(0) == (
        "jobs_running=7 jobs_waiting=3 submit_budget_used=1.00 query_budget_used=0.10 submit_429s=1"
    )


async def test_without_a_queue_or_budget_the_line_is_as_before() -> None:
    line = LoopLagMonitor(10, jobs_running=lambda: 2).line()
    assert line.endswith(" jobs_running=2")
