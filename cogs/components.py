"""The buttons under a finished result, the image picker for Vary, and Discord attachments as references.

They are `DynamicItem`s: the `custom_id` (`imagine:<action>:<job id>`) carries the job id,
so they work after a restart and days later; the job record supplies everything else.
This is a plain module (not an extension), so there is one class per item however often
the extensions are loaded; a click is handed to the bot's `result_actions` (the Actions cog
sets itself there when it loads).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import discord

from bot import i18n
from bot.i18n import Text, _
from bot.jobs.records import JobRecord
from bot.references import ReferenceSource


class ActionHandler(Protocol):
    """What the Actions cog offers the items below."""

    async def handle(self, interaction: discord.Interaction, action: str, job_id: int) -> None: ...

    async def vary_pick(self, interaction: discord.Interaction, job_id: int, number: int) -> None: ...


def _handler(interaction: discord.Interaction) -> ActionHandler:
    handler: ActionHandler | None = getattr(interaction.client, "result_actions", None)
    if handler is None:
        raise RuntimeError("the Actions cog is not loaded")
    return handler


_BUTTONS: dict[str, tuple[Text, str, discord.ButtonStyle]] = {
    # Translators: a button under a result: make the same request again (new images).
    "reroll": (_("Reroll"), "🔁", discord.ButtonStyle.primary),
    # Translators: a button under a result: make variations of one of its images.
    "vary": (_("Vary"), "🎲", discord.ButtonStyle.secondary),
    # Translators: a button under a result: change the prompt or settings and run it again.
    "remix": (_("Remix"), "✏️", discord.ButtonStyle.secondary),
    "delete": (_("Delete"), "🗑️", discord.ButtonStyle.danger),
    "details": (_("Details"), "ℹ️", discord.ButtonStyle.secondary),
}
DONE_ACTIONS = ("reroll", "vary", "remix", "delete", "details")
FAILED_ACTIONS = ("reroll", "remix", "details")


class ResultButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"imagine:(?P<action>reroll|vary|remix|delete|details):(?P<job_id>[0-9]{1,20})",
):
    """One action button of a result message, labelled in `locale` (the job's member's)."""

    def __init__(self, action: str, job_id: int, locale: str | None = None) -> None:
        label, emoji, style = _BUTTONS[action]
        super().__init__(
            discord.ui.Button(
                label=i18n.render(label, locale),
                emoji=emoji,
                style=style,
                custom_id=f"imagine:{action}:{job_id}",
            )
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
    """Which image to vary (a private message shows it when a result has several), in `locale`
    (the member's who pressed Vary)."""

    def __init__(self, job_id: int, count: int, locale: str | None = None) -> None:
        options = [
            discord.SelectOption(label=i18n.render(_("Image {number}", number=str(i)), locale), value=str(i))
            for i in range(1, count + 1)
        ]
        super().__init__(
            discord.ui.Select(
                custom_id=f"imagine:varypick:{job_id}",
                placeholder=i18n.render(_("Pick an image"), locale),
                options=options,
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
    """The buttons under a finished job's message (fewer under a failure: nothing to vary or delete),
    labelled in the language of the member who asked for it (the job's `locale`)."""
    view = discord.ui.View(timeout=None)
    for action in DONE_ACTIONS if done else FAILED_ACTIONS:
        view.add_item(ResultButton(action, job.id, job.locale))
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
