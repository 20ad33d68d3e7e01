"""Webhooks end to end: the real bot (as `python -m bot` builds it) with its HTTP server, the fake
ToAPIs sending signed events to it, and the fake Discord showing what members see.

Status queries are set far apart (30 s) so that a job finishing within seconds can only have
learned its end from the event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.webhooks.signing import parse_signing_secret
from tests.core.test_http_server import fake_task
from tests.fakes.toapis import FakeToAPIs, TaskPlan
from tests.rig import RunningBot, StartBot, status_of

SECRET = bytes(range(32)).hex()
CALLBACK = "https://imagine.example.com/toapis/events"
WEBHOOKS: dict[str, Any] = {
    "http_port": 0,  # any free port: the test reads the one picked
    "toapis_callback_url": CALLBACK,
    "toapis_webhook_secrets": (parse_signing_secret(SECRET),),
    "poll_interval_queued": 30.0,
    "poll_interval_running": 30.0,
}
QUICK = TaskPlan(advance="time", step_seconds=0.2, steps=[("queued", 0), ("in_progress", 50)])


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def webhook_bot(start_bot: StartBot, toapis: FakeToAPIs, **overrides: Any) -> RunningBot:
    """The bot with webhooks on, and the ToAPIs console pointing (through the "proxy") at it."""
    rig = await start_bot(**{**WEBHOOKS, **overrides})
    assert rig.bot.http_server is not None
    toapis.webhooks.configure(CALLBACK, deliver_to=base(rig), secret=SECRET)
    return rig


def base(rig: RunningBot) -> str:
    assert rig.bot.http_server is not None
    return f"http://127.0.0.1:{rig.bot.http_server.port}"


async def metrics_once(
    http: aiohttp.ClientSession, rig: RunningBot, ready: Callable[[str], bool], within: float = 10.0
) -> str:
    """/metrics, read again until `ready` holds (the job's final write follows its message)."""
    async with asyncio.timeout(within):
        while True:
            async with http.get(base(rig) + "/metrics") as response:
                text = await response.text()
            if ready(text):
                return text
            await asyncio.sleep(0.05)


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"{name} {labels} not in /metrics")


async def test_a_completion_event_delivers_the_images_without_a_status_query(start_bot, toapis_fake) -> None:
    rig = await webhook_bot(start_bot, toapis_fake)
    toapis_fake.plan = QUICK
    record = await rig.imagine(prompt="a red fox in snow", n=2)
    message = await rig.finished(record, timeout=15)
    (task_id,) = toapis_fake.tasks
    assert (
        status_of(message).startswith("✅"),
        len(message.attachments),
        toapis_fake.polls[task_id],
        toapis_fake.submissions[0]["callback_url"],
        [a.status for a in toapis_fake.webhooks.attempts],
    ) == (True, 2, 0, CALLBACK, [200])


async def test_a_failure_event_ends_the_job_with_the_providers_reason(start_bot, toapis_fake) -> None:
    rig = await webhook_bot(start_bot, toapis_fake)
    toapis_fake.plan = TaskPlan(
        advance="time", step_seconds=0.2, steps=[("queued", 0)], outcome="failed", failure_message="Too spicy"
    )
    record = await rig.imagine(prompt="a red fox in snow")
    message = await rig.finished(record, timeout=15)
    (task_id,) = toapis_fake.tasks
    assert (status_of(message).splitlines()[0], toapis_fake.polls[task_id]) == (
        "❌ The image service could not make this image: Too spicy",
        0,
    )


async def test_an_event_delivered_twice_finishes_the_job_once(start_bot, toapis_fake, http) -> None:
    rig = await webhook_bot(start_bot, toapis_fake)
    toapis_fake.webhooks.duplicate = lambda task: True
    toapis_fake.plan = QUICK
    record = await rig.imagine(prompt="a red fox in snow")
    message = await rig.finished(record, timeout=15)
    await toapis_fake.webhooks.idle()
    text = await metrics_once(http, rig, lambda t: metric(t, "imagine_jobs", state="done") == 1)
    assert (
        status_of(message).startswith("✅"),
        [a.status for a in toapis_fake.webhooks.attempts],
        metric(text, "imagine_webhook_events_total", outcome="accepted"),
        metric(text, "imagine_webhook_events_total", outcome="duplicate"),
        metric(text, "imagine_jobs", state="done"),
    ) == (True, [200, 200], 1.0, 1.0, 1.0)


async def test_a_console_without_a_webhook_makes_the_bot_submit_without_callback_url(
    start_bot, toapis_fake, caplog
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.toapis.client")
    rig = await start_bot(**{**WEBHOOKS, "poll_interval_queued": 0.05, "poll_interval_running": 0.05})
    # The console has no webhook: ToAPIs refuses callback_url with 400 webhook_not_configured.
    first = await rig.finished(await rig.imagine(prompt="a red fox in snow"), timeout=15)
    second = await rig.finished(await rig.imagine(prompt="a grey wolf"), timeout=15)
    assert (
        status_of(first).startswith("✅"),
        status_of(second).startswith("✅"),
        toapis_fake.submit_attempts,
        ["callback_url" in body for body in toapis_fake.submissions],
        caplog.text.count("no webhook is configured for this API key in the ToAPIs console"),
    ) == (True, True, 3, [False, False], 1)


async def test_healthz_says_ok_while_the_bot_is_connected(start_bot, toapis_fake, http) -> None:
    rig = await webhook_bot(start_bot, toapis_fake)
    await rig.bot.wait_until_ready()  # every shard connected and its servers loaded
    async with http.get(base(rig) + "/healthz") as response:
        assert (response.status, await response.json(), rig.bot.gateway_connected()) == (
            200,
            {"status": "ok", "gateway": "connected", "database": "ok"},
            True,
        )


async def test_metrics_count_jobs_by_state_and_discords_429s(
    start_bot, toapis_fake, discord_fake, http
) -> None:
    rig = await start_bot(http_port=0)  # health and metrics without webhooks
    discord_fake.inject("PATCH", r"/webhooks/\d+/[^/]+/messages/\d+$", 429, times=1)
    message = await rig.finished(await rig.imagine(prompt="a red fox in snow"), timeout=15)
    text = await metrics_once(http, rig, lambda t: metric(t, "imagine_jobs", state="done") == 1)
    async with http.post(base(rig) + "/toapis/events", json={}) as response:
        webhook_route = response.status  # no TOAPIS_CALLBACK_URL: no webhook route
    assert (
        status_of(message).startswith("✅"),
        metric(text, "imagine_jobs", state="done"),
        metric(text, "imagine_jobs", state="running"),
        metric(text, "imagine_discord_rate_limited_total") >= 1,
        metric(text, "imagine_event_loop_lag_seconds_count") > 0,
        metric(text, "imagine_completion_to_final_message_seconds_count"),
        webhook_route,
    ) == (True, 1.0, 0.0, True, True, 1.0, 404)


async def test_metrics_show_the_queue_the_budget_in_use_and_the_detection_lag(start_bot, http) -> None:
    # A submit budget of one request, refilled every 100 s or so: the second job waits in line.
    rig = await start_bot(http_port=0, toapis_submit_per_second=0.01, toapis_submit_burst=1)
    first = await rig.finished(await rig.imagine(prompt="a red fox in snow"), timeout=15)
    await rig.imagine(prompt="a grey wolf in snow")
    text = await metrics_once(http, rig, lambda t: metric(t, "imagine_submission_queue_length") == 1)
    assert (
        status_of(first).startswith("✅"),
        metric(text, "imagine_submission_queue_length"),
        metric(text, "imagine_provider_budget_in_use_ratio", bucket="submit") > 0.9,
        0 <= metric(text, "imagine_provider_budget_in_use_ratio", bucket="query") < 0.5,
        metric(text, "imagine_detection_lag_seconds_count"),
    ) == (True, 1.0, True, True, 1.0)


async def test_metrics_count_the_providers_429s_by_bucket(start_bot, toapis_fake, http) -> None:
    rig = await start_bot(http_port=0, poll_interval_queued=0.05, poll_interval_running=0.05)
    toapis_fake.inject("POST", "/v1/images/generations", 429, None, headers={"Retry-After": "0"})
    toapis_fake.inject("GET", "/v1/images/generations/", 429, None, headers={"Retry-After": "0"}, times=2)
    message = await rig.finished(await rig.imagine(prompt="a red fox in snow"), timeout=15)
    text = await metrics_once(http, rig, lambda t: metric(t, "imagine_jobs", state="done") == 1)
    assert (
        status_of(message).startswith("✅"),
        metric(text, "imagine_provider_rate_limited_total", bucket="submit"),
        metric(text, "imagine_provider_rate_limited_total", bucket="query"),
    ) == (True, 1.0, 2.0)


async def test_a_webhook_for_another_application_is_answered_2xx_and_ignored(start_bot, toapis_fake) -> None:
    await webhook_bot(start_bot, toapis_fake)
    status, answer = await toapis_fake.webhooks.post(
        toapis_fake.webhooks.event_for(fake_task("task_of_another_app"), ["https://x.example/1.jpg"])
    )
    assert (status, answer) == (200, {"received": True, "ignored": True})
