"""The fake ToAPIs sends webhooks the way the documentation says the real one does (§3).

A small aiohttp receiver stands for the bot behind its proxy; it records what arrives, checks the
signature independently of the bot's code, and answers what the test tells it to.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.toapis import FakeToAPIs, TaskPlan

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CALLBACK = "https://imagine.example.com/toapis/events"
BODY = {"model": "doubao-seedream-5-0", "prompt": "a fox", "n": 2}
QUICK = TaskPlan(advance="time", step_seconds=0.05, steps=[("queued", 0)])


@dataclass
class Receiver:
    """Records each delivery; answers `statuses` in turn (then 200)."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append((request.path_qs, dict(request.headers), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 302:
            raise web.HTTPFound("/elsewhere")
        return web.json_response({}, status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recorder = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recorder.port = runner.addresses[0][1]
    yield recorder
    await runner.cleanup()


@pytest.fixture
async def fake(receiver: Receiver) -> AsyncIterator[FakeToAPIs]:
    async with FakeToAPIs(api_key=KEY) as server:
        server.webhooks.configure(CALLBACK, deliver_to=f"http://127.0.0.1:{receiver.port}")
        server.webhooks.delay = 0.0
        server.webhooks.retry_scale = 0.001
        yield server


async def submit(fake: FakeToAPIs, **extra: Any) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url("/v1/images/generations"), json={**BODY, **extra}, headers=AUTH) as response,
    ):
        return response.status, await response.json()


async def test_a_finished_task_sends_one_signed_event_with_the_documented_shape(fake, receiver) -> None:
    fake.plan = QUICK
    _, task = await submit(fake)
    await fake.webhooks.idle()
    ((path, headers, raw),) = receiver.received
    event = json.loads(raw)
    stamp = headers["X-ToAPIs-Webhook-Timestamp"]
    expected = hmac.new(
        bytes.fromhex(fake.webhooks.secret), f"{event['id']}.{stamp}.".encode() + raw, hashlib.sha256
    ).hexdigest()
    assert (
        path,
        headers["Content-Type"],
        headers["X-ToAPIs-Webhook-Id"] == event["id"],
        headers["X-ToAPIs-Webhook-Signature"] == f"v1={expected}",
        event["type"],
        event["api_version"],
        event["data"]["task_id"] == task["id"],
        event["data"]["status"],
        event["data"]["progress"],
        len(event["data"]["result"]["data"]),
    ) == (
        "/toapis/events",
        "application/json",
        True,
        True,
        "generation.completed",
        "v1",
        True,
        "SUCCESS",
        "100%",
        2,
    )


async def test_a_failed_task_sends_a_failure_event_with_its_error(fake, receiver) -> None:
    fake.plan = TaskPlan(advance="time", step_seconds=0.05, steps=[("queued", 0)], outcome="failed")
    await submit(fake)
    await fake.webhooks.idle()
    event = json.loads(receiver.received[0][2])
    assert (
        event["type"],
        event["data"]["status"],
        event["data"]["error"]["code"],
        event["data"]["result"],
    ) == (
        "generation.failed",
        "FAILURE",
        "content_policy_violation",
        None,
    )


async def test_anything_but_a_2xx_is_retried_and_redirects_are_not_followed(fake, receiver) -> None:
    receiver.statuses = [500, 302, 401]
    fake.plan = QUICK
    await submit(fake)
    await fake.webhooks.idle()
    assert [(a.attempt, a.status) for a in fake.webhooks.attempts] == [(1, 500), (2, 302), (3, 401), (4, 200)]


async def test_an_event_sometimes_comes_twice_and_sometimes_never(fake, receiver) -> None:
    fake.webhooks.duplicate = lambda task: task.prompt == "twice"
    fake.webhooks.lose = lambda task: task.prompt == "never"
    fake.plan = QUICK
    for prompt in ("twice", "never", "once"):
        await submit(fake, prompt=prompt)
    await fake.webhooks.idle()
    ids = [json.loads(raw)["data"]["task_id"] for _, _, raw in receiver.received]
    by_prompt = {task.prompt: ids.count(task.id) for task in fake.tasks.values()}
    assert by_prompt == {"twice": 2, "never": 0, "once": 1}


async def test_after_a_rotation_both_secrets_sign(fake, receiver) -> None:
    old = fake.webhooks.secret
    new = fake.webhooks.rotate()
    await fake.webhooks.send_test()
    _, headers, raw = receiver.received[0]
    event_id, stamp = headers["X-ToAPIs-Webhook-Id"], headers["X-ToAPIs-Webhook-Timestamp"]
    expected = [
        "v1=" + hmac.new(bytes.fromhex(s), f"{event_id}.{stamp}.".encode() + raw, hashlib.sha256).hexdigest()
        for s in (new, old)
    ]
    assert headers["X-ToAPIs-Webhook-Signature"].split(",") == expected


async def test_callback_url_without_a_configured_webhook_is_refused(fake) -> None:
    fake.webhooks.callback_url = None
    status, body = await submit(fake, callback_url=CALLBACK)
    assert (status, body["error"]["code"], fake.tasks) == (400, "webhook_not_configured", {})


async def test_callback_url_must_keep_the_consoles_scheme_host_and_port(fake, receiver) -> None:
    refused = await submit(fake, callback_url="https://evil.example.com/toapis/events")
    fake.plan = QUICK
    accepted = await submit(fake, callback_url="https://imagine.example.com/other/path?job=1")
    await fake.webhooks.idle()
    assert (refused[0], accepted[0], [path for path, _, _ in receiver.received]) == (
        400,
        200,
        ["/other/path?job=1"],
    )
