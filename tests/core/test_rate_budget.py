"""The bot's copy of the provider's rate buckets: refill, bursts, headers and Retry-After."""

from __future__ import annotations

import asyncio

import pytest

from bot.toapis.budget import Allowance, RateBudget, RateLimitNotice, RateLimits, TokenBucket


class FakeClock:
    """A clock tests move by hand; `sleep` moves it (and yields once, like a real sleep)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def bucket(per_second: float = 5, burst: float = 50) -> tuple[TokenBucket, FakeClock]:
    clock = FakeClock()
    return TokenBucket(Allowance(per_second, burst), clock=clock, sleep=clock.sleep), clock


def test_documented_groups() -> None:
    default = RateLimits.for_group("default")
    assert (default.submit.per_second, default.submit.burst) == (5, 50)
    assert (default.query.per_second, default.query.burst) == (50, 500)
    assert RateLimits.for_group("svip").query.per_second == 500
    assert RateLimits.for_group("vip").submit.per_second == pytest.approx(16.67, abs=0.01)
    with pytest.raises(ValueError, match="default, vip, svip"):
        RateLimits.for_group("gold")


def test_margin_and_share_shrink_both_buckets() -> None:
    limits = RateLimits.for_group("default").with_margin(0.05).share(0.5)
    assert limits.submit.per_second == pytest.approx(2.375)
    assert limits.submit.burst == pytest.approx(23.75)
    assert limits.query.per_second == pytest.approx(23.75)
    with pytest.raises(ValueError):
        RateLimits.for_group("default").share(0)


def test_a_full_bucket_gives_its_burst_then_refills_at_its_rate() -> None:
    b, clock = bucket(5, 50)
    assert sum(b.try_take() for _ in range(60)) == 50
    assert b.wait_time() == pytest.approx(0.2)
    clock.now += 1.0
    assert sum(b.try_take() for _ in range(10)) == 5
    clock.now += 100
    assert b.tokens == 50  # never above the burst


async def test_take_waits_exactly_as_long_as_the_refill_needs() -> None:
    b, clock = bucket(5, 2)
    start = clock.now
    for _ in range(12):
        await b.take()
    # Two from the burst, then ten at 5 per second.
    assert clock.now - start == pytest.approx(2.0)
    assert b.taken == 12


async def test_waiters_are_served_in_the_order_they_asked() -> None:
    b, _ = bucket(5, 1)
    served: list[int] = []

    async def one(i: int) -> None:
        await b.take()
        served.append(i)

    await asyncio.gather(*(one(i) for i in range(6)))
    assert served == list(range(6))


def test_retry_after_empties_the_bucket_and_pauses_refill() -> None:
    b, clock = bucket(5, 50)
    b.observe(RateLimitNotice(retry_after=3.0))
    assert not b.try_take()
    assert b.wait_time() == pytest.approx(3.2)
    clock.now += 3.0
    assert not b.try_take()
    clock.now += 0.2
    assert b.try_take()


def test_remaining_header_only_lowers_our_count() -> None:
    b, _ = bucket(5, 50)
    b.observe(RateLimitNotice(remaining=10))
    assert b.tokens == pytest.approx(10 - 50 * 0.05)
    b.observe(RateLimitNotice(remaining=40))  # the provider's bucket refilled: ours does by itself
    assert b.tokens == pytest.approx(7.5)


def test_give_back_returns_an_unsent_token() -> None:
    b, _ = bucket(5, 2)
    assert b.try_take() and b.try_take()
    b.give_back()
    assert b.try_take()
    assert b.taken == 2


def test_headers_are_read_in_either_reset_form_and_junk_is_ignored() -> None:
    now = 1_700_000_000.0
    notice = RateLimitNotice.from_headers(
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(now + 4), "Retry-After": "2"}, now=now
    )
    assert notice == RateLimitNotice(remaining=0, reset_in=4.0, retry_after=2.0)
    assert RateLimitNotice.from_headers({"X-RateLimit-Reset": "7"}, now=now).reset_in == 7.0
    junk = RateLimitNotice.from_headers(
        {"X-RateLimit-Remaining": "lots", "X-RateLimit-Reset": "nan"}, now=now
    )
    assert junk.empty


def test_a_budget_has_independent_buckets() -> None:
    clock = FakeClock()
    budget = RateBudget(RateLimits.for_group("default"), clock=clock, sleep=clock.sleep)
    budget.submit.hold_off(10)
    assert not budget.submit.try_take()
    assert budget.query.try_take()
    assert budget.submit.in_use() == 1.0
