"""The buttons under a finished result, the image picker for Vary, and Discord attachments as references.

They are `DynamicItem`s: the `custom_id` (`imagine:<action>:<job id>`) carries the job id,
so they work after a restart and days later; the job record supplies everything else.
This is a plain module (not an extension), so there is one class per item however often
the extensions are loaded; a click is handed to the loaded "Actions" cog by name.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, cast

import discord
from discord.ext import commands

from bot.jobs.records import JobRecord
from bot.references import ReferenceSource


class ActionHandler(Protocol):
    """What the Actions cog offers the items below."""

    async def handle(self, interaction: discord.Interaction, action: str, job_id: int) -> None: ...

    async def vary_pick(self, interaction: discord.Interaction, job_id: int, number: int) -> None: ...


def _handler(interaction: discord.Interaction) -> ActionHandler:
    client = interaction.client
    # The two bot classes are siblings: neither derives from the other.
    cog = client.get_cog("Actions") if isinstance(client, commands.Bot | commands.AutoShardedBot) else None
    if cog is None:
        raise RuntimeError("the Actions cog is not loaded")
    return cast(ActionHandler, cog)  # the cog named "Actions" is cogs.actions.Actions


_BUTTONS: dict[str, tuple[str, str, discord.ButtonStyle]] = {
    "reroll": ("Reroll", "🔁", discord.ButtonStyle.primary),
    "vary": ("Vary", "🎲", discord.ButtonStyle.secondary),
    "remix": ("Remix", "✏️", discord.ButtonStyle.secondary),
    "delete": ("Delete", "🗑️", discord.ButtonStyle.danger),
    "details": ("Details", "ℹ️", discord.ButtonStyle.secondary),
}
DONE_ACTIONS = ("reroll", "vary", "remix", "delete", "details")
FAILED_ACTIONS = ("reroll", "remix", "details")


class ResultButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"imagine:(?P<action>reroll|vary|remix|delete|details):(?P<job_id>[0-9]{1,20})",
):
    """One action button of a result message."""

    def __init__(self, action: str, job_id: int) -> None:
        label, emoji, style = _BUTTONS[action]
        super().__init__(
            discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=f"imagine:{action}:{job_id}")
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ResultButton:
        return cls(match["action"], int(match["job_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _handler(interaction).handle(interaction, self.action, self.job_id)


class VaryPicker(
    discord.ui.DynamicItem[discord.ui.Select], template=r"imagine:varypick:(?P<job_id>[0-9]{1,20})"
):
    """Which image to vary (a private message shows it when a result has several)."""

    def __init__(self, job_id: int, count: int) -> None:
        options = [discord.SelectOption(label=f"Image {i}", value=str(i)) for i in range(1, count + 1)]
        super().__init__(
            discord.ui.Select(
                custom_id=f"imagine:varypick:{job_id}", placeholder="Pick an image", options=options
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> VaryPicker:
        count = len(item.options) if isinstance(item, discord.ui.Select) else 1
        return cls(int(match["job_id"]), count)

    async def callback(self, interaction: discord.Interaction) -> None:
        await _handler(interaction).vary_pick(interaction, self.job_id, int(self.item.values[0]))


def result_view(job: JobRecord, *, done: bool) -> discord.ui.View:
    """The buttons under a finished job's message (fewer under a failure: nothing to vary or delete)."""
    view = discord.ui.View(timeout=None)
    for action in DONE_ACTIONS if done else FAILED_ACTIONS:
        view.add_item(ResultButton(action, job.id))
    return view


def source_from_attachment(attachment: discord.Attachment) -> ReferenceSource:
    """A member's attachment as the core sees it: Discord's own URL and metadata."""
    return ReferenceSource(
        filename=attachment.filename,
        url=attachment.url,
        content_type=attachment.content_type,
        size=attachment.size,
        width=attachment.width,
        height=attachment.height,
    )
