"""/imagine-settings: a member's own defaults for /imagine, answered privately.

One command, so a member on a phone sets what they want in one go: with no option it shows
their defaults; each option given sets one (several at once are fine); `reset` clears one or
all of them first. Validation and storage are `bot.preferences`'; this cog only turns the
command into a call and the result into a private answer.
"""

# No `from __future__ import annotations`: discord.py reads the parameter annotations of the
# command below at definition time.
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.catalog import AUTO_RATIO, DOCUMENTED_RATIOS, MAX_TOTAL_IMAGES, SPEED_MODES, Catalog
from bot.i18n import Text, _, join
from bot.preferences import (
    EVERYTHING,
    FIELDS,
    MemberPreferences,
    PreferenceError,
    change_preferences,
    preferences_text,
)
from cogs.installs import usable_anywhere
from cogs.replies import reply_privately

if TYPE_CHECKING:
    from cogs.app import ImagineBot

COMMAND_NAME = "imagine-settings"


def build_settings_command(catalog: Catalog, bot: "ImagineBot") -> app_commands.Command[Any, ..., None]:
    """The command's choices come from the model catalog, so it is built at load time."""

    @app_commands.command(name=COMMAND_NAME, description="Your own defaults for /imagine (only you see this)")
    @app_commands.describe(
        model="The model /imagine uses when you don't pick one",
        ratio="Your default aspect ratio",
        resolution="Your default resolution (for models that offer one)",
        n=f"How many images by default, 1 to {MAX_TOTAL_IMAGES}",
        speed="Your default speed (for models that offer it)",
        spoiler="Post your images as spoilers (hidden until clicked)",
        reset="Clear one default, or all of them, before setting anything given here",
    )
    @app_commands.choices(
        model=[app_commands.Choice(name=m.display_name, value=m.id) for m in catalog],
        ratio=[app_commands.Choice(name=r, value=r) for r in (*DOCUMENTED_RATIOS, AUTO_RATIO)],
        speed=[app_commands.Choice(name=mode, value=mode) for mode in SPEED_MODES],
        reset=[app_commands.Choice(name=name, value=name) for name in (EVERYTHING, *FIELDS)],
    )
    async def imagine_settings(
        interaction: discord.Interaction,
        model: str | None = None,
        ratio: str | None = None,
        resolution: str | None = None,
        n: app_commands.Range[int, 1, MAX_TOTAL_IMAGES] | None = None,
        speed: str | None = None,
        spoiler: bool | None = None,
        reset: str | None = None,
    ) -> None:
        given = {
            "model": model,
            "ratio": ratio,
            "resolution": resolution,
            "n": n,
            "speed": speed,
            "spoiler": spoiler,
        }
        changes = {field: value for field, value in given.items() if value is not None}
        await answer_settings(bot, interaction, changes, reset)

    resolutions = catalog.all_resolutions()
    if resolutions:
        app_commands.choices(resolution=[app_commands.Choice(name=r, value=r) for r in resolutions])(
            imagine_settings
        )
    return imagine_settings


async def answer_settings(
    bot: "ImagineBot", interaction: discord.Interaction, changes: dict[str, Any], reset: str | None
) -> None:
    """Show the member's defaults, or change them and show the result; privately either way."""
    default_model = bot.settings.default_model
    if not changes and reset is None:
        prefs = await bot.preferences.get(interaction.user.id)
        text = preferences_text(prefs, bot.catalog, default_model=default_model)
        await reply_privately(
            interaction, join([text, _("Change them with the options of `/imagine-settings`.")])
        )
        return
    notes: list[Text] = []

    def change(current: MemberPreferences) -> MemberPreferences:
        new, cleared = change_preferences(
            current, bot.catalog, default_model=default_model, changes=changes, reset=reset
        )
        notes[:] = cleared
        return new

    try:
        _before, after = await bot.preferences.update(interaction.user.id, change)
    except PreferenceError as exc:
        await reply_privately(interaction, join([exc.text, _("Nothing was changed.")], " "))
        return
    lines = [_("Saved."), *notes, preferences_text(after, bot.catalog, default_model=default_model)]
    await reply_privately(interaction, join(lines))


class PreferencesCog(commands.Cog):
    """/imagine-settings."""

    def __init__(self, bot: "ImagineBot") -> None:
        self.bot = bot
        self.command = usable_anywhere(build_settings_command(bot.catalog, bot))

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.command)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.command.name)


async def setup(bot: "ImagineBot") -> None:
    await bot.add_cog(PreferencesCog(bot))
