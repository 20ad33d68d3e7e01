"""The progress throttle: only visible changes are sent, latest wins, never closer than the interval."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

from bot.jobs.progress import JobProgress, Phase, ProgressThrottle, progress_bar


def test_progress_bar_shows_filled_cells_and_percent():
    assert progress_bar(42) == "▰▰▰▰▱▱▱▱▱▱ 42%"


def test_progress_bar_without_a_percentage_is_empty():
    assert progress_bar(None) == "▱▱▱▱▱▱▱▱▱▱ 0%"


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[float, JobProgress]] = []
        self.changed = asyncio.Event()

    async def send(self, state: JobProgress) -> None:
        self.sent.append((time.monotonic(), state))
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        while len(self.sent) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 5)


async def test_rapid_updates_coalesce_to_the_latest_state():
    rec = Recorder()
    throttle = ProgressThrottle(rec.send, interval=0.2, initial=JobProgress(Phase.QUEUED))
    for percent in range(0, 100, 10):
        throttle.update(JobProgress(Phase.GENERATING, percent))
    await rec.wait_for(1)
    await throttle.close()
    assert [s for _, s in rec.sent] == [JobProgress(Phase.GENERATING, 90)]


async def test_sends_are_never_closer_than_the_interval():
    rec = Recorder()
    interval = 0.05
    start = time.monotonic()
    throttle = ProgressThrottle(rec.send, interval=interval, initial=JobProgress(Phase.QUEUED))
    for percent in range(1, 8):
        throttle.update(JobProgress(Phase.GENERATING, percent))
        await rec.wait_for(percent)
    await throttle.close()
    times = [start] + [t for t, _ in rec.sent]
    assert min(b - a for a, b in itertools.pairwise(times)) >= interval


async def test_close_drops_a_pending_update():
    rec = Recorder()
    throttle = ProgressThrottle(rec.send, interval=10, initial=JobProgress(Phase.QUEUED))
    throttle.update(JobProgress(Phase.GENERATING, 50))
    await throttle.close()
    assert rec.sent == []


async def test_a_failing_send_does_not_stop_later_updates():
    rec = Recorder()

    async def flaky(state: JobProgress) -> None:
        await rec.send(state)
        if len(rec.sent) == 1:
            raise RuntimeError("edit failed")

    throttle = ProgressThrottle(flaky, interval=0.01)
    throttle.update(JobProgress(Phase.GENERATING, 10))
    await rec.wait_for(1)
    throttle.update(JobProgress(Phase.GENERATING, 20))
    await rec.wait_for(2)
    await throttle.close()
    assert rec.sent[-1][1] == JobProgress(Phase.GENERATING, 20)


async def test_close_drops_an_update_waiting_for_its_turn_without_waiting_for_it():
    started, waiting, never = [], asyncio.Event(), asyncio.Event()

    async def send(state: JobProgress) -> None:
        started.append(state)
        waiting.set()
        await never.wait()  # e.g. queued behind other writes in its channel

    throttle = ProgressThrottle(send, interval=0.0)
    throttle.update(JobProgress(Phase.QUEUED))
    await waiting.wait()
    await asyncio.wait_for(throttle.close(), timeout=5)
    throttle.update(JobProgress(Phase.GENERATING, 50))
    await asyncio.sleep(0)
    assert started == [JobProgress(Phase.QUEUED)]


async def test_close_never_swallows_the_callers_own_cancellation():
    stopping, finish = asyncio.Event(), asyncio.Event()

    async def send(state: JobProgress) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopping.set()
            await finish.wait()  # slow to stop
            raise

    throttle = ProgressThrottle(send, interval=0.0)
    throttle.update(JobProgress(Phase.QUEUED))
    await asyncio.sleep(0)
    reached_after_close = []

    async def job() -> None:
        await throttle.close()
        reached_after_close.append(True)  # e.g. going on to deliver

    task = asyncio.create_task(job())
    await stopping.wait()
    task.cancel()  # shutdown
    finish.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert (task.cancelled(), reached_after_close) == (True, [])
