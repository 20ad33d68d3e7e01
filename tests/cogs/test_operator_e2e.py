"""The operator's rules through the real bot: DMs, owners, the global per-member cap, allowed servers."""

from __future__ import annotations

from tests.rig import eventually


async def _answer(rig, **options) -> tuple[bool, str | None]:
    record = await rig.imagine(**options)
    await rig.discord.wait_for(lambda _: record.acknowledged)
    return record.ephemeral, record.callback["data"].get("content")


async def test_direct_messages_are_refused_unless_the_operator_allows_them(start_bot):
    rig = await start_bot()
    payload = rig.discord.slash_command("imagine", {"prompt": "a fox"}, dm=True)
    record = await rig.discord.send_interaction(payload)
    await rig.discord.wait_for(lambda _: record.acknowledged)
    assert (record.ephemeral, record.callback["data"]["content"], rig.toapis.submit_attempts) == (
        True,
        "Image generation is not available in direct messages. Use /imagine in a server.",
        0,
    )


async def test_allowed_direct_messages_run_and_count_against_the_global_cap(start_bot):
    rig = await start_bot(allow_dms=True, global_daily_image_cap=2)
    first = await rig.discord.send_interaction(
        rig.discord.slash_command("imagine", {"prompt": "a", "n": 2}, dm=True)
    )
    await rig.finished(first)
    second = await rig.discord.send_interaction(
        rig.discord.slash_command("imagine", {"prompt": "b"}, dm=True)
    )
    await rig.discord.wait_for(lambda _: second.acknowledged)
    assert (
        len(first.original.attachments),
        second.ephemeral,
        second.callback["data"]["content"].split(" — ")[0],
        len(rig.toapis.submissions),
    ) == (2, True, "Daily (for this bot) limit of 2 images reached", 1)


async def test_the_global_cap_counts_images_across_servers(start_bot):
    rig = await start_bot(global_daily_image_cap=3)
    await rig.finished(await rig.imagine(prompt="a", n=2))
    other_server = rig.discord.slash_command(
        "imagine", {"prompt": "b", "n": 2}, guild_id=rig.discord.snowflake()
    )
    record = await rig.discord.send_interaction(other_server)
    await rig.discord.wait_for(lambda _: record.acknowledged)
    assert record.callback["data"]["content"].startswith(
        "You have 1 of your 3 daily (for this bot) images left and you asked for 2. Ask for 1 or fewer"
    )


async def test_owners_are_exempt_from_quotas_and_cooldowns(start_bot, discord_fake):
    rig = await start_bot(owner_ids=frozenset({discord_fake.user_id}), global_daily_image_cap=1)
    await rig.bot.guild_settings.update(
        discord_fake.guild_id, lambda s: s.replace(daily_member_quota=1, cooldown_seconds=3600)
    )
    for prompt in ("a", "b"):
        await rig.finished(await rig.imagine(prompt=prompt, n=2))
    assert len(rig.toapis.submissions) == 2


async def test_the_bot_leaves_servers_the_operator_did_not_allow(start_bot, discord_fake):
    allowed, other, joined_later = discord_fake.guild_id, discord_fake.snowflake(), discord_fake.snowflake()
    discord_fake.guild_ids.extend([allowed, other])  # the servers the bot is in when it starts
    rig = await start_bot(allowed_guild_ids=frozenset({allowed}))
    await eventually(lambda: other in discord_fake.left_guilds, what="leaving the server at start-up")
    joined = discord_fake.guild_payload(joined_later)
    joined.pop("unavailable")  # a server that just added the bot, not one back from an outage
    await discord_fake.dispatch("GUILD_CREATE", joined, guild_id=joined_later)
    await eventually(
        lambda: joined_later in discord_fake.left_guilds, what="leaving a server that adds the bot"
    )
    assert (discord_fake.left_guilds, rig.bot.get_guild(allowed) is not None) == ([other, joined_later], True)
