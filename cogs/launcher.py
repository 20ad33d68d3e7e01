"""The one path a job takes through the Discord layer: launched, run, resumed, audited.

`JobLauncher` is built in `ImagineBot.setup_hook`. Every cog that starts a job — /imagine, the
message menu's form, the result buttons and the Remix form — calls `launch`: it builds the
request, asks the policy whether the member may run it (`bot.policy.admit`), records the job
with its quota, answers with the public placeholder and starts the runner. A job found
unfinished at start-up, or stranded later without a runner, goes through `start` like a fresh
one. The registry of live jobs here means never two runners for one job in a process. A
finished job gets one line in its server's audit channel.

Reading order: a command (`cogs.imagine`, `cogs.actions`) → this launcher → the core runner
(`bot.jobs.runner`) → the messenger that shows the job (`cogs.delivery`).

A job's messages are written long after its interaction, so the job records the languages
they are written in: the asking member's Discord locale (the placeholder, progress, result,
failure and buttons) and the server's (the audit line). Reroll, Vary and Remix start a job
like any other, in the language of the member who pressed the button.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import discord

from bot import i18n, policy
from bot.catalog import Catalog
from bot.guild_settings import GuildSettings, GuildSettingsStore
from bot.i18n import Readable, Text, _, _n, _p
from bot.jobs.pacing import ChannelPacer
from bot.jobs.records import JobOrigin, JobRecord, JobState, JobStore
from bot.jobs.request import (
    ImagineRequest,
    RequestError,
    RequestOptions,
    build_request,
    new_job,
    request_for_job,
)
from bot.jobs.runner import JobRunner, first_progress
from bot.preferences import NO_PREFERENCES, Filled, PreferencesStore, fill
from bot.quota import QuotaExceededError, QuotaLedger, QuotaPlan
from cogs import render
from cogs.delivery import JobMessenger
from cogs.installs import conversation, server_installed
from cogs.members import requester
from cogs.replies import member_locale, reply_privately

log = logging.getLogger(__name__)

RESTARTING = _("The bot is restarting — try again in a minute.")
PLACEHOLDER_FAILED = _(
    "Discord did not accept the bot's reply, so your request was not started and nothing was charged. "
    "Run the command again."
)
PREFERENCES_UNREADABLE = _(
    "Your /imagine-settings could not be read just now, so this request used the bot's defaults."
)
# How long the public placeholder may take before its job is given up: Discord takes the first answer
# only within 3 s of the interaction, so this covers one of discord.py's retries of a 5xx and leaves
# time to tell the member privately.
PLACEHOLDER_TIMEOUT = 2.5
# Discord ends an interaction token's life 15 minutes after the interaction was created.
INTERACTION_TOKEN_LIFETIME = 15 * 60
# The bot stops relying on a token this long before it dies: a job reached only through its token
# tells the member then, while the token still works, that its result will come by DM.
TOKEN_SAFETY_MARGIN = 30.0
# Said once a day per member and server, privately, when Discord made the public placeholder private:
# the server does not let its members' own apps answer in public.
FORCED_PRIVATE_NOTE_SECONDS = 24 * 3600
FORCED_PRIVATE = _(
    "This server only lets apps its members added themselves answer privately, so only you can see "
    "this request and its images. To share them, use /imagine where the bot is a member."
)
# A job with no runner here counts as stranded only once its record has been untouched this
# long: a job being accepted gets its message id written within seconds, well inside this.
ORPHAN_GRACE = 120.0

# What the bot must be allowed in the channel to show a job: checked before anything is charged.
# Their names as Discord's settings show them, in the reader's language.
_NEEDED = {
    "view_channel": _p("permission", "View Channel"),
    "send_messages": _p("permission", "Send Messages"),
    "embed_links": _p("permission", "Embed Links"),
    "attach_files": _p("permission", "Attach Files"),
}


def missing_permissions(interaction: discord.Interaction) -> list[Text]:
    """Names of channel permissions the bot lacks (none are checked outside servers, nor in a server
    where the bot is used from a user install: it answers there only through the interaction)."""
    if interaction.guild_id is None or not server_installed(interaction):
        return []
    needed = dict(_NEEDED)
    if isinstance(interaction.channel, discord.Thread):
        del needed["send_messages"]
        needed["send_messages_in_threads"] = _p("permission", "Send Messages in Threads")
    have = interaction.app_permissions
    return [label for flag, label in needed.items() if not getattr(have, flag)]


def very_busy(waiting: int) -> Readable:
    """The refusal beyond MAX_QUEUED_JOBS waiting to be sent, before anything is charged."""
    return _(
        "The bot is very busy — {waiting} requests are waiting; try again in a few minutes.",
        waiting=f"{waiting:,}",
    )


def missing_permissions_text(missing: list[Text]) -> Readable:
    """The private refusal when the bot lacks channel permissions, naming them as Discord's
    settings do in the reader's language."""
    bold = [i18n.join(["**", name, "**"], "") for name in missing]
    if len(bold) == 1:
        names: Readable = bold[0]
    else:
        # Translators: permission names, e.g. "**View Channel**, **Embed Links** and **Attach Files**".
        names = _("{names} and {last}", names=i18n.join(bold[:-1], ", "), last=bold[-1])
    return _n(
        "I can't post images in this channel: I'm missing the {names} permission here. "
        "Ask a server admin to grant them, or use /imagine in another channel. Nothing was charged.",
        "I can't post images in this channel: I'm missing the {names} permissions here. "
        "Ask a server admin to grant them, or use /imagine in another channel. Nothing was charged.",
        len(missing),
        names=names,
    )


class JobLauncher:
    """Starts, resumes and audits jobs; owns the registry of jobs with a runner in this process."""

    orphan_grace = ORPHAN_GRACE

    def __init__(
        self,
        client: discord.Client,
        *,
        catalog: Catalog,
        default_model: str,
        operator: policy.OperatorRules,
        jobs: JobStore,
        guild_settings: GuildSettingsStore,
        preferences: PreferencesStore,
        runner: JobRunner,
        pacer: ChannelPacer,
        spawn: Callable[..., asyncio.Task[Any]],
        owns: Callable[[JobRecord], bool],
        stopping: Callable[[], bool],
        max_queued_jobs: int | None = None,
        ledger: QuotaLedger | None = None,
    ) -> None:
        """`max_queued_jobs`: beyond this many jobs waiting to be sent, new requests are refused
        (None: no limit)."""
        self._client = client
        self._catalog = catalog
        self._default_model = default_model
        self._operator = operator
        self._jobs = jobs
        self._guild_settings = guild_settings
        self._preferences = preferences
        self._runner = runner
        self._pacer = pacer
        # `spawn(coro, name=...)`: the bot's background tasks, cancelled together at shutdown.
        self._spawn: Callable[..., asyncio.Task[Any]] = spawn
        self._owns = owns  # whether a job's server is on a shard this process runs
        self._stopping = stopping
        self._ledger = ledger  # remembers which members were told why their answers are private
        self.placeholder_timeout = PLACEHOLDER_TIMEOUT
        self._live_jobs: dict[int, asyncio.Task[Any]] = {}
        self.max_queued_jobs = max_queued_jobs
        # Launches admitted past the busy check whose runner has not taken them yet: counted as
        # waiting, so a burst arriving at once cannot slip past MAX_QUEUED_JOBS together.
        self._launching = 0
        self.token_lifetime: float = INTERACTION_TOKEN_LIFETIME
        self.token_margin = TOKEN_SAFETY_MARGIN

    # -- a member's new job ----------------------------------------------------------------

    async def launch(self, interaction: discord.Interaction, options: RequestOptions) -> bool:
        """Everything /imagine, the message menu and the result buttons share: validate, check,
        record, answer, run. True if a job was started; False if the member got a private
        refusal instead."""
        if self._stopping():
            await reply_privately(interaction, RESTARTING)
            return False
        waiting = self.waiting_count
        if self.max_queued_jobs is not None and waiting >= self.max_queued_jobs:
            log.info("refused a request: %d job(s) are waiting to be sent", waiting)
            await reply_privately(interaction, very_busy(waiting))
            return False
        self._launching += 1
        started = False
        try:
            started = await self._launch(interaction, options)
        finally:
            if not started:
                self._launching -= 1
        return started

    @property
    def waiting_count(self) -> int:
        """Jobs of this process not sent to the image service yet (waiting in line, preparing, launching)."""
        return self._runner.unsent_count + self._launching

    def waiting_in(self, guild_id: int) -> int:
        """How many of one server's jobs are waiting in line to be sent."""
        return self._runner.submit_queue.waiting_in(guild_id)

    async def _launch(self, interaction: discord.Interaction, options: RequestOptions) -> bool:
        who = requester(interaction)
        try:
            settings = await self._settings_for(who)
            completed, note = await self._with_preferences(who, options, settings)
            request = build_request(
                self._catalog,
                completed.options,
                default_model=self._default_model,
                requester_id=interaction.user.id,
            )
            plan = policy.admit(settings, self._operator, who, request, time.time())
            request = dataclasses.replace(
                request, watermark=policy.watermark(settings, self._operator), spoiler=completed.spoiler
            )
        except (RequestError, policy.RefusedError) as exc:
            await reply_privately(interaction, exc.text)
            return False

        missing = missing_permissions(interaction)
        if missing:
            await reply_privately(interaction, missing_permissions_text(missing))
            return False

        job = await self._record(interaction, request, plan)
        if job is None:
            return False
        started = datetime.fromtimestamp(job.created_at, tz=UTC)
        forced_private = False
        try:
            # Bounded: discord.py retries a 5xx for half a minute, long after Discord's 3 s window.
            async with asyncio.timeout(self.placeholder_timeout):
                response = await interaction.response.send_message(
                    embed=render.progress_embed(request, first_progress(request), started, job.locale),
                    allowed_mentions=render.NO_PINGS,
                )
            if response.message_id is not None:  # always set for a message Discord posted
                job = await self._jobs.set_message_id(job, response.message_id)
            # Discord answers privately, whatever was asked, where a server forbids its members' own
            # apps to answer in public: the job carries on there (only the token reaches it).
            forced_private = response.is_ephemeral()
        except (Exception, asyncio.CancelledError) as exc:
            # Nothing was sent to the image service: the job ends now and its quota comes back.
            await self._placeholder_failed(interaction, job, request, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False
        log.info("%s: accepted (channel %s)", job.log_name, interaction.channel_id)
        launched = self.start(job, request, launched=True)
        if forced_private:
            log.info(
                "%s: Discord made the answer private (external apps answer privately here)", job.log_name
            )
            if await self._first_private_answer(who):
                await self._tell_privately(interaction, job, FORCED_PRIVATE)
        if note is not None:
            await self._tell_privately(interaction, job, note)
        return launched

    async def _with_preferences(
        self, who: policy.Requester, options: RequestOptions, settings: GuildSettings | None
    ) -> tuple[Filled, Readable | None]:
        """`options` completed from the member's /imagine-settings, and the private note to send
        with the placeholder (defaults that were skipped), if any."""
        try:
            prefs = await self._preferences.get(who.user_id)
            unreadable = None
        except Exception as exc:
            # A member's defaults are a convenience: their request still runs, on the bot's defaults.
            log.warning("user %s: preferences could not be read: %s", who.user_id, type(exc).__name__)
            prefs, unreadable = NO_PREFERENCES, PREFERENCES_UNREADABLE
        completed = fill(options, prefs, self._catalog, default_model=self._default_model, settings=settings)
        return completed, unreadable or completed.note

    async def _first_private_answer(self, who: policy.Requester) -> bool:
        """Whether this member has not yet been told (today, in this server) why answers are private."""
        if self._ledger is None:
            return True
        try:
            return await self._ledger.claim(
                f"note:private:{who.guild_id}:{who.user_id}", FORCED_PRIVATE_NOTE_SECONDS
            )
        except Exception as exc:
            log.warning(
                "user %s: could not check the private-answer note: %s", who.user_id, type(exc).__name__
            )
            return True  # telling twice beats never telling

    async def _tell_privately(self, interaction: discord.Interaction, job: JobRecord, text: Readable) -> None:
        """A private follow-up to the public placeholder; the job runs whether or not it arrives."""
        try:
            async with asyncio.timeout(self.placeholder_timeout):
                await interaction.followup.send(
                    i18n.render(text, member_locale(interaction)),
                    ephemeral=True,
                    allowed_mentions=render.NO_PINGS,
                )
        except (discord.HTTPException, TimeoutError) as exc:
            log.info("%s: the private note could not be sent: %s", job.log_name, type(exc).__name__)

    async def _settings_for(self, who: policy.Requester) -> GuildSettings | None:
        """The server's settings (None in direct messages, and in a server that never installed the
        bot: nothing is read for it), the blocklists ready for its language."""
        operator_blocklist = self._operator.blocklist
        if operator_blocklist:
            # Compiled once per language, off the event loop like a server's list.
            await asyncio.to_thread(lambda: operator_blocklist.prepare(who.locale))
        if who.guild_id is None or not who.server_installed:
            return None
        settings = await self._guild_settings.get(who.guild_id)
        if settings.blocklist:
            # Compiling a changed list takes up to a few hundred ms: not on the event loop.
            await asyncio.to_thread(lambda: settings.compiled_blocklist.prepare(who.locale))
        return settings

    async def _record(
        self, interaction: discord.Interaction, request: ImagineRequest, plan: QuotaPlan
    ) -> JobRecord | None:
        """The job's record, its images reserved in quota in the same transaction; None (and the
        member told privately) if a limit is reached.

        The record exists before the placeholder does, so no answered request can be forgotten.
        """
        try:
            origin = JobOrigin(
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id or 0,
                user_id=interaction.user.id,
                application_id=interaction.application_id,
                interaction_id=interaction.id,
                interaction_token=interaction.token,
                token_expires_at=interaction.created_at.timestamp() + self.token_lifetime,
                upload_limit=interaction.filesize_limit,
                locale=member_locale(interaction),
                guild_locale=interaction.guild_locale.value if interaction.guild_locale else None,
                conversation=conversation(interaction),
            )
            return await self._jobs.create(new_job(request, origin), quota=plan)
        except QuotaExceededError as exc:
            await reply_privately(interaction, policy.quota_refusal(exc))
            return None

    async def _placeholder_failed(
        self, interaction: discord.Interaction, job: JobRecord, request: ImagineRequest, exc: BaseException
    ) -> None:
        """End a job whose placeholder could not be posted or recorded, and tell the member privately."""
        # Only the error's kind and status: its text may carry the interaction's URL (and token).
        log.warning(
            "%s: the placeholder could not be posted or recorded (channel %s): %s %s",
            job.log_name,
            interaction.channel_id,
            type(exc).__name__,
            getattr(exc, "status", ""),
        )
        try:
            await self._jobs.finish(
                job.id, JobState.FAILED, delivered_images=0, error=str(PLACEHOLDER_FAILED)
            )
        except Exception:
            log.exception("%s: could not be ended after its placeholder failed", job.log_name)
        try:
            async with asyncio.timeout(self.placeholder_timeout):
                if interaction.response.is_done():
                    # The placeholder is up but the job behind it ended: it must not say "Queued".
                    elapsed = time.time() - job.created_at
                    await interaction.edit_original_response(
                        embed=render.failure_embed(request, PLACEHOLDER_FAILED, elapsed, job.locale),
                        allowed_mentions=render.NO_PINGS,
                    )
                    await interaction.followup.send(
                        i18n.render(PLACEHOLDER_FAILED, job.locale),
                        ephemeral=True,
                        allowed_mentions=render.NO_PINGS,
                    )
                else:
                    await reply_privately(interaction, PLACEHOLDER_FAILED)
        except (Exception, asyncio.CancelledError) as notice_error:
            log.warning(
                "%s: the member could not be told that it failed: %s",
                job.log_name,
                type(notice_error).__name__,
            )
            if isinstance(notice_error, asyncio.CancelledError):
                raise

    # -- running and resuming ----------------------------------------------------------------

    def start(
        self, job: JobRecord, request: ImagineRequest, *, resumed: bool = False, launched: bool = False
    ) -> bool:
        """Run a stored job in the background, delivering into its Discord message.

        False (and nothing started) if the job already has a runner in this process. `launched`:
        the job is counted in `_launching` until its runner takes it.
        """
        if job.id in self._live_jobs:
            log.warning("%s: already running in this process; not starting it twice", job.log_name)
            return False
        messenger = JobMessenger(
            self._client, job, request, self._jobs, self._pacer, token_margin=self.token_margin
        )
        task = self._spawn(self._run(job, request, messenger, resumed, launched), name=f"job-{job.id}")
        self._live_jobs[job.id] = task
        task.add_done_callback(lambda done: self._forget(job.id, done))
        return True

    @property
    def running_job_ids(self) -> frozenset[int]:
        """The jobs that have a runner in this process right now."""
        return frozenset(self._live_jobs)

    @property
    def running_count(self) -> int:
        """How many jobs have a runner in this process right now."""
        return len(self._live_jobs)

    def _forget(self, job_id: int, task: asyncio.Task[Any]) -> None:
        if self._live_jobs.get(job_id) is task:
            del self._live_jobs[job_id]

    async def resume_all(self) -> int:
        """Pick up every job of this process's shards a previous run left unfinished; returns how many."""
        unfinished = [job for job in await self._jobs.unfinished() if self._owns(job)]
        for job in unfinished:
            log.info("%s: resuming from state %s", job.log_name, job.state)
            self.start(job, request_for_job(job, self._catalog), resumed=True)
        return len(unfinished)

    async def sweep(self) -> int:
        """Resume the jobs of this process's shards that no runner here owns; returns how many.

        A runner that gave up on a write (the database was down longer than its retries) leaves
        its job unfinished, its quota held and its message on the progress bar: this puts it
        right, from its stored state, like a restart would. Also forgets interaction tokens
        past their 15 minutes.
        """
        now = time.time()
        await self._jobs.clear_expired_tokens(now)
        # Jobs live before the read are skipped even if they end meanwhile: the read may predate
        # their final write, and resuming a finished job would deliver it twice.
        live_before = set(self._live_jobs)
        candidates = await self._jobs.unfinished(updated_before=now - self.orphan_grace)
        stranded = [
            job
            for job in candidates
            if self._owns(job) and job.id not in live_before and job.id not in self._live_jobs
        ]
        for job in stranded:
            if self._stopping():
                break
            log.warning("%s: no runner has it (state %s); resuming it", job.log_name, job.state)
            self.start(job, request_for_job(job, self._catalog), resumed=True)
        return len(stranded)

    async def _run(
        self, job: JobRecord, request: ImagineRequest, messenger: JobMessenger, resumed: bool, launched: bool
    ) -> None:
        if launched:
            # No await between this and the runner counting the job as unsent: never counted twice
            # or not at all.
            self._launching -= 1
        # Where only the token reaches the job, the member is told before it dies (see the messenger).
        watch = (
            self._spawn(self._before_token_dies(job, messenger), name=f"job-{job.id}-token")
            if job.token_only
            else None
        )
        try:
            final = await self._runner.run(job, request, messenger, resumed=resumed)
        finally:
            if watch is not None:
                watch.cancel()
        await self.audit(final, request, messenger.failure)

    async def _before_token_dies(self, job: JobRecord, messenger: JobMessenger) -> None:
        """At the token's safety margin, tell the member (through it) that the result will come by DM."""
        if job.token_expires_at is None or not job.interaction_token:
            return
        await asyncio.sleep(max(0.0, job.token_expires_at - self.token_margin - time.time()))
        await messenger.token_expiring()

    # -- the audit channel -------------------------------------------------------------------

    async def audit(self, job: JobRecord, request: ImagineRequest, failure: Readable | None = None) -> None:
        """One compact line per finished job in the server's audit channel, if it has one, in the
        server's language (recorded with the job). `failure`: why it failed, as the member was told."""
        # A server that never installed the bot has no audit channel (and no settings to read).
        if (
            job.guild_id is None
            or not job.bot_in_channel
            or job.state not in (JobState.DONE, JobState.FAILED)
        ):
            return
        settings = await self._guild_settings.get(job.guild_id)
        if settings.audit_channel_id is None:
            return
        channel = self._client.get_partial_messageable(settings.audit_channel_id, guild_id=job.guild_id)
        try:
            line = render.audit_line(job, request, failure, job.guild_locale)
            await self._pacer.final(
                settings.audit_channel_id, lambda: channel.send(line, allowed_mentions=render.NO_PINGS)
            )
        except discord.HTTPException as exc:
            log.warning("%s: the audit line could not be posted: %s", job.log_name, exc.status)
