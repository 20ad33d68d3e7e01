"""The fake ToAPIs enforces the account's rate limits the way the documentation says the real one does.

These talk to the fake with plain aiohttp, so they test the fake itself, not the bot's client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.fakes.toapis import FakeToAPIs, ProviderRateLimits

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY = {"model": "doubao-seedream-4-0", "prompt": "a lighthouse", "size": "1:1", "n": 1}


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[FakeToAPIs]:
    async with FakeToAPIs(api_key=KEY) as server:
        server.clock = Clock()
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def _submit(session: aiohttp.ClientSession, fake: FakeToAPIs) -> aiohttp.ClientResponse:
    async with session.post(fake.url("/v1/images/generations"), json=BODY, headers=AUTH) as response:
        await response.read()
        return response


async def test_submissions_beyond_the_burst_get_429_with_the_documented_headers(
    fake: FakeToAPIs, session: aiohttp.ClientSession
) -> None:
    statuses = [(await _submit(session, fake)).status for _ in range(51)]
    assert statuses.count(200) == 50
    refused = await _submit(session, fake)
    assert refused.status == 429
    assert refused.headers["X-RateLimit-Category"] == "async_submit"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["X-RateLimit-Limit"] == "50"
    assert int(refused.headers["Retry-After"]) >= 1
    assert "X-RateLimit-Reset" in refused.headers
    body = await refused.json()
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert fake.rate_limited["async_submit"] == 2
    assert len(fake.submissions) == 50  # a refused request creates nothing


async def test_the_bucket_refills_at_its_rate_and_refusals_cost_nothing(
    fake: FakeToAPIs, session: aiohttp.ClientSession
) -> None:
    fake.rate_limits = ProviderRateLimits.group(submit=(5, 2), query=(50, 500))
    assert [(await _submit(session, fake)).status for _ in range(3)] == [200, 200, 429]
    fake.clock.now += 0.2  # type: ignore[attr-defined]  # one token refilled; the 429 took none
    assert (await _submit(session, fake)).status == 200
    assert (await _submit(session, fake)).status == 429


async def test_status_queries_have_their_own_bucket(fake: FakeToAPIs, session: aiohttp.ClientSession) -> None:
    fake.rate_limits = ProviderRateLimits.group(submit=(5, 1), query=(50, 3))
    response = await _submit(session, fake)
    task_id = next(iter(fake.tasks))
    assert response.status == 200
    assert (await _submit(session, fake)).status == 429  # submissions are used up…
    statuses = []
    for _ in range(4):  # …but status queries are not
        async with session.get(fake.url(f"/v1/images/generations/{task_id}"), headers=AUTH) as r:
            statuses.append(r.status)
            category = r.headers.get("X-RateLimit-Category")
    assert statuses == [200, 200, 200, 429]
    assert category == "async_query"
    assert fake.rate_limited == {"async_submit": 1, "async_query": 1}


async def test_queries_sooner_than_advised_are_counted(
    fake: FakeToAPIs, session: aiohttp.ClientSession
) -> None:
    await _submit(session, fake)
    task_id = next(iter(fake.tasks))
    for step in (4.0, 6.0, 5.5, 1.0):  # the first is 4 s after creation: too soon; the last too
        fake.clock.now += step  # type: ignore[attr-defined]
        async with session.get(fake.url(f"/v1/images/generations/{task_id}"), headers=AUTH) as r:
            assert r.status == 200
    assert fake.queries_sooner_than(5.0) == 2
    assert fake.queries_sooner_than(0.5) == 0


async def test_limits_can_be_turned_off(fake: FakeToAPIs, session: aiohttp.ClientSession) -> None:
    fake.rate_limits = None
    assert all([(await _submit(session, fake)).status == 200 for _ in range(60)])
