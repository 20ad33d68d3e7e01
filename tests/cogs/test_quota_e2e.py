"""Quota edge through the real bot: many /imagine at once get exactly the quota, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from tests.rig import eventually

QUOTA = 3


async def test_many_requests_at_the_quota_edge_get_exactly_the_quota(start_bot, store, database_url):
    rig = await start_bot(database_url=database_url)
    await rig.bot.guild_settings.update(rig.discord.guild_id, lambda s: s.replace(daily_member_quota=QUOTA))
    records = await asyncio.gather(*(rig.imagine(prompt=f"fox {i}") for i in range(8)))
    await eventually(lambda: all(r.acknowledged for r in records), what="every request answered")

    accepted = [r for r in records if not r.ephemeral]
    refused = [r.callback["data"]["content"] for r in records if r.ephemeral]
    await eventually(lambda: len(rig.toapis.submissions) >= QUOTA, what="the accepted jobs submitted")
    assert (len(accepted), len(rig.toapis.submissions), {t.split(" — ")[0] for t in refused}) == (
        QUOTA,
        QUOTA,
        {f"Daily limit of {QUOTA} images reached"},
    )
