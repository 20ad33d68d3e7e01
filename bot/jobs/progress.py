"""Progress shown to members: the visible state of a running job and a throttle for edits.

An edit is only worth sending when something a member can see changed, and a
chat platform punishes clients that edit too often, so `ProgressThrottle`
coalesces updates (latest wins) and keeps sends at least `interval` apart.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

BAR_CELLS = 10


class Phase(enum.Enum):
    """Where a job is, as a member would describe it."""

    PREPARING = "preparing"  # downloading, converting and uploading reference images
    WAITING = "waiting"  # in line for its turn to be sent (the provider's submit rate)
    QUEUED = "queued"
    GENERATING = "generating"


@dataclass(frozen=True)
class JobProgress:
    """Everything a progress message shows. Equal values render identically."""

    phase: Phase
    percent: int | None = None
    slow: bool = False  # the image service is answering with errors; we keep trying
    ahead: int | None = None  # WAITING: how many jobs go before this one
    wait: float | None = None  # WAITING: about how many seconds until it is sent (None: unknown)


def progress_bar(percent: int | None, cells: int = BAR_CELLS) -> str:
    """`▰▰▰▰▱▱▱▱▱▱ 42%`; an unknown percentage shows an empty bar."""
    value = max(0, min(100, percent or 0))
    filled = value * cells // 100
    return "▰" * filled + "▱" * (cells - filled) + f" {value}%"


class ProgressThrottle:
    """Sends progress states through `send`, at most once per `interval`, latest wins.

    `update()` never blocks the caller; a background task does the sending so a
    slow edit never delays polling. `close()` drops anything not yet sent, so a
    final message never waits behind a stale progress edit.
    """

    def __init__(
        self,
        send: Callable[[JobProgress], Awaitable[None]],
        *,
        interval: float,
        initial: JobProgress | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "a job",
    ) -> None:
        self._send = send
        self._name = name  # how log lines name the job (its id, server and member)
        self._interval = interval
        self._clock = clock
        self._last_sent: JobProgress | None = initial
        # The placeholder itself counts as the first visible state.
        self._last_sent_at: float | None = clock() if initial is not None else None
        self._pending: JobProgress | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def update(self, state: JobProgress) -> None:
        """Offer the newest state; it is shown unless a newer one replaces it first."""
        if self._closed:
            return
        self._pending = state
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="progress-throttle")

    async def close(self) -> None:
        """Stop sending: anything pending or still waiting for its turn is dropped.

        An edit already being sent is left to finish in the background; `send` must keep
        it ahead of whatever the caller writes next (the pacer does, per channel).
        """
        self._closed = True
        self._pending = None
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the caller itself is being cancelled: never swallow that

    async def _run(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            if self._last_sent_at is not None:
                wait = self._last_sent_at + self._interval - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
            state, self._pending = self._pending, None
            if self._closed or state is None or state == self._last_sent:
                continue
            self._last_sent = state
            try:
                await self._send(state)
            except Exception:
                # A failed progress edit must never end the job; the next one may succeed.
                log.warning("%s: progress edit failed", self._name, exc_info=True)
            # Measure the gap from when the edit finished: the next one then arrives at
            # least `interval` after this one did, however long the request took.
            self._last_sent_at = self._clock()
