"""The /imagine command: validate, answer at once with a placeholder, run the job in the background."""

# No `from __future__ import annotations`: discord.py reads the /imagine parameter annotations at
# definition time, and the prompt length range is computed from the catalog in a closure.
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.catalog import Catalog
from bot.jobstore import JobState
from bot.progress import JobProgress, Phase
from bot.request import RATIOS, RequestError, build_request
from cogs import render

if TYPE_CHECKING:
    from cogs.app import ImagineBot

log = logging.getLogger(__name__)

RESTARTING = "The bot is restarting — try again in a minute."


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
        if self.bot.stopping:
            await interaction.response.send_message(RESTARTING, ephemeral=True)
            return
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

        missing = missing_permissions(interaction)
        if missing:
            await interaction.response.send_message(
                missing_permissions_text(missing), ephemeral=True, allowed_mentions=render.NO_PINGS
            )
            return

        # The record exists before the placeholder does, so no answered request can be forgotten.
        job = await self.bot.jobs.create(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            application_id=interaction.application_id,
            interaction_id=interaction.id,
            interaction_token=interaction.token,
            token_expires_at=interaction.created_at.timestamp() + INTERACTION_TOKEN_LIFETIME,
            upload_limit=interaction.filesize_limit,
            prompt=request.prompt,
            model=request.model.id,
            ratio=request.ratio,
            resolution=request.resolution,
            n=request.n,
            reference_urls=request.reference_urls,
        )
        started = datetime.fromtimestamp(job.created_at, tz=UTC)
        try:
            response = await interaction.response.send_message(
                embed=render.progress_embed(request, JobProgress(Phase.QUEUED), started),
                allowed_mentions=render.NO_PINGS,
            )
        except discord.HTTPException:
            await self.bot.jobs.update(
                job.id, state=JobState.FAILED, error="the placeholder could not be posted"
            )
            raise
        job = await self.bot.jobs.update(job.id, message_id=response.message_id)
        log.info(
            "job %s: accepted (guild %s, channel %s, user %s)",
            job.id,
            interaction.guild_id,
            interaction.channel_id,
            interaction.user.id,
        )
        self.bot.start_job(job, request)


# Discord ends an interaction token's life 15 minutes after the interaction was created.
INTERACTION_TOKEN_LIFETIME = 15 * 60

# What the bot must be allowed in the channel to show a job: checked before anything is charged.
_NEEDED = {
    "view_channel": "View Channel",
    "send_messages": "Send Messages",
    "embed_links": "Embed Links",
    "attach_files": "Attach Files",
}


def missing_permissions(interaction: discord.Interaction) -> list[str]:
    """Names of channel permissions the bot lacks (none are checked outside servers)."""
    if interaction.guild_id is None:
        return []
    needed = dict(_NEEDED)
    if isinstance(interaction.channel, discord.Thread):
        del needed["send_messages"]
        needed["send_messages_in_threads"] = "Send Messages in Threads"
    have = interaction.app_permissions
    return [label for flag, label in needed.items() if not getattr(have, flag)]


def missing_permissions_text(missing: list[str]) -> str:
    names = (
        " and ".join(f"**{m}**" for m in missing)
        if len(missing) <= 2
        else (", ".join(f"**{m}**" for m in missing[:-1]) + f" and **{missing[-1]}**")
    )
    plural = "permission" if len(missing) == 1 else "permissions"
    return (
        f"I can't post images in this channel: I'm missing the {names} {plural} here. "
        "Ask a server admin to grant them, or use /imagine in another channel. Nothing was charged."
    )


async def setup(bot: "ImagineBot") -> None:
    await bot.add_cog(ImagineCog(bot))
