"""`python -m bench`: run the real bot process against the fakes and print one table per scenario.

Each scenario starts fresh fakes (one asyncio loop in this process), a fresh SQLite file and a
fresh ``python -m bot`` with the production polling/progress settings, fires the jobs as
``INTERACTION_CREATE``s, waits (bounded) until every job is delivered, failed or given up on,
reads the bot's peak RSS from /proc, stops it with SIGTERM and reports. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import budget, webhooks
from bench.fakes import BenchDiscord, BenchToAPIs, EventPlan, JobPlan, TaskTimeline, flat_png, jpeg_pool
from bench.process import BotProcess, StopResult, cpu_seconds, proc_status, reset_peak_rss
from bench.report import (
    FAIL,
    PairRow,
    Row,
    Target,
    at_most,
    equals,
    overall,
    percentile,
    render_pairs,
    render_table,
    seconds,
)
from tests.process_launcher import ROOT

MB = 1024 * 1024
ONLINE_WITHIN = 60.0  # seconds for the bot process to reach READY
SEND_WITHIN = 30.0  # seconds for one INTERACTION_CREATE to be written to the gateway
SETTLE_AFTER_ONLINE = 1.0
SETTLE_BEFORE_BIG = 3.0  # let the idle bot settle before its RSS is read
AFTER_SETTLED = 2.5  # stragglers (late duplicate submissions) and one more metrics line
INCOMPLETE_GRACE = 60.0  # a ✅ message missing overflow images is given this long
# The provider's rate-limit answers carry this; a failed job whose message says it was refused for it.
BUSY_TEXT = "image service is busy"


@dataclass(frozen=True)
class Scenario:
    name: str
    jobs: int
    channels: int
    n_min: int
    n_max: int
    resolution: str | None
    image_side: int  # result images are JPEGs of side × side
    image_mb: tuple[float, ...]  # byte sizes of the pooled result images
    targets: frozenset[str]
    about: str
    reference_side: int = 0  # each job attaches a mostly flat side × side PNG (0: no reference)
    # Servers the jobs come from, by their share of the jobs and of the channels (empty: one server,
    # the fake's default). Their jobs are fired interleaved, in a seeded random order.
    server_shares: tuple[float, ...] = ()
    # One more job, from a server of its own with one channel, fired in the middle of the others.
    quiet_server: bool = False
    # Settings this scenario needs beyond the production defaults (shown under its table).
    bot_env: tuple[tuple[str, str], ...] = ()
    # Run twice over the same tasks: polling only, then with signed webhooks; compared side by side.
    webhooks: bool = False
    # Seconds the jobs are spread over unless --fire-seconds says otherwise (0: all at once).
    fire_seconds: float = 0.0


SIZES_2K = (1.0, 1.3, 1.6, 1.9, 2.1, 2.4, 2.7, 3.0)
SIZES_3K = (3.5, 4.0, 4.5, 5.0, 5.5)
SCENARIOS: dict[str, Scenario] = {
    "load": Scenario(
        "load",
        1000,
        20,
        1,
        4,
        None,
        2048,
        SIZES_2K,
        frozenset({"invariants", "polling", "no_429", "loop_lag", "peak_rss"}),
        "many concurrent jobs in one process",
    ),
    "latency": Scenario(
        "latency",
        50,
        50,
        1,
        4,
        None,
        2048,
        SIZES_2K,
        frozenset({"invariants", "polling", "final_latency"}),
        "one job per channel: completion to final message",
    ),
    "polling": Scenario(
        "polling",
        100,
        20,
        1,
        4,
        None,
        2048,
        SIZES_2K,
        frozenset({"invariants", "polling"}),
        "detection lag and polls against the provider's advice",
    ),
    "big": Scenario(
        "big",
        1,
        1,
        15,
        15,
        "3K",
        3072,
        SIZES_3K,
        frozenset({"invariants", "rss_growth"}),
        "one 15-image 3K job: memory",
    ),
    "references": Scenario(
        "references",
        10,
        10,
        1,
        1,
        None,
        2048,
        SIZES_2K,
        frozenset({"invariants", "peak_rss"}),
        "ten members attach an 8000×8000 PNG at once: memory",
        reference_side=8000,
    ),
    "budget": Scenario(
        "budget",
        1000,
        20,
        1,
        4,
        None,
        2048,
        SIZES_2K,
        frozenset({"invariants", "polling", "budget", "no_429", "loop_lag", "peak_rss"}),
        "a burst from five servers against the provider's rate limits",
        server_shares=(0.6, 0.1, 0.1, 0.1, 0.1),
        quiet_server=True,
        # The whole burst may wait in line: the default (500) would refuse half of it privately.
        bot_env=(("MAX_QUEUED_JOBS", "2000"),),
    ),
    "webhooks": Scenario(
        "webhooks",
        250,
        25,
        1,
        4,
        None,
        2048,
        SIZES_2K,
        frozenset({"invariants", "no_429", "loop_lag", "peak_rss"}),
        "signed webhooks beside the polling-only twin, over the same tasks",
        webhooks=True,
        # 4.2 jobs a second: within the provider's 5 submissions a second, so every job reaches it
        # and the figures are about learning of completions (`budget` measures submitting under
        # pressure).
        fire_seconds=60.0,
    ),
}
DEFAULT_SCENARIOS = ("load", "latency", "big")


@dataclass
class Options:
    scenarios: list[str]
    jobs: int | None
    channels: int | None
    min_seconds: float
    max_seconds: float
    seed: int
    json_path: Path | None
    validate: str
    grace: float
    log_dir: Path | None
    fire_seconds: float | None  # None: the scenario's own
    bot_env: dict[str, str]
    command: str


@dataclass
class Outcome:
    """One scenario's result."""

    scenario: Scenario
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    jobs: list[dict[str, Any]] = field(default_factory=list)
    twin: Outcome | None = None  # `webhooks`: the polling-only run over the same tasks

    @property
    def title(self) -> str:
        s = self.settings
        servers = s["servers"]
        where = f"{s['channels']} channel(s)"
        if len(servers) > 1:
            burst = servers[:-1] if s["quiet_server_job"] else servers
            where += f" in {len(burst)} servers ({' + '.join(str(count) for count in burst)} jobs)"
            if s["quiet_server_job"]:
                where += ", + 1 job from a quiet server in the middle of the burst"
        if s.get("fire_seconds"):
            where += f", fired over {s['fire_seconds']:g} s"
        return (
            f"{self.scenario.name}: {s['jobs']} job(s), {where}, n {s['n']}, "
            f"tasks {s['min_seconds']:g}–{s['max_seconds']:g} s — {self.scenario.about}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "settings": self.settings,
            "result": FAIL if self.error else overall(self.rows),
            "error": self.error,
            "figures": {r.key: r.to_json() for r in self.rows},
            "notes": self.notes,
            "jobs": self.jobs,
            **({"twin": self.twin.to_json()} if self.twin is not None else {}),
        }


# --------------------------------------------------------------------------- helpers


class LoopLag:
    """How late this process's own event loop wakes up (the fakes share it)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bench-loop-lag")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, loop.time() - started - self.interval))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class RssSampler:
    """The bot's VmRSS every ``interval`` seconds (the largest seen)."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid = pid
        self.interval = interval
        self.max_kb = 0
        self.last_kb = 0
        self._task = asyncio.create_task(self._run(), name="bench-rss")

    async def _run(self) -> None:
        while True:
            rss = proc_status(self.pid).get("VmRSS")
            if rss is None:
                return
            self.last_kb = rss
            self.max_kb = max(self.max_kb, rss)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class BotDiedError(Exception):
    """The bot process exited (or never came online); the message says how."""


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{'+changes' if dirty else ''}" if rev else "unknown"


def make_pool(sizes_mb: Sequence[float], side: int) -> list[bytes]:
    return jpeg_pool(side, [round(s * 1_000_000) for s in sizes_mb])


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on now, for the bot's HTTP server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --------------------------------------------------------------------------- one scenario


class ScenarioRun:
    """Fakes + bot process + jobs for one scenario, and the figures it yields."""

    def __init__(
        self,
        scenario: Scenario,
        opts: Options,
        pool: list[bytes],
        reference: bytes | None = None,
        *,
        with_webhooks: bool = False,
    ) -> None:
        self.sc = scenario
        self.opts = opts
        # `webhooks`: this run's bot gets the console's webhook; its twin (False) polls only.
        self.with_webhooks = with_webhooks
        self.name = (
            scenario.name if with_webhooks or not scenario.webhooks else f"{scenario.name}-polling-only"
        )
        self.pool = pool
        self.reference = reference  # the PNG every job attaches, if the scenario has one
        self.jobs = scenario.jobs if scenario.name == "big" or opts.jobs is None else opts.jobs
        self.channel_count = (
            scenario.channels if scenario.name == "big" or opts.channels is None else opts.channels
        )
        self.channel_count = max(1, min(self.channel_count, self.jobs))
        if scenario.server_shares:  # every server has a channel of its own
            self.channel_count = max(self.channel_count, len(scenario.server_shares))
        validate = opts.validate == "on" or (opts.validate == "auto" and self.jobs <= 100)
        self.validate = validate
        self.plans: dict[int, JobPlan] = {}
        self.discord = BenchDiscord(validate=validate, expected_images={})
        self.server_jobs: list[int] = []  # jobs per server, in the scenario's order (the quiet one last)
        rng = random.Random(f"{opts.seed}:{scenario.name}")
        for job, (guild_id, channel_id, server) in enumerate(self._homes(), start=1):
            n = rng.randint(scenario.n_min, scenario.n_max)
            duration = rng.uniform(opts.min_seconds, opts.max_seconds)
            queued = min(rng.uniform(1.0, 3.0), duration / 3)
            images = tuple(rng.randrange(len(pool)) for _ in range(n))
            self.plans[job] = JobPlan(job, channel_id, n, duration, queued, images, guild_id, server)
            self.discord.expected_images[job] = n
        self.fire_order = self._fire_order()
        self.fire_seconds = scenario.fire_seconds if opts.fire_seconds is None else opts.fire_seconds
        self.toapis = BenchToAPIs(pool, self.plans)
        if with_webhooks:
            self.toapis.webhooks.event_plans = webhooks.event_plans(list(self.plans), opts.seed)
        self.records: dict[int, Any] = {}
        self.fire_started = self.fire_ended = 0.0
        self.settled_at = 0.0
        self.online_seconds = 0.0
        self.idle_rss_kb: int | None = None
        self.hwm_reset = False
        self.bot: BotProcess | None = None
        self.stop_result: StopResult | None = None
        self.final_status: dict[str, int] = {}
        self.cpu: float | None = None
        self.spawned_at = self.measured_at = 0.0
        self.rss: RssSampler | None = None
        self.lag = LoopLag()
        self.gave_up = False
        self.fire_error: str | None = None
        self.job_details: list[dict[str, Any]] = []

    def _homes(self) -> list[tuple[int | None, int, int]]:
        """Where each job comes from, in job order: (server id or None for the default, channel,
        server index). Servers get their share of the jobs and of the channels; within a server
        the jobs go round-robin over its channels."""
        shares = self.sc.server_shares
        if not shares:
            channels = [self.discord.snowflake() for _ in range(self.channel_count)]
            self.server_jobs = [self.jobs]
            return [(None, channels[i % len(channels)], 0) for i in range(self.jobs)]
        homes: list[tuple[int | None, int, int]] = []
        job_counts = budget.split(self.jobs, shares)
        channel_counts = budget.split(self.channel_count, shares)
        if self.sc.quiet_server:
            job_counts.append(1)
            channel_counts.append(1)
        for server, (count, channel_count) in enumerate(zip(job_counts, channel_counts, strict=True)):
            guild_id = self.discord.snowflake()
            self.discord.guild_ids.append(guild_id)  # announced in READY, like a real server
            channels = [self.discord.snowflake() for _ in range(max(1, channel_count))]
            homes += [(guild_id, channels[i % len(channels)], server) for i in range(count)]
        self.server_jobs = job_counts
        return homes

    def _fire_order(self) -> list[int]:
        """Jobs in the order they are fired: in job order, or, from several servers, interleaved
        in a seeded random order with the quiet server's job in the middle."""
        burst = [job for job in self.plans if job <= self.jobs]
        if self.sc.server_shares:
            random.Random(f"{self.opts.seed}:{self.sc.name}:order").shuffle(burst)
        extra = [job for job in self.plans if job > self.jobs]
        return burst[: len(burst) // 2] + extra + burst[len(burst) // 2 :]

    @property
    def quiet_job(self) -> int | None:
        """The quiet server's single job, if the scenario has one."""
        return self.jobs + 1 if self.sc.quiet_server else None

    @property
    def settings(self) -> dict[str, Any]:
        sc = self.sc
        return {
            "jobs": self.jobs,
            "quiet_server_job": self.sc.quiet_server,
            "servers": self.server_jobs,
            "bot_env": dict(sc.bot_env),
            "channels": self.channel_count,
            "n": f"{sc.n_min}–{sc.n_max}" if sc.n_min != sc.n_max else str(sc.n_min),
            "images": sum(p.n for p in self.plans.values()),
            "resolution": sc.resolution,
            "image_px": f"{sc.image_side}×{sc.image_side}",
            "image_mb": [round(len(d) / 1_000_000, 2) for d in self.pool],
            "reference": (
                f"{self.sc.reference_side}×{self.sc.reference_side} PNG, {len(self.reference):,} bytes"
                if self.reference
                else None
            ),
            "min_seconds": self.opts.min_seconds,
            "max_seconds": self.opts.max_seconds,
            "seed": self.opts.seed,
            "fire_seconds": self.fire_seconds,
            "validation": self.validate,
        }

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> Outcome:
        outcome = Outcome(self.sc, self.settings)
        workdir = Path(tempfile.mkdtemp(prefix=f"imagine-bench-{self.name}-"))
        try:
            await self.toapis.start()
            await self.discord.start()
            self.lag.start()
            try:
                await self._drive(workdir)
            except BotDiedError as exc:
                outcome.error = str(exc)
            if self.fire_started:  # figures only when jobs were fired
                outcome.rows, notes = self.figures()
                outcome.notes += notes
                outcome.jobs = self.job_details
        finally:
            if self.rss is not None:
                await self.rss.stop()
            if self.bot is not None:
                await self.bot.close()
                if self.opts.log_dir is not None:
                    self.opts.log_dir.mkdir(parents=True, exist_ok=True)
                    with contextlib.suppress(OSError):
                        shutil.copy(self.bot.log_path, self.opts.log_dir / f"{self.name}-bot.log")
            await self.lag.stop()
            await self.discord.close()
            await self.toapis.close()
            shutil.rmtree(workdir, ignore_errors=True)
        return outcome

    def _bot_env(self, workdir: Path) -> dict[str, str]:
        return {
            "DISCORD_TOKEN": self.discord.token,
            "TOAPIS_API_KEY": self.toapis.api_key,
            "TOAPIS_BASE_URL": self.toapis.base_url,
            "DISCORD_API_BASE_URL": self.discord.api_base,
            "DATABASE_URL": f"sqlite:///{workdir / 'imagine.db'}",
            "LOG_LEVEL": "INFO",
            "METRICS_LOG_SECONDS": "2",
            **dict(self.sc.bot_env),
            **self._webhook_env(),
            **self.opts.bot_env,
        }

    def _webhook_env(self) -> dict[str, str]:
        """With webhooks: the console's webhook set up in the fake, and the bot's settings for it.

        The bot is given the public HTTPS address an operator would configure; the fake delivers
        what it sends there to the bot's loopback port, as the operator's reverse proxy would. The
        secret is the console's, fresh for this run, and is shown nowhere.
        """
        if not self.with_webhooks:
            return {}
        port = free_port()
        self.toapis.webhooks.configure(webhooks.CALLBACK_URL, deliver_to=f"http://127.0.0.1:{port}")
        return {
            "HTTP_PORT": str(port),
            "TOAPIS_CALLBACK_URL": webhooks.CALLBACK_URL,
            "TOAPIS_WEBHOOK_SECRETS": self.toapis.webhooks.secret,
        }

    def _died(self, what: str) -> BotDiedError:
        assert self.bot is not None
        code = self.bot.proc.returncode
        return BotDiedError(
            f"the bot process {what} (exit code {code}); its last log lines:\n{self.bot.last_lines(40)}"
        )

    async def _drive(self, workdir: Path) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.spawned_at = time.monotonic()
        self.bot = bot = await BotProcess.start(self._bot_env(workdir), workdir)
        while not self.discord.connected_sessions():
            if not bot.running:
                raise self._died("exited before it came online")
            if loop.time() - started > ONLINE_WITHIN:
                raise self._died(f"did not come online within {ONLINE_WITHIN:g} s")
            await asyncio.sleep(0.05)
        self.online_seconds = loop.time() - started
        big = self.sc.name == "big"
        await asyncio.sleep(SETTLE_BEFORE_BIG if big else SETTLE_AFTER_ONLINE)
        if not bot.running:
            raise self._died("exited right after coming online")
        self.idle_rss_kb = proc_status(bot.pid).get("VmRSS")
        if big:
            self.hwm_reset = reset_peak_rss(bot.pid)
        self.rss = RssSampler(bot.pid, 0.1 if big or self.reference else 1.0)

        self.fire_started = time.monotonic()
        await self._fire()
        self.fire_ended = time.monotonic()
        await self._wait_settled()
        self.settled_at = time.monotonic()
        if bot.running:
            await asyncio.sleep(AFTER_SETTLED)
        self.final_status = proc_status(bot.pid)
        self.cpu = cpu_seconds(bot.pid)
        self.measured_at = time.monotonic()
        if not bot.running:
            raise self._died("exited during the run")
        self.stop_result = await bot.stop()

    async def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        pace = self.fire_seconds / len(self.fire_order)
        for index, job in enumerate(self.fire_order):
            if pace > 0:  # --fire-seconds: the index-th job goes out index × pace after the first
                await asyncio.sleep(max(0.0, started + index * pace - loop.time()))
            plan = self.plans[job]
            options: dict[str, Any] = {"prompt": f"bench {job}", "n": plan.n}
            if self.sc.resolution:
                options["resolution"] = self.sc.resolution
            if self.reference is not None:
                # A file of its own per member, on the fake Discord CDN, like a fresh upload.
                options["image1"] = self.discord.make_attachment(
                    f"scan-{job}.png", self.reference, "image/png", channel_id=plan.channel_id
                )
            payload = self.discord.slash_command(
                "imagine",
                options,
                guild_id=plan.guild_id,
                channel_id=plan.channel_id,
                user_id=self.discord.snowflake(),
            )
            try:
                self.records[job] = await asyncio.wait_for(
                    self.discord.send_interaction(payload), SEND_WITHIN
                )
            except TimeoutError:
                self.fire_error = (
                    f"the gateway did not take job {job} within {SEND_WITHIN:g} s; stopped firing"
                )
                return
            except (AssertionError, ConnectionError, RuntimeError) as exc:
                self.fire_error = f"the gateway could not carry job {job}: {exc}"
                return

    def _settled(self, job: int, now: float) -> bool:
        track = self.discord.tracks.get(job)
        if track is not None:
            if track.delivered_at is not None or track.failed_at is not None:
                return True
            if track.done_at is not None and (track.expected <= 10 or now - track.done_at > INCOMPLETE_GRACE):
                return True
        record = self.records.get(job)
        if record is None:
            return True  # never fired
        if record.id in self.discord.late_callbacks:
            return True
        return record.acknowledged and record.ephemeral  # refused with a private answer

    async def _wait_settled(self) -> None:
        assert self.bot is not None
        deadline = self.fire_ended + self.opts.max_seconds + self.opts.grace
        next_report = time.monotonic() + 10
        while True:
            now = time.monotonic()
            settled = sum(self._settled(job, now) for job in self.plans)
            if settled >= len(self.plans) or not self.bot.running:
                return
            if now > deadline:
                self.gave_up = True
                return
            if now >= next_report:
                next_report = now + 10
                delivered = sum(1 for t in self.discord.tracks.values() if t.delivered_at is not None)
                elapsed = now - self.fire_started
                print(
                    f"  [{self.name}] {elapsed:6.1f} s: {settled}/{len(self.plans)} settled, "
                    f"{delivered} delivered, {len(self.discord.limits.rejections)} Discord 429s",
                    file=sys.stderr,
                    flush=True,
                )
            await asyncio.sleep(0.25)

    # -- figures ----------------------------------------------------------------------------

    def _first_timeline(self, job: int) -> TaskTimeline | None:
        tasks = self.toapis.tasks_by_job.get(job)
        return self.toapis.timelines[tasks[0]] if tasks else None

    def _job_timelines(self, job: int) -> list[TaskTimeline]:
        return [self.toapis.timelines[task] for task in self.toapis.tasks_by_job.get(job, [])]

    def delivered_jobs(self) -> set[int]:
        """Jobs whose every image is shown."""
        return {job for job, track in self.discord.tracks.items() if track.delivered}

    def detection(self) -> tuple[list[float], list[int], Counter[str]]:
        """Per submitted job: completion→detected lags (of those detected), status queries (refused
        ones included), and how many completions were first known by a query or by an event."""
        lags, queries, known_by = [], [], Counter[str]()
        for job in self.plans:
            timelines = self._job_timelines(job)
            if not timelines:
                continue
            first = timelines[0]
            queries.append(sum(len(t.queries) for t in timelines))
            if first.detected_at is not None:
                lags.append(first.detected_at - first.completed_at)
                known_by[first.detected_by or "status query"] += 1
        return lags, queries, known_by

    def _polling_rows(self, judged: bool) -> list[Row]:
        """Status queries against today's advice, detection lag, and the literal-advice baseline
        simulated over the same task timelines (its queries are not sent: they would spend the
        bot's budget)."""
        queries, most, over, under_floor, refused = [], [], 0, 0, 0
        ours, baseline_lags, baseline_queries = [], [], []
        rng = random.Random(f"{self.opts.seed}:{self.sc.name}:baseline")
        for job in self.plans:
            timelines = self._job_timelines(job)
            if not timelines:
                continue
            first = timelines[0]
            job_queries = sum(len(t.queries) for t in timelines)
            allowed = budget.most_queries_allowed(first.duration)
            queries.append(job_queries)
            most.append(allowed)
            over += job_queries > allowed
            under_floor += sum(budget.queries_sooner_than(t.created, t.queries) for t in timelines)
            refused += sum(len(t.refused) for t in timelines)
            look = budget.baseline_poll(first.created, first.completed_at, rng)
            baseline_queries.append(look.queries)
            if first.detected_at is not None:
                ours.append(first.detected_at - first.completed_at)
                baseline_lags.append(look.lag)
        mean_queries, mean_most = _mean(queries), _mean(most)
        det50, det95 = percentile(ours, 50), percentile(ours, 95)
        base50, base95 = percentile(baseline_lags, 50), percentile(baseline_lags, 95)
        base_mean = _mean(baseline_queries)
        lag_ratio = det50 / base50 if det50 is not None and base50 else None
        query_ratio = mean_queries / base_mean if mean_queries is not None and base_mean else None
        total = sum(queries)
        return [
            Row(
                "polls_per_job",
                "status queries / job (mean · max)",
                over if queries else None,
                f"{mean_queries:.1f} · {max(queries)}  ({over} jobs over the advice)" if queries else "n/a",
                equals(0, "≤ advice, every job") if judged else None,
                {"mean": mean_queries, "max": max(queries) if queries else None, "jobs_over_advice": over},
            ),
            Row(
                "advice_most_per_job",
                "most the advice allows / job (mean)",
                mean_most,
                f"{mean_most:.1f}  (at 5 s, then every 5 s, until one sees the completion)"
                if mean_most is not None
                else "n/a",
            ),
            Row(
                "queries_under_5s",
                "status queries under 5 s",
                under_floor if queries else None,
                f"{under_floor} of {total}  (to the task's previous query or its submission; "
                f"{refused} answered 429)",
                equals(0) if judged else None,
                {"queries": total, "refused": refused},
            ),
            Row(
                "detection_lag_p50",
                "completion→detected p50 · p95 (ours)",
                det50,
                f"{seconds(det50)} · {seconds(det95)}",
                None,
                {"p95": det95, "tasks": len(ours)},
            ),
            Row(
                "baseline_detection_lag_p50",
                "  baseline poller, simulated: p50 · p95",
                base50,
                f"{seconds(base50)} · {seconds(base95)}  (first query at 5 s, then every 7.5 ± 2.5 s, "
                "over the fake's task timelines)",
                None,
                {"p95": base95},
            ),
            Row(
                "detection_vs_baseline",
                "detection p50, ours ÷ baseline",
                lag_ratio,
                "n/a" if lag_ratio is None else f"{lag_ratio:.2f}",
                at_most(0.5) if judged else None,
            ),
            Row(
                "queries_vs_baseline",
                "status queries / job, ours ÷ baseline",
                query_ratio,
                "n/a"
                if query_ratio is None or base_mean is None or mean_queries is None
                else f"{query_ratio:.2f}  ({mean_queries:.2f} · {base_mean:.2f})",
                at_most(1) if judged else None,
                {"ours": mean_queries, "baseline": base_mean},
            ),
        ]

    def _provider_rows(self, failed: list[int], judged: bool) -> list[Row]:
        """The account's rate limits: 429s, jobs lost to them, submission throughput and fairness.
        A submission's time is when the fake accepted it (its task's creation); a job's wait runs
        from the moment its interaction was sent."""
        fake = self.toapis
        submit_refused, query_refused = fake.rate_limited["async_submit"], fake.rate_limited["async_query"]
        requests = fake.submit_attempts + fake.status_queries
        share = 100 * (submit_refused + query_refused) / requests if requests else None
        rows = [
            Row(
                "provider_429_share",
                "provider 429s (share of its requests)",
                share,
                "n/a"
                if share is None
                else f"{share:.2f} %  ({submit_refused} of {fake.submit_attempts} submissions, "
                f"{query_refused} of {fake.status_queries} status queries)",
                at_most(budget.MOST_429_PERCENT, " %") if judged else None,
                {
                    "submissions": fake.submit_attempts,
                    "submissions_refused": submit_refused,
                    "status_queries": fake.status_queries,
                    "status_queries_refused": query_refused,
                },
            )
        ]
        rate_failed = []
        for job in failed:
            track = self.discord.tracks.get(job)
            busy = track is not None and BUSY_TEXT in (track.failure or "").lower()
            met_429 = fake.refused_submissions.get(job, 0) + sum(
                len(t.refused) for t in self._job_timelines(job)
            )
            if busy or met_429:
                rate_failed.append(job)
        rows.append(
            Row(
                "rate_limit_failures",
                "jobs failed because of rate limits",
                len(rate_failed),
                str(len(rate_failed)),
                equals(0) if judged else None,
                {"jobs": rate_failed[:50]},
            )
        )

        waits = self._submit_waits()
        fired = len(waits)
        accepted = [self._accepted_at(job) for job in waits]
        times = [at - self.fire_started for at in accepted if at is not None]
        # Never sooner than the last job was fired (--fire-seconds, or a burst within the bucket's).
        deadline = max(budget.submission_deadline(fired), self.fire_ended - self.fire_started)
        last = max(times) if len(times) == fired and times else math.inf
        if not times:
            shown = "none submitted"
        elif len(times) < fired:
            shown = f"only {len(times)} of {fired} submitted (the last {max(times):.1f} s after the burst)"
        else:
            shown = f"all {fired} within {last:.1f} s of the burst"
        rows.append(
            Row(
                "submission_throughput",
                "every job submitted within",
                last if fired else None,
                shown,
                Target(f"≤ {deadline:.3g} s (90 % of 5/s)", lambda v: v <= deadline) if judged else None,
                {"deadline": deadline, "submitted": len(times), "fired": fired},
            )
        )
        if len(self.server_jobs) < 2:
            return rows
        burst_servers = self.server_jobs[:-1] if self.sc.quiet_server else self.server_jobs
        big = max(range(len(burst_servers)), key=lambda i: burst_servers[i])
        big_waits = [w for job, w in waits.items() if self.plans[job].server == big]
        small_waits = [
            w for job, w in waits.items() if self.plans[job].server != big and job != self.quiet_job
        ]
        big_median, small_median = budget.median(big_waits), budget.median(small_waits)
        ratio = budget.wait_ratio(small_median, big_median)
        rows.append(
            Row(
                "submit_wait_median",
                "submit wait median: big · small servers",
                big_median,
                f"{_wait(big_median)} ({len(big_waits)} jobs) · "
                f"{_wait(small_median)} ({len(small_waits)} jobs)",
                None,
                {"big": big_median, "small": small_median},
            )
        )
        rows.append(
            Row(
                "fairness_ratio",
                "small ÷ big server median wait",
                ratio,
                "n/a" if ratio is None else "∞" if math.isinf(ratio) else f"{ratio:.2f}",
                Target("≤ 1/3", lambda v: v <= budget.FAIR_WAIT_RATIO + 1e-9) if judged else None,
            )
        )
        if self.quiet_job is not None and self.quiet_job in waits:
            quiet = waits[self.quiet_job]
            rows.append(
                Row(
                    "quiet_server_wait",
                    "quiet server's job submitted after",
                    quiet,
                    _wait(quiet),
                    at_most(budget.QUIET_WITHIN, " s") if judged else None,
                )
            )
        return rows

    def _accepted_at(self, job: int) -> float | None:
        """When the fake accepted the job's (first) submission, or None."""
        timeline = self._first_timeline(job)
        return timeline.created if timeline is not None else None

    def _submit_waits(self) -> dict[int, float]:
        """Per fired job: seconds from its interaction to its accepted submission (inf: never)."""
        waits = {}
        for job, record in self.records.items():
            accepted = self._accepted_at(job)
            waits[job] = math.inf if accepted is None else accepted - record.created_at
        return waits

    def figures(self) -> tuple[list[Row], list[str]]:
        sc, targets = self.sc, self.sc.targets
        invariants = "invariants" in targets
        jobs = len(self.plans)
        rows: list[Row] = []
        notes: list[str] = []

        delivered, failed, lost = [], [], []
        reasons: Counter[str] = Counter()
        for job in self.plans:
            track = self.discord.tracks.get(job)
            record = self.records.get(job)
            if track is not None and track.delivered:
                delivered.append(job)
            elif track is not None and (track.failed_at is not None or track.done_at is not None):
                failed.append(job)
                reasons[(track.failure or "✅ shown without every image").splitlines()[0][:100]] += 1
            elif record is not None and record.id in self.discord.late_callbacks:
                failed.append(job)
                reasons["the bot answered the interaction after Discord's 3 s deadline"] += 1
            elif record is not None and record.acknowledged and record.ephemeral:
                failed.append(job)
                content = ((record.callback or {}).get("data") or {}).get("content") or "a private refusal"
                reasons[f"refused: {content.splitlines()[0][:90]}"] += 1
            else:
                lost.append(job)
        share = 100 * len(delivered) / jobs if jobs else 0.0
        images = sum(p.n for p in self.plans.values())
        rows.append(Row("jobs", "jobs", jobs, f"{jobs} ({images} images)"))
        rows.append(
            Row(
                "delivered",
                "delivered (every image attached)",
                round(share, 2),
                f"{len(delivered)} ({share:.1f} %)",
                equals(100, "100 %") if invariants else None,
            )
        )
        rows.append(Row("failed", "failed (❌ or refused)", len(failed), str(len(failed))))
        rows.append(
            Row(
                "lost",
                "lost (never finished)",
                len(lost),
                str(len(lost)),
                equals(0) if invariants else None,
                {"jobs": lost[:50]},
            )
        )
        dupes = sum(max(0, len(t) - 1) for t in self.toapis.tasks_by_job.values())
        dupes += self.toapis.unplanned_submissions
        rows.append(
            Row(
                "duplicate_submissions",
                "duplicate submissions",
                dupes,
                str(dupes),
                equals(0) if invariants else None,
            )
        )

        # Polling: counts against today's advice, how soon completion was seen, and the baseline.
        rows += self._polling_rows("polling" in targets)
        # The provider's rate limits: 429s, submissions (throughput, fairness).
        rows += self._provider_rows(failed, "budget" in targets)
        final = [
            track.delivered_at - timeline.completed_at
            for job in delivered
            if (timeline := self._first_timeline(job)) is not None
            and (track := self.discord.tracks.get(job)) is not None
            and track.delivered_at is not None
        ]
        fin50, fin95 = percentile(final, 50), percentile(final, 95)
        latency = "final_latency" in targets
        rows.append(
            Row(
                "final_lag_p50",
                "completion→final message p50",
                fin50,
                seconds(fin50),
                at_most(1.0, " s") if latency else None,
            )
        )
        rows.append(
            Row(
                "final_lag_p95",
                "completion→final message p95",
                fin95,
                seconds(fin95),
                at_most(2.5, " s") if latency else None,
                {"max": max(final) if final else None},
            )
        )

        # Discord.
        requests = len(self.discord.requests)
        writes = sum(t.writes for t in self.discord.tracks.values())
        rejections = self.discord.limits.rejections
        scopes = Counter(r.scope for r in rejections)
        rows.append(
            Row(
                "discord_requests_per_job",
                "Discord requests / job",
                requests / jobs if jobs else None,
                f"{requests / jobs:.1f}  ({requests} in all, {writes / jobs:.1f} message writes/job)"
                if jobs
                else "n/a",
                None,
                {
                    "total": requests,
                    "message_writes": writes,
                    "by_route": dict(
                        Counter(f"{r.method} {r.route} -> {r.status}" for r in self.discord.requests)
                    ),
                },
            )
        )
        scope_text = ", ".join(f"{k} {v}" for k, v in sorted(scopes.items()))
        rows.append(
            Row(
                "discord_429s",
                "Discord 429s received",
                len(rejections),
                f"{len(rejections)}" + (f"  ({scope_text})" if scope_text else ""),
                equals(0) if "no_429" in targets else None,
                dict(scopes),
            )
        )
        lateness = sorted(self.discord.late_callbacks.values())
        late_text = str(len(lateness))
        if lateness:
            late_text += f"  ({lateness[0]:.1f}–{lateness[-1]:.1f} s after the interaction)"
        rows.append(Row("late_callbacks", "interaction answers after 3 s", len(lateness), late_text))
        body_violations = [v for v in self.discord.violations if "Discord allows 3 s" not in v]
        rows.append(
            Row(
                "discord_violations",
                "requests Discord would refuse",
                len(body_violations),
                str(len(body_violations))
                + ("" if self.validate else "  (bodies not checked: --validate on)"),
                equals(0) if invariants else None,
                {"first": body_violations[:5]},
            )
        )

        # The bot process.
        metrics = self.bot.metrics if self.bot is not None else None
        lag = metrics.get("loop_lag_p99_ms") if metrics else None
        lag_max = metrics.get("loop_lag_max_ms") if metrics else None
        rows.append(
            Row(
                "loop_lag_p99_ms",
                "bot event-loop lag p99",
                lag,
                "n/a (no metrics line)" if lag is None else f"{lag:.1f} ms  (max {lag_max or 0:.1f} ms)",
                at_most(50, " ms") if "loop_lag" in targets else None,
                dict(metrics or {}),
            )
        )
        hwm = self.final_status.get("VmHWM")
        sampled_peak = self.rss.max_kb if self.rss is not None else 0
        if sc.name == "big":
            idle = self.idle_rss_kb
            peak_kb = max(hwm or 0, sampled_peak) if self.hwm_reset else sampled_peak
            growth = (peak_kb - idle) / 1024 if idle and peak_kb else None
            how = "VmHWM since reset" if self.hwm_reset else "VmRSS sampled every 0.1 s"
            rows.append(Row("idle_rss_mb", "bot idle RSS", idle / 1024 if idle else None, _mb(idle), None))
            rows.append(
                Row(
                    "rss_growth_mb",
                    "peak RSS growth over idle",
                    growth,
                    "n/a" if growth is None else f"{growth:.1f} MB  (peak {_mb(peak_kb)}, {how})",
                    at_most(200, " MB") if "rss_growth" in targets else None,
                )
            )
        rows.append(
            Row(
                "peak_rss_mb",
                "bot peak RSS (VmHWM)",
                hwm / 1024 if hwm else None,
                _mb(hwm) + (" since reset" if self.hwm_reset else ""),
                at_most(400, " MB") if "peak_rss" in targets else None,
            )
        )
        wall = (self.settled_at - self.fire_started) if self.settled_at else None
        life = self.measured_at - self.spawned_at if self.measured_at else None
        if self.cpu is not None and life:
            cpu_text = f"{self.cpu:.1f} s in {life:.0f} s of life ({100 * self.cpu / life:.0f} % of a core)"
        else:
            cpu_text = "n/a"
        rows.append(Row("bot_cpu_seconds", "bot CPU time (whole life)", self.cpu, cpu_text))
        per_job = 1000 * self.cpu / jobs if self.cpu is not None and jobs else None
        rows.append(
            Row(
                "bot_cpu_ms_per_job",
                "bot CPU time / job",
                per_job,
                "n/a" if per_job is None else f"{per_job:.0f} ms",
            )
        )
        stop = self.stop_result
        rows.append(
            Row(
                "stop_seconds",
                "exit after SIGTERM",
                stop.seconds if stop else None,
                (
                    f"{stop.seconds:.1f} s (exit code {stop.exit_code})"
                    if stop and stop.in_time
                    else "did not exit within 10 s: killed"
                    if stop
                    else "n/a"
                ),
                at_most(10, " s"),
            )
        )
        fake_lag = percentile(self.lag.samples, 99)
        rows.append(
            Row(
                "fakes_loop_lag_p99_ms",
                "fakes' event-loop lag p99",
                fake_lag * 1000 if fake_lag is not None else None,
                f"{fake_lag * 1000:.1f} ms" if fake_lag is not None else "n/a",
            )
        )
        rows.append(
            Row(
                "run_seconds",
                "run time (first job → all settled)",
                wall,
                f"{wall:.1f} s  (firing took {self.fire_ended - self.fire_started:.1f} s, bot online "
                f"after {self.online_seconds:.1f} s)"
                if wall
                else "n/a",
            )
        )

        self.job_details = self._job_details(delivered, failed)
        for reason, count in reasons.most_common(3):
            notes.append(f"{count} failed: {reason}")
        if self.sc.bot_env:
            given = " ".join(f"{name}={value}" for name, value in self.sc.bot_env)
            notes.append(f"the scenario runs the bot with {given} beyond the production defaults")
        if self.gave_up:
            notes.append(
                f"gave up waiting {self.opts.max_seconds + self.opts.grace:g} s after the last job was fired"
            )
        if self.fire_error:
            notes.append(self.fire_error)
        if fake_lag is not None and fake_lag > 0.1:
            notes.append("the fakes' own loop lagged > 100 ms at p99: timings include some fake-side delay")
        if lag is None:
            notes.append("the bot printed no 'metrics …' line (METRICS_LOG_SECONDS=2): loop lag not measured")
        if self.stop_result and not self.stop_result.in_time:
            notes.append("the bot did not exit within 10 s of SIGTERM and was killed")
        return rows, notes

    def _job_details(self, delivered: list[int], failed: list[int]) -> list[dict[str, Any]]:
        """Per job, for the JSON file: the plan, its submission's wait, every poll (seconds after the
        submission) and every refused one, the lags."""
        done, bad = set(delivered), set(failed)
        details = []
        for job, plan in self.plans.items():
            timeline = self._first_timeline(job)
            track = self.discord.tracks.get(job)
            entry: dict[str, Any] = {
                "job": job,
                "n": plan.n,
                "duration": round(plan.duration, 3),
                "queued": round(plan.queued, 3),
                "outcome": "delivered" if job in done else "failed" if job in bad else "lost",
                "submissions": len(self.toapis.tasks_by_job.get(job, [])),
                "message_writes": track.writes if track else 0,
            }
            record = self.records.get(job)
            if plan.guild_id is not None:
                entry["server"] = plan.server
            if timeline is not None:
                if record is not None:
                    entry["submit_wait"] = round(timeline.created - record.created_at, 3)
                entry["refused_submissions"] = self.toapis.refused_submissions.get(job, 0)
                entry["advice_most_queries"] = budget.most_queries_allowed(timeline.duration)
                entry["polls"] = [[round(at - timeline.created, 3), status] for at, status in timeline.polls]
                entry["refused_queries"] = [round(at - timeline.created, 3) for at in timeline.refused]
                if timeline.detected_at is not None:
                    entry["detection_lag"] = round(timeline.detected_at - timeline.completed_at, 3)
                if track is not None and track.delivered_at is not None and job in done:
                    entry["final_lag"] = round(track.delivered_at - timeline.completed_at, 3)
            details.append(entry)
        return details


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _wait(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "never submitted" if math.isinf(value) else f"{value:.1f} s"


def _mb(kb: int | None) -> str:
    return "n/a" if not kb else f"{kb / 1024:.1f} MB"


# --------------------------------------------------------------------------- webhooks beside polling


def _figures_of(outcome: Outcome) -> dict[str, Row]:
    return {row.key: row for row in outcome.rows}


def compare_with_twin(
    twin: ScenarioRun, twin_outcome: Outcome, run: ScenarioRun, outcome: Outcome
) -> Outcome:
    """The `webhooks` scenario's one table: each figure of the polling-only twin beside the webhooks
    run's, with the ratio where it means something. The usual targets (every job delivered, none
    lost, Discord's limits, loop lag, memory …) judge both runs; the webhook targets (completion→
    detected p50, status queries per job, the lost events' jobs delivered, no delivery refused)
    judge the webhooks run."""
    mine, theirs = _figures_of(outcome), _figures_of(twin_outcome)
    rows: list[PairRow] = []

    def usual(
        key: str,
        *,
        compare: bool = False,
        target: Target | None = None,
        brief: Callable[[Row], str] | None = None,
    ) -> None:
        """The run's figure beside its twin's, as the scenario's own table has it (`brief`: a
        shorter text for a side-by-side column)."""
        row, twin_row = mine.get(key), theirs.get(key)
        if row is None and twin_row is None:
            return
        value = row.value if row is not None else None
        twin_value = twin_row.value if twin_row is not None else None
        template = row or twin_row
        assert template is not None
        rows.append(
            PairRow(
                key,
                template.label,
                value,
                _brief(row, brief),
                target or template.target,
                {},
                twin_value,
                _brief(twin_row, brief),
                webhooks.ratio(value, twin_value) if compare else None,
                judge_twin=True,
            )
        )

    usual("jobs")
    usual("delivered")
    usual("failed")
    usual("lost")
    usual("duplicate_submissions")

    lags, queries, known_by = run.detection()
    twin_lags, twin_queries, twin_known_by = twin.detection()
    p50, twin_p50 = percentile(lags, 50), percentile(twin_lags, 50)
    p95, twin_p95 = percentile(lags, 95), percentile(twin_lags, 95)
    rows.append(
        PairRow(
            "detection_lag_p50",
            "completion→detected p50",
            p50,
            seconds(p50),
            at_most(webhooks.DETECTION_P50_TARGET, " s"),
            {"tasks": len(lags)},
            twin_p50,
            seconds(twin_p50),
            webhooks.ratio(p50, twin_p50),
        )
    )
    rows.append(
        PairRow(
            "detection_lag_p95",
            "completion→detected p95",
            p95,
            seconds(p95),
            None,
            {},
            twin_p95,
            seconds(twin_p95),
            webhooks.ratio(p95, twin_p95),
        )
    )
    mean, twin_mean = _mean(queries), _mean(twin_queries)
    rows.append(
        PairRow(
            "queries_per_job",
            "status queries / job (mean · max)",
            mean,
            "n/a" if mean is None else f"{mean:.2f} · {max(queries)}",
            at_most(webhooks.QUERIES_PER_JOB_TARGET),
            {"total": sum(queries)},
            twin_mean,
            "n/a" if twin_mean is None else f"{twin_mean:.2f} · {max(twin_queries)}",
            webhooks.ratio(mean, twin_mean),
        )
    )
    rows.append(
        PairRow(
            "detected_by",
            "completions first known by: event · status query",
            known_by["event"],
            f"{known_by['event']} · {known_by['status query']}",
            None,
            dict(known_by),
            twin_known_by["event"],
            f"{twin_known_by['event']} · {twin_known_by['status query']}",
        )
    )
    rows += _event_rows(run)
    usual("queries_under_5s", target=equals(0), brief=lambda r: f"{r.value} of {r.detail.get('queries')}")
    usual("provider_429_share", brief=lambda r: f"{r.value:.2f} %")
    usual("final_lag_p50", compare=True)
    usual("final_lag_p95", compare=True)
    usual("discord_requests_per_job", compare=True, brief=lambda r: f"{r.value:.1f}")
    usual("discord_429s")
    usual("late_callbacks")
    usual("loop_lag_p99_ms", compare=True)
    usual("peak_rss_mb", compare=True)
    usual("bot_cpu_ms_per_job", compare=True)
    usual("stop_seconds")
    usual("fakes_loop_lag_p99_ms")
    usual("run_seconds", brief=lambda r: f"{r.value:.1f} s")

    notes = [f"polling only: {note}" for note in twin_outcome.notes]
    notes += [f"webhooks: {note}" for note in outcome.notes]
    notes.append(
        f"the webhooks run's bot has HTTP_PORT, TOAPIS_CALLBACK_URL={webhooks.CALLBACK_URL} (the fake "
        "delivers there through the bot's loopback port, as a reverse proxy would) and "
        "TOAPIS_WEBHOOK_SECRETS (the fake console's secret, fresh per run); events "
        f"{webhooks.EVENT_DELAY[0] * 1000:.0f}–{webhooks.EVENT_DELAY[1] * 1000:.0f} ms after completion"
    )
    errors = [
        f"{name}: {o.error}" for name, o in (("polling only", twin_outcome), ("webhooks", outcome)) if o.error
    ]
    events = run.toapis.webhooks.event_plans
    jobs = [
        {**entry, "event": _event_detail(run, entry["job"], events)} if entry["job"] in events else entry
        for entry in outcome.jobs
    ]
    return Outcome(
        run.sc,
        {**outcome.settings, "event_delay": webhooks.EVENT_DELAY},
        list(rows),
        notes,
        "\n".join(errors) or None,
        jobs,
        twin_outcome,
    )


def _brief(row: Row | None, brief: Callable[[Row], str] | None) -> str:
    if row is None:
        return "n/a"
    return brief(row) if brief is not None and row.value is not None else row.shown


def _event_rows(run: ScenarioRun) -> list[PairRow]:
    """What the provider sent and how the bot answered, and whether the jobs whose event was never
    sent were still delivered (by the status queries that stay as the safety net)."""
    fake = run.toapis.webhooks
    plans = fake.event_plans
    submitted = {job for job in plans if run.toapis.tasks_by_job.get(job)}
    twice = sorted(job for job in submitted if plans[job].twice)
    never = sorted(job for job in submitted if plans[job].never)
    sent = len({event["id"] for event in fake.events})
    refused = [d for d in fake.deliveries if d.status is None or not 200 <= d.status < 300]
    answers = Counter("no answer" if d.status is None else str(d.status) for d in refused)
    took = [d.answered_at - d.sent_at for d in fake.deliveries if d.status is not None]
    took50, took95 = percentile(took, 50), percentile(took, 95)
    delivered = run.delivered_jobs()
    safety_net = [job for job in never if job in delivered]
    return [
        PairRow(
            "events",
            "events sent · of them twice · never sent",
            sent,
            f"{sent} · {len(twice)} · {len(never)}",
            None,
            {"twice": twice, "never": never},
            None,
            "—",
        ),
        PairRow(
            "deliveries_refused",
            "deliveries the bot did not answer 2xx",
            len(refused),
            f"{len(refused)} of {len(fake.deliveries)}"
            + (f"  ({', '.join(f'{v} {k}' for k, v in answers.most_common())})" if refused else ""),
            equals(0),
            {"by_answer": dict(answers), "first": [(d.event_id, d.task_id, d.status) for d in refused[:10]]},
            None,
            "—",
        ),
        PairRow(
            "delivery_answer_p50",
            "deliveries answered within p50 · p95",
            took50,
            f"{seconds(took50)} · {seconds(took95)}",
            None,
            {"p95": took95, "answered": len(took)},
            None,
            "—",
        ),
        PairRow(
            "lost_events_delivered",
            "jobs whose event was never sent: delivered",
            len(safety_net),
            f"{len(safety_net)} of {len(never)}",
            Target(f"all {len(never)}", lambda v: v == len(never)),
            {"jobs": never},
            None,
            "—",
        ),
    ]


def _event_detail(run: ScenarioRun, job: int, events: dict[int, EventPlan]) -> dict[str, Any]:
    """For the JSON file: the job's planned event and how its completion was first known."""
    plan = events[job]
    timeline = run._first_timeline(job)
    detail: dict[str, Any] = {
        "delay": round(plan.delay, 3),
        "sent": "never" if plan.never else "twice" if plan.twice else "once",
        "detected_by": timeline.detected_by if timeline is not None else None,
    }
    if timeline is not None:  # each POST: seconds after the completion, seconds to the answer, status
        detail["deliveries"] = [
            [round(d.sent_at - timeline.completed_at, 3), round(d.answered_at - d.sent_at, 3), d.status]
            for d in run.toapis.webhooks.deliveries
            if d.task_id == timeline.task_id
        ]
    return detail


# --------------------------------------------------------------------------- the command


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run the real bot process against rate-limited fakes and print one table per scenario.",
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="scenario",
        help=f"any of {', '.join(SCENARIOS)} (default: {' '.join(DEFAULT_SCENARIOS)}; polling figures "
        "are part of every table, 'polling' alone is a mid-size run judged on them)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        help="jobs per scenario (load 1000, latency 50, polling 100, budget 1000 over its servers, "
        "webhooks 250 in each of its two runs)",
    )
    parser.add_argument(
        "--channels",
        type=int,
        help="channels per scenario (load 20, latency 50, polling 20, budget 20 over its servers, "
        "webhooks 25)",
    )
    parser.add_argument("--min-seconds", type=float, default=8.0, help="shortest task duration (8)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="longest task duration (60)")
    parser.add_argument("--seed", type=int, default=1, help="seed for n, durations and images (1)")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write the results to this file")
    parser.add_argument(
        "--validate",
        choices=("auto", "on", "off"),
        default="auto",
        help="check request bodies against Discord's OpenAPI spec (auto: for scenarios of ≤ 100 jobs)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=300.0,
        help="seconds past the longest task before unfinished jobs count as lost (300)",
    )
    parser.add_argument("--log-dir", type=Path, help="keep each scenario's bot log here")
    parser.add_argument(
        "--fire-seconds",
        type=float,
        help="spread the jobs evenly over this many seconds (0: all at once, as fast as the gateway "
        "carries them; default 0, webhooks 60); for a machine too busy to answer a burst within "
        "Discord's 3 s",
    )
    parser.add_argument(
        "--bot-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the bot (shown in the header); default: production settings",
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS and s != "all"]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if "all" in args.scenarios:
        scenarios = list(SCENARIOS)
    else:
        scenarios = list(dict.fromkeys(args.scenarios)) or list(DEFAULT_SCENARIOS)
    if not 0 < args.min_seconds <= args.max_seconds:
        parser.error("need 0 < --min-seconds <= --max-seconds")
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.fire_seconds is not None and not 0 <= args.fire_seconds <= 600:
        parser.error("--fire-seconds must be between 0 and 600")
    if args.channels is not None and args.channels < 1:
        parser.error("--channels must be at least 1")
    bot_env = {}
    for item in args.bot_env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--bot-env wants NAME=VALUE, got {item!r}")
        bot_env[name] = value
    shown = sys.argv[1:] if argv is None else list(argv)
    return Options(
        scenarios=scenarios,
        jobs=args.jobs,
        channels=args.channels,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        seed=args.seed,
        json_path=args.json_path,
        validate=args.validate,
        grace=args.grace,
        fire_seconds=args.fire_seconds,
        log_dir=args.log_dir,
        bot_env=bot_env,
        command="python -m bench" + ("" if not shown else " " + shlex.join(shown)),
    )


def header(opts: Options) -> str:
    extra = " ".join(f"{k}={v}" for k, v in opts.bot_env.items())
    return (
        f"{opts.command} | scenarios {' '.join(opts.scenarios)} | tasks {opts.min_seconds:g}–"
        f"{opts.max_seconds:g} s | seed {opts.seed} | validation {opts.validate} | bot settings: "
        f"{extra or 'production defaults'} + METRICS_LOG_SECONDS=2 | bot at {git_revision()} | "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )


async def _run_one(run: ScenarioRun) -> Outcome:
    print(f"  [{run.name}] starting: {run.jobs} job(s) in {run.channel_count} channel(s)", file=sys.stderr)
    return await run.run()


async def run_all(opts: Options) -> list[Outcome]:
    # SIGTERM stops the run like Ctrl-C does: the scenario's `finally` kills the bot and cleans up.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    outcomes = []
    pools: dict[tuple[int, tuple[float, ...]], list[bytes]] = {}
    for name in opts.scenarios:
        scenario = SCENARIOS[name]
        key = (scenario.image_side, scenario.image_mb)
        if key not in pools:
            started = time.monotonic()
            pools[key] = await asyncio.to_thread(make_pool, scenario.image_mb, scenario.image_side)
            print(
                f"  made {len(pools[key])} JPEGs of {scenario.image_side}×{scenario.image_side} "
                f"({', '.join(f'{len(d) / 1_000_000:.1f}' for d in pools[key])} MB) in "
                f"{time.monotonic() - started:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        reference = None
        if scenario.reference_side:
            reference = await asyncio.to_thread(flat_png, scenario.reference_side)
            print(
                f"  made a {scenario.reference_side}×{scenario.reference_side} PNG "
                f"of {len(reference):,} bytes",
                file=sys.stderr,
                flush=True,
            )
        twin = twin_outcome = None
        if scenario.webhooks:  # first the polling-only twin, over the same tasks
            twin = ScenarioRun(scenario, opts, pools[key], reference)
            twin_outcome = await _run_one(twin)
        run = ScenarioRun(scenario, opts, pools[key], reference, with_webhooks=scenario.webhooks)
        outcome = await _run_one(run)
        if twin is not None and twin_outcome is not None:
            outcome = compare_with_twin(twin, twin_outcome, run, outcome)
            rows = [row for row in outcome.rows if isinstance(row, PairRow)]
            print(render_pairs(outcome.title, rows, ("polling only", "webhooks"), outcome.notes), flush=True)
        elif outcome.rows:
            print(render_table(outcome.title, outcome.rows, outcome.notes), flush=True)
        if outcome.error:
            print(f"!! {name} FAILED TO RUN: {outcome.error}", flush=True)
        print(flush=True)
        outcomes.append(outcome)
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    line = header(opts)
    print(line, flush=True)
    print(flush=True)
    started = datetime.now(UTC)
    # Ctrl-C must work even when SIGINT was ignored by whoever started us (e.g. a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        outcomes = asyncio.run(run_all(opts))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: the bot process was stopped and the temporary files removed", file=sys.stderr)
        return 130
    if opts.json_path is not None:
        document = {
            "command": opts.command,
            "header": line,
            "started_utc": started.isoformat(),
            "scenarios": [o.to_json() for o in outcomes],
        }
        opts.json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
        print(f"results written to {opts.json_path}", flush=True)
    if any(o.error for o in outcomes):
        return 2
    return 1 if any(overall(o.rows) == FAIL for o in outcomes) else 0
