"""Pacing message writes so Discord never has to say 429.

Discord allows roughly 5 message creates/edits per 5 s in one channel and 50 requests
per second for the whole bot. A popular channel with dozens of running jobs would blow
through that with progress edits alone, so every write to a job's message goes through
one `ChannelPacer`:

- per channel, at most `per_channel` writes start in any `channel_window` seconds, and
  one write at a time (so the window is counted exactly);
- across all channels, at most `global_limit` writes start in any `global_window`;
- final results go before progress updates, and progress never takes a channel's last
  `progress_reserve` slots of a window (nor the global window's last ones): under load
  a result finds room at once and progress gives way;
- `turn(channel)` lets one delivery at a time per channel wait for room *before* it
  downloads its images, so images are not held in memory while a busy channel catches up;
- progress is latest-wins: a progress write still waiting when a newer one (or the
  final result) for the same job arrives is dropped, never sent late; a caller that stops
  waiting (cancels) drops its write too, unless it is already being sent.

Discord-free: it paces any coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Waiter:
    granted: asyncio.Future[bool]
    final: bool
    key: Hashable | None


@dataclass
class _Channel:
    finals: deque[_Waiter] = field(default_factory=deque)
    progress: deque[_Waiter] = field(default_factory=deque)
    starts: deque[float] = field(default_factory=deque)
    latest: dict[Hashable, _Waiter] = field(default_factory=dict)  # newest progress per job
    done: asyncio.Event = field(default_factory=asyncio.Event)  # the write in flight finished
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # a result arrived
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)  # one delivery at a time
    worker: asyncio.Task[None] | None = None


class ChannelPacer:
    """Grants write slots per channel (see the module docstring)."""

    def __init__(
        self,
        *,
        per_channel: int = 5,
        channel_window: float = 5.0,
        global_limit: int = 45,
        global_window: float = 1.0,
        margin: float = 0.3,
        progress_reserve: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_channel = per_channel
        self._progress_reserve = progress_reserve
        self._channel_window = channel_window + margin
        self._global_limit = global_limit
        self._global_window = global_window + margin / 3
        self._clock = clock
        self._channels: dict[Hashable, _Channel] = {}
        self._global: deque[float] = deque()
        self.dropped = 0  # stale progress writes never sent

    async def final(
        self, channel: Hashable, send: Callable[[], Awaitable[T]], *, key: Hashable | None = None
    ) -> T:
        """Send a final result (or any write that must happen) as soon as the limits allow."""
        # Only progress is ever dropped: a final write always runs, so this is what `send` returned.
        return cast(T, await self._run(channel, send, final=True, key=key))

    async def progress(self, channel: Hashable, key: Hashable, send: Callable[[], Awaitable[None]]) -> bool:
        """Send a progress update for job `key` unless something newer for it comes first; True if sent."""
        return await self._run(channel, send, final=False, key=key) is not _DROPPED

    async def _run(
        self, channel: Hashable, send: Callable[[], Awaitable[T]], *, final: bool, key: Hashable | None
    ) -> T | object:
        state = self._channel(channel)
        waiter = _Waiter(asyncio.get_running_loop().create_future(), final, key)
        if key is not None:
            stale = state.latest.pop(key, None)
            if stale is not None and not stale.granted.done():
                stale.granted.set_result(False)  # superseded before its turn
                self.dropped += 1
            if not final:
                state.latest[key] = waiter
        (state.finals if final else state.progress).append(waiter)
        if final:
            state.wake.set()
        if state.worker is None or state.worker.done():
            state.worker = asyncio.create_task(self._serve(channel, state), name=f"pacer-{channel}")
        try:
            granted = await waiter.granted
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled() and waiter.granted.result():
                self._finished(state, waiter)  # granted just as the caller gave up: pass the turn on
            raise
        if not granted:
            return _DROPPED
        if final:
            try:
                return await send()
            finally:
                self._finished(state, waiter)
        # A progress edit already on its way is never abandoned halfway (a cancelled request
        # could still land after the result): it finishes in the background, and the channel's
        # next write waits for it.
        sending = asyncio.ensure_future(send())
        sending.add_done_callback(lambda done: self._finished(state, waiter, done))
        return await asyncio.shield(sending)

    def _finished(self, state: _Channel, waiter: _Waiter, sent: asyncio.Future[Any] | None = None) -> None:
        if waiter.key is not None and state.latest.get(waiter.key) is waiter:
            del state.latest[waiter.key]
        if sent is not None and not sent.cancelled():
            sent.exception()  # retrieved here too, in case its caller stopped waiting
        state.done.set()

    @contextlib.asynccontextmanager
    async def turn(self, channel: Hashable) -> AsyncIterator[None]:
        """Hold the channel's delivery turn: entered when a result could be written there now."""
        state = self._channel(channel)
        async with state.turn:
            # Once: the write itself is then paced exactly, this only spares holding images.
            await asyncio.sleep(max(0.0, self._free_at(state, final=True) - self._clock()))
            yield

    def _channel(self, channel: Hashable) -> _Channel:
        state = self._channels.get(channel)
        if state is None:
            self._forget_idle()
            state = self._channels[channel] = _Channel()
        return state

    @staticmethod
    def _live(queue: deque[_Waiter]) -> bool:
        while queue and queue[0].granted.done():  # cancelled or superseded
            queue.popleft()
        return bool(queue)

    def _free_at(self, state: _Channel, *, final: bool) -> float:
        """The earliest moment both windows allow a result (or progress) write to start."""
        now = self._clock()
        reserve = 0 if final else self._progress_reserve
        at = now
        for starts, window, limit in (
            (state.starts, self._channel_window, self._per_channel - reserve),
            (self._global, self._global_window, self._global_limit - reserve),
        ):
            while starts and starts[0] <= now - window:
                starts.popleft()
            limit = max(1, limit)
            if len(starts) >= limit:
                at = max(at, starts[len(starts) - limit] + window)
        return at

    def _forget_idle(self) -> None:
        """Drop channels with nothing queued and no write in their window (bounded memory)."""
        if len(self._channels) < 256:
            return
        cutoff = self._clock() - self._channel_window
        for channel, state in list(self._channels.items()):
            idle = (state.worker is None or state.worker.done()) and not state.turn.locked()
            if (
                idle
                and not state.finals
                and not state.progress
                and (not state.starts or state.starts[-1] < cutoff)
            ):
                del self._channels[channel]

    async def _serve(self, channel: Hashable, state: _Channel) -> None:
        # The channel's state (and its window history) outlives this worker; see _forget_idle.
        while True:
            final = self._live(state.finals)
            if not final and not self._live(state.progress):
                return
            wait = self._free_at(state, final=final) - self._clock()
            if wait > 0:
                state.wake.clear()
                if final:
                    await asyncio.sleep(wait)
                else:  # a result arriving meanwhile may go sooner than this progress
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await state.wake.wait()
                continue  # the global window may have filled meanwhile
            waiter = (state.finals if final else state.progress).popleft()
            now = self._clock()
            state.starts.append(now)
            self._global.append(now)
            state.done.clear()
            waiter.granted.set_result(True)
            await state.done.wait()


_DROPPED = object()
