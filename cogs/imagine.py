"""The /imagine command: validate, answer at once with a placeholder, run the job in the background."""

# No `from __future__ import annotations`: discord.py reads the /imagine parameter annotations at
# definition time, and the prompt length range is computed from the catalog in a closure.
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.catalog import Catalog
from bot.progress import JobProgress, Phase
from bot.request import RATIOS, RequestError, build_request
from cogs import render
from cogs.delivery import InteractionDelivery

if TYPE_CHECKING:
    from cogs.app import ImagineBot

log = logging.getLogger(__name__)


def build_imagine_command(catalog: Catalog, cog: "ImagineCog") -> app_commands.Command:
    """The command's choices come from the model catalog, so they are built at load time."""
    longest_prompt = max(m.max_prompt_length for m in catalog)

    @app_commands.command(name="imagine", description="Generate images from a text prompt")
    @app_commands.describe(
        prompt="What to draw",
        ratio="Aspect ratio (default 1:1)",
        n="How many images, 1 to 15 (default 1)",
        model="Which model draws it",
        resolution="Output resolution, for models that offer one",
    )
    @app_commands.choices(
        ratio=[app_commands.Choice(name=r, value=r) for r in RATIOS],
        model=[app_commands.Choice(name=m.display_name, value=m.id) for m in catalog],
    )
    async def imagine(
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, longest_prompt],
        ratio: str = "1:1",
        n: app_commands.Range[int, 1, 15] = 1,
        model: str | None = None,
        resolution: str | None = None,
    ) -> None:
        await cog.imagine(interaction, prompt=prompt, ratio=ratio, n=n, model=model, resolution=resolution)

    resolutions = catalog.all_resolutions()
    if resolutions:
        app_commands.choices(resolution=[app_commands.Choice(name=r, value=r) for r in resolutions])(imagine)
    return imagine


class ImagineCog(commands.Cog):
    """Thin adapter from the slash command to the core job runner."""

    def __init__(self, bot: "ImagineBot") -> None:
        self.bot = bot
        self.command = build_imagine_command(bot.catalog, self)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.command)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.command.name)

    async def imagine(
        self,
        interaction: discord.Interaction,
        *,
        prompt: str,
        ratio: str | None,
        n: int | None,
        model: str | None,
        resolution: str | None,
    ) -> None:
        try:
            request = build_request(
                self.bot.catalog,
                prompt=prompt,
                model_id=model or self.bot.settings.default_model,
                ratio=ratio,
                n=n,
                resolution=resolution,
                requester_id=interaction.user.id,
            )
        except RequestError as exc:
            await interaction.response.send_message(
                str(exc), ephemeral=True, allowed_mentions=render.NO_PINGS
            )
            return

        started = discord.utils.utcnow()
        response = await interaction.response.send_message(
            embed=render.progress_embed(request, JobProgress(Phase.QUEUED), started),
            allowed_mentions=render.NO_PINGS,
        )
        message = response.resource if isinstance(response.resource, discord.InteractionMessage) else None
        delivery = InteractionDelivery(interaction, request, started=started, message=message)
        name = f"imagine-{interaction.id}"
        log.info(
            "job %s: accepted (guild %s, channel %s, user %s)",
            name,
            interaction.guild_id,
            interaction.channel_id,
            interaction.user.id,
        )
        self.bot.spawn(
            self.bot.runner.run(request, delivery, upload_limit=interaction.filesize_limit, name=name),
            name=name,
        )


async def setup(bot: "ImagineBot") -> None:
    await bot.add_cog(ImagineCog(bot))
