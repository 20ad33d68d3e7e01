"""Shows a job in Discord: edits its message with progress, results or failure, whatever happened meanwhile.

`JobMessenger` is the `JobObserver` the core runner reports to. It is built from
the stored job record, not from a live interaction, so a job resumed after a
restart is delivered exactly like a fresh one. How it reaches the message:

1. the interaction token (webhook edit), while it lives (15 minutes);
2. then, or when Discord answers 401 Invalid Webhook Token, a channel edit with the bot token;
3. if the message is gone (deleted) or cannot be edited, the *result* is posted as a new
   message that mentions the requester — they paid for it. Progress is never re-posted.

Where the bot is not a member (a user install used in a server that never installed it, a group
DM: `JobRecord.token_only`), only the token reaches the conversation and channel endpoints are
never tried. Before the token dies the member is told (in the message) that the result will come
by DM; after it, the result goes to the member's DMs with a link back to the request. If their
DMs are closed, the images stay in /imagine-history and the log says so.

A Discord error never ends the job; discord.py waits out rate limits itself. Everything it
writes reads in the language of the member who asked (the job's recorded `locale`), however
long after the interaction.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import discord

from bot import i18n
from bot.i18n import Readable, _
from bot.images import FittedImage
from bot.jobs.pacing import ChannelPacer
from bot.jobs.progress import JobProgress
from bot.jobs.records import JobRecord, JobStore
from bot.jobs.request import ImagineRequest
from bot.jobs.runner import JobOutcome
from cogs import render
from cogs.components import result_view

log = logging.getLogger(__name__)

T = TypeVar("T")

INVALID_WEBHOOK_TOKEN = 50027
UNKNOWN_MESSAGE = 10008

# Shown in the job's message while its token still works, where only the token reaches it.
RESULT_BY_DM = _(
    "⏳ This is taking a while — I'll DM you the images when they're ready "
    "(if your DMs are closed, find them with /imagine-history)."
)


class _Uploads:
    """The in-memory files of one delivery, released as soon as it is over.

    discord.py leaves each file's buffer in a reference cycle after sending (`File.close`
    re-binds the buffer's own `close` onto it), so it would only be freed by a later garbage
    collection: under load that is hundreds of megabytes of images held for nothing.

    With `spoiler`, every file is posted as a spoiler (discord.py prefixes its name `SPOILER_`,
    which is how Discord knows): the result embed carries no image, so nothing shows unblurred.
    """

    def __init__(self, *, spoiler: bool = False) -> None:
        self._buffers: list[io.BytesIO] = []
        self._spoiler = spoiler

    def files(self, images: tuple[FittedImage, ...]) -> list[discord.File]:
        buffers = [io.BytesIO(img.data) for img in images]
        self._buffers += buffers
        return [
            discord.File(buffer, filename=img.filename, spoiler=self._spoiler)
            for buffer, img in zip(buffers, images, strict=True)
        ]

    def release(self) -> None:
        for buffer in self._buffers:
            vars(buffer).pop("close", None)  # undo discord.py's stub: breaks the cycle
            buffer.close()  # frees the bytes now
        self._buffers.clear()


@dataclass(frozen=True)
class MessageBody:
    """What one write shows in the job's message. An edit leaves what is not given as it was."""

    embed: discord.Embed
    content: str | None = None
    attachments: Sequence[discord.File] | None = None  # None: keep the message's files; (): remove them
    view: discord.ui.View | None = None  # None: keep the message's buttons

    def edit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for editing the message (through the webhook or the channel)."""
        kwargs: dict[str, Any] = {"embed": self.embed}
        if self.content is not None:
            kwargs["content"] = self.content
        if self.attachments is not None:
            kwargs["attachments"] = list(self.attachments)
        if self.view is not None:
            kwargs["view"] = self.view
        return kwargs

    def send_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for sending it as a new message (in the channel or as a follow-up)."""
        kwargs: dict[str, Any] = {"embed": self.embed}
        if self.content is not None:
            kwargs["content"] = self.content
        if self.attachments:
            kwargs["files"] = list(self.attachments)
        if self.view is not None:
            kwargs["view"] = self.view
        return kwargs


class MessageGoneError(Exception):
    """The job's message was deleted or can no longer be edited by any route."""


class JobMessenger:
    """Delivers one job into its message, through `client`'s connection to Discord."""

    def __init__(
        self,
        client: discord.Client,
        job: JobRecord,
        request: ImagineRequest,
        jobs: JobStore,
        pacer: ChannelPacer,
        *,
        clock: Callable[[], float] = time.time,
        token_margin: float = 30.0,
    ) -> None:
        """`token_margin`: how long before its death the interaction token is no longer relied on."""
        self._client = client
        self._pacer = pacer
        self._job = job
        self._request = request
        self._jobs = jobs
        self._clock = clock
        self._started = datetime.fromtimestamp(job.created_at, tz=UTC)
        self._token_dead = not job.interaction_token
        self._message_gone = job.message_id is None
        self._uploads = _Uploads(spoiler=request.spoiler)
        self._label = job.log_name  # built once: every log line names the job, server and member
        self._locale = job.locale  # the asking member's language (None: a job from before, English)
        # Why the job failed, once it did, as the member read it (the audit line reuses it).
        self.failure: Readable | None = None
        self._token_margin = token_margin
        self._dm: discord.DMChannel | None = None  # the member's DM, once a result went there
        self._kept = False  # the result reached no one: it waits in /imagine-history
        self._finishing = False  # the final state (result or failure) is being shown

    @property
    def _channel(self) -> discord.PartialMessageable:
        return self._client.get_partial_messageable(self._job.channel_id, guild_id=self._job.guild_id)

    def _webhook(self) -> discord.Webhook | None:
        if self._token_dead or not self._job.token_usable(self._clock(), margin=self._token_margin):
            return None
        assert self._job.interaction_token is not None
        return discord.Webhook.partial(
            self._job.application_id, self._job.interaction_token, client=self._client
        )

    # -- editing the job's message -------------------------------------------------------

    async def _edit(self, make_body: Callable[[], MessageBody]) -> None:
        """Edit the job message by the best route left; raise MessageGoneError if none works."""
        if self._message_gone:
            raise MessageGoneError
        assert self._job.message_id is not None
        webhook = self._webhook()
        if webhook is not None:
            try:
                await webhook.edit_message(
                    self._job.message_id, allowed_mentions=render.NO_PINGS, **make_body().edit_kwargs()
                )
                return
            except discord.HTTPException as exc:
                if exc.code == UNKNOWN_MESSAGE:
                    self._gone("deleted")
                if exc.status == 401 or exc.code == INVALID_WEBHOOK_TOKEN:
                    log.info(
                        "%s: interaction token no longer valid; editing through the channel", self._label
                    )
                    self._token_dead = True
                else:
                    if self._job.token_only:
                        raise
                    log.warning("%s: webhook edit failed (%s); trying the channel", self._label, exc.status)
        if self._job.token_only:
            # Only the token reaches this conversation: the channel would answer 403/404.
            raise MessageGoneError
        message = self._channel.get_partial_message(self._job.message_id)
        try:
            await message.edit(allowed_mentions=render.NO_PINGS, **make_body().edit_kwargs())
        except discord.NotFound:
            self._gone("deleted")
        except discord.Forbidden:
            self._gone("not editable by the bot here")

    def _gone(self, why: str) -> None:
        log.info("%s: the job message is %s", self._label, why)
        self._message_gone = True
        raise MessageGoneError

    async def _write(self, send: Callable[[], Awaitable[T]]) -> T:
        """A write that must happen (a result), paced ahead of progress in this channel."""
        return await self._pacer.final(self._job.channel_id, send, key=self._job.id)

    # -- JobObserver ---------------------------------------------------------------------

    async def show_progress(self, state: JobProgress) -> None:
        try:
            await self._pacer.progress(
                self._job.channel_id,
                self._job.id,
                lambda: self._edit(
                    lambda: MessageBody(
                        embed=render.progress_embed(self._request, state, self._started, self._locale)
                    )
                ),
            )
        except MessageGoneError:
            pass  # progress is not worth a new message; the result will be
        except discord.HTTPException as exc:
            log.warning("%s: progress edit failed: %s", self._label, exc.status)

    async def token_expiring(self) -> None:
        """The token is about to die and the job is not over: say (through it, while it works) that the
        result will come by DM, then stop relying on it."""
        now = self._clock()
        if self._finishing:
            return  # the result is being shown through the token right now: nothing to announce
        if self._token_dead or self._message_gone or self._job.message_id is None:
            self._token_dead = True
            return
        if not self._job.token_usable(now, margin=0):  # already dead (a job resumed after a restart)
            self._token_dead = True
            return
        webhook = discord.Webhook.partial(
            self._job.application_id, self._job.interaction_token or "", client=self._client
        )
        message_id = self._job.message_id
        try:
            await self._write(
                lambda: webhook.edit_message(
                    message_id,
                    content=i18n.render(RESULT_BY_DM, self._locale),
                    allowed_mentions=render.NO_PINGS,
                )
            )
            log.info("%s: the token expires soon; the member was told the result comes by DM", self._label)
        except discord.HTTPException as exc:
            log.warning("%s: could not say the result comes by DM: %s", self._label, exc.status)
        self._token_dead = True

    def references_ready(self, urls: tuple[str, ...]) -> None:
        self._request = dataclasses.replace(self._request, reference_urls=urls, reference_sources=())

    def delivery_turn(self) -> AbstractAsyncContextManager[None]:
        return self._pacer.turn(self._job.channel_id)

    async def deliver(self, outcome: JobOutcome) -> list[int | None]:
        try:
            return await self._deliver(outcome)
        finally:
            self._uploads.release()

    async def _deliver(self, outcome: JobOutcome) -> list[int | None]:
        per_message = render.ATTACHMENTS_PER_MESSAGE
        first, rest = outcome.images[:per_message], outcome.images[per_message:]
        upload_limit = self._job.upload_limit
        main_id = await self._show_final(
            lambda: MessageBody(
                embed=render.result_embed(self._request, outcome, upload_limit, self._locale),
                attachments=self._uploads.files(first),
                view=result_view(self._job, done=True),
            )
        )
        posted: list[int | None] = [main_id] * len(first)
        total = len(outcome.images)
        for start in range(0, len(rest), per_message):
            chunk = rest[start : start + per_message]
            first_no = per_message + start + 1
            text = render.overflow_text(first_no, first_no + len(chunk) - 1, total, self._locale)
            posted += [await self._send_overflow(text, chunk, reply_to=main_id)] * len(chunk)
        return posted

    async def fail(self, message: Readable, elapsed: float) -> None:
        self.failure = message
        await self._show_final(
            lambda: MessageBody(
                embed=render.failure_embed(self._request, message, elapsed, self._locale),
                attachments=(),
                view=result_view(self._job, done=False),
            )
        )

    def result_kept(self) -> bool:
        return self._kept

    async def hold(self) -> None:
        try:
            # Paced like a result: it is the last thing this run says about the job.
            await self._write(
                lambda: self._edit(
                    lambda: MessageBody(
                        embed=render.waiting_embed(self._request, self._started, self._locale)
                    )
                )
            )
        except MessageGoneError:
            pass  # the job is sent after the restart and its result posted anew then
        except discord.HTTPException as exc:
            log.warning("%s: the waiting notice could not be shown: %s", self._label, exc.status)

    # -- final messages ------------------------------------------------------------------

    async def _show_final(self, make_body: Callable[[], MessageBody]) -> int | None:
        """Put the final state in the job message, or in a new message; return its id."""
        self._finishing = True
        try:
            await self._write(lambda: self._edit(make_body))
            return self._job.message_id
        except MessageGoneError:
            pass
        except discord.HTTPException as exc:
            log.warning("%s: final edit failed (%s); posting a new message", self._label, exc.status)
        return await self._post_replacement(make_body)

    async def _post_replacement(self, make_body: Callable[[], MessageBody]) -> int | None:
        """A new message that mentions (and pings) only the requester, who paid for the result."""
        mention = discord.AllowedMentions(
            everyone=False, roles=False, users=[discord.Object(self._job.user_id)]
        )
        content = i18n.render(
            _("{member} here is the result of your /imagine request.", member=f"<@{self._job.user_id}>"),
            self._locale,
        )

        def make_reply() -> MessageBody:
            return dataclasses.replace(make_body(), content=content)

        if self._job.token_only:
            return await self._post_privately(make_body)
        message: discord.Message | discord.WebhookMessage | None
        body = make_reply()
        try:
            message = await self._write(
                lambda: self._channel.send(allowed_mentions=mention, **body.send_kwargs())
            )
            # A channel message is not the interaction's: later edits go through the channel.
            self._token_dead = True
        except discord.HTTPException as exc:
            log.warning("%s: posting the result in the channel failed (%s)", self._label, exc.status)
            message = await self._followup(mention, make_reply)
            if message is None:
                log.error("%s: the result could not be delivered anywhere", self._label)
                return None
        self._job = await self._jobs.set_message_id(self._job, message.id)
        self._message_gone = False
        return message.id

    def _link(self) -> str:
        """A link to the job's message in its conversation."""
        return render.message_link(self._job.guild_id, self._job.channel_id, self._job.message_id or 0)

    async def _post_privately(self, make_body: Callable[[], MessageBody]) -> int | None:
        """Where only the token reaches the job: a follow-up while it lives, else the member's DMs
        (with a link back); None if neither took it (the images stay in /imagine-history)."""
        message = await self._followup(render.NO_PINGS, make_body)
        if message is not None:
            return message.id
        content = i18n.render(
            _("Here is the result of your /imagine request: {link}", link=self._link()), self._locale
        )
        body = dataclasses.replace(make_body(), content=content)
        try:
            if self._dm is None:
                self._dm = await self._client.create_dm(discord.Object(self._job.user_id))
            dm = self._dm
            dm_message = await self._write(
                lambda: dm.send(allowed_mentions=render.NO_PINGS, **body.send_kwargs())
            )
        except discord.HTTPException as exc:
            log.warning(
                "%s: the result could not be sent by DM (%s %s); it stays in /imagine-history",
                self._label,
                exc.status,
                exc.code,
            )
            self._kept = True
            return None
        log.info("%s: the result was sent by DM (the interaction token had expired)", self._label)
        return dm_message.id

    async def _followup(
        self, mention: discord.AllowedMentions, make_body: Callable[[], MessageBody]
    ) -> discord.WebhookMessage | None:
        webhook = self._webhook()
        if webhook is None:
            return None
        body = make_body()
        try:
            return await self._write(
                lambda: webhook.send(allowed_mentions=mention, wait=True, **body.send_kwargs())
            )
        except discord.HTTPException as exc:
            log.warning("%s: follow-up failed (%s)", self._label, exc.status)
            return None

    async def _send_overflow(
        self, text: str, images: tuple[FittedImage, ...], *, reply_to: int | None
    ) -> int | None:
        """Images past the tenth, as a reply to the job message (webhooks cannot reply)."""
        if self._job.token_only:
            return await self._send_overflow_privately(text, images)
        reference = (
            discord.MessageReference(
                message_id=reply_to, channel_id=self._job.channel_id, fail_if_not_exists=False
            )
            if reply_to is not None
            else None
        )
        try:
            message = await self._write(
                lambda: self._channel.send(
                    text,
                    files=self._uploads.files(images),
                    # discord.py's overloads leave out None, which it takes as "not a reply".
                    reference=reference,  # type: ignore[arg-type]
                    allowed_mentions=render.NO_PINGS,
                )
            )
            return message.id
        except discord.HTTPException as exc:
            log.info("%s: replying in the channel failed (%s); using a follow-up", self._label, exc.status)
        webhook = self._webhook()
        if webhook is None:
            log.warning("%s: images past the tenth could not be delivered", self._label)
            return None
        try:
            followup = await self._write(
                lambda: webhook.send(
                    text, files=self._uploads.files(images), allowed_mentions=render.NO_PINGS, wait=True
                )
            )
            return followup.id
        except discord.HTTPException as exc:
            log.warning("%s: follow-up with images failed: %s %s", self._label, exc.status, exc.text)
            return None

    async def _send_overflow_privately(self, text: str, images: tuple[FittedImage, ...]) -> int | None:
        """Images past the tenth where only the token reaches the job: a follow-up, or the DM the
        result went to."""
        webhook = self._webhook()
        try:
            if webhook is not None:
                followup = await self._write(
                    lambda: webhook.send(
                        text, files=self._uploads.files(images), allowed_mentions=render.NO_PINGS, wait=True
                    )
                )
                return followup.id
            if self._dm is not None:
                dm = self._dm
                message = await self._write(
                    lambda: dm.send(text, files=self._uploads.files(images), allowed_mentions=render.NO_PINGS)
                )
                return message.id
        except discord.HTTPException as exc:
            log.warning("%s: images past the tenth could not be delivered: %s", self._label, exc.status)
            return None
        log.warning("%s: images past the tenth could not be delivered (no token, no DM)", self._label)
        return None
