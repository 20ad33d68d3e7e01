"""Shows a job in Discord: edits the interaction's placeholder with progress, results or failure.

This is the `JobObserver` the core runner reports to. Discord errors on an edit
are logged and never end the job: the member paid for the images.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime

import discord

from bot.images import FittedImage
from bot.jobs import JobOutcome
from bot.progress import JobProgress
from bot.request import ImagineRequest
from cogs import render

log = logging.getLogger(__name__)


def _files(images: tuple[FittedImage, ...]) -> list[discord.File]:
    return [discord.File(io.BytesIO(img.data), filename=img.filename) for img in images]


class InteractionDelivery:
    """Delivers one job into the message that answered its interaction."""

    def __init__(
        self,
        interaction: discord.Interaction,
        request: ImagineRequest,
        *,
        started: datetime,
        message: discord.InteractionMessage | None,
    ) -> None:
        self._interaction = interaction
        self._request = request
        self._started = started
        self._message = message
        self._upload_limit = interaction.filesize_limit

    @property
    def _label(self) -> str:
        i = self._interaction
        return f"interaction {i.id} guild {i.guild_id} user {self._request.requester_id}"

    async def _edit(self, **fields: object) -> bool:
        try:
            await self._interaction.edit_original_response(allowed_mentions=render.NO_PINGS, **fields)
        except discord.HTTPException as exc:
            log.warning("%s: editing the job message failed: %s %s", self._label, exc.status, exc.text)
            return False
        return True

    async def show_progress(self, state: JobProgress) -> None:
        await self._edit(embed=render.progress_embed(self._request, state, self._started))

    async def deliver(self, outcome: JobOutcome) -> None:
        per_message = render.ATTACHMENTS_PER_MESSAGE
        first, rest = outcome.images[:per_message], outcome.images[per_message:]
        await self._edit(
            embed=render.result_embed(self._request, outcome, self._upload_limit), attachments=_files(first)
        )
        total = len(outcome.images)
        for start in range(0, len(rest), per_message):
            chunk = rest[start : start + per_message]
            first_no = per_message + start + 1
            await self._send_overflow(render.overflow_text(first_no, first_no + len(chunk) - 1, total), chunk)

    async def _send_overflow(self, text: str, images: tuple[FittedImage, ...]) -> None:
        """Post images past the tenth as a reply to the job message (webhooks cannot reply)."""
        if self._message is not None:
            channel = self._interaction.client.get_partial_messageable(
                self._interaction.channel_id, guild_id=self._interaction.guild_id
            )
            try:
                await channel.send(
                    text,
                    files=_files(images),
                    reference=self._message.to_reference(fail_if_not_exists=False),
                    allowed_mentions=render.NO_PINGS,
                )
                return
            except discord.HTTPException as exc:
                log.info(
                    "%s: replying in the channel failed (%s); using a follow-up", self._label, exc.status
                )
        try:
            await self._interaction.followup.send(
                text, files=_files(images), allowed_mentions=render.NO_PINGS
            )
        except discord.HTTPException as exc:
            log.warning("%s: follow-up with images failed: %s %s", self._label, exc.status, exc.text)

    async def fail(self, message: str, elapsed: float) -> None:
        await self._edit(embed=render.failure_embed(self._request, message, elapsed), attachments=[])
