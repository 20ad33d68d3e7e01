"""/imagine-forget: a member deletes their own job history, after a private confirmation.

Thin adapter over `bot.retention`. The confirmation's buttons are `DynamicItem`s whose
`custom_id` names the member (`imagine:forget:<yes|no>:<user id>`), so they still work after a
restart, and only that member's click does anything.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import i18n
from bot.i18n import _
from bot.retention import FORGET_CANCELLED, FORGET_FAILED, forget_confirmation, forget_done
from cogs.installs import ANYWHERE_CONTEXTS, ANYWHERE_INSTALLS
from cogs.replies import member_locale, reply_privately

if TYPE_CHECKING:
    from cogs.app import ImagineBot

log = logging.getLogger(__name__)

FORGET_COMMAND = "imagine-forget"
NOT_YOURS = _("These buttons belong to another member's /imagine-forget.")


class ForgetButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"imagine:forget:(?P<choice>yes|no):(?P<user_id>[0-9]{1,20})",
):
    """ "Delete my history" or "Cancel" under the private confirmation."""

    def __init__(self, choice: str, user_id: int, locale: str | None = None) -> None:
        label, style = (
            (_("Delete my history"), discord.ButtonStyle.danger)
            if choice == "yes"
            else (
                # Translators: the button that leaves the history as it is (nothing is deleted).
                _("Cancel"),
                discord.ButtonStyle.secondary,
            )
        )
        super().__init__(
            discord.ui.Button(
                label=i18n.render(label, locale), style=style, custom_id=f"imagine:forget:{choice}:{user_id}"
            )
        )
        self.choice = choice
        self.user_id = user_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ForgetButton:
        return cls(match["choice"], int(match["user_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        if interaction.user.id != self.user_id:
            await reply_privately(interaction, NOT_YOURS)
            return
        if self.choice == "no":
            await interaction.response.edit_message(
                content=i18n.render(FORGET_CANCELLED, member_locale(interaction)), view=None
            )
            return
        bot: ImagineBot = interaction.client  # type: ignore[assignment]
        await interaction.response.defer()  # the deletion may take a moment on a long history
        try:
            result = await bot.retention.forget_member(self.user_id)
        except Exception:
            # The member must not be left looking at buttons that silently did nothing: say so,
            # and keep the buttons so that one more press finishes the job.
            log.exception(
                "user %s: deleting their job history failed", self.user_id, extra={"user_id": self.user_id}
            )
            locale = member_locale(interaction)
            await interaction.edit_original_response(
                content=i18n.render(FORGET_FAILED, locale), view=confirmation_view(self.user_id, locale)
            )
            return
        log.info(
            "user %s deleted their job history: %d job(s) forgotten, %d still running",
            self.user_id,
            result.forgotten,
            result.unfinished,
            extra={"user_id": self.user_id},
        )
        await interaction.edit_original_response(
            content=i18n.render(forget_done(result), member_locale(interaction)), view=None
        )


def confirmation_view(user_id: int, locale: str | None = None) -> discord.ui.View:
    """The confirmation's two buttons, labelled in `locale` (the member's)."""
    view = discord.ui.View(timeout=None)
    view.add_item(ForgetButton("yes", user_id, locale))
    view.add_item(ForgetButton("no", user_id, locale))
    return view


class PrivacyCog(commands.Cog, name="Privacy"):
    """/imagine-forget."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot
        self.command: app_commands.Command[PrivacyCog, [], None] = app_commands.Command(
            name=FORGET_COMMAND,
            description="Delete your image history (prompts, reference links) from the bot",
            callback=self._forget,
            allowed_installs=ANYWHERE_INSTALLS,
            allowed_contexts=ANYWHERE_CONTEXTS,
        )

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ForgetButton)
        self.bot.tree.add_command(self.command)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ForgetButton)
        self.bot.tree.remove_command(self.command.name)

    async def _forget(self, interaction: discord.Interaction) -> None:
        text = forget_confirmation(self.bot.settings.job_retention_days)
        view = confirmation_view(interaction.user.id, member_locale(interaction))
        await reply_privately(interaction, text, view=view)


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(PrivacyCog(bot))
