"""The one way the bot answers a member privately."""

from __future__ import annotations

import logging
from typing import Any

import discord

from cogs import render

log = logging.getLogger(__name__)


async def reply_privately(interaction: discord.Interaction, text: str | None = None, **extra: Any) -> None:
    """Answer `interaction` with an ephemeral message that pings no one.

    Works whether or not the interaction was already answered (deferred, or a placeholder
    posted): the first answer is the response, any later one a followup. `extra` takes what
    both accept (`embed`, `view`, `file`…). A reply Discord refuses is logged, never raised:
    the member's request has already been handled either way.
    """
    try:
        if interaction.response.is_done():
            # discord.py annotates `content` as str, but None is accepted and sent as no text.
            await interaction.followup.send(
                text,  # type: ignore[arg-type]
                ephemeral=True,
                allowed_mentions=render.NO_PINGS,
                **extra,
            )
        else:
            await interaction.response.send_message(
                text, ephemeral=True, allowed_mentions=render.NO_PINGS, **extra
            )
    except discord.HTTPException as exc:
        log.warning(
            "could not answer interaction %s (guild %s, user %s) privately: %s",
            interaction.id,
            interaction.guild_id,
            interaction.user.id,
            exc.status,
        )
