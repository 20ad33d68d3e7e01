"""Start-up retries: backoff within STARTUP_RETRY_SECONDS on an injected clock, then one plain line."""

from __future__ import annotations

import pytest

from bot.startup import (
    EXIT_MISCONFIGURED,
    EXIT_UNREACHABLE,
    ServiceUnreachableError,
    StartupError,
    hide_password,
    keep_trying,
)


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_an_unreachable_service_is_retried_with_backoff_until_the_budget_is_spent():
    clock = FakeClock()

    async def never(_: float) -> None:
        raise ServiceUnreachableError("connection refused")

    with pytest.raises(StartupError) as raised:
        await keep_trying(
            never, within=60, service="Discord", advice="check it", sleep=clock.sleep, clock=clock
        )
    assert (clock.sleeps, str(raised.value), raised.value.exit_code) == (
        [1, 2, 4, 8, 10, 10, 10, 10, 5],
        "could not reach Discord (connection refused; tried for 60s): check it",
        EXIT_UNREACHABLE,
    )


async def test_a_service_that_comes_up_during_the_retries_is_used():
    clock = FakeClock()
    answers: list[float] = []

    async def up_after_three_seconds(answer_within: float) -> str:
        answers.append(answer_within)
        if clock.now < 3:
            raise ServiceUnreachableError("the name does not resolve")
        return "ok"

    result = await keep_trying(
        up_after_three_seconds, within=60, service="x", advice="y", sleep=clock.sleep, clock=clock
    )
    assert (result, clock.sleeps, answers) == ("ok", [1, 2], [10, 10, 10])


async def test_refused_credentials_are_not_retried():
    clock = FakeClock()

    async def refused(_: float) -> None:
        raise StartupError("DISCORD_TOKEN was rejected")

    with pytest.raises(StartupError) as raised:
        await keep_trying(refused, within=60, service="x", advice="y", sleep=clock.sleep, clock=clock)
    assert (clock.sleeps, raised.value.exit_code) == ([], EXIT_MISCONFIGURED)


async def test_zero_seconds_tries_once():
    clock = FakeClock()
    calls = 0

    async def never(_: float) -> None:
        nonlocal calls
        calls += 1
        raise ServiceUnreachableError("no answer in time")

    with pytest.raises(StartupError):
        await keep_trying(never, within=0, service="x", advice="y", sleep=clock.sleep, clock=clock)
    assert (calls, clock.sleeps) == (1, [])


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bot:p%40ss@db.example:5432/imagine", "postgresql://bot:***@db.example:5432/imagine"),
        ("postgres://bot@db.example/imagine", "postgres://bot@db.example/imagine"),
        ("sqlite:///data/imagine.db", "sqlite:///data/imagine.db"),
    ],
)
def test_database_urls_are_shown_without_their_password(url, shown):
    assert hide_password(url) == shown
