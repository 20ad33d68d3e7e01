"""The submission queue: who sends the next request to the image service, and when.

The provider lets the whole account submit only so fast (`bot.toapis.budget`): when more
members ask than it takes, someone waits. Waiting is fair here: submissions leave round-robin
across servers, and within a server round-robin across members (direct messages are keyed by
member, each its own "server"). So one server's burst of 500 holds another server's single job
back by at most one turn per busy server, and one member's 20 jobs hold another member's one
back by at most one turn per busy member of that server.

A job's turn comes when it is at the head of that order *and* a submission token was taken
from the budget. A submission the provider refused for rate (429, or its limiter being down)
was never accepted: it goes back to the very head of the line and is sent again at the next
token. Only so many submissions are on the wire at once, so a burst never floods the event
loop. Jobs join once they are ready to be sent (their reference images already uploaded:
uploads are not submissions and do not spend the submit budget).

Positions are worked out for every waiting job every `refresh` seconds (one pass over the
queue, never per change), and each job hears its own when it changed; the same pass ends jobs
that waited longer than `timeout`. Discord-free.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass, field

from bot.toapis.budget import TokenBucket

log = logging.getLogger(__name__)

# How many submissions may be on the wire at once: a burst then starts in waves, leaving the
# event loop free to answer the members still waiting for their placeholder.
SUBMIT_SLOTS = 16
# How often positions are worked out (and waiting too long is checked), in seconds.
POSITION_REFRESH = 5.0
QUEUE_TIMEOUT = 900.0
# The provider's submit limiter is down (503 rate_limit_unavailable) or the service unavailable
# (503): hold every submission off 1 s, 2 s, 4 s, … at most 30 s.
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0


class QueueTimeoutError(Exception):
    """The job waited in line longer than the queue allows; it was never sent."""


class QueueClosedError(Exception):
    """The queue stopped (the bot is stopping) before this job's turn came."""


@dataclass(frozen=True)
class QueuePosition:
    """Where a waiting job stands: `ahead` jobs go before it, in about `wait` seconds (None: unknown)."""

    ahead: int
    wait: float | None


def server_key(guild_id: int | None, user_id: int) -> Hashable:
    """The first level of fairness: a server, or the member when the job is outside any server."""
    return ("guild", guild_id) if guild_id is not None else ("member", user_id)


@dataclass(eq=False)
class QueueEntry:
    """One job waiting for its turn to be submitted."""

    job_id: int
    guild_id: int | None
    user_id: int
    joined_at: float
    on_position: Callable[[QueuePosition], None] | None = None
    granted: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    shown: QueuePosition | None = None  # the position this job was last told

    @property
    def server(self) -> Hashable:
        return server_key(self.guild_id, self.user_id)


class FairOrder:
    """Round-robin over servers, then over members within a server, then first come first served.

    Pure bookkeeping (no I/O, no clock), so its fairness can be tested over many random bursts.
    """

    def __init__(self) -> None:
        # Servers with waiting jobs, in turn order; per server its members in turn order; per member
        # their jobs in order. A server or member is dropped as soon as it has nothing waiting.
        self._servers: deque[Hashable] = deque()
        self._members: dict[Hashable, deque[int]] = {}
        self._jobs: dict[tuple[Hashable, int], deque[QueueEntry]] = {}
        self._per_guild: dict[int, int] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def waiting_in(self, guild_id: int) -> int:
        """How many jobs of one server are waiting."""
        return self._per_guild.get(guild_id, 0)

    def add(self, entry: QueueEntry, *, first: bool = False) -> None:
        """Queue a job at the end of its member's line, or (`first`) at the very head of the line."""
        server, member = entry.server, (entry.server, entry.user_id)
        if server not in self._members:
            self._members[server] = deque()
            if first:
                self._servers.appendleft(server)
            else:
                self._servers.append(server)
        elif first:
            self._servers.remove(server)
            self._servers.appendleft(server)
        members = self._members[server]
        if member not in self._jobs:
            self._jobs[member] = deque()
            if first:
                members.appendleft(entry.user_id)
            else:
                members.append(entry.user_id)
        elif first:
            members.remove(entry.user_id)
            members.appendleft(entry.user_id)
        if first:
            self._jobs[member].appendleft(entry)
        else:
            self._jobs[member].append(entry)
        self._count(entry, 1)

    def pop(self) -> QueueEntry | None:
        """The job whose turn it is (removed), or None when nothing waits.

        Its server and member go to the back of their rotations.
        """
        if not self._servers:
            return None
        server = self._servers.popleft()
        members = self._members[server]
        user_id = members.popleft()
        jobs = self._jobs[(server, user_id)]
        entry = jobs.popleft()
        if jobs:
            members.append(user_id)
        else:
            del self._jobs[(server, user_id)]
        if members:
            self._servers.append(server)
        else:
            del self._members[server]
        self._count(entry, -1)
        return entry

    def remove(self, entry: QueueEntry) -> bool:
        """Take a job out of line (it gave up waiting); False if it was not waiting."""
        server, member = entry.server, (entry.server, entry.user_id)
        jobs = self._jobs.get(member)
        if jobs is None or entry not in jobs:
            return False
        jobs.remove(entry)
        if not jobs:
            del self._jobs[member]
            members = self._members[server]
            members.remove(entry.user_id)
            if not members:
                del self._members[server]
                self._servers.remove(server)
        self._count(entry, -1)
        return True

    def in_order(self) -> Iterator[QueueEntry]:
        """Every waiting job in the order they would leave if nobody else joined (one pass, O(n))."""
        servers = deque(
            (deque(user_id for user_id in self._members[server]), server) for server in self._servers
        )
        cursors = {member: iter(jobs) for member, jobs in self._jobs.items()}
        while servers:
            members, server = servers.popleft()
            user_id = members.popleft()
            entry = next(cursors[(server, user_id)], None)
            if entry is None:  # this member's line is used up
                if members:
                    servers.appendleft((members, server))
                continue
            yield entry
            members.append(user_id)
            servers.append((members, server))

    def _count(self, entry: QueueEntry, delta: int) -> None:
        self._size += delta
        if entry.guild_id is not None:
            left = self._per_guild.get(entry.guild_id, 0) + delta
            if left:
                self._per_guild[entry.guild_id] = left
            else:
                self._per_guild.pop(entry.guild_id, None)


class SubmitTicket:
    """One job's place in the queue, kept from joining until its submission was accepted.

    `turn()` waits for the job's turn (a token taken, a slot on the wire); `sent()` frees the
    slot once the answer came; `again()` puts a refused submission back at the head of the line.
    """

    def __init__(self, queue: SubmitQueue, entry: QueueEntry) -> None:
        self._queue = queue
        self.entry = entry
        self._holding_slot = False

    async def turn(self) -> None:
        """Wait until this job may be sent; raises QueueTimeoutError or QueueClosedError."""
        try:
            await asyncio.shield(self.entry.granted)
        except asyncio.CancelledError:
            self._queue._abandon(self)
            raise
        self._holding_slot = True

    def sent(self) -> None:
        """The submission was answered (whatever the answer): its slot on the wire is free."""
        if self._holding_slot:
            self._holding_slot = False
            self._queue._slot_freed()

    def again(self) -> None:
        """The provider refused the submission for rate: back to the head of the line."""
        self.sent()
        self.entry = self._queue._rejoin(self.entry)


class SubmitQueue:
    """The fair queue in front of the submit budget (see the module's docstring)."""

    def __init__(
        self,
        bucket: TokenBucket | None = None,
        *,
        timeout: float = QUEUE_TIMEOUT,
        slots: int = SUBMIT_SLOTS,
        refresh: float = POSITION_REFRESH,
        backoff: float = BACKOFF_BASE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`bucket` is the submit budget (None: no budget, every turn comes as soon as a slot is free).
        `backoff` is the first pause after the provider was unavailable; it doubles each time."""
        self.bucket = bucket
        self._backoff = backoff
        self.timeout = timeout
        self._slots = slots
        self.refresh_seconds = refresh
        self._clock = clock
        self._sleep = sleep
        self._order = FairOrder()
        self._on_wire = 0
        self._closed = False
        self._change = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._limiter_down = 0  # 503 rate_limit_unavailable in a row
        # Plain counters for metrics.
        self.rate_limited = 0  # provider 429s on submissions
        self.limiter_unavailable = 0  # provider 503 rate_limit_unavailable on submissions
        self.granted = 0

    # -- what others read ------------------------------------------------------------------

    def __len__(self) -> int:
        """How many jobs are waiting for their turn."""
        return len(self._order)

    def waiting_in(self, guild_id: int) -> int:
        """How many of one server's jobs are waiting for their turn."""
        return self._order.waiting_in(guild_id)

    @property
    def on_wire(self) -> int:
        return self._on_wire

    # -- joining and leaving ---------------------------------------------------------------

    def join(
        self,
        job_id: int,
        guild_id: int | None,
        user_id: int,
        *,
        on_position: Callable[[QueuePosition], None] | None = None,
    ) -> SubmitTicket:
        """Put a job at the end of its member's line; `on_position` hears its place as it changes."""
        if self._closed:
            raise QueueClosedError
        entry = QueueEntry(job_id, guild_id, user_id, self._clock(), on_position)
        self._order.add(entry)
        self._wake()
        return SubmitTicket(self, entry)

    def _rejoin(self, old: QueueEntry) -> QueueEntry:
        entry = QueueEntry(old.job_id, old.guild_id, old.user_id, old.joined_at, old.on_position)
        if self._closed:
            entry.granted.set_exception(QueueClosedError())
            return entry
        self._order.add(entry, first=True)
        self._wake()
        return entry

    def _abandon(self, ticket: SubmitTicket) -> None:
        """The waiting job was cancelled: out of line, and a turn it was given goes to the next job."""
        entry = ticket.entry
        if self._order.remove(entry):
            return
        if entry.granted.done() and not entry.granted.cancelled() and entry.granted.exception() is None:
            # Granted but never used: the token and the slot are not spent.
            if self.bucket is not None:
                self.bucket.give_back()
            self._slot_freed()

    def _slot_freed(self) -> None:
        self._on_wire -= 1
        self._wake()

    # -- what the provider said ------------------------------------------------------------

    def accepted(self) -> None:
        """A submission was accepted: the provider's limiter works again."""
        self._limiter_down = 0

    def refused_for_rate(self, *, limiter_down: bool, retry_after: float | None = None) -> None:
        """A submission was refused for rate. A 429 already held the bucket off by its Retry-After
        (the client reads the headers; without one, a short pause here); a limiter that is down
        gets an exponential backoff."""
        if not limiter_down:
            self.rate_limited += 1
            if retry_after is None:
                self.hold_off(self._backoff)
            return
        self.limiter_unavailable += 1
        self._limiter_down += 1
        self.hold_off(self.backoff(self._limiter_down))

    def backoff(self, times: int) -> float:
        """The pause after the `times`-th refusal in a row: exponential, capped."""
        return min(BACKOFF_CAP, self._backoff * 2 ** (times - 1))

    def hold_off(self, seconds: float) -> None:
        """No submission for `seconds` (the provider asked for a pause)."""
        if self.bucket is not None:
            self.bucket.hold_off(seconds)

    def estimated_wait(self, ahead: int) -> float | None:
        """Seconds until a job with `ahead` jobs before it gets its turn, from the submit rate."""
        if self.bucket is None:
            return None
        tokens = self.bucket.tokens
        delay = self.bucket.wait_time() if tokens < 1 else 0.0
        after_burst = max(0.0, ahead + 1 - max(tokens, 1.0))
        return delay + after_burst / self.bucket.allowance.per_second

    # -- running ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop: no turn is granted any more; every waiting job gets QueueClosedError."""
        self._closed = True
        while (entry := self._order.pop()) is not None:
            if not entry.granted.done():
                entry.granted.set_exception(QueueClosedError())
                entry.granted.exception()  # retrieved: nobody may be awaiting it any more
        for task in (self._dispatcher, self._ticker):
            if task is not None:
                task.cancel()
        self._wake()

    def _wake(self) -> None:
        self._change.set()
        if self._closed:
            return
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch(), name="submit-queue")
        if len(self._order) and (self._ticker is None or self._ticker.done()):
            self._ticker = asyncio.create_task(self._tick(), name="submit-queue-positions")

    async def _until(self, check: Callable[[], bool]) -> None:
        while not check():
            self._change.clear()
            await self._change.wait()

    async def _dispatch(self) -> None:
        """Grant turns: the next job in fair order, once a slot is free and a token is taken."""
        while not self._closed:
            await self._until(lambda: self._closed or (len(self._order) > 0 and self._on_wire < self._slots))
            if self._closed:
                return
            if self.bucket is not None:
                await self.bucket.take()
            # Chosen only now, after the wait: a job that joined meanwhile may deserve this turn.
            entry = self._order.pop()
            if entry is None:
                if self.bucket is not None:
                    self.bucket.give_back()
                continue
            self._on_wire += 1
            self.granted += 1
            entry.granted.set_result(None)

    async def _tick(self) -> None:
        """Every `refresh` seconds: end jobs that waited too long, tell the others where they stand."""
        while len(self._order) and not self._closed:
            await self._sleep(self.refresh_seconds)
            self.refresh()

    def refresh(self) -> None:
        """One pass over the queue: timeouts, then positions (each job told only when its own changed)."""
        now = self._clock()
        expired = [entry for entry in self._order.in_order() if now - entry.joined_at >= self.timeout]
        for entry in expired:
            self._order.remove(entry)
            entry.granted.set_exception(QueueTimeoutError())
        if expired:
            log.warning(
                "%d job(s) waited in line longer than %.0fs; they were not sent", len(expired), self.timeout
            )
        for ahead, entry in enumerate(self._order.in_order()):
            position = QueuePosition(ahead, _rounded(self.estimated_wait(ahead)))
            if entry.on_position is not None and position != entry.shown:
                entry.shown = position
                try:
                    entry.on_position(position)
                except Exception:
                    log.exception("job %s: showing its place in line failed", entry.job_id)


def _rounded(seconds: float | None) -> float | None:
    """Waits as a member reads them: 5 s steps under a minute, whole minutes above (fewer edits)."""
    if seconds is None:
        return None
    if seconds < 60:
        return float(max(5, 5 * math.ceil(seconds / 5)))
    return float(60 * round(seconds / 60))
