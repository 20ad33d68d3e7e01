"""The /imagine command: validate, answer at once with a placeholder, run the job in the background."""

# No `from __future__ import annotations`: discord.py reads the /imagine parameter annotations at
# definition time, and the prompt length range is computed from the catalog in a closure.
import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import policy
from bot.catalog import Catalog
from bot.jobs import first_progress
from bot.jobstore import JobState
from bot.quota import QuotaExceededError
from bot.references import MAX_REFERENCES, MAX_TOTAL_IMAGES, ReferenceSource, check_sources
from bot.references import ReferenceError as ReferenceRuleError
from bot.request import AUTO_RATIO, DEFAULT_RATIO, RATIOS, RequestError, build_request
from cogs import render
from cogs.components import source_from_attachment

if TYPE_CHECKING:
    from cogs.app import ImagineBot

log = logging.getLogger(__name__)

RESTARTING = "The bot is restarting — try again in a minute."
MENU_NAME = "Imagine with these images"


def build_imagine_command(catalog: Catalog, cog: "ImagineCog") -> app_commands.Command:
    """The command's choices come from the model catalog, so they are built at load time."""
    longest_prompt = max(m.max_prompt_length for m in catalog)

    @app_commands.command(name="imagine", description="Generate images from a text prompt")
    @app_commands.describe(
        prompt="What to draw",
        ratio="Aspect ratio (default 1:1; auto matches your reference image)",
        n="How many images, 1 to 15 (default 1)",
        model="Which model draws it",
        resolution="Output resolution, for models that offer one",
        image1="A reference image to work from (optional)",
        image2="Another reference image (optional)",
        image3="Another reference image (optional)",
        image4="Another reference image (optional)",
    )
    @app_commands.choices(
        ratio=[app_commands.Choice(name=r, value=r) for r in (*RATIOS, AUTO_RATIO)],
        model=[app_commands.Choice(name=m.display_name, value=m.id) for m in catalog],
    )
    async def imagine(
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, longest_prompt],
        ratio: str = "1:1",
        n: app_commands.Range[int, 1, 15] = 1,
        model: str | None = None,
        resolution: str | None = None,
        image1: discord.Attachment | None = None,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
    ) -> None:
        attachments = [a for a in (image1, image2, image3, image4) if a is not None]
        await cog.start(
            interaction,
            prompt=prompt,
            ratio=ratio,
            n=n,
            model=model,
            resolution=resolution,
            references=tuple(source_from_attachment(a) for a in attachments),
        )

    resolutions = catalog.all_resolutions()
    if resolutions:
        app_commands.choices(resolution=[app_commands.Choice(name=r, value=r) for r in resolutions])(imagine)
    return imagine


def images_in_message(message: discord.Message) -> list[ReferenceSource]:
    """Images a message carries: image attachments, then embed images through Discord's media proxy.

    Embed images are only taken through `proxy_url` (Discord's own proxy), never the original
    third-party address, so the bot fetches nothing but what Discord serves.
    """
    found = [
        source_from_attachment(a)
        for a in message.attachments
        # Discord gives videos a width too: trust the content type when there is one.
        if (a.content_type or "").startswith("image/") or (a.content_type is None and a.width is not None)
    ]
    for index, embed in enumerate(message.embeds, start=1):
        for media in (embed.image, embed.thumbnail):
            if media.proxy_url:
                name = media.proxy_url.rsplit("/", 1)[-1].split("?", 1)[0] or f"embed-{index}.png"
                found.append(
                    ReferenceSource(
                        filename=name,
                        url=media.proxy_url,
                        content_type=None,
                        size=None,
                        width=media.width,
                        height=media.height,
                    )
                )
                break
    return found


class ImagineModal(discord.ui.Modal):
    """Asks for the prompt, ratio, n and model: after "Imagine with these images", and for Remix
    (pre-filled with the original request)."""

    def __init__(
        self,
        cog: "ImagineCog",
        *,
        title: str = MENU_NAME,
        references: tuple[ReferenceSource, ...] = (),
        hosted_references: tuple[str, ...] = (),
        prompt: str | None = None,
        ratio: str = DEFAULT_RATIO,
        n: int = 1,
        model: str | None = None,
        resolution: str | None = None,
    ) -> None:
        super().__init__(title=title, timeout=15 * 60)
        self.cog = cog
        self.references = references
        self.hosted_references = hosted_references
        self.resolution = resolution
        catalog = cog.bot.catalog
        chosen_model = model or cog.bot.settings.default_model
        self.original_model = chosen_model
        self.prompt = discord.ui.TextInput(
            style=discord.TextStyle.paragraph,
            max_length=min(4000, max(m.max_prompt_length for m in catalog)),
            placeholder="What should the model make?",
            default=prompt,
        )
        ratios = [*RATIOS, AUTO_RATIO] if any(m.supports_auto for m in catalog) else list(RATIOS)
        self.ratio = discord.ui.Select(
            options=[discord.SelectOption(label=r, value=r, default=r == ratio) for r in ratios]
        )
        count = len(references) + len(hosted_references)
        most = max(1, MAX_TOTAL_IMAGES - count)
        self.n = discord.ui.Select(
            options=[
                discord.SelectOption(label=str(i), value=str(i), default=i == min(n, most))
                for i in range(1, most + 1)
            ]
        )
        self.model = discord.ui.Select(
            options=[
                discord.SelectOption(label=m.display_name, value=m.id, default=m.id == chosen_model)
                for m in catalog
            ]
        )
        self.add_item(discord.ui.Label(text="Prompt", component=self.prompt))
        self.add_item(discord.ui.Label(text="Ratio", component=self.ratio))
        limit_note = (
            f"With {count} reference image{'s' if count != 1 else ''}, at most {most}." if count else None
        )
        self.add_item(discord.ui.Label(text="Number of images", description=limit_note, component=self.n))
        self.add_item(discord.ui.Label(text="Model", component=self.model))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        model = self.model.values[0] if self.model.values else self.original_model
        # A resolution carried over (Remix) only applies if the model stays the same.
        same_model = model == self.original_model
        await self.cog.start(
            interaction,
            prompt=self.prompt.value,
            ratio=self.ratio.values[0] if self.ratio.values else DEFAULT_RATIO,
            n=int(self.n.values[0]) if self.n.values else 1,
            model=model,
            resolution=self.resolution if same_model else None,
            references=self.references,
            hosted_references=self.hosted_references,
        )


class ImagineCog(commands.Cog):
    """Thin adapter from /imagine and the message menu to the core job runner."""

    def __init__(self, bot: "ImagineBot") -> None:
        self.bot = bot
        self.command = build_imagine_command(bot.catalog, self)
        self.menu = app_commands.ContextMenu(name=MENU_NAME, callback=self.imagine_from_message)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.command)
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.command.name)
        self.bot.tree.remove_command(self.menu.name, type=discord.AppCommandType.message)

    async def imagine_from_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Right-click a message → Apps → "Imagine with these images": ask for a prompt in a modal."""
        if self.bot.stopping:
            await refuse(interaction, RESTARTING)
            return
        sources = images_in_message(message)
        if not sources:
            await refuse(
                interaction, "That message has no images. Use this on a message with image attachments."
            )
            return
        references = tuple(sources[:MAX_REFERENCES])
        try:
            # Only what Discord told us about the files: a bad one is refused before any typing.
            check_sources(references, n=1, max_references=MAX_REFERENCES, model_name="The bot")
        except ReferenceRuleError as exc:
            await interaction.response.send_message(
                str(exc), ephemeral=True, allowed_mentions=render.NO_PINGS
            )
            return
        await interaction.response.send_modal(ImagineModal(self, references=references))

    async def start(
        self,
        interaction: discord.Interaction,
        *,
        prompt: str,
        ratio: str | None,
        n: int | None,
        model: str | None,
        resolution: str | None,
        references: tuple[ReferenceSource, ...] = (),
        hosted_references: tuple[str, ...] = (),
    ) -> bool:
        """Everything /imagine, the message menu and the result buttons share: validate, check,
        record, answer, run. `hosted_references` are references the image service already has.
        True if a job was started; False if the member got a private refusal instead."""
        if self.bot.stopping:
            await refuse(interaction, RESTARTING)
            return False
        try:
            request = build_request(
                self.bot.catalog,
                prompt=prompt,
                model_id=model or self.bot.settings.default_model,
                ratio=ratio,
                n=n,
                resolution=resolution,
                requester_id=interaction.user.id,
                references=references,
                hosted_references=hosted_references,
            )
            who = requester(interaction)
            settings = await self.bot.guild_settings.get(who.guild_id) if who.guild_id is not None else None
            if settings is not None and settings.blocklist:
                # Compiling a changed list takes up to a few hundred ms: not on the event loop.
                await asyncio.to_thread(lambda: settings.compiled_blocklist.prepare(who.locale))
            policy.check(settings, self.bot.operator, who, request)
        except (RequestError, policy.RefusedError) as exc:
            await refuse(interaction, str(exc))
            return False

        missing = missing_permissions(interaction)
        if missing:
            await refuse(interaction, missing_permissions_text(missing))
            return False

        # The record exists before the placeholder does, so no answered request can be forgotten;
        # its images are reserved in quota in the same transaction.
        plan = policy.quota_plan(settings, self.bot.operator, who, request.n, time.time())
        try:
            job = await self.bot.jobs.create(
                quota=plan,
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
                reference_count=request.reference_count,
            )
        except QuotaExceededError as exc:
            await refuse(interaction, policy.quota_refusal(exc))
            return False
        started = datetime.fromtimestamp(job.created_at, tz=UTC)
        try:
            response = await interaction.response.send_message(
                embed=render.progress_embed(request, first_progress(request), started),
                allowed_mentions=render.NO_PINGS,
            )
        except discord.HTTPException:
            # Nothing was sent to the image service: end the job and give its quota back.
            await self.bot.jobs.finish(
                job.id, JobState.FAILED, delivered_images=0, error="the placeholder could not be posted"
            )
            raise
        job = await self.bot.jobs.set_message_id(job, response.message_id)
        log.info(
            "job %s: accepted (guild %s, channel %s, user %s)",
            job.id,
            interaction.guild_id,
            interaction.channel_id,
            interaction.user.id,
        )
        self.bot.start_job(job, request)
        return True


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
    )


async def refuse(interaction: discord.Interaction, text: str) -> None:
    """A private answer saying why not (first response)."""
    await interaction.response.send_message(text, ephemeral=True, allowed_mentions=render.NO_PINGS)


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
