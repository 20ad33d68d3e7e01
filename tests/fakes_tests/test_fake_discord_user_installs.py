"""The fake Discord models user installs as Discord documents them, driven by the REAL discord.py.

A member's own install of the app can be used where the bot is not a member: in a server that
never installed it (context 0, `authorizing_integration_owners` naming only the user), in the
bot's DM (context 1) and in group DMs (context 2). The bot sees those channels only through the
interaction: channel endpoints answer 403 Missing Access / 404 Unknown Channel. Without Use External
Apps, Discord makes the app's responses ephemeral. The bot's DMs open through
`POST /users/@me/channels`, and a member whose DMs are closed refuses messages with 50007.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from discord.ext import commands

from tests.fakes.discord import FakeDiscord
from tests.fakes_tests.test_fake_discord import Outcomes

pytestmark = pytest.mark.asyncio

OTHER_SERVER = 4242  # a server that never installed the bot


def make_bot(outcomes: Outcomes) -> commands.AutoShardedBot:
    bot = commands.AutoShardedBot(
        command_prefix=commands.when_mentioned,
        intents=discord.Intents.none(),
        guild_ready_timeout=0.1,
        help_command=None,
    )

    @bot.tree.command(name="probe", description="Answer, then try the channel")
    async def probe(interaction: discord.Interaction) -> None:
        response = await interaction.response.send_message("hello")
        seen: dict[str, Any] = {
            "context": (
                interaction.context.guild,
                interaction.context.dm_channel,
                interaction.context.private_channel,
            ),
            "user_install": interaction.is_user_integration(),
            "guild_install": interaction.is_guild_integration(),
            "ephemeral": response.is_ephemeral(),
        }
        channel = bot.get_partial_messageable(interaction.channel_id or 0)
        try:
            await channel.send("through the channel")
            seen["channel"] = "ok"
        except discord.HTTPException as exc:
            seen["channel"] = (exc.status, exc.code)
        followup = await interaction.followup.send("more", wait=True)
        seen["followup_ephemeral"] = followup.flags.ephemeral
        await outcomes.set("probe", seen)

    @bot.tree.command(name="dm", description="DM the member")
    async def dm(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("sending", ephemeral=True)
        channel = await bot.create_dm(discord.Object(interaction.user.id))
        try:
            await channel.send("a private word")
            await outcomes.set("dm", ("ok", channel.id))
        except discord.HTTPException as exc:
            await outcomes.set("dm", (exc.status, exc.code))

    return bot


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest.fixture
async def outcomes() -> Outcomes:
    return Outcomes()


@pytest.fixture
async def bot(fake: FakeDiscord, outcomes: Outcomes) -> AsyncIterator[commands.AutoShardedBot]:
    client = make_bot(outcomes)
    async with fake.run_client(client):
        yield client


async def test_a_user_install_in_a_server_without_the_bot_is_context_0_and_hides_the_channel(
    fake: FakeDiscord, bot: commands.AutoShardedBot, outcomes: Outcomes
) -> None:
    payload = fake.slash_command("probe", guild_id=OTHER_SERVER, install="user")
    await fake.send_interaction(payload)
    seen = await outcomes.get("probe")
    assert (payload["context"], payload["authorizing_integration_owners"]) == (0, {"1": str(fake.user_id)})
    assert seen == {
        "context": (True, False, False),
        "user_install": True,
        "guild_install": False,
        "ephemeral": False,
        "channel": (403, 50001),
        "followup_ephemeral": False,
    }


async def test_a_group_dm_is_context_2_and_unknown_to_the_bot(
    fake: FakeDiscord, bot: commands.AutoShardedBot, outcomes: Outcomes
) -> None:
    payload = fake.slash_command("probe", install="user", private_channel=True)
    await fake.send_interaction(payload)
    seen = await outcomes.get("probe")
    assert (payload["context"], "guild_id" in payload, seen["context"], seen["channel"]) == (
        2,
        False,
        (False, False, True),
        (404, 10003),
    )


async def test_the_bot_dm_of_a_user_install_is_context_1_and_open_to_the_bot(
    fake: FakeDiscord, bot: commands.AutoShardedBot, outcomes: Outcomes
) -> None:
    payload = fake.slash_command("probe", dm=True, install="user")
    await fake.send_interaction(payload)
    seen = await outcomes.get("probe")
    assert (payload["context"], payload["authorizing_integration_owners"], seen["channel"]) == (
        1,
        {"1": str(fake.user_id)},
        "ok",
    )


async def test_without_use_external_apps_every_response_is_made_ephemeral(
    fake: FakeDiscord, bot: commands.AutoShardedBot, outcomes: Outcomes
) -> None:
    record = await fake.send_interaction(
        fake.slash_command("probe", guild_id=OTHER_SERVER, install="user", external_apps=False)
    )
    seen = await outcomes.get("probe")
    assert (seen["ephemeral"], seen["followup_ephemeral"], record.original and record.original.ephemeral) == (
        True,
        True,
        True,
    )


async def test_a_server_install_is_never_forced_ephemeral(
    fake: FakeDiscord, bot: commands.AutoShardedBot, outcomes: Outcomes
) -> None:
    await fake.send_interaction(fake.slash_command("probe", external_apps=False))
    seen = await outcomes.get("probe")
    assert (seen["ephemeral"], seen["channel"]) == (False, "ok")


async def test_the_bots_dm_opens_and_takes_a_message(
    fake: FakeDiscord, bot: commands.AutoShardedBot, outcomes: Outcomes
) -> None:
    await fake.send_interaction(fake.slash_command("dm", guild_id=OTHER_SERVER, install="user"))
    result = await outcomes.get("dm")
    sent = [m for m in fake.messages.values() if m.channel_id == fake.dm_channels[fake.user_id]]
    assert (result, [m.content for m in sent]) == (("ok", fake.dm_channels[fake.user_id]), ["a private word"])


async def test_a_member_whose_dms_are_closed_refuses_the_message_with_50007(
    fake: FakeDiscord, bot: commands.AutoShardedBot, outcomes: Outcomes
) -> None:
    fake.closed_dms.add(fake.user_id)
    await fake.send_interaction(fake.slash_command("dm", guild_id=OTHER_SERVER, install="user"))
    assert await outcomes.get("dm") == (403, 50007)
