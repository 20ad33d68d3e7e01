"""Where the bot's commands may be used, and where a given interaction came from.

Discord lets an app be installed to a server (the bot joins it) or to a person (the member
carries the commands everywhere: servers that never installed the bot, DMs, group DMs). The
member's own commands are registered for both installs and every context; `/imagine-admin`
only for servers that installed the bot, in their channels.

`conversation` reads an interaction's `context` and `authorizing_integration_owners`: the bot
can use channel endpoints only where it is a member (a server that installed it, or its own DM
with the member); anywhere else it reaches the conversation only through the interaction token.
"""

from __future__ import annotations

from typing import Any, TypeVar

import discord
from discord import app_commands

from bot.jobs.records import Conversation, JobContext

# Server install (0) and user install (1), in every context: servers, the bot's DM, private channels.
ANYWHERE_INSTALLS = app_commands.AppInstallationType(guild=True, user=True)
ANYWHERE_CONTEXTS = app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True)
SERVER_INSTALL_ONLY = app_commands.AppInstallationType(guild=True, user=False)
SERVER_CONTEXT_ONLY = app_commands.AppCommandContext(guild=True, dm_channel=False, private_channel=False)

# The member's own commands: usable from a user install, wherever the member is.
Usable = TypeVar("Usable", app_commands.Command[Any, ..., Any], app_commands.ContextMenu)


def usable_anywhere(command: Usable) -> Usable:
    """Register `command` for server and user installs, in servers, the bot's DM and private channels."""
    command.allowed_installs = ANYWHERE_INSTALLS
    command.allowed_contexts = ANYWHERE_CONTEXTS
    return command


def server_installed(interaction: discord.Interaction) -> bool:
    """The interaction's server installed the bot (so the bot is a member there, with its settings).

    An interaction that names no user install (e.g. one without `authorizing_integration_owners`,
    from before user installs) can only have come through the server's install.
    """
    if interaction.guild_id is None:
        return False
    return interaction.is_guild_integration() or not interaction.is_user_integration()


def conversation(interaction: discord.Interaction) -> Conversation:
    """Where `interaction` was made and whether the bot may reach it with its own token."""
    context = interaction.context
    if context.private_channel:
        kind = JobContext.PRIVATE_CHANNEL
    elif context.guild or interaction.guild_id is not None:
        kind = JobContext.GUILD
    else:
        kind = JobContext.BOT_DM
    if kind is JobContext.GUILD:
        reachable = server_installed(interaction)
        installed_by = "guild" if reachable else "user"
    else:
        # The bot's own DM with the member is always open to it; a group DM never is.
        reachable = kind is JobContext.BOT_DM
        installed_by = "user" if interaction.is_user_integration() else "guild"
    return Conversation(context=kind, installed_by=installed_by, bot_in_channel=reachable)
