"""Watching the ToAPIs balance: one warning to the operator each time it drops below the threshold.

The balance is read every `BALANCE_CHECK_MINUTES` and right after a submission the provider
refused for balance or permission. An alert fires when the balance crosses below
`LOW_BALANCE_USD` and re-arms only once it is back at or above it, so a bot that keeps running
jobs on a low balance warns once, not once per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bot import i18n, toapis
from bot.i18n import Text, _
from bot.toapis import Balance

__all__ = ["BalanceWatch"]

log = logging.getLogger(__name__)


class BalanceWatch:
    """Reads the balance when asked or on a timer, and tells the operator once per crossing.

    `read` fetches the balance (the ToAPIs client's `balance`); `notify` delivers one line to
    the operator (a Discord channel); it is awaited, and its failures are logged, never raised.
    `low_usd` None turns alerts off (the balance is still read and logged at DEBUG).

    `language`, when given, says which language the operator's channel reads (its server's
    locale, asked at alert time since the bot may learn it late); the alert is in English when
    it is not given or returns None. The log line is always English.
    """

    def __init__(
        self,
        read: Callable[[], Awaitable[Balance]],
        notify: Callable[[str], Awaitable[object]],
        *,
        low_usd: float | None,
        language: Callable[[], str | None] | None = None,
    ) -> None:
        self._read = read
        self._notify = notify
        self._low_usd = low_usd
        self._language = language
        self._below = False  # True from an alert until the balance is back above the threshold
        self._wake = asyncio.Event()
        self.last: Balance | None = None

    def observe(self, balance: Balance) -> Text | None:
        """Record a reading; return the alert line when this reading crossed below the threshold."""
        self.last = balance
        if self._low_usd is None:
            return None
        if balance.unlimited or balance.remain_balance >= self._low_usd:
            if self._below:
                log.info("the ToAPIs balance is back above the alert threshold: %s", balance.describe())
            self._below = False
            return None
        if self._below:
            return None  # already told for this crossing
        self._below = True
        return _(
            "⚠️ The ToAPIs balance is low: {balance}, below LOW_BALANCE_USD ({threshold}). "
            "Top up the account, or image requests will start failing.",
            balance=balance.describe(),
            threshold=f"${self._low_usd:,.2f}",
        )

    async def check(self) -> Balance | None:
        """Read the balance now and alert if it crossed below the threshold; None if unreadable."""
        try:
            balance = await self._read()
        except toapis.ToAPIsError as exc:
            # The next round tries again; a failing key also shows in every job's log.
            log.warning("could not read the ToAPIs balance: %s", exc)
            return None
        log.debug("ToAPIs balance: %s", balance.describe())
        alert = self.observe(balance)
        if alert is not None:
            log.warning("%s", alert)
            try:
                await self._notify(i18n.render(alert, self._language() if self._language else None))
            except Exception:
                log.exception("could not post the low-balance alert to the operator channel")
        return balance

    def refused(self) -> None:
        """A submission was refused for balance or permission: read the balance at once."""
        self._wake.set()

    async def run(self, every_seconds: float) -> None:
        """Check now, then every `every_seconds` (0: only after refusals) and after each refusal."""
        while True:
            self._wake.clear()
            await self.check()
            timeout = every_seconds if every_seconds > 0 else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
