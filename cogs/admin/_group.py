"""What every /imagine-admin subject shares: the group that checks the member on every subcommand,
the refusals, and the shape of a settings change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.guild_settings import GuildSettings
from bot.i18n import Readable, TextError, _

if TYPE_CHECKING:
    from cogs.admin._cog import AdminCog

GUILD_ONLY = _("These commands only work in a server.")
NOT_ADMIN = _(
    "Only members with the **Manage Server** permission, or with one of this server's image admin "
    "roles, can change image generation settings."
)
# Said whenever roles have quotas but members without one have no daily limit.
NO_QUOTA_ROLE_NOTE = _("Note: members without a quota role have no daily limit.")
NOT_MANAGER = _("Only members with the **Manage Server** permission can change the admin roles.")

# A change to a server's settings, and the answer `(old, new) -> text` it is reported with.
Change = Callable[[GuildSettings], GuildSettings]
Answer = Callable[[GuildSettings, GuildSettings], Readable]


class NotAllowedError(TextError, app_commands.CheckFailure):
    """The member may not use this command; `text` says why, and the tree answers it privately in
    the member's own language (they may not read the server's)."""


class ChangeRefusedError(TextError):
    """A settings change that would make no sense; nothing was written, `text` says why."""


class AdminGroup(app_commands.Group):
    """A group whose every subcommand (and every subgroup's) first checks the member in code.

    discord.py only calls the *immediate* parent group's `interaction_check`, so the subgroups
    are AdminGroups too.
    """

    def __init__(self, cog: AdminCog, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.cog = cog

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        await self.cog.check_admin(interaction)
        return True


def manages_server(interaction: discord.Interaction) -> bool:
    """The member has Manage Server (or Administrator) here."""
    perms = interaction.permissions
    return perms.manage_guild or perms.administrator


def may_change_admins(cog: AdminCog, interaction: discord.Interaction) -> bool:
    """Only Manage Server (or a bot owner) may change the admin roles: a role-admin cannot hand out admin."""
    return interaction.user.id in cog.bot.operator.owner_ids or manages_server(interaction)


def qualified_name(interaction: discord.Interaction) -> str:
    """The command's full name for log lines (`imagine-admin role admin`)."""
    return interaction.command.qualified_name if interaction.command else "?"
