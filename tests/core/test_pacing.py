"""The channel pacer: Discord's per-channel and global limits, finals first, stale progress dropped."""

from __future__ import annotations

import asyncio
import contextlib
import time

from bot.jobs.pacing import ChannelPacer


class Log:
    def __init__(self) -> None:
        self.starts: list[tuple[float, str, object]] = []

    def write(self, channel: object, label: str):
        async def send() -> str:
            self.starts.append((time.monotonic(), label, channel))
            await asyncio.sleep(0)
            return label

        return send


async def test_no_channel_gets_more_writes_than_its_window_allows():
    pacer, log = ChannelPacer(per_channel=3, channel_window=0.2, margin=0.02), Log()
    await asyncio.gather(*(pacer.final("c", log.write("c", str(i))) for i in range(9)))
    starts = [t for t, _, _ in log.starts]
    assert min(b - a for a, b in zip(starts, starts[3:], strict=False)) >= 0.2


async def test_the_global_limit_spans_channels():
    pacer, log = ChannelPacer(per_channel=100, global_limit=4, global_window=0.2, margin=0.03), Log()
    await asyncio.gather(*(pacer.final(f"c{i}", log.write(f"c{i}", str(i))) for i in range(12)))
    starts = sorted(t for t, _, _ in log.starts)
    assert min(b - a for a, b in zip(starts, starts[4:], strict=False)) >= 0.2


async def test_results_go_before_waiting_progress():
    pacer, log = ChannelPacer(per_channel=1, channel_window=0.1, margin=0.0), Log()
    first = asyncio.create_task(pacer.final("c", log.write("c", "first")))
    await asyncio.sleep(0)
    waiting = [
        asyncio.create_task(pacer.progress("c", job, log.write("c", f"progress {job}"))) for job in (1, 2)
    ]
    await asyncio.sleep(0)
    result = asyncio.create_task(pacer.final("c", log.write("c", "result 3"), key=3))
    await asyncio.gather(first, result, *waiting)
    assert [label for _, label, _ in log.starts] == ["first", "result 3", "progress 1", "progress 2"]


async def test_progress_superseded_while_waiting_is_never_sent():
    pacer, log = ChannelPacer(per_channel=1, channel_window=0.1, margin=0.0), Log()
    blocker = asyncio.create_task(pacer.final("c", log.write("c", "blocker")))
    await asyncio.sleep(0)
    old = asyncio.create_task(pacer.progress("c", 7, log.write("c", "old progress")))
    await asyncio.sleep(0)
    new = asyncio.create_task(pacer.progress("c", 7, log.write("c", "new progress")))
    sent = await asyncio.gather(blocker, old, new)
    assert (sent[1:], [label for _, label, _ in log.starts], pacer.dropped) == (
        [False, True],
        ["blocker", "new progress"],
        1,
    )


async def test_a_result_drops_the_same_jobs_waiting_progress():
    pacer, log = ChannelPacer(per_channel=1, channel_window=0.1, margin=0.0), Log()
    blocker = asyncio.create_task(pacer.final("c", log.write("c", "blocker")))
    await asyncio.sleep(0)
    progress = asyncio.create_task(pacer.progress("c", 9, log.write("c", "progress")))
    await asyncio.sleep(0)
    await pacer.final("c", log.write("c", "result"), key=9)
    await asyncio.gather(blocker, progress)
    assert [label for _, label, _ in log.starts] == ["blocker", "result"]


async def test_a_failing_write_frees_the_channel():
    pacer = ChannelPacer(per_channel=5, channel_window=0.1)

    async def boom() -> None:
        raise RuntimeError("Discord said no")

    with contextlib.suppress(RuntimeError):
        await pacer.final("c", boom)
    assert await asyncio.wait_for(pacer.final("c", Log().write("c", "next")), 2) == "next"


async def test_the_window_is_kept_when_a_channel_goes_quiet_and_comes_back():
    pacer, log = ChannelPacer(per_channel=2, channel_window=0.2, margin=0.02), Log()
    await asyncio.gather(*(pacer.final("c", log.write("c", str(i))) for i in range(2)))
    await pacer.final("c", log.write("c", "after a pause"))
    starts = [t for t, _, _ in log.starts]
    assert starts[2] - starts[0] >= 0.2


async def test_progress_given_up_while_waiting_is_never_sent_and_the_channel_goes_on():
    pacer, log = ChannelPacer(per_channel=1, channel_window=0.1, margin=0.0), Log()
    blocker = asyncio.create_task(pacer.final("c", log.write("c", "blocker")))
    await asyncio.sleep(0)
    abandoned = asyncio.create_task(pacer.progress("c", 7, log.write("c", "abandoned progress")))
    await asyncio.sleep(0)
    abandoned.cancel()
    await pacer.final("c", log.write("c", "result"), key=7)
    await blocker
    assert (abandoned.cancelled(), [label for _, label, _ in log.starts]) == (True, ["blocker", "result"])


async def test_progress_already_being_sent_finishes_before_the_channels_next_write():
    pacer, events = ChannelPacer(per_channel=10, channel_window=0.1, margin=0.0), []
    release, on_the_wire = asyncio.Event(), asyncio.Event()

    async def slow_edit() -> None:
        events.append("progress started")
        on_the_wire.set()
        await release.wait()
        events.append("progress finished")

    async def result() -> None:
        events.append("result")

    progress = asyncio.create_task(pacer.progress("c", 7, slow_edit))
    await on_the_wire.wait()
    progress.cancel()  # the job moved on while its edit was on the wire
    final = asyncio.create_task(pacer.final("c", result, key=7))
    for _ in range(20):
        await asyncio.sleep(0)
    assert events == ["progress started"]  # the result waits for the edit in flight
    release.set()
    await final
    assert (progress.cancelled(), events) == (True, ["progress started", "progress finished", "result"])


async def test_a_write_cancelled_just_as_its_turn_came_does_not_stall_the_channel():
    pacer, log = ChannelPacer(per_channel=10, channel_window=0.1, margin=0.0), Log()
    for spins in range(4):  # cancel at each point around the grant
        write = asyncio.create_task(pacer.progress("c", spins, log.write("c", f"p{spins}")))
        for _ in range(spins):
            await asyncio.sleep(0)
        write.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await write
        assert await asyncio.wait_for(pacer.final("c", log.write("c", f"r{spins}")), timeout=5) == f"r{spins}"


async def test_progress_leaves_the_last_slots_of_a_window_to_results():
    window = 3.0
    pacer, log = ChannelPacer(per_channel=5, channel_window=window, margin=0.0, progress_reserve=2), Log()
    third = asyncio.Event()

    def write(job: int):
        send = log.write("c", f"p{job}")

        async def progress_edit() -> str:
            if job == 2:
                third.set()
            return await send()

        return progress_edit

    progress = [asyncio.create_task(pacer.progress("c", job, write(job))) for job in range(5)]
    await third.wait()
    results = [await pacer.final("c", log.write("c", f"r{i}")) for i in range(2)]
    t0 = log.starts[0][0]
    labels = [label for _, label, _ in log.starts]
    result_starts = [t - t0 for t, label, _ in log.starts if label in results]
    for task in progress:
        task.cancel()
    # Three progress edits took their share; the results found the last two slots free
    # instead of waiting for the window to roll over.
    assert (labels, max(result_starts) < window) == (["p0", "p1", "p2", "r0", "r1"], True)


async def test_a_result_waiting_behind_a_full_window_goes_before_progress_queued_earlier():
    pacer, log = ChannelPacer(per_channel=2, channel_window=0.2, margin=0.0, progress_reserve=1), Log()
    await pacer.final("c", log.write("c", "r0"))
    await pacer.final("c", log.write("c", "r1"))  # window full
    waiting = asyncio.create_task(pacer.progress("c", 1, log.write("c", "progress")))
    await asyncio.sleep(0.01)
    await pacer.final("c", log.write("c", "r2"))
    await waiting
    assert [label for _, label, _ in log.starts] == ["r0", "r1", "r2", "progress"]


async def test_delivery_turns_are_one_at_a_time_per_channel_and_wait_for_room():
    window = 1.0
    pacer = ChannelPacer(per_channel=1, channel_window=window, margin=0.0)
    events: list[tuple[str, float]] = []

    async def deliver(name: str, channel: str) -> None:
        async with pacer.turn(channel):
            events.append((f"{name} in", time.monotonic()))
            await pacer.final(channel, lambda: asyncio.sleep(0))
            events.append((f"{name} out", time.monotonic()))

    await asyncio.gather(deliver("a", "c"), deliver("b", "c"), deliver("other", "d"))
    names, times = [name for name, _ in events], dict(events)
    assert names.index("a out") < names.index("b in")  # one at a time in a channel
    assert times["b in"] - times["a in"] >= window  # b entered only once its write could start
    assert times["other in"] - times["a in"] < window  # another channel's turn did not wait for c
