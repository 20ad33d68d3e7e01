"""`AdminCog`: who may use /imagine-admin, how a settings change is applied and answered, the
assembled /imagine-admin group, and /imagine-quota.
"""

# No `from __future__ import annotations`: discord.py reads the parameter annotations of the
# commands built here and in the subject modules at definition time.
import logging
import time
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import policy, usage
from bot.catalog import Catalog
from bot.guild_settings import GuildSettings
from bot.i18n import Readable, Text, _, join
from bot.settings_text import setting_lines
from cogs.admin._allow_lists import model_group, resolution_group, speed_group
from cogs.admin._blocklist import blocklist_group
from cogs.admin._channels_and_roles import add_ban_pair, channel_group, role_group
from cogs.admin._forget import add_forget_command
from cogs.admin._group import (
    GUILD_ONLY,
    NOT_ADMIN,
    AdminGroup,
    Answer,
    Change,
    ChangeRefusedError,
    NotAllowedError,
    manages_server,
    qualified_name,
)
from cogs.admin._settings import add_number_commands, add_overview_commands, add_watermark_command
from cogs.admin._spoiler import add_spoiler_command
from cogs.admin._usage import add_usage_command
from cogs.installs import ANYWHERE_CONTEXTS, ANYWHERE_INSTALLS, SERVER_CONTEXT_ONLY, SERVER_INSTALL_ONLY
from cogs.members import requester
from cogs.replies import reply_privately, server_locale

if TYPE_CHECKING:
    from cogs.app import ImagineBot

log = logging.getLogger(__name__)

GROUP_NAME = "imagine-admin"
QUOTA_COMMAND = "imagine-quota"


class AdminCog(commands.Cog):
    """/imagine-admin and /imagine-quota."""

    def __init__(self, bot: "ImagineBot") -> None:
        self.bot = bot
        self.group = build_admin_group(self, bot.catalog)
        self.quota_command: app_commands.Command[Any, ..., None] = app_commands.Command(
            name=QUOTA_COMMAND,
            description="How many images you can still generate, and when that resets",
            callback=self.quota,
            allowed_installs=ANYWHERE_INSTALLS,
            allowed_contexts=ANYWHERE_CONTEXTS,
        )

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.group)
        self.bot.tree.add_command(self.quota_command)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.group.name)
        self.bot.tree.remove_command(self.quota_command.name)

    # ------------------------------------------------------------------ who may

    async def is_admin(self, interaction: discord.Interaction) -> bool:
        """Manage Server (or Administrator), an admin role of this server, or a bot owner."""
        if interaction.user.id in self.bot.operator.owner_ids or manages_server(interaction):
            return True
        assert interaction.guild_id is not None
        settings = await self.bot.guild_settings.get(interaction.guild_id)
        return bool(requester(interaction).role_ids & set(settings.admin_roles))

    async def check_admin(self, interaction: discord.Interaction) -> None:
        """Raise `NotAllowedError` (answered privately by the tree) unless the member may administer."""
        if interaction.guild_id is None:
            raise NotAllowedError(GUILD_ONLY)
        if not await self.is_admin(interaction):
            log.info(
                "refused /%s to user %s in guild %s: not an admin",
                qualified_name(interaction),
                interaction.user.id,
                interaction.guild_id,
            )
            raise NotAllowedError(NOT_ADMIN)

    # ------------------------------------------------------------------ changing settings

    async def change(
        self, interaction: discord.Interaction, change: Change, answer: Answer
    ) -> GuildSettings | None:
        """Apply `change` atomically and answer privately with `answer(old, new)`, in the server's
        language (every admin answer is; the settings belong to the server).

        `change` may raise `ChangeRefusedError`: nothing is written and its text is the answer.
        """
        assert interaction.guild_id is not None
        before: list[GuildSettings] = []

        def apply(current: GuildSettings) -> GuildSettings:
            before.append(current)
            return change(current)

        try:
            new = await self.bot.guild_settings.update(interaction.guild_id, apply)
        except ChangeRefusedError as exc:
            await reply_privately(interaction, exc.text, locale=server_locale(interaction))
            return None
        log.info(
            "guild %s: settings changed with /%s by user %s",
            interaction.guild_id,
            qualified_name(interaction),
            interaction.user.id,
        )
        await reply_privately(interaction, answer(before[-1], new), locale=server_locale(interaction))
        return new

    def line(self, settings: GuildSettings, key: str) -> Text:
        """How one setting reads now (the same line `/imagine-admin show` prints)."""
        return setting_lines(settings, self.bot.catalog, operator_watermark=self.bot.operator.watermark)[key]

    # ------------------------------------------------------------------ /imagine-quota

    async def quota(self, interaction: discord.Interaction) -> None:
        """Images left today (and this month), when that resets, cooldown: exactly what /imagine enforces."""
        who = requester(interaction)
        # A server that never installed the bot has no settings of its own: only the operator's apply.
        settings = (
            await self.bot.guild_settings.get(who.guild_id)
            if who.guild_id is not None and who.server_installed
            else None
        )
        now = time.time()
        plan = policy.quota_plan(settings, self.bot.operator, who, 1, now)
        keys = [limit.key for limit in (*plan.image_limits, *plan.active_limits)]
        if plan.cooldown is not None:
            keys.append(plan.cooldown.key)
        used = await self.bot.ledger.values(keys)
        lines: list[Readable] = []
        if settings is not None and not settings.enabled:
            lines.append(_("Image generation is turned off in this server right now."))
        elif settings is not None and who.user_id in settings.banned_users:
            lines.append(_("You are not allowed to generate images in this server."))
        if who.user_id in self.bot.operator.owner_ids:
            lines.append(_("You are one of the bot's owners: no limit, quota or cooldown applies to you."))
        lines.append(usage.quota_text(plan, used, now))
        # A member's own answer: in their language (reply_privately's default), not the server's.
        await reply_privately(interaction, join(lines))


def build_admin_group(cog: AdminCog, catalog: Catalog) -> AdminGroup:
    """/imagine-admin and its subgroups. Choices come from the catalog, so it is built at load time.

    The order of the commands is the order Discord lists them in, and part of the registered
    definitions: changing it re-registers the commands.
    """
    group = AdminGroup(
        cog,
        name=GROUP_NAME,
        description="Control image generation in this server (admins only)",
        guild_only=True,
        allowed_contexts=SERVER_CONTEXT_ONLY,
        allowed_installs=SERVER_INSTALL_ONLY,
        default_permissions=discord.Permissions(manage_guild=True),
    )
    add_overview_commands(group, cog, catalog)
    add_ban_pair(group, cog)
    add_number_commands(group, cog)
    add_watermark_command(group, cog)
    add_spoiler_command(group, cog)
    add_usage_command(group, cog)
    add_forget_command(group, cog)
    group.add_command(channel_group(cog))
    group.add_command(role_group(cog))
    group.add_command(model_group(cog, catalog))
    if catalog.all_resolutions():
        group.add_command(resolution_group(cog, catalog))
    if any(spec.speed_modes for spec in catalog):
        group.add_command(speed_group(cog))
    group.add_command(blocklist_group(cog))
    return group
