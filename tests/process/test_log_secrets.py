"""No secret reaches the log at any level: the real `python -m bot` at DEBUG, and the redacting filter."""

from __future__ import annotations

import logging
import secrets
import signal
from pathlib import Path

import pytest

from bot.config import Settings
from bot.logsetup import REDACTED, SecretRedactor, secret_values
from bot.store import Store
from tests.conftest import POSTGRES_URL, _drop_all
from tests.fakes.discord import FakeDiscord
from tests.fakes.toapis import FakeToAPIs, TaskPlan
from tests.process_launcher import BotProcess
from tests.rig import status_of

# Shaped like the real ones, so shape-based redaction is not what hides them here.
BOT_TOKEN = f"MTA{secrets.token_urlsafe(21)}.GabCdE.{secrets.token_urlsafe(29)}"
API_KEY = f"sk-{secrets.token_urlsafe(36)}"


@pytest.fixture
async def discord_fake():
    fake = FakeDiscord(token=BOT_TOKEN)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
    fake.assert_clean()


@pytest.fixture
async def toapis_fake():
    async with FakeToAPIs(api_key=API_KEY) as fake:
        yield fake


def _databases() -> list[object]:
    found: list[object] = [pytest.param("sqlite", id="sqlite")]
    if POSTGRES_URL:
        found.append(pytest.param("postgres", id="postgres", marks=pytest.mark.postgres))
    return found


@pytest.mark.parametrize("database", _databases())
async def test_a_job_at_debug_level_logs_no_token_and_no_key(
    discord_fake: FakeDiscord, toapis_fake: FakeToAPIs, tmp_path: Path, processes, database
):
    if database == "postgres":
        url = POSTGRES_URL
        fresh = Store.open(Settings(discord_token="x", toapis_api_key="x", database_url=url).sqlalchemy_url)
        await _drop_all(fresh)  # no job of another test may be resumed here
        await fresh.close()
    else:
        url = f"sqlite:///{tmp_path / 'imagine.db'}"
    env = {
        "DISCORD_TOKEN": BOT_TOKEN,
        "TOAPIS_API_KEY": API_KEY,
        "TOAPIS_BASE_URL": toapis_fake.base_url,
        "DISCORD_API_BASE_URL": discord_fake.api_base,
        "DATABASE_URL": url,
        "PROGRESS_EDIT_INTERVAL_SECONDS": "0.25",
        "LOG_LEVEL": "DEBUG",
    }
    # Progress in ten steps over 6 s: a few status queries at the production floor (5 s apart).
    toapis_fake.plan = TaskPlan(
        steps=[("queued", 0)] + [("in_progress", p) for p in range(10, 100, 10)],
        advance="time",
        step_seconds=0.6,
    )
    process = await BotProcess.start(env, tmp_path)
    processes.append(process)
    await discord_fake.wait_until_connected(timeout=30)
    record = await discord_fake.send_interaction(discord_fake.slash_command("imagine", {"prompt": "a fox"}))

    def final(_: FakeDiscord):
        message = record.original
        return message if message is not None and status_of(message).startswith(("✅", "❌")) else None

    message = await discord_fake.wait_for(final, timeout=30)
    assert (await process.stop(signal.SIGTERM)) == 0
    log = process.output.decode(errors="replace")

    debug_lines = [line for line in log.splitlines() if " DEBUG " in line]
    leaked = {name: value in log for name, value in (("bot token", BOT_TOKEN), ("API key", API_KEY))}
    leaked["interaction token"] = record.token in log
    assert toapis_fake.queries_sooner_than(5.0) == 0  # the production floor, in a real process
    assert (
        status_of(message)[:1],
        len(debug_lines) > 2,  # the log is not empty: there was something to leak
        leaked,
    ) == ("✅", True, {"bot token": False, "API key": False, "interaction token": False}), log[-3000:]


# --------------------------------------------------------------------------- the filter


def _record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("discord.http", logging.WARNING, __file__, 1, message, args, exc_info)


def _shown(redactor: SecretRedactor, record: logging.LogRecord) -> str:
    assert redactor.filter(record) is True  # redacted, never dropped
    return logging.Formatter("%(message)s").format(record)


INTERACTION_TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpyZWRhY3RtZQ"
LINES = [
    (
        "We are being rate limited. %s %s responded with 429.",
        ("PATCH", f"https://discord.com/api/v10/webhooks/123/{INTERACTION_TOKEN}/messages/@original"),
    ),
    ("POST %s", (f"https://discord.com/api/v10/interactions/456/{INTERACTION_TOKEN}/callback",)),
    ("WebSocket Event: %s", ({"t": "INTERACTION_CREATE", "d": {"id": "456", "token": INTERACTION_TOKEN}},)),
    ('{"op": 2, "d": {"token": "%s"}}', (INTERACTION_TOKEN,)),
    ("headers: %s", ({"Authorization": f"Bot {INTERACTION_TOKEN}"},)),
]


@pytest.mark.parametrize(("message", "args"), LINES)
def test_token_shapes_are_redacted_without_being_told_the_value(message, args):
    shown = _shown(SecretRedactor(), _record(message, *args))
    assert (INTERACTION_TOKEN in shown, REDACTED in shown) == (False, True), shown


def test_every_configured_secret_is_redacted_in_messages_and_tracebacks():
    settings = Settings(
        discord_token=BOT_TOKEN,
        toapis_api_key=API_KEY,
        database_url="postgresql://bot:hunter2-db-pass@db.example.com/imagine",
    )
    values = secret_values(settings)
    redactor = SecretRedactor(values)
    try:
        raise RuntimeError(f"the service said: invalid key {API_KEY}")
    except RuntimeError as exc:
        record = _record("token %s, database %s", BOT_TOKEN, settings.database_url, exc=exc)
    shown = _shown(redactor, record)
    assert (
        {BOT_TOKEN, API_KEY, "hunter2-db-pass"} <= set(values),
        [secret in shown for secret in (BOT_TOKEN, API_KEY, "hunter2-db-pass")],
        shown.count(REDACTED) >= 3,
        "Traceback" in shown and "RuntimeError" in shown,  # the traceback is kept, only redacted
    ) == (True, [False, False, False], True, True), shown


def test_secret_settings_are_found_by_name_so_new_ones_are_covered():
    # A list-valued secret setting (like webhook secrets) is covered without naming it here.
    from dataclasses import make_dataclass

    extended = make_dataclass(
        "ExtendedSettings",
        [("toapis_webhook_secrets", tuple, ("whsec-one-1234", "whsec-two-5678"))],
        bases=(Settings,),
        frozen=True,
    )
    settings = extended(discord_token=BOT_TOKEN, toapis_api_key=API_KEY)
    assert {"whsec-one-1234", "whsec-two-5678", BOT_TOKEN, API_KEY} <= set(secret_values(settings))
