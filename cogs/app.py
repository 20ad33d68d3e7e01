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
from collections.abc import Coroutine
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot import toapis
from bot.balance import BalanceWatch
from bot.catalog import Catalog
from bot.config import Settings
from bot.guild_settings import GuildSettingsStore
from bot.jobs.pacing import ChannelPacer
from bot.jobs.queue import SubmitQueue
from bot.jobs.records import JobRecord, JobStore
from bot.jobs.runner import INTERNAL_ERROR, JobRunner, JobTimings
from bot.metrics import LoopLagMonitor
from bot.policy import OperatorRules, guild_allowed
from bot.quota import QuotaLedger
from bot.registration import CommandRegistry, fingerprint
from bot.store import Store
from bot.toapis import ToAPIsClient, ToAPIsError
from bot.toapis.budget import RateBudget
from cogs import render
from cogs.components import ActionHandler
from cogs.launcher import JobLauncher
from cogs.replies import reply_privately

log = logging.getLogger(__name__)

# Loaded after the launcher exists: the imagine and actions cogs start jobs through it.
EXTENSIONS = ("cogs.imagine", "cogs.actions", "cogs.admin")

# On SIGTERM, how long submissions already on the wire may take to answer (their task ids must
# be stored) and jobs not yet sent to say they wait for the restart. Procfile hosts kill 10 s
# after SIGTERM; closing the connections and the database takes the rest.
SUBMISSION_GRACE = 7.5

# Housekeeping: how often stranded jobs are looked for (and dead interaction tokens forgotten),
# and how often expired quota counters are deleted.
SWEEP_INTERVAL = 60.0
PRUNE_INTERVAL = 3600.0

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
    return discord.utils.oauth_url(application_id, permissions=REQUIRED_PERMISSIONS, scopes=SCOPES)


class ImagineTree(app_commands.CommandTree):
    """One error handler for every command: a polite ephemeral reply, details only in the log."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        command = interaction.command.name if interaction.command else "?"
        if isinstance(error, app_commands.CheckFailure) and str(error):
            # A refusal meant for the member (e.g. /imagine-admin without the permission): say why.
            await reply_privately(interaction, str(error))
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

    def __init__(self, settings: Settings, catalog: Catalog, **options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        if settings.shard_count is not None:
            options.setdefault("shard_count", settings.shard_count)
        if settings.shard_ids is not None:
            options.setdefault("shard_ids", list(settings.shard_ids))
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
        )
        self._jobs: JobStore | None = None
        self._guild_settings: GuildSettingsStore | None = None
        self._ledger: QuotaLedger | None = None
        self._runner: JobRunner | None = None
        self._launcher: JobLauncher | None = None
        self.result_actions: ActionHandler | None = None  # what result buttons call (the Actions cog)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.pacer = ChannelPacer()  # every write to a job's message, and audit lines, go through it
        self.stopping = False
        self._shutdown: asyncio.Task[None] | None = None  # not in _tasks: close() cancels those
        self._monitor: asyncio.Task[None] | None = None
        self.balance_watch: BalanceWatch | None = None  # only when LOW_BALANCE_USD is set
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
    def ledger(self) -> QuotaLedger:
        if self._ledger is None:
            raise RuntimeError("the quota ledger exists only after setup_hook")
        return self._ledger

    async def setup_hook(self) -> None:
        self.store = Store.open(self.settings.sqlalchemy_url)
        await self.store.migrate()
        self._jobs = JobStore(self.store)
        self._guild_settings = GuildSettingsStore(self.store)
        self._ledger = QuotaLedger(self.store)
        # The account's limits are shared by every process: each spends its share of the shards.
        self.budget = RateBudget(self.settings.rate_limits.with_margin().share(self.settings.shard_share))
        self.toapis = ToAPIsClient(
            self.settings.toapis_base_url,
            self.settings.toapis_api_key,
            request_timeout=self.settings.toapis_timeout_seconds,
            rate_budget=self.budget,
            # Members' references are Discord attachments: served by Discord's API host when it is a proxy.
            trusted_file_hosts=[url for url in (self.settings.discord_api_base_url,) if url],
        )
        # One process watches the balance (the account is shared), so a crossing is posted once.
        if self.settings.low_balance_usd is not None and self.registers_commands:
            self.balance_watch = BalanceWatch(
                self.toapis.balance, self._tell_operator, low_usd=self.settings.low_balance_usd
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
            runner=self._runner,
            pacer=self.pacer,
            spawn=self.spawn,
            owns=self.owns,
            stopping=lambda: self.stopping,
            max_queued_jobs=self.settings.max_queued_jobs,
        )
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        if self.registers_commands:
            await self.register_commands()
        await self._launcher.resume_all()
        pruned = await self.ledger.prune()  # yesterday's and older quota counters
        log.info("pruned %d expired quota counter(s)", pruned)
        self.spawn(self._housekeeping(), name="housekeeping")
        if self.balance_watch is not None:
            self.spawn(self.balance_watch.run(self.settings.balance_check_minutes * 60), name="balance-watch")
        if self.settings.metrics_log_seconds > 0:
            monitor = LoopLagMonitor(
                self.settings.metrics_log_seconds,
                jobs_running=lambda: self.launcher.running_count,
                queue=self.runner.submit_queue,
                budget=self.budget,
            )
            self._monitor = asyncio.create_task(monitor.run(), name="metrics")

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
        """Sweep for stranded jobs every `sweep_interval`, prune quota counters every `prune_interval`."""
        loop = asyncio.get_running_loop()
        pruned_at = loop.time()  # start-up has just pruned
        while not self.stopping:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.launcher.sweep()
                if loop.time() - pruned_at >= self.prune_interval:
                    pruned_at = loop.time()
                    log.info("pruned %d expired quota counter(s)", await self.ledger.prune())
            except Exception:
                # The database may be down right now; the next round tries again.
                log.exception("housekeeping failed; trying again in %.0fs", self.sweep_interval)

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
        definitions = [command.to_dict(self.tree) for command in self.tree.get_commands(guild=guild)]
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
    return ImagineBot(settings, catalog, **options)


async def run_bot(settings: Settings, catalog: Catalog) -> int:
    """Run until stopped (SIGTERM/SIGINT stop gracefully); returns the process exit code."""
    bot = build_bot(settings, catalog)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, bot.request_shutdown)
    try:
        async with bot:
            await bot.start(settings.discord_token)
    except discord.LoginFailure:
        print("error: DISCORD_TOKEN was rejected by Discord (see .env.example)")
        return 2
    except discord.PrivilegedIntentsRequired:
        print("error: the bot asked for an intent that is not enabled in the Discord developer portal")
        return 2
    return 0


async def run_check(settings: Settings, catalog: Catalog) -> int:
    """`python -m bot --check`: prove both credentials work and print the invite URL."""
    print(f"Settings: OK ({len(catalog)} models, default {settings.default_model})")
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

    use_discord_api(settings.discord_api_base_url)
    discord_client = discord.Client(intents=discord.Intents.none())
    try:
        await discord_client.login(settings.discord_token)
        app = await discord_client.application_info()
        user = discord_client.user
    except discord.LoginFailure:
        print("error: DISCORD_TOKEN was rejected by Discord (see .env.example)")
        return 1
    except (discord.HTTPException, OSError) as exc:
        print(f"error: could not reach Discord: {exc}")
        return 1
    finally:
        await discord_client.close()
    print(f"Discord: logged in as {user} (application {app.id})")
    print(f"Invite the bot with: {invite_url(app.id)}")
    return 0
