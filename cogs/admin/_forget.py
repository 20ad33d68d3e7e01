"""`/imagine-admin forget member:@member`: delete a member's job history in this server."""

# No `from __future__ import annotations`: discord.py reads the parameter annotations of the
# command below at definition time.
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot import i18n
from bot.retention import forget_done
from cogs import render
from cogs.admin._group import AdminGroup
from cogs.replies import reply_privately, server_locale

if TYPE_CHECKING:
    from cogs.admin._cog import AdminCog

log = logging.getLogger(__name__)


def add_forget_command(group: AdminGroup, cog: "AdminCog") -> None:
    """Add `forget member` to `group` (checked like every /imagine-admin subcommand)."""

    @group.command(
        name="forget", description="Delete a member's image history (prompts, links) in this server"
    )
    @app_commands.describe(
        member="Whose finished jobs here lose their prompts, reference links and member id"
    )
    async def forget(interaction: discord.Interaction, member: discord.User) -> None:
        assert interaction.guild_id is not None
        guild_id = interaction.guild_id
        await interaction.response.defer(ephemeral=True, thinking=True)
        result = await cog.bot.retention.forget_member(member.id, guild_id=guild_id)
        log.info(
            "guild %s: user %s deleted the job history of user %s: %d job(s) forgotten, %d still running",
            guild_id,
            interaction.user.id,
            member.id,
            result.forgotten,
            result.unfinished,
            extra={"guild_id": guild_id, "user_id": member.id},
        )
        await reply_privately(
            interaction, forget_done(result, member=member.mention), locale=server_locale(interaction)
        )
        await _audit(
            cog, guild_id, interaction.user.id, member.id, result.forgotten, server_locale(interaction)
        )


async def _audit(
    cog: "AdminCog", guild_id: int, admin_id: int, member_id: int, forgotten: int, locale: str
) -> None:
    """One line in the server's audit channel, if it has one (no pings), in the server's language."""
    settings = await cog.bot.guild_settings.get(guild_id)
    if settings.audit_channel_id is None:
        return
    channel = cog.bot.get_partial_messageable(settings.audit_channel_id, guild_id=guild_id)
    line = i18n.render(render.forget_audit_line(admin_id, member_id, forgotten), locale)
    try:
        await cog.bot.pacer.final(
            settings.audit_channel_id, lambda: channel.send(line, allowed_mentions=render.NO_PINGS)
        )
    except discord.HTTPException as exc:
        log.warning("guild %s: the audit line of a forget could not be posted: %s", guild_id, exc.status)
