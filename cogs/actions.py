"""What the result buttons do — Reroll, Vary, Remix, Delete, Details — and /imagine-history.

The buttons are `DynamicItem`s: their `custom_id` (`imagine:<action>:<job id>`) carries
the job id and the job record supplies everything else, so they keep working after a
restart and days later. Reroll, Vary and Remix ask the job's request again
(`options_for_job`, with their changes) and start it through the job launcher exactly like
/imagine (permissions, policy, quotas, cooldown, blocklist), for the member who clicked.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.catalog import MAX_TOTAL_IMAGES
from bot.i18n import _
from bot.jobs.records import JobRecord
from bot.jobs.request import options_for_job, request_for_job
from bot.references import ReferenceSource
from cogs import render
from cogs.components import ResultButton, VaryPicker, source_from_attachment
from cogs.forms import FormAnswers, RemixForm, RequestForm, answer_form, submitted_form
from cogs.installs import ANYWHERE_CONTEXTS, ANYWHERE_INSTALLS
from cogs.replies import member_locale, reply_privately

if TYPE_CHECKING:
    from cogs.app import ImagineBot

log = logging.getLogger(__name__)

# A second click on the same action of the same job by the same member within this many
# seconds is the same click.
DOUBLE_CLICK_SECONDS = 5

GONE = _(
    "This result is no longer in the bot's records, so it can't be used any more. "
    "Start a new one with /imagine."
)
ALREADY = _("That's already on its way — one click is enough.")
REFERENCES_LOST = _(
    "This request's reference images never reached the image service (it failed while preparing them), "
    "so it can't be repeated as it was. Attach the images again with /imagine."
)


class ActionsCog(commands.Cog, name="Actions"):
    """Thin adapter from result buttons to new jobs (through the job launcher)."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot
        # What each button does, by the action its custom_id names (see `cogs.components`).
        self._actions: dict[str, Callable[[discord.Interaction, JobRecord], Awaitable[None]]] = {
            "reroll": self._reroll,
            "vary": self._vary,
            "remix": self._remix,
            "delete": self._delete,
            "details": self._details,
        }
        self.history: app_commands.Command[ActionsCog, [], None] = app_commands.Command(
            name="imagine-history",
            description="Your last 10 images in this server, with links",
            callback=self._history,
            allowed_installs=ANYWHERE_INSTALLS,
            allowed_contexts=ANYWHERE_CONTEXTS,
        )

    async def cog_load(self) -> None:
        self.bot.result_actions = self
        self.bot.add_dynamic_items(ResultButton, VaryPicker)
        self.bot.tree.add_command(self.history)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ResultButton, VaryPicker)
        self.bot.tree.remove_command(self.history.name)
        if self.bot.result_actions is self:
            self.bot.result_actions = None

    async def handle(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        """A click on the `action` button of job `job_id`'s result."""
        job = await self.bot.jobs.get(job_id)
        # A forgotten job has no prompt or requester left to repeat or show; its messages can
        # still be deleted (by moderators: the requester is no longer known).
        if job is None or (job.forgotten and action != "delete"):
            await reply_privately(interaction, GONE)
            return
        await self._actions[action](interaction, job)

    async def _once(
        self,
        interaction: discord.Interaction,
        action: str,
        job: JobRecord,
        start: Callable[[], Awaitable[bool]],
    ) -> None:
        """Run a job-starting action once per double click; a refused start does not count as a click."""
        key = f"click:{action}:{job.id}:{interaction.user.id}"
        if not await self.bot.ledger.claim(key, DOUBLE_CLICK_SECONDS):
            await reply_privately(interaction, ALREADY)
            return
        if not await start():
            await self.bot.ledger.release(key)

    async def _reroll(self, interaction: discord.Interaction, job: JobRecord) -> None:
        if job.references_lost:
            await reply_privately(interaction, REFERENCES_LOST)
            return
        await self._once(
            interaction,
            "reroll",
            job,
            lambda: self.bot.launcher.launch(interaction, options_for_job(job)),
        )

    async def _vary(self, interaction: discord.Interaction, job: JobRecord) -> None:
        images = job.delivered_images
        if len(images) == 1:
            await self.vary_pick(interaction, job.id, 1)
            return
        if not images:
            await reply_privately(interaction, _("This result has no images to vary."))
            return
        view = discord.ui.View(timeout=None)
        view.add_item(VaryPicker(job.id, len(images)))
        await reply_privately(interaction, _("Which image should the new ones vary?"), view=view)

    async def vary_pick(self, interaction: discord.Interaction, job_id: int, number: int) -> None:
        """Generate from image `number` of job `job_id` as the reference, with the same prompt."""
        job = await self.bot.jobs.get(job_id)
        if job is None or job.forgotten:
            await reply_privately(interaction, GONE)
            return
        await self._once(
            interaction, f"vary{number}", job, lambda: self._vary_start(interaction, job, number)
        )

    async def _vary_start(self, interaction: discord.Interaction, job: JobRecord, number: int) -> bool:
        source = await self._posted_image(interaction, job, number)
        if source is None:
            await reply_privately(
                interaction,
                _(
                    "Image {number} is no longer available — its message was deleted or can't be read.",
                    number=number,
                ),
            )
            return False
        # The posted image is the one reference: the job's own references are not sent again.
        options = options_for_job(
            job, n=min(job.n, MAX_TOTAL_IMAGES - 1), references=(source,), hosted_references=()
        )
        return await self.bot.launcher.launch(interaction, options)

    async def _posted_image(
        self, interaction: discord.Interaction, job: JobRecord, number: int
    ) -> ReferenceSource | None:
        """Image `number` as posted in Discord (never the image service's expiring result URL)."""
        images = job.delivered_images
        if not 1 <= number <= len(images):
            return None
        wanted = images[number - 1]
        message_id = wanted.message_id
        message: discord.Message | None = None
        if interaction.message is not None and interaction.message.id == message_id:
            message = interaction.message
        elif message_id is not None and not job.token_only:  # else only the token reaches it
            channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
            try:
                message = await channel.fetch_message(message_id)
            except discord.HTTPException as exc:
                log.info(
                    "%s: the message with image %d could not be read: %s", job.log_name, number, exc.status
                )
        if message is None:
            return None
        # A spoilered result was posted as `SPOILER_<name>`.
        names = (wanted.filename, f"SPOILER_{wanted.filename}")
        attachment = next((a for a in message.attachments if a.filename in names), None)
        if attachment is None:
            return None
        return source_from_attachment(attachment)

    async def _remix(self, interaction: discord.Interaction, job: JobRecord) -> None:
        if job.references_lost:
            await reply_privately(interaction, REFERENCES_LOST)
            return
        await interaction.response.send_modal(
            RequestForm(
                RemixForm(job.id),
                self.bot.catalog,
                # Translators: the title of the form that changes a result's prompt or options, then draws.
                title=_("Remix"),
                locale=member_locale(interaction),
                model=job.model,
                reference_count=len(job.reference_urls),
                prompt=job.prompt,
                ratio=job.ratio,
                n=job.n,
            )
        )

    @commands.Cog.listener("on_interaction")
    async def on_remix_form(self, interaction: discord.Interaction) -> None:
        """A submitted Remix form (also one opened before a restart): the job record supplies the rest."""
        form = submitted_form(interaction)
        if isinstance(form, RemixForm):
            await answer_form(interaction, form, functools.partial(self._remix_submitted, interaction, form))

    async def _remix_submitted(
        self, interaction: discord.Interaction, form: RemixForm, answers: FormAnswers
    ) -> None:
        job = await self.bot.jobs.get(form.job_id)
        if job is None:
            await reply_privately(interaction, GONE)
            return
        if job.references_lost:
            await reply_privately(interaction, REFERENCES_LOST)
            return
        model = answers.model or job.model
        options = options_for_job(
            job,
            prompt=answers.prompt,
            model_id=model,
            ratio=answers.ratio or job.ratio,
            n=answers.n or job.n,
            # The original resolution, speed and layers only apply while the model stays the same.
            resolution=job.resolution if model == job.model else None,
            speed=job.speed if model == job.model else None,
            layers=job.layers and model == job.model,
        )
        await self.bot.launcher.launch(interaction, options)

    async def _delete(self, interaction: discord.Interaction, job: JobRecord) -> None:
        permissions = interaction.permissions
        if interaction.user.id != job.user_id and not permissions.manage_messages:
            await reply_privately(
                interaction,
                _(
                    "Only the member who asked for this image, or a moderator with Manage Messages, "
                    "can delete it."
                ),
            )
            return
        if job.token_only:
            await self._delete_through_interaction(interaction, job)
            return
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        ids: list[int | None] = list(job.delivered_message_ids) or [job.message_id]
        deleted = 0
        for message_id in (m for m in ids if m is not None):
            try:
                await channel.get_partial_message(message_id).delete()
                deleted += 1
            except discord.NotFound:
                continue
            except discord.HTTPException as exc:
                log.warning("%s: deleting message %s failed: %s", job.log_name, message_id, exc.status)
        log.info("%s: result deleted by user %s (%d message(s))", job.log_name, interaction.user.id, deleted)
        await reply_privately(
            interaction, _("Deleted.") if deleted else _("There was nothing left to delete.")
        )

    async def _delete_through_interaction(self, interaction: discord.Interaction, job: JobRecord) -> None:
        """Delete where the bot is not a member: the clicked message through this click's own (fresh)
        token; the job's other messages (images past the tenth) through the job's token while it
        lives. The channel endpoints would only answer 403/404 there."""
        deleted = 0
        try:
            await interaction.response.defer()  # acknowledges the click on the message itself
            await interaction.delete_original_response()
            deleted += 1
        except discord.HTTPException as exc:
            log.warning("%s: deleting the clicked message failed: %s", job.log_name, exc.status)
        clicked = interaction.message.id if interaction.message is not None else None
        others = [m for m in job.delivered_message_ids if m is not None and m != clicked]
        left = 0
        if others and job.token_usable(time.time()):
            assert job.interaction_token is not None
            webhook = discord.Webhook.partial(job.application_id, job.interaction_token, client=self.bot)
            for message_id in others:
                try:
                    await webhook.delete_message(message_id)
                    deleted += 1
                except discord.NotFound:
                    continue
                except discord.HTTPException as exc:
                    log.warning("%s: deleting message %s failed: %s", job.log_name, message_id, exc.status)
                    left += 1
        else:
            left = len(others)
        log.info("%s: result deleted by user %s (%d message(s))", job.log_name, interaction.user.id, deleted)
        if left:
            text = _(
                "Deleted what I still can. The bot isn't a member here, and the rest of these images "
                "can no longer be reached — a moderator can delete them."
            )
        else:
            text = _("Deleted.") if deleted else _("There was nothing left to delete.")
        await reply_privately(interaction, text)

    async def _details(self, interaction: discord.Interaction, job: JobRecord) -> None:
        request = request_for_job(job, self.bot.catalog)
        await reply_privately(
            interaction, None, embed=render.details_embed(job, request, member_locale(interaction))
        )

    async def _history(self, interaction: discord.Interaction) -> None:
        jobs = await self.bot.jobs.recent(
            guild_id=interaction.guild_id, user_id=interaction.user.id, limit=10
        )
        if not jobs:
            await reply_privately(interaction, _("You have no images here yet. Try /imagine."))
            return
        await reply_privately(interaction, render.history_text(jobs, member_locale(interaction)))


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(ActionsCog(bot))
