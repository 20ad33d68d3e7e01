"""The balance watch: one alert to the operator per crossing below LOW_BALANCE_USD, never one per job."""

from __future__ import annotations

import asyncio

import pytest

from bot import i18n
from bot.balance import BalanceWatch
from bot.toapis import Balance, ToAPIsConnectionError


def _balance(usd: float, *, unlimited: bool = False) -> Balance:
    return Balance(usd, 0.0, usd * 200, 0.0, 200.0, unlimited)


class Account:
    """What the watch reads (a value the test sets, or an error) and the lines it posts."""

    def __init__(self, usd: float) -> None:
        self.next: Balance | Exception = _balance(usd)
        self.reads = 0
        self.posted: list[str] = []
        self.read_now = asyncio.Event()

    async def read(self) -> Balance:
        self.reads += 1
        self.read_now.set()
        if isinstance(self.next, Exception):
            raise self.next
        return self.next

    async def notify(self, line: str) -> None:
        self.posted.append(line)


async def test_an_alert_once_per_crossing_below_and_again_after_it_recovered() -> None:
    account = Account(10)
    watch = BalanceWatch(account.read, account.notify, low_usd=5)
    seen = []
    for usd in (10, 6, 4.99, 3, 0, 0, 2, 5, 8, 4, 1):
        account.next = _balance(usd)
        await watch.check()
        seen.append(len(account.posted))
    # 4.99 crosses (1st), 3/0/0/2 stay below (no more), 5 re-arms, 4 crosses again (2nd).
    assert (seen, account.posted[0]) == (
        [0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2],
        "⚠️ The ToAPIs balance is low: $4.99 left (998 credits), below LOW_BALANCE_USD ($5.00). "
        "Top up the account, or image requests will start failing.",
    )


async def test_a_balance_already_low_at_start_alerts_once() -> None:
    account = Account(1)
    watch = BalanceWatch(account.read, account.notify, low_usd=5)
    for _ in range(3):
        await watch.check()
    assert (account.reads, len(account.posted)) == (3, 1)


async def test_an_unlimited_account_never_alerts() -> None:
    account = Account(0)
    account.next = _balance(-1, unlimited=True)
    watch = BalanceWatch(account.read, account.notify, low_usd=5)
    await watch.check()
    assert account.posted == []


async def test_no_threshold_means_no_alert() -> None:
    account = Account(0)
    watch = BalanceWatch(account.read, account.notify, low_usd=None)
    await watch.check()
    assert (account.reads, account.posted, watch.last) == (1, [], _balance(0))


async def test_an_unreadable_balance_neither_alerts_nor_rearms(caplog: pytest.LogCaptureFixture) -> None:
    account = Account(1)
    watch = BalanceWatch(account.read, account.notify, low_usd=5)
    await watch.check()
    account.next = ToAPIsConnectionError()
    assert await watch.check() is None
    account.next = _balance(1)
    await watch.check()
    assert (len(account.posted), "could not read the ToAPIs balance" in caplog.text) == (1, True)


async def test_a_failing_operator_channel_does_not_stop_the_watch() -> None:
    account = Account(1)

    async def broken(line: str) -> None:
        raise OSError("the channel is gone")

    watch = BalanceWatch(account.read, broken, low_usd=5)
    assert await watch.check() == _balance(1)


async def test_a_refusal_wakes_the_watch_at_once_even_with_the_timer_off() -> None:
    account = Account(10)
    watch = BalanceWatch(account.read, account.notify, low_usd=5)
    runner = asyncio.create_task(watch.run(0))  # 0: no timer, only refusals
    try:
        await asyncio.wait_for(account.read_now.wait(), 5)  # the first read, at start
        account.read_now.clear()
        account.next = _balance(0)
        watch.refused()
        await asyncio.wait_for(account.read_now.wait(), 5)
        for _ in range(10):  # a few loop turns for the check to post what it read
            if account.posted:
                break
            await asyncio.sleep(0)
        assert (account.reads, len(account.posted)) == (2, 1)
    finally:
        runner.cancel()


async def test_the_alert_reads_in_the_operator_channels_language_and_logs_in_english(
    caplog: pytest.LogCaptureFixture,
) -> None:
    account = Account(1)
    asked: list[str] = []

    def language() -> str:
        asked.append("fr")
        return "fr"

    watch = BalanceWatch(account.read, account.notify, low_usd=5, language=language)
    with caplog.at_level("WARNING"):
        await watch.check()
    alert = i18n._(
        "⚠️ The ToAPIs balance is low: {balance}, below LOW_BALANCE_USD ({threshold}). "
        "Top up the account, or image requests will start failing.",
        balance="$1.00 left (200 credits)",
        threshold="$5.00",
    )
    french = i18n.render(alert, "fr")
    assert (account.posted, french != str(alert), str(alert) in caplog.text, asked) == (
        [french],
        True,
        True,
        ["fr"],
    )


async def test_without_a_known_language_the_alert_is_english() -> None:
    account = Account(1)
    watch = BalanceWatch(account.read, account.notify, low_usd=5, language=lambda: None)
    await watch.check()
    assert account.posted == [
        "⚠️ The ToAPIs balance is low: $1.00 left (200 credits), below LOW_BALANCE_USD ($5.00). "
        "Top up the account, or image requests will start failing."
    ]
