"""The submission queue: fair order (servers, then members, then first come), turns paced by the
submit budget, the head of the line after a refusal, timeouts, positions. Virtual time throughout:
every sleep of the queue and its bucket waits on `VirtualTime`, which moves the clock only when
everything else has settled, so each figure is exact and no test waits for real."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections import defaultdict
from collections.abc import Hashable

import pytest

from bot.jobs.queue import (
    FairOrder,
    QueueClosedError,
    QueueEntry,
    QueuePosition,
    QueueTimeoutError,
    SubmitQueue,
    SubmitTicket,
    server_key,
)
from bot.toapis.budget import Allowance, TokenBucket

pytestmark = pytest.mark.asyncio


class VirtualTime:
    """A clock and a sleep: the clock jumps to the next sleeper's wake-up once nothing else can run."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), future))
        await future

    async def settle(self) -> None:
        for _ in range(30):
            await asyncio.sleep(0)

    async def run_until(self, done, *, limit: float = 10_000.0) -> None:
        """Let time pass, sleeper by sleeper, until `done()` (or the virtual limit: a test failure)."""
        await self.settle()
        while not done():
            if not self._sleepers:
                raise AssertionError("nothing is sleeping and the condition is not met")
            wake, _, future = heapq.heappop(self._sleepers)
            if wake > limit:
                raise AssertionError(f"not done by t={limit}")
            self.now = max(self.now, wake)
            if not future.done():
                future.set_result(None)
            await self.settle()


def make_queue(time: VirtualTime, *, rate: float | None = 2.0, burst: float = 4.0, **options) -> SubmitQueue:
    bucket = TokenBucket(Allowance(rate, burst), clock=time, sleep=time.sleep) if rate is not None else None
    return SubmitQueue(bucket, clock=time, sleep=time.sleep, **options)


class Sender:
    """Stands in for the runner: joins, waits for its turn, records when it came, sends at once."""

    def __init__(self, queue: SubmitQueue, time: VirtualTime) -> None:
        self.queue = queue
        self.time = time
        self.sent: list[tuple[str, float]] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.positions: dict[str, list[QueuePosition]] = defaultdict(list)
        self._ids = itertools.count(1)

    def submit(self, name: str, guild_id: int | None, user_id: int) -> asyncio.Task[None]:
        ticket = self.queue.join(
            next(self._ids), guild_id, user_id, on_position=lambda p: self.positions[name].append(p)
        )

        async def go() -> None:
            await ticket.turn()
            self.sent.append((name, self.time.now))
            ticket.sent()

        task = asyncio.create_task(go())
        self.tasks.append(task)
        return task

    def names(self) -> list[str]:
        return [name for name, _ in self.sent]


def entry(job_id: int, guild_id: int | None, user_id: int) -> QueueEntry:
    return QueueEntry(job_id, guild_id, user_id, joined_at=0.0)


# --------------------------------------------------------------------------- the order


async def test_servers_take_turns_then_members_then_each_members_jobs_in_order() -> None:
    order = FairOrder()
    jobs = [
        entry(1, 100, 1),
        entry(2, 100, 1),
        entry(3, 100, 1),
        entry(4, 100, 2),
        entry(5, 200, 3),
        entry(6, None, 4),  # a direct message: its member is its own "server"
        entry(7, None, 5),
    ]
    for job in jobs:
        order.add(job)
    preview = [job.job_id for job in order.in_order()]
    popped = [job.job_id for job in iter(order.pop, None)]
    assert (preview, popped, len(order)) == ([1, 5, 6, 7, 4, 2, 3], [1, 5, 6, 7, 4, 2, 3], 0)


async def test_a_server_bursting_500_jobs_holds_a_single_job_of_another_server_back_one_turn() -> None:
    order = FairOrder()
    for job_id in range(500):
        order.add(entry(job_id, 100, job_id % 7 + 1))
    for _ in range(100):
        order.pop()
    order.add(entry(1000, 200, 50))
    assert [order.pop().job_id for _ in range(2)].count(1000) == 1


async def test_a_member_with_20_jobs_holds_another_members_single_job_back_one_turn() -> None:
    order = FairOrder()
    for job_id in range(20):
        order.add(entry(job_id, 100, 1))
    order.pop()
    order.add(entry(99, 100, 2))
    assert [order.pop().job_id for _ in range(2)].count(99) == 1


async def test_a_refused_job_goes_first_before_its_server_and_member_turns() -> None:
    order = FairOrder()
    for job_id, guild, user in [(1, 100, 1), (2, 100, 1), (3, 200, 2), (4, 300, 3), (5, 100, 4)]:
        order.add(entry(job_id, guild, user))
    first = order.pop()
    assert first is not None
    order.add(first, first=True)  # refused for rate: back to the very head of the line
    assert [job.job_id for job in iter(order.pop, None)] == [1, 3, 4, 5, 2]


async def test_the_counts_per_server_follow_joins_turns_and_removals() -> None:
    order = FairOrder()
    waiting = [entry(1, 100, 1), entry(2, 100, 2), entry(3, 200, 3), entry(4, None, 4)]
    for job in waiting:
        order.add(job)
    order.pop()
    order.remove(waiting[2])
    assert (len(order), order.waiting_in(100), order.waiting_in(200), order.remove(waiting[2])) == (
        2,
        1,
        0,
        False,
    )


@pytest.mark.parametrize("seed", range(40))
async def test_random_bursts_are_served_fairly(seed: int) -> None:
    """Many random bursts from many servers, members and direct messages, with refusals and
    members giving up: between two turns of a server that kept jobs waiting, no other server has
    two turns; the same for members within a server; each member's jobs leave in order; the
    previewed order is the order jobs leave."""
    rng = random.Random(seed)
    order = FairOrder()
    ids = itertools.count()
    guilds = [100, 200, 300, 400, None]
    waiting: list[QueueEntry] = []
    popped: list[tuple[QueueEntry, frozenset[Hashable], frozenset[tuple[Hashable, int]]]] = []
    joined_at: dict[int, int] = {}
    for _ in range(rng.randint(50, 400)):
        roll = rng.random()
        if roll < 0.45:  # a burst joins
            guild = rng.choice(guilds)
            user = rng.randint(1, 6) + (guilds.index(guild) * 10)
            for _ in range(rng.choice([1, 1, 2, 5, 30])):
                job = entry(next(ids), guild, user)
                joined_at[job.job_id] = len(joined_at)
                order.add(job)
                waiting.append(job)
        elif roll < 0.9:
            # Who was waiting just before this turn: the servers and members owed a turn.
            servers = frozenset(job.server for job in waiting)
            members = frozenset((job.server, job.user_id) for job in waiting)
            turn = order.pop()
            if turn is None:
                continue
            waiting.remove(turn)
            if rng.random() < 0.05:  # refused for rate: first again
                order.add(turn, first=True)
                waiting.insert(0, turn)
                continue
            popped.append((turn, servers, members))
        elif waiting:
            job = rng.choice(waiting)
            assert order.remove(job)
            waiting.remove(job)
    preview = list(order.in_order())
    rest = list(iter(order.pop, None))
    assert preview == rest

    # Between two consecutive turns of a server waiting all along, no other server went twice.
    turns: dict[Hashable, list[int]] = defaultdict(list)
    for index, (job, _, _) in enumerate(popped):
        turns[job.server].append(index)
    for server, indexes in turns.items():
        for start, end in itertools.pairwise(indexes):
            between = [popped[i][0].server for i in range(start + 1, end)]
            if all(server in popped[i][1] for i in range(start + 1, end + 1)):
                assert max((between.count(s) for s in set(between)), default=0) <= 1, (server, between)
    # Within a server, the same between its members.
    member_turns: dict[tuple[Hashable, int], list[int]] = defaultdict(list)
    for index, (job, _, _) in enumerate(popped):
        member_turns[(job.server, job.user_id)].append(index)
    for member, indexes in member_turns.items():
        for start, end in itertools.pairwise(indexes):
            same_server = [popped[i][0] for i in range(start + 1, end) if popped[i][0].server == member[0]]
            if all(member in popped[i][2] for i in range(start + 1, end + 1)):
                others = [(j.server, j.user_id) for j in same_server]
                assert max((others.count(m) for m in set(others)), default=0) <= 1, (member, others)
    # A member's jobs (never refused) leave in the order they joined.
    by_member: dict[tuple[Hashable, int], list[int]] = defaultdict(list)
    for job, _, _ in popped:
        by_member[(job.server, job.user_id)].append(joined_at[job.job_id])
    assert all(times == sorted(times) for times in by_member.values())


async def test_direct_messages_are_keyed_by_member() -> None:
    assert (server_key(None, 7), server_key(None, 8), server_key(7, 8)) == (
        ("member", 7),
        ("member", 8),
        ("guild", 7),
    )


# --------------------------------------------------------------------------- turns and the budget


async def test_turns_come_at_the_submit_rate_after_the_burst() -> None:
    time = VirtualTime()
    sender = Sender(make_queue(time, rate=2.0, burst=4.0), time)
    for number in range(8):
        sender.submit(f"job{number}", 100, 1)
    await time.run_until(lambda: len(sender.sent) == 8)
    assert [at for _, at in sender.sent] == [0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0]


async def test_a_single_job_of_a_quiet_server_goes_at_the_next_token_during_a_burst() -> None:
    time = VirtualTime()
    sender = Sender(make_queue(time, rate=5.0, burst=50.0), time)
    for number in range(500):
        sender.submit(f"big{number}", 100, number % 10 + 1)
    await time.run_until(lambda: len(sender.sent) >= 200)
    joined = time.now
    sender.submit("quiet", 200, 999)
    await time.run_until(lambda: "quiet" in sender.names())
    sent_at = dict(sender.sent)["quiet"]
    # At 5 a second, one token goes to the big server at most before the quiet one's turn.
    assert sent_at - joined <= 2 / 5


async def test_a_refused_submission_goes_again_first_at_the_next_token() -> None:
    time = VirtualTime()
    queue = make_queue(time, rate=1.0, burst=1.0)
    tickets = [queue.join(job_id, 100, job_id) for job_id in (1, 2, 3)]
    await tickets[0].turn()
    queue.hold_off(3.0)  # the provider's Retry-After, read by the client
    queue.refused_for_rate(limiter_down=False)
    tickets[0].again()
    granted: list[int] = []

    async def wait(ticket: SubmitTicket) -> None:
        await ticket.turn()
        granted.append(ticket.entry.job_id)
        ticket.sent()

    waits = [asyncio.create_task(wait(ticket)) for ticket in tickets]
    await time.run_until(lambda: len(granted) == 3)
    await asyncio.gather(*waits)
    assert (granted, queue.rate_limited, queue.granted, time.now >= 3.0) == ([1, 2, 3], 1, 4, True)


async def test_the_submit_limiter_being_down_holds_turns_off_longer_each_time() -> None:
    time = VirtualTime()
    queue = make_queue(time, rate=100.0, burst=100.0)
    pauses = []
    for _ in range(4):
        queue.refused_for_rate(limiter_down=True)
        pauses.append(round(queue.bucket.wait_time(), 3))
        time.now += 100
    queue.accepted()
    queue.refused_for_rate(limiter_down=True)
    assert (pauses, round(queue.bucket.wait_time(), 3), queue.limiter_unavailable) == (
        [1.01, 2.01, 4.01, 8.01],
        1.01,
        5,
    )


async def test_only_so_many_submissions_are_on_the_wire_at_once() -> None:
    time = VirtualTime()
    queue = make_queue(time, rate=None, slots=2)
    tickets = [queue.join(job_id, 100, job_id) for job_id in range(5)]
    waits = [asyncio.create_task(ticket.turn()) for ticket in tickets]
    await time.settle()
    first = sum(wait.done() for wait in waits)
    tickets[0].sent()
    await time.settle()
    assert (first, sum(wait.done() for wait in waits), queue.on_wire) == (2, 3, 2)
    queue.close()
    await asyncio.gather(*waits, return_exceptions=True)


async def test_a_job_cancelled_after_its_turn_came_gives_the_token_back() -> None:
    time = VirtualTime()
    queue = make_queue(time, rate=1.0, burst=2.0)
    queue.hold_off(1.0)
    ticket = queue.join(1, 100, 1)
    waiting = asyncio.create_task(ticket.turn())
    await time.settle()
    # The turn is granted, and the job is cancelled (shutdown) before it resumes to use it.
    ticket.entry.granted.add_done_callback(lambda _: waiting.cancel())
    await time.run_until(waiting.done)
    with pytest.raises(asyncio.CancelledError):
        waiting.result()
    # The token taken at t=1 came back: the bucket holds what it refilled since, untouched.
    assert (round(queue.bucket.tokens, 6), queue.on_wire, len(queue)) == (1.0, 0, 0)


async def test_a_job_cancelled_while_waiting_leaves_the_line() -> None:
    time = VirtualTime()
    queue = make_queue(time, rate=1.0, burst=1.0)
    queue.hold_off(100)
    tickets = [queue.join(job_id, 100, 1) for job_id in (1, 2)]
    waiting = asyncio.create_task(tickets[0].turn())
    await time.settle()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (len(queue), queue.waiting_in(100)) == (1, 1)
    queue.close()


async def test_a_job_waiting_longer_than_the_queue_timeout_ends_unsent() -> None:
    time = VirtualTime()
    queue = make_queue(time, rate=1.0, burst=1.0, timeout=900.0, refresh=5.0)
    queue.hold_off(5000)  # the provider keeps refusing: nothing can be sent for a long while
    ticket = queue.join(1, 100, 1)
    waiting = asyncio.create_task(ticket.turn())
    await time.run_until(waiting.done)
    with pytest.raises(QueueTimeoutError):
        waiting.result()
    assert (900.0 <= time.now <= 905.0, len(queue), queue.granted) == (True, 0, 0)
    queue.close()


async def test_closing_the_queue_ends_every_wait_and_refuses_new_jobs() -> None:
    time = VirtualTime()
    queue = make_queue(time, rate=1.0, burst=1.0)
    queue.hold_off(100)
    waits = [asyncio.create_task(queue.join(job_id, 100, job_id).turn()) for job_id in (1, 2)]
    await time.settle()
    queue.close()
    results = await asyncio.gather(*waits, return_exceptions=True)
    with pytest.raises(QueueClosedError):
        queue.join(3, 100, 3)
    assert [type(result) for result in results] == [QueueClosedError, QueueClosedError]


# --------------------------------------------------------------------------- positions


async def test_waiting_jobs_hear_how_many_are_ahead_and_about_how_long() -> None:
    time = VirtualTime()
    queue = make_queue(time, rate=0.2, burst=1.0, refresh=5.0)
    queue.hold_off(20)  # nothing goes for 20 s, then one every 5 s
    sender = Sender(queue, time)
    for number in range(3):
        sender.submit(f"job{number}", 100 + number, number)
    await time.run_until(lambda: all(sender.positions[f"job{n}"] for n in range(3)))
    first = {name: positions[0] for name, positions in sender.positions.items()}
    # At t=5: 15 s of the pause left, then 5 s for each token.
    assert first == {
        "job0": QueuePosition(0, 20.0),
        "job1": QueuePosition(1, 25.0),
        "job2": QueuePosition(2, 30.0),
    }
    queue.close()


async def test_a_job_is_told_its_place_only_when_it_changed() -> None:
    time = VirtualTime()
    queue = make_queue(time, rate=1.0, burst=1.0, refresh=5.0)
    queue.hold_off(300)
    sender = Sender(queue, time)
    sender.submit("only", 100, 1)
    await time.run_until(lambda: time.now >= 100)
    # Minutes are whole: the estimate from 5 min down to 3 min changes only a few times in 100 s.
    shown = sender.positions["only"]
    assert (len(shown) <= 4, shown[0], len(set(shown)) == len(shown)) == (True, QueuePosition(0, 300.0), True)
    queue.close()


async def test_without_a_budget_no_wait_is_estimated() -> None:
    time = VirtualTime()
    queue = make_queue(time, rate=None)
    assert queue.estimated_wait(10) is None


async def test_a_429_without_retry_after_still_pauses_submissions_a_moment() -> None:
    time = VirtualTime()
    queue = make_queue(time, rate=100.0, burst=100.0)
    queue.refused_for_rate(limiter_down=False, retry_after=2.0)  # the client held off by the header
    without_header = queue.bucket.wait_time()
    queue.refused_for_rate(limiter_down=False)
    assert (without_header, round(queue.bucket.wait_time(), 3), queue.rate_limited) == (0.0, 1.01, 2)
