"""The rig itself: a test whose bot sends a body Discord would reject fails, even if its asserts pass."""

from __future__ import annotations

pytest_plugins = ["pytester"]

INNER = """
import discord
pytest_plugins = ["tests.rig"]

async def test_sends_an_oversized_message(start_bot):
    rig = await start_bot()
    try:
        await rig.bot.get_partial_messageable(rig.discord.channel_id).send("x" * 2001)
    except discord.HTTPException:
        pass  # the bot swallowed the error, as careless code would

async def test_sends_a_valid_message(start_bot):
    rig = await start_bot()
    await rig.bot.get_partial_messageable(rig.discord.channel_id).send("hello")
"""


def test_a_request_discord_would_reject_fails_the_test_that_caused_it(pytester):
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess(
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_sends_an_oversized_message*"])
