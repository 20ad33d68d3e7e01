"""Two bot processes split the shards over one database: each runs and resumes only its own servers' jobs."""

from __future__ import annotations

import signal

from tests.fakes.discord import FakeDiscord
from tests.fakes.toapis import TaskPlan
from tests.process_launcher import BotProcess
from tests.rig import eventually, status_of


def _guild_on_shard(fake: FakeDiscord, shard: int, count: int) -> int:
    while True:
        guild_id = fake.snowflake()
        if (guild_id >> 22) % count == shard:
            return guild_id


async def _online(fake: FakeDiscord, env: dict[str, str], cwd, started: list, shard: int) -> BotProcess:
    process = await BotProcess.start(env, cwd)
    started.append(process)
    try:
        await fake.wait_for(
            lambda f: any(s.shard_id == shard and s in f.connected_sessions() for s in f.sessions[-4:]),
            timeout=30,
        )
    except AssertionError:
        raise AssertionError(f"shard {shard} did not come online:\n{process.log}") from None
    return process


def _final(record) -> bool:
    return record.original is not None and status_of(record.original).startswith("✅")


async def test_two_processes_split_the_shards_and_each_resumes_only_its_own_jobs(
    discord_fake, toapis_fake, store, database_url, tmp_path, processes
):
    base = {
        "DISCORD_TOKEN": discord_fake.token,
        "TOAPIS_API_KEY": toapis_fake.api_key,
        "TOAPIS_BASE_URL": toapis_fake.base_url,
        "DISCORD_API_BASE_URL": discord_fake.api_base,
        "DISCORD_GATEWAY_URL": discord_fake.gateway_url,
        "DATABASE_URL": database_url,
        "SHARD_COUNT": "2",
        "PROGRESS_EDIT_INTERVAL_SECONDS": "0.25",
    }
    env = {shard: {**base, "SHARD_IDS": str(shard)} for shard in (0, 1)}
    guilds = {shard: _guild_on_shard(discord_fake, shard, 2) for shard in (0, 1)}
    toapis_fake.plan = TaskPlan(steps=[("queued", 0), ("in_progress", 50)], never_finish=True)

    first = {shard: await _online(discord_fake, env[shard], tmp_path, processes, shard) for shard in (0, 1)}
    records = {
        shard: await discord_fake.send_interaction(
            discord_fake.slash_command("imagine", {"prompt": f"fox {shard}"}, guild_id=guilds[shard])
        )
        for shard in (0, 1)
    }
    await eventually(
        lambda: len(toapis_fake.polls) == 2 and min(toapis_fake.polls.values()) >= 1, what="polls"
    )
    task_of = {
        shard: next(t.id for t in toapis_fake.tasks.values() if t.prompt == f"fox {shard}")
        for shard in (0, 1)
    }
    for process in first.values():
        await process.stop(signal.SIGKILL)

    # Only the process for shard 1 comes back: it resumes its job, not shard 0's.
    polls_of_shard_0 = toapis_fake.polls[task_of[0]]
    second = await _online(discord_fake, env[1], tmp_path, processes, 1)
    for task_id in task_of.values():
        toapis_fake.tasks[task_id].plan.never_finish = False
    await discord_fake.wait_for(lambda _: _final(records[1]), timeout=30)
    untouched = (toapis_fake.polls[task_of[0]] == polls_of_shard_0, _final(records[0]))

    await _online(discord_fake, env[0], tmp_path, processes, 0)
    await discord_fake.wait_for(lambda _: _final(records[0]), timeout=30)

    assert (untouched, len(toapis_fake.submissions), len(discord_fake.command_syncs)) == (
        (True, False),
        2,
        1,
    ), second.log
