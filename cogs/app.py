"""The Discord application: the bot class, its start-up, and `--check`.

`build_bot()` is the one construction used by `python -m bot` and by the
end-to-end tests. `setup_hook` opens the shared resources (database, the one
ToAPIs HTTP session, the job runner, the job launcher), loads the cogs, registers
slash commands only when their definitions changed and has the launcher resume
unfinished jobs. Starting, resuming and auditing jobs is `cogs.launcher`'s.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot import toapis
from bot.balance import BalanceWatch
from bot.catalog import Catalog
from bot.config import Settings, load_operator_blocklist
from bot.guild_settings import GuildSettingsStore
from bot.http_server import HealthChecks, HttpServer, HttpServerError
from bot.i18n import TextError
from bot.jobs.news import TaskNews
from bot.jobs.pacing import ChannelPacer
from bot.jobs.queue import SubmitQueue
from bot.jobs.records import JobRecord, JobStore
from bot.jobs.runner import INTERNAL_ERROR, JobRunner, JobTimings
from bot.metrics import LoopLagMonitor
from bot.policy import OperatorRules, guild_allowed
from bot.preferences import PreferencesStore
from bot.quota import QuotaLedger
from bot.registration import CommandRegistry, fingerprint
from bot.retention import JobRetention
from bot.startup import (
    EXIT_MISCONFIGURED,
    EXIT_UNREACHABLE,
    ServiceUnreachableError,
    StartupError,
    check_database,
    check_toapis,
    connection_problem,
    hide_password,
    keep_trying,
)
from bot.store import Store
from bot.telemetry import Telemetry, count_jobs_by_state
from bot.toapis import ToAPIsClient, ToAPIsError
from bot.toapis.budget import RateBudget
from bot.webhooks.inbox import WebhookInbox
from bot.webhooks.setup import check_http_port, check_webhook_setup
from cogs import render
from cogs.components import ActionHandler
from cogs.launcher import JobLauncher
from cogs.replies import reply_privately
from cogs.translator import CatalogTranslator

log = logging.getLogger(__name__)

# Loaded after the launcher exists: the imagine and actions cogs start jobs through it.
EXTENSIONS = ("cogs.imagine", "cogs.actions", "cogs.admin", "cogs.privacy", "cogs.preferences")

# On SIGTERM, how long submissions already on the wire may take to answer (their task ids must
# be stored) and jobs not yet sent to say they wait for the restart. Procfile hosts kill 10 s
# after SIGTERM; closing the connections and the database takes the rest.
SUBMISSION_GRACE = 7.5

# Housekeeping: how often stranded jobs are looked for (and dead interaction tokens forgotten),
# and how often expired quota counters are deleted.
SWEEP_INTERVAL = 60.0
PRUNE_INTERVAL = 3600.0
# How often jobs past JOB_RETENTION_DAYS are looked for (also once at start-up).
RETENTION_INTERVAL = 3600.0

# What the bot needs in a channel: see messages, post and edit results with files and embeds,
# and reply to its own result message with images past the tenth.
REQUIRED_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
)
SCOPES = ("bot", "applications.commands")
USER_INSTALL_SCOPES = ("applications.commands",)

TOKEN_REJECTED = (
    "DISCORD_TOKEN was rejected by Discord: copy the bot's token again from the developer portal "
    "(https://discord.com/developers/applications → your application → Bot → Reset Token)"
)
DISCORD_ADVICE = "check the network, DNS and any firewall or proxy (and DISCORD_API_BASE_URL if set)"


def silence_voice_warnings() -> None:
    """The bot never joins voice channels, so discord.py's start-up warnings that the voice
    libraries (PyNaCl, davey) are missing say nothing an operator should act on. discord.py's
    own switches turn off exactly those two; every other warning stays."""
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False


def use_discord_api(base_url: str | None, gateway_url: str | None = None) -> None:
    """Point discord.py at another Discord API base and gateway (tests and proxies); None keeps Discord's."""
    if base_url:
        discord.http.Route.BASE = base_url
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def shard_of(guild_id: int | None, shard_count: int) -> int:
    """Discord's rule for which shard receives a server's events (direct messages: shard 0)."""
    return (guild_id >> 22) % shard_count if guild_id is not None else 0


def invite_url(application_id: int) -> str:
    """The server install link: the bot joins the server with the permissions it needs there."""
    url = discord.utils.oauth_url(application_id, permissions=REQUIRED_PERMISSIONS, scopes=SCOPES)
    return f"{url}&integration_type=0"


def user_install_url(application_id: int) -> str:
    """The user install link: a member adds the commands to their own account, to use anywhere
    (the bot joins nothing, so it asks for no permissions)."""
    url = discord.utils.oauth_url(application_id, scopes=USER_INSTALL_SCOPES)
    return f"{url}&integration_type=1"


class ImagineTree(app_commands.CommandTree):
    """One error handler for every command: a polite ephemeral reply, details only in the log."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        command = interaction.command.name if interaction.command else "?"
        if isinstance(error, app_commands.CheckFailure) and str(error):
            # A refusal meant for the member (e.g. /imagine-admin without the permission): say why,
            # in the member's own language when the refusal is a text to translate.
            await reply_privately(interaction, error.text if isinstance(error, TextError) else str(error))
            return
        log.error(
            "command %s failed (guild %s, user %s)",
            command,
            interaction.guild_id,
            interaction.user.id,
            exc_info=error,
        )
        await reply_privately(interaction, INTERNAL_ERROR)


class ImagineBot(commands.AutoShardedBot):
    """The bot: settings, catalog and the shared resources every cog uses."""

    sweep_interval = SWEEP_INTERVAL
    prune_interval = PRUNE_INTERVAL
    retention_interval = RETENTION_INTERVAL

    def __init__(self, settings: Settings, catalog: Catalog, **options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        if settings.shard_count is not None:
            options.setdefault("shard_count", settings.shard_count)
        if settings.shard_ids is not None:
            options.setdefault("shard_ids", list(settings.shard_ids))
        # Built first: discord.py's HTTP session counts Discord's 429s into it.
        self.telemetry = Telemetry(jobs_by_state=self._count_jobs, live_figures=self._live_figures)
        options.setdefault("http_trace", self.telemetry.discord_trace())
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            tree_cls=ImagineTree,
            allowed_mentions=render.NO_PINGS,
            **options,
        )
        self.settings = settings
        self.catalog = catalog
        self.store: Store | None = None
        self.toapis: ToAPIsClient | None = None
        self.operator = OperatorRules(
            global_daily_cap=settings.global_daily_image_cap,
            owner_ids=settings.owner_ids,
            allowed_guild_ids=settings.allowed_guild_ids,
            allow_dms=settings.allow_dms,
            watermark=settings.watermark,
            blocklist=load_operator_blocklist(settings.operator_blocklist_file),
        )
        self._jobs: JobStore | None = None
        self._guild_settings: GuildSettingsStore | None = None
        self._preferences: PreferencesStore | None = None
        self._ledger: QuotaLedger | None = None
        self._retention: JobRetention | None = None
        self._runner: JobRunner | None = None
        self._launcher: JobLauncher | None = None
        self.result_actions: ActionHandler | None = None  # what result buttons call (the Actions cog)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.pacer = ChannelPacer()  # every write to a job's message, and audit lines, go through it
        self.stopping = False
        self._shutdown: asyncio.Task[None] | None = None  # not in _tasks: close() cancels those
        self._monitor: asyncio.Task[None] | None = None
        self.balance_watch: BalanceWatch | None = None  # only when LOW_BALANCE_USD is set
        # Task statuses learned from webhook events, for the jobs waiting on them (one per process).
        self.news = TaskNews()
        self.http_server: HttpServer | None = None  # only when HTTP_PORT is set
        self.budget: RateBudget | None = None  # this process's share of the provider's rate limits

    @property
    def runner(self) -> JobRunner:
        if self._runner is None:
            raise RuntimeError("the job runner exists only after setup_hook")
        return self._runner

    @property
    def launcher(self) -> JobLauncher:
        """Where every job starts, resumes and is audited (see `cogs.launcher`)."""
        if self._launcher is None:
            raise RuntimeError("the job launcher exists only after setup_hook")
        return self._launcher

    @property
    def jobs(self) -> JobStore:
        if self._jobs is None:
            raise RuntimeError("the job store exists only after setup_hook")
        return self._jobs

    @property
    def guild_settings(self) -> GuildSettingsStore:
        if self._guild_settings is None:
            raise RuntimeError("the settings store exists only after setup_hook")
        return self._guild_settings

    @property
    def retention(self) -> JobRetention:
        """Forgets finished jobs' details: past JOB_RETENTION_DAYS, or a member's on request."""
        if self._retention is None:
            raise RuntimeError("job retention exists only after setup_hook")
        return self._retention

    @property
    def preferences(self) -> PreferencesStore:
        """Members' own /imagine defaults (`/imagine-settings`)."""
        if self._preferences is None:
            raise RuntimeError("the preferences store exists only after setup_hook")
        return self._preferences

    @property
    def ledger(self) -> QuotaLedger:
        if self._ledger is None:
            raise RuntimeError("the quota ledger exists only after setup_hook")
        return self._ledger

    async def setup_hook(self) -> None:
        self.store = Store.open(self.settings.sqlalchemy_url)
        await self.store.migrate()
        self._jobs = JobStore(self.store)
        self._guild_settings = GuildSettingsStore(self.store)
        self._preferences = PreferencesStore(self.store)
        self._ledger = QuotaLedger(self.store)
        self._retention = JobRetention(self.store, retention_days=self.settings.job_retention_days)
        # The account's limits are shared by every process: each spends its share of the shards.
        self.budget = RateBudget(self.settings.rate_limits.with_margin().share(self.settings.shard_share))
        self.toapis = ToAPIsClient(
            self.settings.toapis_base_url,
            self.settings.toapis_api_key,
            request_timeout=self.settings.toapis_timeout_seconds,
            rate_budget=self.budget,
            # Members' references are Discord attachments: served by Discord's API host when it is a proxy.
            trusted_file_hosts=[url for url in (self.settings.discord_api_base_url,) if url],
            callback_url=self.settings.toapis_callback_url,
            on_rate_limited=self.telemetry.record_provider_rate_limited,
        )
        # One process watches the balance (the account is shared), so a crossing is posted once.
        if self.settings.low_balance_usd is not None and self.registers_commands:
            self.balance_watch = BalanceWatch(
                self.toapis.balance,
                self._tell_operator,
                low_usd=self.settings.low_balance_usd,
                language=self._operator_channel_language,
            )
        self._runner = JobRunner(
            self.toapis,
            self._jobs,
            JobTimings(
                timeout=self.settings.job_timeout_seconds,
                poll_queued=self.settings.poll_interval_queued,
                poll_running=self.settings.poll_interval_running,
                progress_interval=self.settings.progress_edit_interval,
            ),
            on_balance_refused=self.balance_watch.refused if self.balance_watch is not None else None,
            news=self.news if self.settings.webhooks_enabled else None,
            webhooks=self.settings.webhooks_enabled,
            telemetry=self.telemetry,
            budget=self.budget,
            submit_queue=SubmitQueue(self.budget.submit, timeout=self.settings.queue_timeout_seconds),
        )
        self._launcher = JobLauncher(
            self,
            catalog=self.catalog,
            default_model=self.settings.default_model,
            operator=self.operator,
            jobs=self._jobs,
            guild_settings=self._guild_settings,
            preferences=self._preferences,
            runner=self._runner,
            pacer=self.pacer,
            spawn=self.spawn,
            owns=self.owns,
            stopping=lambda: self.stopping,
            max_queued_jobs=self.settings.max_queued_jobs,
            ledger=self._ledger,
        )
        await self.tree.set_translator(CatalogTranslator())
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        if self.settings.http_port is not None:
            await self._start_http_server()  # before resuming: events for resumed jobs are caught
        if self.registers_commands:
            await self.register_commands()
        await self._launcher.resume_all()
        pruned = await self.ledger.prune()  # yesterday's and older quota counters
        log.info("pruned %d expired quota counter(s)", pruned)
        await self._retention.forget_expired()
        self.spawn(self._housekeeping(), name="housekeeping")
        if self.balance_watch is not None:
            self.spawn(self.balance_watch.run(self.settings.balance_check_minutes * 60), name="balance-watch")
        if self.settings.metrics_log_seconds > 0 or self.http_server is not None:
            monitor = LoopLagMonitor(
                self.settings.metrics_log_seconds,
                jobs_running=lambda: self.launcher.running_count,
                observe=self.telemetry.observe_loop_lag,
                queue=self.runner.submit_queue,
                budget=self.budget,
            )
            self._monitor = asyncio.create_task(monitor.run(), name="metrics")

    async def _start_http_server(self) -> None:
        """Health, metrics and, with TOAPIS_CALLBACK_URL, the webhook route and its relay."""
        assert self.store is not None and self.settings.http_port is not None
        inbox: WebhookInbox | None = None
        path: str | None = None
        if self.settings.toapis_callback_url is not None:
            inbox = WebhookInbox(
                self.store, self.news, self.settings.toapis_webhook_secrets, telemetry=self.telemetry
            )
            path = urlsplit(self.settings.toapis_callback_url).path or "/"
        self.http_server = HttpServer(
            self.settings.http_host,
            self.settings.http_port,
            health=HealthChecks(gateway_connected=self.gateway_connected, database_answers=self.store.ping),
            telemetry=self.telemetry,
            inbox=inbox,
            webhook_path=path,
        )
        await self.http_server.start()
        if inbox is not None:
            self.spawn(inbox.relay(), name="webhook-relay")

    def gateway_connected(self) -> bool:
        """Whether every shard of this process is connected to Discord's gateway (for /healthz)."""
        if self.is_closed() or not self.is_ready():
            return False
        return all(not shard.is_closed() for shard in self.shards.values())

    def _live_figures(self, telemetry: Telemetry) -> None:
        """The submission queue's length and how much of each rate-limit bucket is in use."""
        if self._runner is not None:
            telemetry.set_queue_length(len(self._runner.submit_queue))
        if self.budget is not None:
            telemetry.set_budget_in_use("submit", self.budget.submit.in_use())
            telemetry.set_budget_in_use("query", self.budget.query.in_use())

    async def _count_jobs(self) -> dict[str, int]:
        if self.store is None:
            return {}
        return await count_jobs_by_state(self.store)

    @property
    def registers_commands(self) -> bool:
        """One process registers slash commands: the one running shard 0 (or the only one)."""
        return self.settings.shard_ids is None or 0 in self.settings.shard_ids

    def owns(self, job: JobRecord) -> bool:
        """Whether this process runs the shard that job's server belongs to (so it resumes it)."""
        if self.settings.shard_count is None or self.settings.shard_ids is None:
            return True
        return shard_of(job.guild_id, self.settings.shard_count) in self.settings.shard_ids

    async def _housekeeping(self) -> None:
        """Sweep for stranded jobs every `sweep_interval`, prune quota counters every `prune_interval`,
        and forget jobs past JOB_RETENTION_DAYS every `retention_interval`."""
        loop = asyncio.get_running_loop()
        pruned_at = forgotten_at = loop.time()  # start-up has just pruned and forgotten
        while not self.stopping:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.launcher.sweep()
                if loop.time() - pruned_at >= self.prune_interval:
                    pruned_at = loop.time()
                    log.info("pruned %d expired quota counter(s)", await self.ledger.prune())
                if loop.time() - forgotten_at >= self.retention_interval:
                    forgotten_at = loop.time()
                    await self.retention.forget_expired()
            except Exception:
                # The database may be down right now; the next round tries again.
                log.exception("housekeeping failed; trying again in %.0fs", self.sweep_interval)

    def _operator_channel_language(self) -> str | None:
        """The language of the server `OPERATOR_CHANNEL_ID` is in; None (English) when unknown."""
        if self.settings.operator_channel_id is None:
            return None
        channel = self.get_channel(self.settings.operator_channel_id)
        guild = getattr(channel, "guild", None)
        return guild.preferred_locale.value if guild is not None else None

    async def _tell_operator(self, line: str) -> None:
        """Post one line to `OPERATOR_CHANNEL_ID` with the bot token (no pings); nothing if unset."""
        channel_id = self.settings.operator_channel_id
        if channel_id is None:
            return
        channel = self.get_partial_messageable(channel_id)
        await self.pacer.final(channel_id, lambda: channel.send(line, allowed_mentions=render.NO_PINGS))

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._leave_if_not_allowed(guild)

    async def on_ready(self) -> None:
        for guild in list(self.guilds):
            await self._leave_if_not_allowed(guild)

    async def _leave_if_not_allowed(self, guild: discord.Guild) -> None:
        if guild_allowed(self.operator, guild.id):
            return
        log.info("leaving server %s: it is not in ALLOWED_GUILD_IDS", guild.id)
        try:
            await guild.leave()
        except discord.HTTPException as exc:
            log.warning("could not leave server %s: %s", guild.id, exc.status)

    async def register_commands(self) -> bool:
        """Sync slash commands if their definitions changed since the last sync; True if synced."""
        assert self.store is not None and self.application_id is not None
        guild_id = self.settings.dev_guild_id
        guild = discord.Object(guild_id) if guild_id is not None else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        # The localisations are part of what is registered: a changed translation re-registers.
        translator = self.tree.translator
        definitions = [
            await command.get_translated_payload(self.tree, translator)
            if translator is not None
            else command.to_dict(self.tree)
            for command in self.tree.get_commands(guild=guild)
        ]
        digest = fingerprint(definitions)
        registry = CommandRegistry(self.store)
        if await registry.is_current(self.application_id, guild_id, digest):
            log.info("slash commands unchanged since the last registration; not registering")
            return False
        scope = f"server {guild_id}" if guild_id is not None else "all servers"
        log.info("registering %d slash command(s) for %s", len(definitions), scope)
        await self.tree.sync(guild=guild)
        await registry.remember(self.application_id, guild_id, digest)
        return True

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run work in the background, keeping a reference and logging a crash."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s crashed", task.get_name(), exc_info=task.exception())

    def request_shutdown(self) -> None:
        """Signal handler: start a graceful shutdown (once)."""
        if self._shutdown is None:
            self._shutdown = asyncio.create_task(self.shutdown(), name="shutdown")

    async def shutdown(self) -> None:
        """Graceful stop (SIGTERM/SIGINT): refuse new jobs, start no new submission, let those on
        the wire record their task ids, then close (the HTTP session only after them). Jobs not yet
        sent stay `accepted` and are sent on the next start; the others resume where they were."""
        if self.stopping:
            return
        self.stopping = True
        running = self._launcher.running_count if self._launcher is not None else 0
        log.info("stopping: new jobs are refused; %d job(s) will resume on the next start", running)
        if self._runner is not None:
            await self._runner.drain_submissions(within=SUBMISSION_GRACE)
        await self.close()

    async def close(self) -> None:
        self.stopping = True
        if self._monitor is not None:
            self._monitor.cancel()
        if self._runner is not None:
            self._runner.stop_submitting()  # a job woken by the cancellations below sends nothing
        if self.http_server is not None:
            await self.http_server.close()  # a webhook not answered now is delivered again later
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.toapis is not None:
            await self.toapis.close()
        if self._jobs is not None:
            await self._jobs.drain()
        if self.store is not None:
            await self.store.close()
        await super().close()


def build_bot(settings: Settings, catalog: Catalog, **options: Any) -> ImagineBot:
    """The bot exactly as `python -m bot` runs it; `options` go to discord.py (tests shorten timeouts)."""
    use_discord_api(settings.discord_api_base_url, settings.discord_gateway_url)
    silence_voice_warnings()
    return ImagineBot(settings, catalog, **options)


async def check_discord(settings: Settings, *, within: float | None = None) -> None:
    """Prove Discord answers and takes the token (`GET /users/@me`), retrying while it does not answer.

    A name that does not resolve, a refused connection, no answer in time or a 5xx is tried again
    for up to `STARTUP_RETRY_SECONDS` (`within` overrides it); a rejected token stops at once.
    With `DISCORD_GATEWAY_URL` set, the gateway's host must accept a connection too.
    """
    base = settings.discord_api_base_url or discord.http.Route.BASE
    headers = {
        "Authorization": f"Bot {settings.discord_token}",
        "User-Agent": f"DiscordBot (https://github.com/Rapptz/discord.py {discord.__version__})",
    }

    async def attempt(answer_within: float) -> None:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=answer_within)) as session,
                session.get(f"{base}/users/@me", headers=headers) as response,
            ):
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ServiceUnreachableError(connection_problem(exc, host=urlsplit(base).hostname)) from None
        if status == 401:
            raise StartupError(TOKEN_REJECTED)
        if status >= 500 or status == 429:
            raise ServiceUnreachableError(f"it answered HTTP {status}")
        if status >= 400:
            raise StartupError(
                f"Discord at {base} answered HTTP {status} to the bot's login: {DISCORD_ADVICE}"
            )
        if settings.discord_gateway_url:
            await _reach_gateway(settings.discord_gateway_url, answer_within)

    await keep_trying(
        attempt,
        within=settings.startup_retry_seconds if within is None else within,
        service=f"Discord at {base}",
        advice=DISCORD_ADVICE,
    )


async def _reach_gateway(url: str, answer_within: float) -> None:
    """Open (and close) a TCP connection to the gateway's host: DNS, refusals and silence show here."""
    parts = yarl.URL(url)
    host, port = parts.host or "", parts.port or (443 if parts.scheme == "wss" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), answer_within)
    except (OSError, TimeoutError) as exc:
        problem = connection_problem(exc, host=host)
        raise ServiceUnreachableError(f"its gateway {url} could not be reached: {problem}") from None
    writer.close()


async def run_bot(settings: Settings, catalog: Catalog) -> int:
    """Run until stopped (SIGTERM/SIGINT stop gracefully); returns the process exit code.

    First the database, ToAPIs and Discord are checked (see `bot.startup`): a problem there ends
    the process with one line on stderr and a non-zero exit, never a traceback.
    """
    try:
        await check_database(settings)
        await check_toapis(settings)
        await check_discord(settings)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    bot = build_bot(settings, catalog)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, bot.request_shutdown)
    try:
        async with bot:
            await bot.start(settings.discord_token)
    except discord.LoginFailure:
        print(f"error: {TOKEN_REJECTED}", file=sys.stderr)
        return EXIT_MISCONFIGURED
    except HttpServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MISCONFIGURED
    except discord.PrivilegedIntentsRequired:
        print(
            "error: the bot asked for an intent that is not enabled in the Discord developer portal",
            file=sys.stderr,
        )
        return EXIT_MISCONFIGURED
    except (aiohttp.ClientError, OSError) as exc:  # Discord went away between the check and the login
        problem = connection_problem(exc)
        print(f"error: could not reach Discord ({problem}): {DISCORD_ADVICE}", file=sys.stderr)
        return EXIT_UNREACHABLE
    return 0


async def run_check(settings: Settings, catalog: Catalog) -> int:
    """`python -m bot --check`: prove both credentials work and print both install links."""
    print(f"Settings: OK ({len(catalog)} models, default {settings.default_model})")
    if not await _check_http(settings):
        return 1
    base_url = settings.toapis_base_url
    async with ToAPIsClient(base_url, settings.toapis_api_key) as client:
        # The balance endpoint is free and needs a valid key: it proves the key and shows the money.
        try:
            balance = await client.balance()
        except toapis.AuthenticationError:
            print(f"error: ToAPIs at {base_url} did not accept TOAPIS_API_KEY: the key was rejected")
            return 1
        except (toapis.ToAPIsConnectionError, toapis.ToAPIsTimeoutError) as exc:
            print(
                f"error: could not reach ToAPIs at {base_url} (check TOAPIS_BASE_URL and the network): {exc}"
            )
            return 1
        except ToAPIsError as exc:
            print(f"error: ToAPIs at {base_url} could not show the balance of TOAPIS_API_KEY: {exc}")
            return 1
    print(f"ToAPIs: the API key works ({base_url}); balance: {balance.describe()}")

    # --check tries each service once: it is a quick look, not a start.
    try:
        await check_database(settings, within=0)
        print(f"Database: OK ({hide_password(settings.database_url)})")
        await check_discord(settings, within=0)
    except StartupError as exc:
        print(f"error: {exc}")
        return 1
    use_discord_api(settings.discord_api_base_url)
    silence_voice_warnings()
    discord_client = discord.Client(intents=discord.Intents.none())
    try:
        await discord_client.login(settings.discord_token)
        app = await discord_client.application_info()
        user = discord_client.user
    except discord.LoginFailure:
        print(f"error: {TOKEN_REJECTED}")
        return 1
    except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
        print(f"error: could not reach Discord ({connection_problem(exc)}): {DISCORD_ADVICE}")
        return 1
    finally:
        await discord_client.close()
    print(f"Discord: logged in as {user} (application {app.id})")
    print(f"Add the bot to a server: {invite_url(app.id)}")
    print(f"Add it to your own account (use it anywhere): {user_install_url(app.id)}")
    return 0


async def _check_http(settings: Settings) -> bool:
    """`--check` of the HTTP server and webhook settings; prints what to enter in the ToAPIs console."""
    if settings.http_port is None:
        return True
    if settings.toapis_callback_url is None:
        problem = await asyncio.to_thread(check_http_port, settings.http_host, settings.http_port)
        if problem is not None:
            print(f"error: {problem}")
            return False
        print(f"HTTP server: {settings.http_host}:{settings.http_port} (/healthz, /metrics); webhooks off")
        return True
    report = await check_webhook_setup(
        settings.toapis_callback_url,
        len(settings.toapis_webhook_secrets),
        settings.http_host,
        settings.http_port,
    )
    for problem in report.problems:
        print(f"error: {problem}")
    if report.problems:
        return False
    print(
        f"HTTP server: {settings.http_host}:{settings.http_port} (/healthz, /metrics, webhooks); "
        f"{len(settings.toapis_webhook_secrets)} signing secret(s), well formed"
    )
    for line in report.lines:
        print(line)
    return True
