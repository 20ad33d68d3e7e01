"""The end-to-end rig: the real bot (as `python -m bot` builds it) against fake ToAPIs and Discord servers.

Fixtures:
- `toapis_fake`, `discord_fake`: the loopback servers (see `tests/fakes/`). After each
  test the fake Discord must have seen no request Discord would reject.
- `bot_settings`: settings pointing at the fakes, with short polling and edit intervals.
- `start_bot`: starts the bot with `build_bot()` + `bot.start()` and waits until it is online.
- `processes`: `BotProcess`es (`python -m bot`, see `tests/process_launcher.py`) killed after the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import discord
import pytest

from bot import i18n
from bot.catalog import load_catalog
from bot.config import Settings
from bot.i18n import _
from cogs.app import ImagineBot, build_bot
from tests.fakes.discord import FakeDiscord, FakeMessage, InteractionRecord
from tests.fakes.toapis import FakeToAPIs
from tests.process_launcher import BotProcess

# Fast but realistic: polls and edits far apart enough to observe, close enough for a quick suite.
FAST: dict[str, Any] = {
    "job_timeout_seconds": 30.0,
    "progress_edit_interval": 0.25,
    "poll_interval_queued": 0.05,
    "poll_interval_running": 0.05,
}


@pytest.fixture
async def toapis_fake() -> AsyncIterator[FakeToAPIs]:
    async with FakeToAPIs() as fake:
        yield fake


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    original_base = discord.http.Route.BASE
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
        discord.http.Route.BASE = original_base
    # Any request Discord would have rejected fails the test that caused it.
    fake.assert_clean()


@pytest.fixture
def bot_settings(tmp_path, toapis_fake: FakeToAPIs, discord_fake: FakeDiscord) -> Settings:
    return Settings(
        discord_token=discord_fake.token,
        toapis_api_key=toapis_fake.api_key,
        toapis_base_url=toapis_fake.base_url,
        database_url=f"sqlite:///{tmp_path / 'imagine.db'}",
        discord_api_base_url=discord_fake.api_base,
        **FAST,
    )


@dataclass
class RunningBot:
    """A started bot and the fakes it talks to."""

    bot: ImagineBot
    discord: FakeDiscord
    toapis: FakeToAPIs
    task: asyncio.Task[None]

    async def imagine(
        self, *, attachment_size_limit: int = 10 * 1024 * 1024, **options: Any
    ) -> InteractionRecord:
        """Deliver `/imagine` with these options through the gateway; returns what Discord saw of it."""
        payload = self.discord.slash_command("imagine", options, attachment_size_limit=attachment_size_limit)
        return await self.discord.send_interaction(payload)

    async def finished(self, record: InteractionRecord, timeout: float = 20.0) -> FakeMessage:  # noqa: ASYNC109
        """Wait until the job's message shows its final state (done or failed)."""

        def final(_: FakeDiscord) -> FakeMessage | None:
            message = record.original
            return message if message is not None and status_of(message).startswith(("✅", "❌")) else None

        return await self.discord.wait_for(final, timeout=timeout)


async def eventually(predicate: Callable[[], Any], *, within: float = 30.0, what: str = "condition") -> Any:
    """Wait for a condition on anything (e.g. the fake ToAPIs), checking every 20 ms; returns its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not (value := predicate()):
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(0.02)
    return value


def embed_fields(body: dict) -> dict[str, str]:
    """An embed's fields by name."""
    return {f["name"]: f["value"] for f in body.get("fields", [])}


# The Status field's name in every language (a job's message reads in its member's).
STATUS_NAMES = frozenset(i18n.render(_("Status"), language) for language in i18n.LANGUAGES)


def status_of(message: FakeMessage | dict) -> str:
    """The Status field of a job message (or of one write's body), in whatever language it reads."""
    embeds = message.embeds if isinstance(message, FakeMessage) else (message.get("embeds") or [])
    fields = embed_fields(embeds[0]) if embeds else {}
    return next((value for name, value in fields.items() if name in STATUS_NAMES), "")


StartBot = Callable[..., Awaitable[RunningBot]]


@pytest.fixture
async def start_bot(
    bot_settings: Settings, discord_fake: FakeDiscord, toapis_fake: FakeToAPIs
) -> AsyncIterator[StartBot]:
    running: list[RunningBot] = []

    async def start(**overrides: Any) -> RunningBot:
        settings = dataclasses.replace(bot_settings, **overrides)
        catalog = load_catalog(settings.model_catalog_file)
        bot = build_bot(settings, catalog, guild_ready_timeout=0.05)
        task = asyncio.create_task(bot.start(settings.discord_token), name="bot")
        handle = RunningBot(bot, discord_fake, toapis_fake, task)
        running.append(handle)
        connected = asyncio.create_task(discord_fake.wait_until_connected(timeout=15))
        done, _ = await asyncio.wait({connected, task}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            connected.cancel()
            task.result()  # raises why the bot stopped
            raise AssertionError("the bot stopped before it connected")
        await connected
        return handle

    yield start

    for handle in running:
        await handle.bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await handle.task


@pytest.fixture
async def processes():
    started: list[BotProcess] = []
    yield started
    for process in started:
        await process.close()
