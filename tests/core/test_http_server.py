"""The bot's HTTP server on loopback with a real store: webhook deliveries from the fake ToAPIs'
sender, health both ways, and metrics read back with Prometheus' own parser."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine

from bot.http_server import MAX_BODY_BYTES, HealthChecks, HttpServer
from bot.jobs.news import TaskNews
from bot.jobs.records import JobState, JobStore, NewJob
from bot.schema import webhook_events_table
from bot.store import Retry, Store
from bot.telemetry import Telemetry, count_jobs_by_state
from bot.webhooks.inbox import RefusalLog, WebhookInbox
from bot.webhooks.signing import parse_signing_secret
from tests.fakes.toapis import FakeTask, FakeWebhooks, TaskPlan

SECRET = bytes(range(32)).hex()
CALLBACK = "https://bot.example.com/toapis/events"
PATH = "/toapis/events"
URLS = ["https://files.example.com/a.jpg", "https://files.example.com/b.jpg"]


class Clock:
    """The refusal log's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gateway() -> dict[str, bool]:
    return {"up": True}


@pytest.fixture
def telemetry(store: Store) -> Telemetry:
    return Telemetry(jobs_by_state=lambda: count_jobs_by_state(store))


@pytest.fixture
def refusal_clock() -> Clock:
    return Clock()


def inbox_for(
    store: Store, news: TaskNews, telemetry: Telemetry | None = None, **options: Any
) -> WebhookInbox:
    return WebhookInbox(
        store, news, (parse_signing_secret(SECRET),), telemetry=telemetry, retry=Retry(within=0.3), **options
    )


@pytest.fixture
def news() -> TaskNews:
    return TaskNews()


@pytest.fixture
def inbox(store: Store, news: TaskNews, telemetry: Telemetry, refusal_clock: Clock) -> WebhookInbox:
    return inbox_for(store, news, telemetry, refusals=RefusalLog(clock=refusal_clock))


@pytest.fixture
async def server(
    store: Store, telemetry: Telemetry, inbox: WebhookInbox, gateway
) -> AsyncIterator[HttpServer]:
    http = HttpServer(
        "127.0.0.1",
        0,
        health=HealthChecks(gateway_connected=lambda: gateway["up"], database_answers=store.ping),
        telemetry=telemetry,
        inbox=inbox,
        webhook_path=PATH,
    )
    await http.start()
    yield http
    await http.close()


@pytest.fixture
async def sender(server: HttpServer) -> AsyncIterator[FakeWebhooks]:
    fake = FakeWebhooks()
    fake.configure(CALLBACK, deliver_to=f"http://127.0.0.1:{server.port}", secret=SECRET)
    yield fake
    await fake.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def fake_task(task_id: str, *, outcome: str = "completed") -> FakeTask:
    return FakeTask(
        id=task_id,
        model="doubao-seedream-5-0",
        prompt="a fox",
        n=2,
        size="1:1",
        plan=TaskPlan(outcome=outcome),  # type: ignore[arg-type]
        created=0.0,
        created_at=int(time.time()) - 10,
        image_names=[],
    )


async def running_job(store: Store, task_id: str) -> int:
    """A job of this bot whose task is `task_id`, running."""
    jobs = JobStore(store)
    job = await jobs.create(
        NewJob(
            guild_id=10,
            channel_id=30,
            user_id=3,
            application_id=1,
            interaction_token="itok",
            token_expires_at=time.time() + 900,
            upload_limit=10 * 1024 * 1024,
            prompt="a fox",
            model="doubao-seedream-5-0",
            ratio="1:1",
            n=2,
        )
    )
    await jobs.update(job.id, message_id=4000, state=JobState.RUNNING, task_id=task_id)
    return job.id


async def stored_events(store: Store) -> int:
    async with store.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(webhook_events_table))).scalar_one()


# ---------------------------------------------------------------- deliveries


async def test_a_completion_event_reaches_the_job_waiting_on_its_task(store, news, sender) -> None:
    await running_job(store, "task_a")
    news.watch("task_a")
    waiting = asyncio.create_task(news.wait("task_a", 30))
    status, answer = await sender.post(sender.event_for(fake_task("task_a"), URLS))
    got = await asyncio.wait_for(waiting, 5)
    assert (status, answer, got.status, got.image_urls) == (200, {"received": True}, "completed", tuple(URLS))


async def test_a_failure_event_reaches_the_job_with_the_providers_reason(store, news, sender) -> None:
    await running_job(store, "task_f")
    news.watch("task_f")
    status, _ = await sender.post(sender.event_for(fake_task("task_f", outcome="failed"), []))
    got = await news.wait("task_f", 0)
    assert (status, got.status, got.error_message) == (
        200,
        "failed",
        "The prompt was rejected by the content policy",
    )


async def test_a_repeated_event_answers_2xx_and_does_nothing(store, news, sender) -> None:
    await running_job(store, "task_d")
    news.watch("task_d")
    event = sender.event_for(fake_task("task_d"), URLS)
    first = await sender.post(event)
    taken = await news.wait("task_d", 0)
    second = await sender.post(event)  # at least once: the same id again, later
    assert (first[0], taken.status, second, await news.wait("task_d", 0), await stored_events(store)) == (
        200,
        "completed",
        (200, {"received": True, "duplicate": True}),
        None,
        1,
    )


async def test_an_event_for_a_task_no_job_knows_answers_2xx_and_is_ignored(store, news, sender) -> None:
    news.watch("task_elsewhere")  # even a watched id: no job of this bot has that task
    status, answer = await sender.post(sender.event_for(fake_task("task_elsewhere"), URLS))
    assert (status, answer, await news.wait("task_elsewhere", 0)) == (
        200,
        {"received": True, "ignored": True},
        None,
    )


async def test_the_consoles_test_event_answers_2xx_and_is_logged(sender, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bot.webhooks.inbox")
    event = sender.test_event()
    status, _ = await sender.post(event)
    assert (status, f"webhook test event {event['id']} received from the ToAPIs console" in caplog.text) == (
        200,
        True,
    )


async def test_a_rotated_secret_is_accepted_with_either_secret(store, news) -> None:
    previous, current = bytes(range(32)).hex(), bytes(range(40, 72)).hex()
    rotated = WebhookInbox(store, news, (parse_signing_secret(current), parse_signing_secret(previous)))
    http = HttpServer(
        "127.0.0.1",
        0,
        health=HealthChecks(lambda: True, store.ping),
        telemetry=Telemetry(),
        inbox=rotated,
        webhook_path=PATH,
    )
    await http.start()
    fake = FakeWebhooks()
    fake.configure(CALLBACK, deliver_to=f"http://127.0.0.1:{http.port}", secret=previous)
    try:
        by_old = (await fake.post(fake.test_event()))[0]
        assert fake.rotate() != previous
        fake.secret = current
        by_both = (await fake.post(fake.test_event()))[0]  # the provider signs with both for a day
        by_new = (await fake.post(fake.test_event(), secrets_=[current]))[0]
        by_neither = (await fake.post(fake.test_event(), secrets_=[bytes(32).hex()]))[0]
    finally:
        await fake.close()
        await http.close()
    assert (by_old, by_both, by_new, by_neither) == (200, 200, 200, 401)


# ---------------------------------------------------------------- refusals: nothing changes


async def refused_and_nothing_changed(store, news, sender, **spoil: Any) -> tuple[int, bool]:
    await running_job(store, "task_r")
    news.watch("task_r")
    event = sender.event_for(fake_task("task_r"), URLS)
    status, answer = await sender.post(event, **spoil)
    unchanged = await stored_events(store) == 0 and await news.wait("task_r", 0) is None
    assert SECRET not in str(answer)
    return status, unchanged


async def test_a_bad_signature_is_refused_401_with_nothing_changed(store, news, sender) -> None:
    assert await refused_and_nothing_changed(store, news, sender, signature="v1=" + "0" * 64) == (401, True)


async def test_a_wrong_secret_is_refused_401_with_nothing_changed(store, news, sender) -> None:
    wrong = bytes(range(1, 33)).hex()
    assert await refused_and_nothing_changed(store, news, sender, secrets_=[wrong]) == (401, True)


async def test_a_replay_with_an_old_timestamp_is_refused_401_with_nothing_changed(
    store, news, sender
) -> None:
    stale = int(time.time()) - 6 * 60
    assert await refused_and_nothing_changed(store, news, sender, timestamp=stale) == (401, True)


async def test_a_body_changed_after_signing_is_refused_401(store, news, sender) -> None:
    event = sender.event_for(fake_task("task_r"), URLS)
    stamp = str(int(time.time()))
    signed = sender.signature(event["id"], stamp, b"{}")
    assert await refused_and_nothing_changed(store, news, sender, signature=signed, timestamp=int(stamp)) == (
        401,
        True,
    )


async def test_a_wrong_content_type_is_refused_400_with_nothing_changed(store, news, sender) -> None:
    assert await refused_and_nothing_changed(store, news, sender, content_type="text/plain") == (400, True)


async def test_a_signed_body_that_is_not_an_event_is_refused_400(store, news, sender) -> None:
    assert await refused_and_nothing_changed(store, news, sender, body=b"not json") == (400, True)


async def test_missing_webhook_headers_are_refused_400(store, news, sender, server, http) -> None:
    async with http.post(f"http://127.0.0.1:{server.port}{PATH}", json={"id": "evt_x"}) as response:
        assert (response.status, await stored_events(store)) == (400, 0)


async def test_a_body_over_1_mb_is_refused_413_with_nothing_changed(store, sender, server, http) -> None:
    event = sender.event_for(fake_task("task_big"), URLS)
    big = b'{"pad":"' + b"x" * MAX_BODY_BYTES + b'"}'

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused while reading
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    declared = (await sender.post(event, body=big))[0]
    async with http.post(
        f"http://127.0.0.1:{server.port}{PATH}", data=chunks(), headers={"Content-Type": "application/json"}
    ) as response:
        streamed = response.status
    assert (declared, streamed, await stored_events(store)) == (413, 413, 0)


async def test_refusals_are_logged_once_a_minute_per_reason(sender, refusal_clock, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="bot.webhooks.inbox")
    for _ in range(5):
        await sender.post(sender.test_event(), signature="v1=" + "0" * 64)
    await sender.post(sender.test_event(), content_type="text/plain")  # another reason: its own line
    first = [r.getMessage() for r in caplog.records]
    refusal_clock.now += 61
    await sender.post(sender.test_event(), signature="v1=" + "0" * 64)
    later = [r.getMessage() for r in caplog.records][len(first) :]
    assert (first, later) == (
        [
            "webhook delivery refused with 401: the signature does not match the signing secret",
            "webhook delivery refused with 400: the content type is not application/json",
        ],
        [
            "webhook delivery refused with 401: the signature does not match the signing secret "
            "(4 more like it in the last minute)"
        ],
    )


async def test_an_event_the_database_cannot_take_is_answered_503_so_it_comes_again(
    store, sender, caplog
) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(sa.text("DROP TABLE webhook_events"))
    status, _ = await sender.post(sender.test_event())
    assert (status, "could not be stored; ToAPIs will retry it" in caplog.text) == (503, True)


async def test_unknown_paths_and_methods_are_404(server, http) -> None:
    base = f"http://127.0.0.1:{server.port}"
    statuses = []
    for method, path in (
        ("GET", "/"),
        ("GET", "/admin"),
        ("POST", "/toapis/other"),
        ("GET", PATH),
        ("POST", "/healthz"),
    ):
        async with http.request(method, base + path) as response:
            statuses.append(response.status)
    assert statuses == [404] * 5


# ---------------------------------------------------------------- between processes


async def test_an_event_received_by_another_process_reaches_the_job_through_the_table(store, sender) -> None:
    """`sender` posts to the server's inbox (process A); the job runs in process B."""
    await running_job(store, "task_b")
    news_b = TaskNews()
    relay_b = inbox_for(store, news_b)
    news_b.watch("task_b")
    await sender.post(sender.event_for(fake_task("task_b"), URLS))
    handed = await relay_b.relay_once()
    again = await relay_b.relay_once()  # handed once only
    got = await news_b.wait("task_b", 0)
    assert (handed, again, got.status, got.image_urls) == (1, 0, "completed", tuple(URLS))


async def test_an_event_that_came_before_the_job_knew_its_task_is_relayed_once_it_does(
    store, news, sender
) -> None:
    status, answer = await sender.post(sender.event_for(fake_task("task_early"), URLS))
    await running_job(store, "task_early")
    news.watch("task_early")
    relay = inbox_for(store, news)
    handed = await relay.relay_once()
    assert (status, answer["ignored"], handed, (await news.wait("task_early", 0)).status) == (
        200,
        True,
        1,
        "completed",
    )


async def test_old_events_are_pruned(store, news, sender) -> None:
    await sender.post(sender.test_event())
    relay = inbox_for(store, news)
    kept = await relay.prune(keep_seconds=3600)
    gone = await relay.prune(keep_seconds=-1)
    assert (kept, gone, await stored_events(store)) == (0, 1, 0)


# ---------------------------------------------------------------- health


async def test_healthz_is_200_when_the_gateway_is_connected_and_the_database_answers(server, http) -> None:
    async with http.get(f"http://127.0.0.1:{server.port}/healthz") as response:
        assert (response.status, await response.json()) == (
            200,
            {"status": "ok", "gateway": "connected", "database": "ok"},
        )


async def test_healthz_is_503_with_the_reason_when_the_gateway_is_down(server, http, gateway) -> None:
    gateway["up"] = False
    async with http.get(f"http://127.0.0.1:{server.port}/healthz") as response:
        assert (response.status, (await response.json())["reason"]) == (
            503,
            "the Discord gateway is not connected",
        )


async def test_healthz_is_503_with_the_reason_when_the_database_does_not_answer(http) -> None:
    with socket.socket() as probe:  # a port nothing listens on: the database server is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gone = Store(create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/imagine"))
    server = HttpServer("127.0.0.1", 0, health=HealthChecks(lambda: True, gone.ping), telemetry=Telemetry())
    await server.start()
    try:
        async with http.get(f"http://127.0.0.1:{server.port}/healthz") as response:
            answer = (response.status, await response.json())
    finally:
        await server.close()
        await gone.close()
    assert answer == (
        503,
        {
            "status": "unavailable",
            "gateway": "connected",
            "database": "unavailable",
            "reason": "the database does not answer",
        },
    )


async def test_a_port_already_taken_is_named(store) -> None:
    first = HttpServer("127.0.0.1", 0, health=HealthChecks(lambda: True, store.ping), telemetry=Telemetry())
    await first.start()
    second = HttpServer(
        "127.0.0.1", first.port, health=HealthChecks(lambda: True, store.ping), telemetry=Telemetry()
    )
    try:
        with pytest.raises(Exception) as caught:
            await second.start()
    finally:
        await first.close()
    assert str(caught.value).startswith(
        f"HTTP_PORT {first.port} cannot be listened on at HTTP_HOST 127.0.0.1"
    )


# ---------------------------------------------------------------- metrics


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, parsed by prometheus_client's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_parse_as_prometheus_text_with_every_figure(
    store, server, telemetry, sender, http
) -> None:
    await running_job(store, "task_m")
    await sender.post(sender.test_event())
    telemetry.set_queue_length(7)
    telemetry.set_budget_in_use("submit", 0.25)
    telemetry.set_budget_in_use("query", 1.5)  # clamped to the whole bucket
    telemetry.record_provider_rate_limited("query")
    telemetry.record_discord_rate_limited()
    telemetry.observe_detection_lag(0.2)
    telemetry.observe_completion_to_final_message(1.2)
    telemetry.observe_loop_lag(0.004)
    async with http.get(f"http://127.0.0.1:{server.port}/metrics") as response:
        content_type, found = response.headers["Content-Type"], samples(await response.text())
    assert content_type.startswith("text/plain; version=")
    assert (
        found[("imagine_jobs", (("state", "running"),))],
        found[("imagine_jobs", (("state", "done"),))],
        found[("imagine_submission_queue_length", ())],
        found[("imagine_provider_budget_in_use_ratio", (("bucket", "submit"),))],
        found[("imagine_provider_budget_in_use_ratio", (("bucket", "query"),))],
        found[("imagine_provider_rate_limited_total", (("bucket", "query"),))],
        found[("imagine_provider_rate_limited_total", (("bucket", "submit"),))],
        found[("imagine_discord_rate_limited_total", ())],
        found[("imagine_detection_lag_seconds_count", ())],
        found[("imagine_detection_lag_seconds_bucket", (("le", "0.2"),))],
        found[("imagine_completion_to_final_message_seconds_sum", ())],
        found[("imagine_event_loop_lag_seconds_count", ())],
        found[("imagine_webhook_events_total", (("outcome", "accepted"),))],
        found[("imagine_memory_bytes", (("kind", "rss"),))] > 10_000_000,
    ) == (1.0, 0.0, 7.0, 0.25, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.2, 1.0, 1.0, True)


async def test_an_unknown_provider_bucket_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        Telemetry().record_provider_rate_limited("upload")


async def test_two_telemetries_keep_their_own_figures() -> None:
    first, second = Telemetry(), Telemetry()
    first.record_discord_rate_limited()
    assert (
        samples(first.render().decode())[("imagine_discord_rate_limited_total", ())],
        samples(second.render().decode())[("imagine_discord_rate_limited_total", ())],
    ) == (1.0, 0.0)


async def test_discords_429_answers_are_counted_through_the_http_trace() -> None:
    telemetry = Telemetry()

    async def limited(request: web.Request) -> web.Response:
        return web.json_response(
            {"message": "You are being rate limited.", "retry_after": 0.1, "global": False}, status=429
        )

    async def fine(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/limited", limited)
    app.router.add_get("/fine", fine)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession(trace_configs=[telemetry.discord_trace()]) as session:
            for path in ("/limited", "/fine", "/limited"):
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    await response.read()
    finally:
        await runner.cleanup()
    assert samples(telemetry.render().decode())[("imagine_discord_rate_limited_total", ())] == 2.0
