"""`/imagine-admin spoiler on|off`: every result in the server posted as a spoiler."""

# No `from __future__ import annotations`: discord.py reads the parameter annotations of the
# command below at definition time.
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands

from bot.i18n import _, join
from cogs.admin._group import AdminGroup

if TYPE_CHECKING:
    from cogs.admin._cog import AdminCog


def add_spoiler_command(group: AdminGroup, cog: "AdminCog") -> None:
    """Add `spoiler on|off` to `group` (checked like every /imagine-admin subcommand)."""

    @group.command(name="spoiler", description="Post every image made in this server as a spoiler")
    @app_commands.describe(setting="on: every result hidden until clicked · off: each member decides")
    async def spoiler(interaction: discord.Interaction, setting: Literal["on", "off"]) -> None:
        value = setting == "on"
        said = (
            _("New results in this server will be posted as spoilers.")
            if value
            else _("New results are spoilers only for members who ask for it in /imagine-settings.")
        )
        await cog.change(
            interaction,
            lambda s: s.replace(spoiler=value),
            lambda old, new: join(
                [
                    join([said, "" if old.spoiler != new.spoiler else _("(It already was.)")], " "),
                    cog.line(new, "spoiler"),
                ]
            ),
        )
