"""Two bot processes split the shards and the account's rate limits: against one fake ToAPIs whose
buckets are the account's, together they stay within the submit budget (not one 429) and
deliver every job."""

from __future__ import annotations

import asyncio

from tests.fakes.discord import FakeDiscord
from tests.fakes.toapis import ProviderRateLimits, TaskPlan
from tests.process.test_shards import _final, _guild_on_shard, _online

JOBS_PER_SHARD = 8


async def test_two_processes_together_stay_within_the_accounts_submit_budget_and_deliver_every_job(
    discord_fake: FakeDiscord, toapis_fake, store, database_url, tmp_path, processes
):
    base = {
        "DISCORD_TOKEN": discord_fake.token,
        "TOAPIS_API_KEY": toapis_fake.api_key,
        "TOAPIS_BASE_URL": toapis_fake.base_url,
        "DISCORD_API_BASE_URL": discord_fake.api_base,
        "DISCORD_GATEWAY_URL": discord_fake.gateway_url,
        "DATABASE_URL": database_url,
        "SHARD_COUNT": "2",
        # The account: 2 submissions a second, a burst of 4 — each process spends half of it.
        "TOAPIS_SUBMIT_PER_SECOND": "2",
        "TOAPIS_SUBMIT_BURST": "4",
        "PROGRESS_EDIT_INTERVAL_SECONDS": "0.25",
    }
    toapis_fake.rate_limits = ProviderRateLimits.group(submit=(2, 4), query=(1000, 1000))
    toapis_fake.plan = TaskPlan(image_size=(32, 32))
    guilds = {shard: _guild_on_shard(discord_fake, shard, 2) for shard in (0, 1)}
    started = {
        shard: await _online(discord_fake, {**base, "SHARD_IDS": str(shard)}, tmp_path, processes, shard)
        for shard in (0, 1)
    }

    # Both processes get a burst at once: far more than the account's burst of 4.
    records = await asyncio.gather(
        *(
            discord_fake.send_interaction(
                discord_fake.slash_command(
                    "imagine", {"prompt": f"fox {shard}.{number}"}, guild_id=guilds[shard], user_id=number + 1
                )
            )
            for number in range(JOBS_PER_SHARD)
            for shard in (0, 1)
        )
    )
    await discord_fake.wait_for(lambda _: all(_final(record) for record in records), timeout=60)

    prompts = sorted(body["prompt"] for body in toapis_fake.submissions)
    assert (
        toapis_fake.rate_limited["async_submit"],
        len(prompts),
        len(set(prompts)),
        toapis_fake.submit_attempts,
    ) == (0, 2 * JOBS_PER_SHARD, 2 * JOBS_PER_SHARD, 2 * JOBS_PER_SHARD), "\n".join(
        process.log for process in started.values()
    )
