"""The /imagine command: validate, answer at once with a placeholder, run the job in the background."""

# No `from __future__ import annotations`: discord.py reads the /imagine parameter annotations at
# definition time, and the prompt length range is computed from the catalog in a closure.
import asyncio
import functools
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import policy
from bot.catalog import Catalog
from bot.jobs.records import JobRecord, JobState
from bot.jobs.request import AUTO_RATIO, DEFAULT_RATIO, RATIOS, ImagineRequest, RequestError, build_request
from bot.jobs.runner import first_progress
from bot.quota import QuotaExceededError
from bot.references import MAX_REFERENCES, ReferenceRejectedError, ReferenceSource, check_sources
from cogs import render
from cogs.components import source_from_attachment
from cogs.forms import (
    EXPIRED,
    ExpiredForm,
    FormAnswers,
    MenuForm,
    OpenMenuForms,
    RequestForm,
    answer_expired,
    answer_form,
    submitted_form,
)
from cogs.replies import reply_privately

if TYPE_CHECKING:
    from cogs.app import ImagineBot

log = logging.getLogger(__name__)

RESTARTING = "The bot is restarting — try again in a minute."
PLACEHOLDER_FAILED = (
    "Discord did not accept the bot's reply, so your request was not started and nothing was charged. "
    "Run the command again."
)
# How long the public placeholder may take before its job is given up: Discord takes the first answer
# only within 3 s of the interaction, so this covers one of discord.py's retries of a 5xx and leaves
# time to tell the member privately.
PLACEHOLDER_TIMEOUT = 2.5
MENU_NAME = "Imagine with these images"
MENU_MESSAGE_GONE = (
    "The message with those images was deleted, so this form can't be used any more. "
    f"Use “{MENU_NAME}” on another message."
)
# Also what a member sees where Discord hides a member's message from the bot's own reads.
MENU_IMAGES_GONE = (
    f"{EXPIRED} I can't read that message's images any more: right-click the message → Apps → "
    f"“{MENU_NAME}” for a new form."
)


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


class ImagineCog(commands.Cog):
    """Thin adapter from /imagine and the message menu to the core job runner."""

    def __init__(self, bot: "ImagineBot") -> None:
        self.bot = bot
        self.placeholder_timeout = PLACEHOLDER_TIMEOUT
        self.command = build_imagine_command(bot.catalog, self)
        self.menu = app_commands.ContextMenu(name=MENU_NAME, callback=self.imagine_from_message)
        self.open_menu_forms = OpenMenuForms()

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.command)
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.command.name)
        self.bot.tree.remove_command(self.menu.name, type=discord.AppCommandType.message)

    async def imagine_from_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Right-click a message → Apps → "Imagine with these images": ask for a prompt in a modal."""
        if self.bot.stopping:
            await reply_privately(interaction, RESTARTING)
            return
        sources = images_in_message(message)
        if not sources:
            await reply_privately(
                interaction, "That message has no images. Use this on a message with image attachments."
            )
            return
        references = tuple(sources[:MAX_REFERENCES])
        try:
            # Only what Discord told us about the files: a bad one is refused before any typing.
            check_sources(references, n=1, max_references=MAX_REFERENCES, model_name="The bot")
        except ReferenceRejectedError as exc:
            await interaction.response.send_message(
                str(exc), ephemeral=True, allowed_mentions=render.NO_PINGS
            )
            return
        form = MenuForm(message.channel.id, message.id)
        self.open_menu_forms.remember(form, references)
        await interaction.response.send_modal(
            RequestForm(
                form,
                self.bot.catalog,
                title=MENU_NAME,
                model=self.bot.settings.default_model,
                reference_count=len(references),
            )
        )

    @commands.Cog.listener("on_interaction")
    async def on_menu_form(self, interaction: discord.Interaction) -> None:
        """A submitted "Imagine with these images" form (also one opened before a restart)."""
        form = submitted_form(interaction)
        if isinstance(form, ExpiredForm):
            await answer_expired(interaction)
        elif isinstance(form, MenuForm):
            await answer_form(
                interaction, form, functools.partial(self._menu_form_submitted, interaction, form)
            )

    async def _menu_form_submitted(
        self, interaction: discord.Interaction, form: MenuForm, answers: FormAnswers
    ) -> None:
        references = self.open_menu_forms.recall(form)
        if references is None:
            references = await self._reread_menu_images(interaction, form)
            if references is None:
                return
        await self.start(
            interaction,
            prompt=answers.prompt,
            ratio=answers.ratio or DEFAULT_RATIO,
            n=answers.n or 1,
            model=answers.model,
            resolution=None,
            references=references,
        )

    async def _reread_menu_images(
        self, interaction: discord.Interaction, form: MenuForm
    ) -> tuple[ReferenceSource, ...] | None:
        """The images of a menu form's message, read again (after a restart); None once the member
        was told privately why they cannot be had."""
        channel = self.bot.get_partial_messageable(form.channel_id, guild_id=interaction.guild_id)
        try:
            message = await channel.fetch_message(form.message_id)
        except discord.NotFound:
            await reply_privately(interaction, MENU_MESSAGE_GONE)
            return None
        except discord.HTTPException as exc:
            log.info(
                "menu form for message %s (guild %s, user %s): the message could not be read: %s",
                form.message_id,
                interaction.guild_id,
                interaction.user.id,
                exc.status,
            )
            await reply_privately(interaction, MENU_IMAGES_GONE)
            return None
        sources = images_in_message(message)
        if not sources:
            await reply_privately(interaction, MENU_IMAGES_GONE)
            return None
        return tuple(sources[:MAX_REFERENCES])

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
            await reply_privately(interaction, RESTARTING)
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
            await reply_privately(interaction, str(exc))
            return False

        missing = missing_permissions(interaction)
        if missing:
            await reply_privately(interaction, missing_permissions_text(missing))
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
            await reply_privately(interaction, policy.quota_refusal(exc))
            return False
        started = datetime.fromtimestamp(job.created_at, tz=UTC)
        try:
            # Bounded: discord.py retries a 5xx for half a minute, long after Discord's 3 s window.
            async with asyncio.timeout(self.placeholder_timeout):
                response = await interaction.response.send_message(
                    embed=render.progress_embed(request, first_progress(request), started),
                    allowed_mentions=render.NO_PINGS,
                )
            if response.message_id is not None:  # always set for a message Discord posted
                job = await self.bot.jobs.set_message_id(job, response.message_id)
        except (Exception, asyncio.CancelledError) as exc:
            # Nothing was sent to the image service: the job ends now and its quota comes back.
            await self._placeholder_failed(interaction, job, request, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False
        log.info(
            "job %s: accepted (guild %s, channel %s, user %s)",
            job.id,
            interaction.guild_id,
            interaction.channel_id,
            interaction.user.id,
        )
        self.bot.start_job(job, request)
        return True

    async def _placeholder_failed(
        self, interaction: discord.Interaction, job: JobRecord, request: ImagineRequest, exc: BaseException
    ) -> None:
        """End a job whose placeholder could not be posted or recorded, and tell the member privately."""
        # Only the error's kind and status: its text may carry the interaction's URL (and token).
        log.warning(
            "job %s: the placeholder could not be posted or recorded (guild %s, channel %s, user %s): %s %s",
            job.id,
            interaction.guild_id,
            interaction.channel_id,
            interaction.user.id,
            type(exc).__name__,
            getattr(exc, "status", ""),
        )
        try:
            await self.bot.jobs.finish(job.id, JobState.FAILED, delivered_images=0, error=PLACEHOLDER_FAILED)
        except Exception:
            log.exception("job %s: could not be ended after its placeholder failed", job.id)
        try:
            async with asyncio.timeout(self.placeholder_timeout):
                if interaction.response.is_done():
                    # The placeholder is up but the job behind it ended: it must not say "Queued".
                    await interaction.edit_original_response(
                        embed=render.failure_embed(request, PLACEHOLDER_FAILED, time.time() - job.created_at),
                        allowed_mentions=render.NO_PINGS,
                    )
                    await interaction.followup.send(
                        PLACEHOLDER_FAILED, ephemeral=True, allowed_mentions=render.NO_PINGS
                    )
                else:
                    await reply_privately(interaction, PLACEHOLDER_FAILED)
        except (Exception, asyncio.CancelledError) as notice_error:
            log.warning(
                "job %s: the member could not be told that it failed: %s",
                job.id,
                type(notice_error).__name__,
            )
            if isinstance(notice_error, asyncio.CancelledError):
                raise


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
