"""The one way the bot answers a member privately, in the member's language."""

from __future__ import annotations

import logging
from typing import Any

import discord

from bot import i18n
from cogs import render

log = logging.getLogger(__name__)


def member_locale(interaction: discord.Interaction) -> str:
    """The language the member's Discord is set to: what they read everything in."""
    return interaction.locale.value


def server_locale(interaction: discord.Interaction) -> str:
    """The server's language (its community locale), for audit lines and admin answers.

    Outside a server (a DM) there is none: the member's own language stands in.
    """
    return (interaction.guild_locale or interaction.locale).value


async def reply_privately(
    interaction: discord.Interaction,
    text: i18n.Readable | None = None,
    *,
    locale: str | None = None,
    **extra: Any,
) -> None:
    """Answer `interaction` with an ephemeral message that pings no one.

    `text` is read in `locale`, by default the member's own (:func:`member_locale`); admin
    answers pass :func:`server_locale`.

    Works whether or not the interaction was already answered (deferred, or a placeholder
    posted): the first answer is the response, any later one a followup. `extra` takes what
    both accept (`embed`, `view`, `file`…). A reply Discord refuses is logged, never raised:
    the member's request has already been handled either way.
    """
    content = None if text is None else i18n.render(text, locale or member_locale(interaction))
    try:
        if interaction.response.is_done():
            # discord.py annotates `content` as str, but None is accepted and sent as no text.
            await interaction.followup.send(
                content,  # type: ignore[arg-type]
                ephemeral=True,
                allowed_mentions=render.NO_PINGS,
                **extra,
            )
        else:
            await interaction.response.send_message(
                content, ephemeral=True, allowed_mentions=render.NO_PINGS, **extra
            )
    except discord.HTTPException as exc:
        log.warning(
            "could not answer interaction %s (guild %s, user %s) privately: %s",
            interaction.id,
            interaction.guild_id,
            interaction.user.id,
            exc.status,
        )
