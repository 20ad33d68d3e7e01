"""Two bot processes on one database, webhooks on: ToAPIs (through the operator's proxy) reaches only
one of them, and every job still ends the moment its event arrives — in the process that runs it."""

from __future__ import annotations

import socket

from tests.fakes.toapis import TaskPlan
from tests.process.test_shards import _guild_on_shard, _online
from tests.rig import status_of

SECRET = bytes(range(32)).hex()
CALLBACK = "https://imagine.example.com/toapis/events"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _final(record) -> bool:
    return record.original is not None and status_of(record.original).startswith(("✅", "❌"))


async def test_an_event_received_by_one_process_finishes_the_job_another_process_runs(
    discord_fake, toapis_fake, store, database_url, tmp_path, processes
) -> None:
    ports = {shard: free_port() for shard in (0, 1)}
    base = {
        "DISCORD_TOKEN": discord_fake.token,
        "TOAPIS_API_KEY": toapis_fake.api_key,
        "TOAPIS_BASE_URL": toapis_fake.base_url,
        "DISCORD_API_BASE_URL": discord_fake.api_base,
        "DISCORD_GATEWAY_URL": discord_fake.gateway_url,
        "DATABASE_URL": database_url,
        "SHARD_COUNT": "2",
        # Status queries 30 s apart: a job done within seconds learned it from the event.
        "POLL_INTERVAL_QUEUED_SECONDS": "30",
        "POLL_INTERVAL_RUNNING_SECONDS": "30",
        "PROGRESS_EDIT_INTERVAL_SECONDS": "0.25",
        "TOAPIS_CALLBACK_URL": CALLBACK,
        "TOAPIS_WEBHOOK_SECRETS": SECRET,
    }
    env = {shard: {**base, "SHARD_IDS": str(shard), "HTTP_PORT": str(ports[shard])} for shard in (0, 1)}
    guilds = {shard: _guild_on_shard(discord_fake, shard, 2) for shard in (0, 1)}
    # The proxy forwards the public address to process 0 only.
    toapis_fake.webhooks.configure(CALLBACK, deliver_to=f"http://127.0.0.1:{ports[0]}", secret=SECRET)
    toapis_fake.plan = TaskPlan(advance="time", step_seconds=0.3, steps=[("queued", 0), ("in_progress", 50)])

    started = {shard: await _online(discord_fake, env[shard], tmp_path, processes, shard) for shard in (0, 1)}
    records = {
        shard: await discord_fake.send_interaction(
            discord_fake.slash_command("imagine", {"prompt": f"fox {shard}"}, guild_id=guilds[shard])
        )
        for shard in (0, 1)
    }
    try:
        await discord_fake.wait_for(lambda _: _final(records[0]) and _final(records[1]), timeout=20)
    except AssertionError:
        raise AssertionError(f"process 0:\n{started[0].log}\nprocess 1:\n{started[1].log}") from None
    await toapis_fake.webhooks.idle()
    assert (
        [status_of(records[shard].original)[:1] for shard in (0, 1)],
        sorted(toapis_fake.polls.values()),
        [attempt.status for attempt in toapis_fake.webhooks.attempts],
        "received by another process" in started[1].log,
    ) == (["✅", "✅"], [0, 0], [200, 200], True), started[1].log
