"""Statuses learned from events reach the job waiting on their task, and only that job."""

from __future__ import annotations

import asyncio

from bot.jobs.news import TaskNews
from bot.toapis import TaskStatus

DONE = TaskStatus(id="task_1", status="completed", progress=100, image_urls=("https://x/1.jpg",))


async def test_a_waiting_job_gets_the_published_status_at_once() -> None:
    news = TaskNews()
    news.watch("task_1")
    waiting = asyncio.create_task(news.wait("task_1", 60))
    await asyncio.sleep(0)  # the job is now waiting
    assert news.publish(DONE) is True
    assert await asyncio.wait_for(waiting, 1) == DONE


async def test_a_status_published_before_the_wait_is_kept_for_it() -> None:
    news = TaskNews()
    news.watch("task_1")
    assert news.publish(DONE) is True
    assert await news.wait("task_1", 0) == DONE
    assert await news.wait("task_1", 0) is None  # taken once


async def test_an_unknown_task_is_not_kept() -> None:
    news = TaskNews()
    assert news.publish(DONE) is False
    news.watch("task_1")
    assert await news.wait("task_1", 0) is None


async def test_a_forgotten_task_drops_its_mailbox() -> None:
    news = TaskNews()
    news.watch("task_1")
    news.publish(DONE)
    news.forget("task_1")
    assert news.watched == 0
    assert news.publish(DONE) is False
    assert await news.wait("task_1", 0) is None


async def test_waiting_without_news_returns_none_when_the_time_is_up() -> None:
    news = TaskNews()
    news.watch("task_1")
    assert await news.wait("task_1", 0.01) is None
    # The mailbox still works after a wait that timed out.
    news.publish(DONE)
    assert await news.wait("task_1", 0) == DONE
