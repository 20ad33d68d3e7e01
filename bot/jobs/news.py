"""Task statuses the bot learns without asking (signed webhook events), handed to the job waiting on them.

A running job waits between status queries with `TaskNews.wait`: it returns at once when an event
for that task is published, so the job moves on within moments of the provider's finish instead
of at its next query. A status published while nobody waits (the event beat the job to its wait,
or the job is between two waits) is kept until the job's next wait takes it. Discord-free and
I/O-free: whoever receives events (the HTTP server, another process's relay) calls `publish`.
"""

from __future__ import annotations

import asyncio

from bot.toapis import TaskStatus


class TaskNews:
    """One mailbox per task a job of this process is running."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[TaskStatus]] = {}
        self._early: dict[str, TaskStatus] = {}
        self._watched: set[str] = set()

    def watch(self, task_id: str) -> None:
        """A job of this process runs `task_id`: statuses published for it are kept for that job."""
        self._watched.add(task_id)

    def forget(self, task_id: str) -> None:
        """The job is done with `task_id`: drop its mailbox."""
        self._watched.discard(task_id)
        self._early.pop(task_id, None)

    def publish(self, status: TaskStatus) -> bool:
        """Hand `status` to the job running its task; False when no job of this process runs it."""
        if status.id not in self._watched:
            return False
        waiter = self._waiting.pop(status.id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(status)
        else:
            self._early[status.id] = status
        return True

    async def wait(self, task_id: str, seconds: float) -> TaskStatus | None:
        """Wait up to `seconds` for a published status of `task_id`; None when none came."""
        early = self._early.pop(task_id, None)
        if early is not None:
            return early
        waiter: asyncio.Future[TaskStatus] = asyncio.get_running_loop().create_future()
        self._waiting[task_id] = waiter
        try:
            async with asyncio.timeout(max(0.0, seconds)):
                return await waiter
        except TimeoutError:
            return None
        finally:
            if self._waiting.get(task_id) is waiter:
                del self._waiting[task_id]

    def watched_tasks(self) -> list[str]:
        """The task ids jobs of this process run (what the relay of other processes' events looks for)."""
        return list(self._watched)

    @property
    def watched(self) -> int:
        """How many tasks jobs of this process are waiting on."""
        return len(self._watched)
