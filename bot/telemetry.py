"""The bot's figures for Prometheus: one registry, one method per figure.

`Telemetry` owns a `CollectorRegistry` of its own (not prometheus_client's global one), so
several bots, or tests, can each have theirs. Whoever knows a figure records it through the
method named for it; `GET /metrics` (`bot.http_server`) refreshes the figures read from
elsewhere (jobs by state from the database, memory) and renders the text exposition.

Recorded today: jobs by state, Discord 429s (through discord.py's HTTP trace), provider 429s
(the ToAPIs client's `on_rate_limited`), event-loop lag, memory, webhook events by outcome,
completion→final message (the job runner). Ready for their callers: queue length, provider
budget in use, detection lag.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import SimpleNamespace

import aiohttp
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.jobs.records import JobState
from bot.metrics import memory_mb
from bot.schema import jobs_table
from bot.store import Store, describe

__all__ = ["CONTENT_TYPE", "Telemetry", "count_jobs_by_state"]

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
BUCKETS = ("submit", "query")  # the provider's two rate-limit buckets
# Seconds: from a fraction of a second (webhooks) to a slow poll, and a busy channel's queue.
_LAG_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)
_LOOP_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_REFRESH_TIMEOUT = 2.0  # a scrape must not hang on a database that does not answer


async def count_jobs_by_state(store: Store) -> dict[str, int]:
    """How many jobs are in each state (one grouped count over the state index)."""
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.select(jobs_table.c.state, sa.func.count()).group_by(jobs_table.c.state))
        return {state: count for state, count in rows.all()}


class Telemetry:
    """Every figure `/metrics` shows, and the methods that record them."""

    def __init__(
        self,
        *,
        jobs_by_state: Callable[[], Awaitable[Mapping[str, int]]] | None = None,
        live_figures: Callable[[Telemetry], None] | None = None,
    ) -> None:
        """`jobs_by_state` reads the database at each scrape; `live_figures` sets the figures
        kept in memory elsewhere (the submission queue, the rate budget) at each scrape."""
        self.registry = CollectorRegistry(auto_describe=True)
        self._jobs_by_state = jobs_by_state
        self._live_figures = live_figures
        r = self.registry
        self.jobs = Gauge("imagine_jobs", "Jobs in the database, by state.", ["state"], registry=r)
        self.queue_length = Gauge(
            "imagine_submission_queue_length", "Jobs waiting for their turn to be submitted.", registry=r
        )
        self.budget_in_use = Gauge(
            "imagine_provider_budget_in_use_ratio",
            "Share of the provider's rate-limit bucket in use (0 to 1), by bucket (submit, query).",
            ["bucket"],
            registry=r,
        )
        self.provider_rate_limited = Counter(
            "imagine_provider_rate_limited",
            "HTTP 429 answers from the image service, by bucket (submit, query).",
            ["bucket"],
            registry=r,
        )
        self.discord_rate_limited = Counter(
            "imagine_discord_rate_limited", "HTTP 429 answers from Discord's API.", registry=r
        )
        self.detection_lag = Histogram(
            "imagine_detection_lag_seconds",
            "From a task's completion at the provider to the bot knowing of it.",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.completion_to_final_message = Histogram(
            "imagine_completion_to_final_message_seconds",
            "From a task's completion at the provider to its images posted in Discord.",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "imagine_event_loop_lag_seconds",
            "How late the event loop runs a timer (a blocked loop delays every job).",
            buckets=_LOOP_LAG_BUCKETS,
            registry=r,
        )
        self.memory = Gauge(
            "imagine_memory_bytes", "Memory of the bot process: rss (now) and peak_rss.", ["kind"], registry=r
        )
        self.webhook_events = Counter(
            "imagine_webhook_events",
            "Webhook deliveries by outcome (accepted, duplicate, ignored, refused).",
            ["outcome"],
            registry=r,
        )
        for state in JobState:
            self.jobs.labels(state=state.value)
        for bucket in BUCKETS:
            self.budget_in_use.labels(bucket=bucket)
            self.provider_rate_limited.labels(bucket=bucket)
        for outcome in ("accepted", "duplicate", "ignored", "refused"):
            self.webhook_events.labels(outcome=outcome)

    # ------------------------------------------------------------ recording

    def set_queue_length(self, jobs: int) -> None:
        """Jobs waiting for a submission slot (the submission queue's caller)."""
        self.queue_length.set(jobs)

    def set_budget_in_use(self, bucket: str, ratio: float) -> None:
        """How much of the provider's `bucket` ("submit" or "query") is in use, from 0 to 1."""
        self.budget_in_use.labels(bucket=_bucket(bucket)).set(max(0.0, min(1.0, ratio)))

    def record_provider_rate_limited(self, bucket: str) -> None:
        """The image service answered 429 on `bucket` ("submit" or "query")."""
        self.provider_rate_limited.labels(bucket=_bucket(bucket)).inc()

    def record_discord_rate_limited(self) -> None:
        """Discord answered 429."""
        self.discord_rate_limited.inc()

    def observe_detection_lag(self, seconds: float) -> None:
        """A task's end became known `seconds` after the provider finished it."""
        self.detection_lag.observe(max(0.0, seconds))

    def observe_completion_to_final_message(self, seconds: float) -> None:
        """A job's images were posted `seconds` after the provider finished its task."""
        self.completion_to_final_message.observe(max(0.0, seconds))

    def observe_loop_lag(self, seconds: float) -> None:
        """The event loop ran a timer `seconds` late."""
        self.loop_lag.observe(max(0.0, seconds))

    def record_webhook_event(self, outcome: str) -> None:
        """A webhook delivery was accepted, a duplicate, ignored, or refused."""
        self.webhook_events.labels(outcome=outcome).inc()

    def discord_trace(self) -> aiohttp.TraceConfig:
        """A trace for discord.py's HTTP session (`http_trace=`): counts Discord's 429 answers as
        they arrive, whichever request got them (discord.py then waits them out by itself)."""
        trace = aiohttp.TraceConfig()

        async def on_request_end(
            _session: aiohttp.ClientSession, _context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
        ) -> None:
            if params.response.status == 429:
                self.record_discord_rate_limited()

        trace.on_request_end.append(on_request_end)
        return trace

    # ------------------------------------------------------------ exposition

    async def refresh(self) -> None:
        """Read the figures kept elsewhere: jobs by state (the database), memory (the system), the
        queue and the budget (`live_figures`).

        A database that does not answer leaves the last known job counts (and logs why).
        """
        rss, peak = memory_mb()
        self.memory.labels(kind="rss").set(rss * 1024 * 1024)
        self.memory.labels(kind="peak_rss").set(peak * 1024 * 1024)
        if self._live_figures is not None:
            self._live_figures(self)
        if self._jobs_by_state is None:
            return
        try:
            async with asyncio.timeout(_REFRESH_TIMEOUT):
                counts = await self._jobs_by_state()
        except Exception as exc:
            log.warning("metrics: jobs by state could not be read: %s", describe(exc))
            return
        for state in JobState:
            self.jobs.labels(state=state.value).set(counts.get(state.value, 0))

    def render(self) -> bytes:
        """The Prometheus text exposition of every figure."""
        return generate_latest(self.registry)


def _bucket(name: str) -> str:
    if name not in BUCKETS:
        raise ValueError(f"unknown provider bucket {name!r} (expected one of {', '.join(BUCKETS)})")
    return name
