"""`LOG_FORMAT=json` on the real process: every line a JSON object, job lines with their ids as fields."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.fakes.discord import FakeDiscord
from tests.fakes.toapis import FakeToAPIs
from tests.process_launcher import BotProcess
from tests.rig import status_of


async def test_a_job_logged_as_json_lines_with_its_ids(
    discord_fake: FakeDiscord, toapis_fake: FakeToAPIs, tmp_path: Path, processes
):
    env = {
        "DISCORD_TOKEN": discord_fake.token,
        "TOAPIS_API_KEY": toapis_fake.api_key,
        "TOAPIS_BASE_URL": toapis_fake.base_url,
        "DISCORD_API_BASE_URL": discord_fake.api_base,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'imagine.db'}",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
    }
    process = await BotProcess.start(env, tmp_path)
    processes.append(process)
    await discord_fake.wait_until_connected(timeout=30)
    member = discord_fake.snowflake()
    record = await discord_fake.send_interaction(
        discord_fake.slash_command("imagine", {"prompt": "a fox"}, user_id=member)
    )

    def final(_: FakeDiscord):
        message = record.original
        return message if message is not None and status_of(message).startswith(("✅", "❌")) else None

    message = await discord_fake.wait_for(final, timeout=30)
    assert (await process.stop(signal.SIGTERM)) == 0
    entries = [json.loads(line) for line in process.output.decode().splitlines()]
    about_the_job = [e for e in entries if "job_id" in e]
    text = process.output.decode()
    assert (
        status_of(message)[:1],
        all(isinstance(e, dict) and {"time", "level", "logger", "message"} <= e.keys() for e in entries),
        len(about_the_job) >= 2,  # at least submitted and done
        {(e["job_id"], e["guild_id"], e["user_id"]) for e in about_the_job},
        toapis_fake.api_key in text or discord_fake.token in text,
    ) == ("✅", True, True, {(1, discord_fake.guild_id, member)}, False)
