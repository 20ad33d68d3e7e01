"""`/imagine-admin usage`: images made in a server today or this month, and a CSV of its jobs."""

# No `from __future__ import annotations`: discord.py reads the parameter annotations of the
# command below at definition time.
import io
import time
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands

from bot import i18n, policy, usage
from bot.text import MESSAGE_LIMIT, clip
from cogs.admin._group import AdminGroup
from cogs.replies import reply_privately, server_locale

if TYPE_CHECKING:
    from cogs.admin._cog import AdminCog

# Most jobs one usage CSV lists (a month of a busy server stays far below).
MAX_CSV_ROWS = 20_000


def add_usage_command(group: AdminGroup, cog: "AdminCog") -> None:
    """Add `usage [today|month]` to `group`."""

    @group.command(name="usage", description="Images made in this server, top members, failures, and a CSV")
    @app_commands.describe(period="Today or this month (UTC)")
    async def usage_command(
        interaction: discord.Interaction, period: Literal["today", "month"] = "today"
    ) -> None:
        await send_usage(cog, interaction, period)


async def send_usage(cog: "AdminCog", interaction: discord.Interaction, period_name: str) -> None:
    """The usage report and its CSV (deferred: the query and the file may take a moment)."""
    assert interaction.guild_id is not None
    guild_id = interaction.guild_id
    await interaction.response.defer(ephemeral=True, thinking=True)
    now = time.time()
    period = usage.period_of(period_name, now)
    settings = await cog.bot.guild_settings.get(guild_id)
    # The server's counters, by the keys /imagine charges (a requester stands in for the server).
    who = policy.Requester(user_id=0, guild_id=guild_id, channel_id=0)
    plan = policy.quota_plan(settings, cog.bot.operator, who, 1, now)
    keys = {lim.rule: lim.key for lim in plan.image_limits}
    counters = await cog.bot.ledger.values([keys["server_daily"], keys["server_monthly"]])
    jobs = await cog.bot.jobs.in_guild(guild_id, since=period.start, until=period.end, limit=MAX_CSV_ROWS + 1)
    truncated = len(jobs) > MAX_CSV_ROWS
    jobs = jobs[:MAX_CSV_ROWS]
    summary = usage.summarize(jobs)
    prices = usage.prices_of(cog.bot.catalog)
    cost = usage.estimate_cost(jobs, prices)
    data = usage.jobs_csv(jobs, prices)
    # Halve the rows until the file fits what this interaction may upload.
    while len(data) > interaction.filesize_limit and len(jobs) > 1:
        jobs, truncated = jobs[: len(jobs) // 2], True
        data = usage.jobs_csv(jobs, prices)
    text = usage.usage_text(
        period,
        summary,
        today=counters[keys["server_daily"]],
        month=counters[keys["server_monthly"]],
        settings=settings,
        truncated=truncated,
        cost=cost,
    )
    file = discord.File(io.BytesIO(data), filename=usage.csv_filename(guild_id, period))
    # Read in the server's language, then cut to one message (a translation may run longer).
    report = clip(i18n.render(text, server_locale(interaction)), MESSAGE_LIMIT)
    await reply_privately(interaction, report, file=file)
