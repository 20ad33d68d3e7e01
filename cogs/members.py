"""Who is asking and where, read from an interaction the way the policy needs it."""

from __future__ import annotations

import discord

from bot import policy
from cogs.installs import server_installed


def requester(interaction: discord.Interaction) -> policy.Requester:
    """Who is asking and where, as the policy sees it."""
    channel = interaction.channel
    parent = channel.parent_id if isinstance(channel, discord.Thread) else None
    # The role ids Discord sent with the member: `Member.roles` only lists roles found in the
    # guild cache, which may not hold this server yet (and rules must not fail open or closed on that).
    role_ids = getattr(interaction.user, "_roles", None)
    if role_ids is None:
        role_ids = [r.id for r in getattr(interaction.user, "roles", ())]
    return policy.Requester(
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or 0,
        parent_channel_id=parent,
        role_ids=frozenset(int(r) for r in role_ids),
        locale=str(interaction.guild_locale) if interaction.guild_locale is not None else None,
        server_installed=interaction.guild_id is None or server_installed(interaction),
    )
