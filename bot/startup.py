"""Start-up checks that end in one plain line instead of a traceback.

`python -m bot` proves what it depends on before it logs in: the database (opened and
migrated), the ToAPIs key, and Discord. A service that does not answer (a name that does not
resolve, a refused connection, no answer in time) is tried again with backoff for up to
`STARTUP_RETRY_SECONDS` — a host that boots the bot before its network or database is up still
starts — and then :class:`StartupError` carries the one line to print. Credentials that are
refused end start-up at once: trying again would be refused again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import sqlalchemy as sa

from bot import toapis
from bot.config import Settings
from bot.store import Store, describe

log = logging.getLogger(__name__)

T = TypeVar("T")

# Exit codes: something did not answer (may pass on its own) / a setting is wrong.
EXIT_UNREACHABLE = 1
EXIT_MISCONFIGURED = 2

FIRST_DELAY = 1.0
MAX_DELAY = 10.0
# One attempt never waits longer than this for an answer (less when the budget is nearly spent).
ATTEMPT_TIMEOUT = 10.0

# PostgreSQL's SQLSTATEs for a refused login (wrong password, unknown role) and an unknown database.
_REFUSED_LOGIN = frozenset({"28P01", "28000"})
_NO_SUCH_DATABASE = "3D000"


class StartupError(Exception):
    """Start-up cannot go on. `str(error)` is the one line to print; `exit_code` what to exit with."""

    def __init__(self, line: str, exit_code: int = EXIT_MISCONFIGURED) -> None:
        super().__init__(line)
        self.exit_code = exit_code


class ServiceUnreachableError(Exception):
    """A service did not answer (DNS, refused, timed out, 5xx): worth trying again. The message says how."""


async def keep_trying(
    attempt: Callable[[float], Awaitable[T]],
    *,
    within: float,
    service: str,
    advice: str,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`attempt(answer_within)` until it succeeds, retrying :class:`ServiceUnreachableError` with backoff.

    Waits 1, 2, 4 … (at most 10) seconds between attempts for up to `within` seconds in all,
    then raises :class:`StartupError` naming `service`, the last reason and `advice`. Any
    other error (a :class:`StartupError` for refused credentials) passes through at once.
    """
    started = clock()
    delay = FIRST_DELAY
    while True:
        left = within - (clock() - started)
        try:
            return await attempt(max(1.0, min(ATTEMPT_TIMEOUT, left)))
        except ServiceUnreachableError as exc:
            reason = str(exc)
        left = within - (clock() - started)
        if left <= 0:
            raise StartupError(
                f"could not reach {service} ({reason}; tried for {within:g}s): {advice}", EXIT_UNREACHABLE
            )
        wait = min(delay, left)
        log.warning("could not reach %s (%s); trying again in %.0fs", service, reason, wait)
        await sleep(wait)
        delay = min(delay * 2, MAX_DELAY)


def connection_problem(exc: BaseException, *, host: str | None = None) -> str:
    """A few words for why a connection failed: the name does not resolve, refused, timed out."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError | socket.gaierror):
        return f"the name {host} does not resolve" if host else "the name does not resolve"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return "no answer in time"
    if isinstance(exc, aiohttp.ClientConnectorError):
        exc = exc.os_error
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def hide_password(url: str) -> str:
    """`url` with its password (if any) shown as `***`, for messages that name DATABASE_URL."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


# --------------------------------------------------------------------------- the database


async def check_database(settings: Settings, *, within: float | None = None) -> None:
    """Open the database and apply pending migrations, retrying while it does not answer.

    `within` overrides `STARTUP_RETRY_SECONDS` (`--check` tries once: 0).
    """
    shown = hide_password(settings.database_url)
    sqlite = settings.sqlalchemy_url.startswith("sqlite")

    async def attempt(answer_within: float) -> None:
        try:
            store = Store.open(settings.sqlalchemy_url)
        except OSError as exc:  # the SQLite file's folder cannot be made
            raise StartupError(
                f"DATABASE_URL {shown}: its folder cannot be created ({exc.strerror}); "
                "check the path and the permissions"
            ) from None
        try:
            await asyncio.wait_for(store.migrate(), answer_within)
        except Exception as exc:
            raise _database_problem(exc, shown, sqlite=sqlite) from None
        finally:
            await store.close()

    await keep_trying(
        attempt,
        within=settings.startup_retry_seconds if within is None else within,
        service=f"the database at DATABASE_URL {shown}",
        advice="check that the database server is running and that DATABASE_URL names its host and port",
    )


def _database_problem(exc: Exception, shown: str, *, sqlite: bool) -> Exception:
    """What a failed first connection means: retry (unreachable) or stop (refused, missing, broken)."""
    state = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if state in _REFUSED_LOGIN:
        return StartupError(
            f"the database refused the user name or password in DATABASE_URL {shown}: correct them"
        )
    if state == _NO_SUCH_DATABASE:
        return StartupError(f"the database named in DATABASE_URL {shown} does not exist: create it first")
    if sqlite:
        return StartupError(
            f"DATABASE_URL {shown} cannot be opened ({describe(exc)}): check the path and the permissions"
        )
    if isinstance(exc, OSError | TimeoutError | sa.exc.OperationalError | sa.exc.InterfaceError):
        host = urlsplit(shown).hostname
        return ServiceUnreachableError(connection_problem(exc, host=host))
    return StartupError(f"the database at DATABASE_URL {shown} failed: {describe(exc)}")


# --------------------------------------------------------------------------- ToAPIs


async def check_toapis(settings: Settings) -> None:
    """Read the (free) balance: a rejected key stops start-up; ToAPIs unreachable is only a warning.

    A ToAPIs outage passes on its own and jobs already wait and retry through one, so the bot
    still starts (and resumes its jobs); a wrong key would fail every job, so it does not.
    """
    base_url = settings.toapis_base_url
    async with toapis.ToAPIsClient(base_url, settings.toapis_api_key) as client:
        try:
            await client.balance()
        except toapis.AuthenticationError:
            raise StartupError(
                f"ToAPIs at {base_url} did not accept TOAPIS_API_KEY: the key was rejected "
                "(copy it again from toapis.com → API keys)"
            ) from None
        except (toapis.ToAPIsConnectionError, toapis.ToAPIsTimeoutError) as exc:
            log.warning(
                "could not reach ToAPIs at %s (%s): starting anyway; members' requests fail until it answers "
                "(check TOAPIS_BASE_URL and the network)",
                base_url,
                exc,
            )
        except toapis.ToAPIsError as exc:
            log.warning("ToAPIs at %s could not show the balance (%s): starting anyway", base_url, exc)
