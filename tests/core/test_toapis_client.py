"""The real ToAPIs client against the real fake server on loopback."""

from __future__ import annotations

import ast
import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot import toapis
from bot.toapis import (
    AuthenticationError,
    BadRequestError,
    Balance,
    DownloadRefusedError,
    DownloadTooLargeError,
    InsufficientBalanceError,
    InvalidResponseError,
    RateLimitedError,
    ServerError,
    SubmissionUnconfirmedError,
    TaskStatus,
    ToAPIsClient,
    ToAPIsConnectionError,
    ToAPIsError,
    ToAPIsTimeoutError,
    is_public_address,
    parse_balance,
)
from bot.toapis.budget import RateBudget, RateLimits
from tests.fakes.toapis import FakeToAPIs, ProviderRateLimits, TaskPlan, make_image

KEY = "imagine-secret-key-0123456789"
GENERATIONS = "/v1/images/generations"
UPLOADS = "/v1/uploads/images"
# Any-valued, so tests can also send what the provider would refuse.
SUBMIT: dict[str, Any] = {
    "model": "doubao-seedream-5-0",
    "prompt": "a red fox in snow",
    "size": "1:1",
    "n": 2,
}


class RecordingSleep:
    """Stands in for asyncio.sleep: remembers the requested delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture
async def fake() -> AsyncIterator[FakeToAPIs]:
    async with FakeToAPIs(api_key=KEY) as server:
        yield server


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def make_client(fake: FakeToAPIs, sleeps: RecordingSleep) -> AsyncIterator[Callable[..., ToAPIsClient]]:
    clients: list[ToAPIsClient] = []

    def factory(**options: object) -> ToAPIsClient:
        settings: dict[str, object] = {"sleep": sleeps, "rng": lambda: 0.5, "request_timeout": 5.0}
        settings.update(options)
        base_url = str(settings.pop("base_url", fake.base_url))
        api_key = str(settings.pop("api_key", KEY))
        client = ToAPIsClient(base_url, api_key, **settings)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
def client(make_client: Callable[..., ToAPIsClient]) -> ToAPIsClient:
    return make_client()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def requests_to(fake: FakeToAPIs, method: str, prefix: str) -> int:
    return sum(1 for r in fake.requests if r.method == method and r.path.startswith(prefix))


async def poll_until_final(client: ToAPIsClient, task: TaskStatus) -> TaskStatus:
    for _ in range(20):
        if task.is_final:
            return task
        task = await client.get_task(task.id)
    raise AssertionError("task never finished")


# --------------------------------------------------------------------------- happy path


async def test_submit_returns_a_queued_task(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    task = await client.submit(**SUBMIT)
    assert (task.id in fake.tasks, task.status, task.progress) == (True, "queued", 0)


async def test_submit_sends_n_as_a_json_integer(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    await client.submit(**SUBMIT)
    assert type(fake.submissions[0]["n"]) is int


async def test_submit_omits_empty_reference_images_and_metadata(
    client: ToAPIsClient, fake: FakeToAPIs
) -> None:
    await client.submit(**SUBMIT)
    assert set(fake.submissions[0]) == {"model", "prompt", "size", "n"}


async def test_submit_sends_reference_images_and_metadata(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    refs = ["https://example.com/ref.png"]
    await client.submit(**SUBMIT, image_urls=refs, metadata={"resolution": "3K"})
    sent = fake.submissions[0]
    assert (sent["image_urls"], sent["metadata"]) == (refs, {"resolution": "3K"})


async def test_submit_deep_merges_extra_fields(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    await client.submit(
        **SUBMIT, metadata={"resolution": "2K"}, extra_fields={"metadata": {"resolution": "3K"}}
    )
    assert fake.submissions[0]["metadata"] == {"resolution": "3K"}


async def test_submit_refuses_extra_fields_that_change_core_fields(
    client: ToAPIsClient, fake: FakeToAPIs
) -> None:
    with pytest.raises(ValueError):
        await client.submit(**SUBMIT, extra_fields={"n": 15})
    assert fake.submit_attempts == 0


async def test_requests_carry_bearer_key_and_user_agent(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    await client.submit(**SUBMIT)
    headers = fake.requests[-1].headers
    assert (headers["Authorization"], headers["User-Agent"]) == (f"Bearer {KEY}", "imagine-bot")


async def test_polling_walks_the_planned_steps_to_completion(client: ToAPIsClient) -> None:
    task = await client.submit(**SUBMIT)
    seen = [(task.status, task.progress)]
    while not task.is_final:
        task = await client.get_task(task.id)
        seen.append((task.status, task.progress))
    assert seen == [("queued", 0), ("in_progress", 40), ("in_progress", 80), ("completed", 100)]


async def test_completed_task_downloads_the_planned_images(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    fake.plan = TaskPlan(image_size=(32, 24), image_format="PNG")
    task = await poll_until_final(client, await client.submit(**SUBMIT))
    images = [await client.download(url) for url in task.image_urls]
    assert images == [make_image(32, 24, "PNG", seed=0), make_image(32, 24, "PNG", seed=1)]


@pytest.mark.parametrize(("shape", "count"), [("data", 3), ("images", 3), ("images_nested", 3), ("url", 1)])
async def test_every_result_shape_yields_the_image_urls(
    client: ToAPIsClient, fake: FakeToAPIs, shape: str, count: int
) -> None:
    fake.plan = TaskPlan(result_shape=shape)  # type: ignore[arg-type]
    task = await poll_until_final(client, await client.submit(**{**SUBMIT, "n": 3}))
    assert list(task.image_urls) == fake.image_urls(task.id)[:count]


async def test_failed_task_reports_the_provider_reason(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    fake.plan = TaskPlan(outcome="failed")
    task = await poll_until_final(client, await client.submit(**SUBMIT))
    assert (task.status, task.error_message, task.error_code) == (
        "failed",
        "The prompt was rejected by the content policy",
        "content_policy_violation",
    )


async def test_time_based_plan_advances_with_the_fake_clock(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    now = [100.0]
    fake.clock = lambda: now[0]
    fake.plan = TaskPlan(advance="time", step_seconds=2.0)
    task = await client.submit(**SUBMIT)
    now[0] += 2.5
    middle = await client.get_task(task.id)
    now[0] += 10
    final = await client.get_task(task.id)
    assert (middle.progress, final.status) == (40, "completed")


async def test_task_id_is_quoted_into_a_single_path_segment(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    with pytest.raises(BadRequestError):
        await client.get_task("../uploads/x y")
    assert fake.requests[-1].raw_path == f"{GENERATIONS}/..%2Fuploads%2Fx%20y"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, InsufficientBalanceError),
        (403, InsufficientBalanceError),
        (404, BadRequestError),
        (422, BadRequestError),
        (429, RateLimitedError),
        (500, ServerError),
        (503, ServerError),
    ],
)
async def test_http_status_maps_to_its_error(
    make_client: Callable[..., ToAPIsClient], fake: FakeToAPIs, status: int, error: type[ToAPIsError]
) -> None:
    client = make_client(max_get_attempts=1)
    fake.inject("GET", GENERATIONS, status, {"error": {"message": "nope", "type": "x"}})
    with pytest.raises(error) as info:
        await client.get_task("task_img_1")
    assert (type(info.value), info.value.status) == (error, status)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": {"message": "Invalid size '5:4'", "type": "invalid_request_error"}}, "Invalid size '5:4'"),
        ({"success": False, "message": "Prompt blocked by policy"}, "Prompt blocked by policy"),
        ({"error": "plain string error"}, "plain string error"),
        ({"message": "plain string message"}, "plain string message"),
        ("<html><body>Bad gateway page</body></html>", "Bad Request"),
    ],
)
async def test_bad_request_carries_the_provider_message(
    client: ToAPIsClient, fake: FakeToAPIs, body: object, expected: str
) -> None:
    fake.inject("POST", GENERATIONS, 400, body)  # type: ignore[arg-type]
    with pytest.raises(BadRequestError) as info:
        await client.submit(**SUBMIT)
    assert info.value.provider_message == expected


async def test_invalid_submission_is_refused_by_the_fake_like_the_provider(client: ToAPIsClient) -> None:
    with pytest.raises(BadRequestError) as info:
        await client.submit(**{**SUBMIT, "size": "5:4"})
    assert "size" in info.value.provider_message


REF = "https://example.com/ref.png"


@pytest.mark.parametrize(
    "changes",
    [
        {"model": "doubao-seedream-9-9"},
        {"prompt": "   "},
        {"size": "auto"},
        {"n": 0},
        {"n": 16},
        {"image_urls": [REF] * 11},
        {"image_urls": [REF] * 10, "n": 6},
        {"image_urls": ["data:image/png;base64,AAAA"]},
        {"metadata": {"resolution": "8K"}},
        {"metadata": {"resolution": "4K"}},
        {"model": "doubao-seedream-4-5", "metadata": {"resolution": "1K"}},
        {"model": "doubao-seedream-5-0-pro", "n": 11},
        {"metadata": {"watermark": "false"}},
        {"model": "doubao-seedream-4-0", "metadata": {"optimize_prompt_options": {"mode": "turbo"}}},
        {"metadata": {"optimize_prompt_options": {"mode": "fast"}}},
    ],
    ids=[
        "model",
        "prompt",
        "auto-without-refs",
        "n0",
        "n16",
        "refs11",
        "refs+n>15",
        "data-url",
        "resolution",
        "resolution-of-another-model",
        "resolution-4-5",
        "pro-n11",
        "watermark-not-boolean",
        "unknown-speed-mode",
        "speed-mode-on-5-0",
    ],
)
async def test_fake_refuses_submissions_the_provider_would_refuse(
    client: ToAPIsClient, fake: FakeToAPIs, changes: dict[str, object]
) -> None:
    with pytest.raises(BadRequestError):
        await client.submit(**{**SUBMIT, **changes})
    assert fake.submissions == []


async def test_fake_accepts_auto_size_with_reference_images(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    await client.submit(
        **{**SUBMIT, "model": "doubao-seedream-4-0", "size": "auto"},
        image_urls=[REF],
        metadata={"resolution": "4K"},
    )
    assert len(fake.submissions) == 1


async def test_wrong_key_on_submit_raises_authentication_error(
    make_client: Callable[..., ToAPIsClient], fake: FakeToAPIs
) -> None:
    client = make_client(api_key="wrong-key")
    with pytest.raises(AuthenticationError):
        await client.submit(**SUBMIT)
    assert fake.submissions == []


async def test_api_key_never_appears_in_error_messages(
    make_client: Callable[..., ToAPIsClient], fake: FakeToAPIs
) -> None:
    client = make_client(max_get_attempts=1, max_submit_attempts=1)
    echo = {"error": {"message": f"Key {KEY} is not valid; header was Bearer {KEY}"}}
    fake.inject("GET", GENERATIONS, 401, echo)
    fake.inject("GET", GENERATIONS, 400, echo)
    fake.inject("POST", GENERATIONS, 422, {"success": False, "message": f"bad key {KEY}"})
    fake.inject("GET", GENERATIONS, 500, echo)
    errors: list[ToAPIsError] = []
    for call in (client.get_task, client.get_task, None, client.get_task):
        with pytest.raises(ToAPIsError) as info:
            await (call("t") if call else client.submit(**SUBMIT))
        errors.append(info.value)
    texts = [f"{e} {e!r} {getattr(e, 'provider_message', '')}" for e in errors]
    assert [KEY in text for text in texts] == [False, False, False, False]


async def test_client_repr_hides_the_key(client: ToAPIsClient) -> None:
    assert KEY not in repr(client)


async def test_unreadable_task_answer_raises_invalid_response(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    fake.inject("GET", GENERATIONS, 200, "definitely not json")
    with pytest.raises(InvalidResponseError):
        await client.get_task("task_img_1")


async def test_unreadable_submission_answer_is_unconfirmed(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    fake.inject("POST", GENERATIONS, 200, {"object": "generation.task"})
    with pytest.raises(SubmissionUnconfirmedError) as info:
        await client.submit(**SUBMIT)
    assert isinstance(info.value, InvalidResponseError)


# --------------------------------------------------------------------------- status queries: one request each


async def test_a_status_query_refused_for_rate_raises_with_retry_after_and_sends_once(
    client: ToAPIsClient, fake: FakeToAPIs, sleeps: RecordingSleep
) -> None:
    task = await client.submit(**SUBMIT)
    fake.inject("GET", GENERATIONS, 429, {"error": {"message": "slow down"}}, headers={"Retry-After": "3"})
    with pytest.raises(RateLimitedError) as info:
        await client.get_task(task.id)
    assert (info.value.retry_after, sleeps.delays, requests_to(fake, "GET", GENERATIONS)) == (3.0, [], 1)


async def test_a_status_query_answered_5xx_raises_without_a_retry(
    client: ToAPIsClient, fake: FakeToAPIs, sleeps: RecordingSleep
) -> None:
    task = await client.submit(**SUBMIT)
    fake.inject("GET", GENERATIONS, 502, "Bad Gateway", times=2)
    with pytest.raises(ServerError):
        await client.get_task(task.id)
    assert (requests_to(fake, "GET", GENERATIONS), sleeps.delays) == (1, [])


async def test_get_backoff_is_capped_and_jittered(
    make_client: Callable[..., ToAPIsClient], fake: FakeToAPIs, sleeps: RecordingSleep
) -> None:
    client = make_client(max_get_attempts=6, backoff_base=1.0, backoff_cap=4.0, rng=lambda: 0.5)
    fake.inject("GET", "/v1/balance", 503, times=10)
    with pytest.raises(ServerError):
        await client.balance()
    assert sleeps.delays == [0.5, 1.0, 2.0, 2.0, 2.0]


async def test_get_gives_up_after_max_attempts(
    make_client: Callable[..., ToAPIsClient], fake: FakeToAPIs
) -> None:
    client = make_client(max_get_attempts=3)
    fake.inject("GET", "/v1/balance", 500, {"error": {"message": "boom"}}, times=10)
    with pytest.raises(ServerError):
        await client.balance()
    assert requests_to(fake, "GET", "/v1/balance") == 3


async def test_get_is_not_retried_on_400(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    with pytest.raises(BadRequestError):
        await client.get_task("no-such-task")
    assert requests_to(fake, "GET", GENERATIONS) == 1


async def test_a_status_query_on_a_dropped_connection_raises_connection_error(
    client: ToAPIsClient, fake: FakeToAPIs
) -> None:
    task = await client.submit(**SUBMIT)
    fake.inject("GET", GENERATIONS, None, drop=True, times=2)
    with pytest.raises(ToAPIsConnectionError):
        await client.get_task(task.id)


async def test_get_times_out_then_raises_timeout_error(
    make_client: Callable[..., ToAPIsClient], fake: FakeToAPIs
) -> None:
    client = make_client(request_timeout=0.2, max_get_attempts=2)
    fake.inject("GET", GENERATIONS, 200, {"id": "late", "status": "queued"}, delay=10, times=2)
    with pytest.raises(ToAPIsTimeoutError):
        await client.get_task("late")
    assert requests_to(fake, "GET", GENERATIONS) == 1


async def test_get_on_a_closed_port_raises_connection_error(
    make_client: Callable[..., ToAPIsClient], sleeps: RecordingSleep
) -> None:
    client = make_client(base_url=closed_port_url(), max_get_attempts=3)
    with pytest.raises(ToAPIsConnectionError):
        await client.get_task("task_img_1")
    assert len(sleeps.delays) == 0


# --------------------------------------------------------------------------- submission safety


async def test_submit_is_not_retried_on_500(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    fake.inject("POST", GENERATIONS, 500, {"error": {"message": "internal"}}, times=5)
    with pytest.raises(ServerError):
        await client.submit(**SUBMIT)
    assert fake.submit_attempts == 1


async def test_a_429_on_submit_reaches_the_caller_at_once_with_its_retry_after(
    client: ToAPIsClient, fake: FakeToAPIs, sleeps: RecordingSleep
) -> None:
    # The caller (the submission queue) takes a submit token before every attempt: the client
    # must not send a second request on its own.
    fake.inject("POST", GENERATIONS, 429, None, headers={"Retry-After": "1"}, times=10)
    with pytest.raises(RateLimitedError) as info:
        await client.submit(**SUBMIT)
    assert (
        info.value.retry_after,
        info.value.status,
        fake.submit_attempts,
        fake.submissions,
        sleeps.delays,
    ) == (
        1.0,
        429,
        1,
        [],
        [],
    )


async def test_a_503_rate_limit_unavailable_on_submit_is_a_refusal_for_rate(
    client: ToAPIsClient, fake: FakeToAPIs
) -> None:
    body = {
        "error": {
            "message": "Rate limiter unavailable",
            "type": "rate_limit_error",
            "code": "rate_limit_unavailable",
        }
    }
    fake.inject("POST", GENERATIONS, 503, body)
    with pytest.raises(RateLimitedError) as info:
        await client.submit(**SUBMIT)
    assert (info.value.status, fake.submit_attempts, fake.submissions) == (503, 1, [])


async def test_another_503_on_submit_is_a_server_error_sent_once(
    client: ToAPIsClient, fake: FakeToAPIs
) -> None:
    fake.inject("POST", GENERATIONS, 503, {"success": False, "message": "overloaded"})
    with pytest.raises(ServerError) as info:
        await client.submit(**SUBMIT)
    assert (type(info.value), info.value.status, fake.submit_attempts) == (ServerError, 503, 1)


async def test_submit_read_timeout_is_unconfirmed_and_sent_once(
    make_client: Callable[..., ToAPIsClient], fake: FakeToAPIs
) -> None:
    client = make_client(request_timeout=0.2)
    fake.inject("POST", GENERATIONS, 200, {"id": "task_img_late", "status": "queued"}, delay=10)
    with pytest.raises(SubmissionUnconfirmedError):
        await client.submit(**SUBMIT)
    assert fake.submit_attempts == 1


async def test_submission_accepted_then_dropped_is_unconfirmed_and_not_resent(
    client: ToAPIsClient, fake: FakeToAPIs
) -> None:
    fake.inject("POST", GENERATIONS, None, accept_then_drop=True)
    with pytest.raises(SubmissionUnconfirmedError):
        await client.submit(**SUBMIT)
    assert (fake.submit_attempts, len(fake.submissions)) == (1, 1)


async def test_submit_to_a_closed_port_is_retried_then_raises_connection_error(
    make_client: Callable[..., ToAPIsClient], sleeps: RecordingSleep
) -> None:
    client = make_client(base_url=closed_port_url(), max_submit_attempts=3)
    with pytest.raises(ToAPIsConnectionError):
        await client.submit(**SUBMIT)
    assert len(sleeps.delays) == 2


async def test_submit_rejects_n_that_is_not_an_int(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    with pytest.raises(TypeError):
        await client.submit(**{**SUBMIT, "n": "2"})
    assert fake.submit_attempts == 0


# --------------------------------------------------------------------------- downloads


async def test_download_never_sends_the_authorization_header(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    url = fake.add_file("plain.jpg", make_image(16, 16))
    await client.download(url)
    assert "Authorization" not in fake.download_requests[0].headers


async def test_download_refuses_a_declared_oversize_file(
    make_client: Callable[..., ToAPIsClient], fake: FakeToAPIs
) -> None:
    client = make_client(max_download_bytes=50_000)
    url = fake.add_file("big.jpg", make_image(256, 256, noisy=True))
    with pytest.raises(DownloadTooLargeError):
        await client.download(url)
    assert fake.downloads == 1


async def test_download_stops_a_streamed_file_at_the_byte_cap(
    make_client: Callable[..., ToAPIsClient], fake: FakeToAPIs
) -> None:
    client = make_client(max_download_bytes=50_000)
    fake.add_file("big.png", make_image(256, 256, "PNG", noisy=True), "image/png")
    with pytest.raises(DownloadTooLargeError):
        await client.download(fake.stream_url("big.png"))


async def test_download_of_a_streamed_file_under_the_cap_returns_its_bytes(
    client: ToAPIsClient, fake: FakeToAPIs
) -> None:
    data = make_image(128, 128, noisy=True)
    fake.add_file("ok.jpg", data)
    assert await client.download(fake.stream_url("ok.jpg")) == data


async def test_download_of_a_planned_oversize_result_is_refused(
    make_client: Callable[..., ToAPIsClient], fake: FakeToAPIs
) -> None:
    client = make_client(max_download_bytes=100_000)
    fake.plan = TaskPlan(image_size=(400, 400), noisy=True)
    task = await poll_until_final(client, await client.submit(**{**SUBMIT, "n": 1}))
    with pytest.raises(DownloadTooLargeError):
        await client.download(task.image_urls[0])


async def test_download_is_bounded_in_time(
    make_client: Callable[..., ToAPIsClient], fake: FakeToAPIs
) -> None:
    client = make_client(download_timeout=0.3, max_get_attempts=1)
    fake.add_file("trickle.jpg", b"x" * 100_000)
    with pytest.raises(ToAPIsTimeoutError):
        await client.download(fake.slow_url("trickle.jpg"))


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "data:image/png;base64,AAAA", "not a url", ""]
)
async def test_download_rejects_non_http_urls(client: ToAPIsClient, fake: FakeToAPIs, url: str) -> None:
    with pytest.raises(InvalidResponseError):
        await client.download(url)
    assert fake.downloads == 0


async def test_download_is_retried_on_5xx(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    data = make_image(16, 16, seed=3)
    url = fake.add_file("flaky.jpg", data)
    fake.inject("GET", "/files/", 502)
    assert await client.download(url) == data


async def test_download_of_an_expired_link_is_a_bad_request_not_an_account_problem(
    client: ToAPIsClient, fake: FakeToAPIs
) -> None:
    with pytest.raises(BadRequestError) as info:
        await client.download(fake.url("/files/expired.jpg"))
    assert (info.value.status, fake.downloads) == (404, 1)


# --------------------------------------------------------------------------- where downloads may go


def port_of(fake: FakeToAPIs) -> int:
    return int(fake.base_url.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost:{port}/files/ok.jpg",  # loopback by name, not the API's host
        "http://localhost:{port}/files/ok.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:127.0.0.1]:{port}/files/ok.jpg",  # loopback wrapped in IPv6
        "https://[::1]:{port}/files/ok.jpg",
        "https://10.0.0.1/a.jpg",
        "https://100.64.0.1/a.jpg",  # carrier-grade NAT
        "https://0.0.0.0:{port}/files/ok.jpg",
        "https://224.0.0.1/a.jpg",
        "http://files.example.com/a.jpg",  # plain HTTP to a public-looking host
    ],
)
async def test_download_refuses_addresses_outside_the_public_internet(
    client: ToAPIsClient, fake: FakeToAPIs, url: str
) -> None:
    fake.add_file("ok.jpg", make_image(16, 16))
    with pytest.raises(DownloadRefusedError) as info:
        await client.download(url.format(port=port_of(fake)))
    assert (str(info.value).endswith("so it was not fetched."), fake.downloads) == (True, 0)


@pytest.mark.parametrize(
    "location",
    [
        "https://localhost:{port}/files/ok.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "https://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://files.example.com/a.jpg",
    ],
)
async def test_a_redirect_from_the_image_host_is_checked_like_the_first_address(
    client: ToAPIsClient, fake: FakeToAPIs, location: str
) -> None:
    fake.add_file("ok.jpg", make_image(16, 16))
    fake.inject("GET", "/files/", 302, headers={"Location": location.format(port=port_of(fake))})
    with pytest.raises(DownloadRefusedError):
        await client.download(fake.url("/files/start.jpg"))
    assert [r.path for r in fake.download_requests] == ["/files/start.jpg"]


async def test_a_redirect_within_the_image_host_is_followed(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    data = make_image(16, 16, seed=5)
    fake.add_file("moved.jpg", data)
    fake.inject("GET", "/files/old.jpg", 301, headers={"Location": "/files/moved.jpg"})
    assert await client.download(fake.url("/files/old.jpg")) == data


async def test_endless_redirects_are_refused_after_a_few_hops(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    fake.inject("GET", "/files/", 302, headers={"Location": "/files/again.jpg"}, times=50)
    with pytest.raises(DownloadRefusedError):
        await client.download(fake.url("/files/again.jpg"))
    assert fake.downloads == 6  # the first address and five redirects


async def test_only_the_api_host_and_trusted_hosts_may_serve_from_a_private_address(
    make_client: Callable[..., ToAPIsClient], fake: FakeToAPIs
) -> None:
    data = make_image(16, 16, seed=6)
    url = fake.add_file("ref.jpg", data)  # on 127.0.0.1
    elsewhere = fake.base_url.replace("127.0.0.1", "localhost")  # an API reached by another name
    with pytest.raises(DownloadRefusedError):
        await make_client(base_url=elsewhere).download(url)
    trusted = make_client(base_url=elsewhere, trusted_file_hosts=["http://127.0.0.1:1/api/v10"])
    assert (await trusted.download(url), fake.downloads) == (data, 1)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("239.255.255.250", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("192.0.2.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
    ],
)
def test_public_addresses_are_told_from_every_other_kind(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


# --------------------------------------------------------------------------- uploads


async def test_upload_returns_a_url_serving_the_same_bytes(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    data = make_image(40, 30, "PNG")
    url = await client.upload_image(data, filename="ref.png", content_type="image/png")
    assert await client.download(url) == data


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
async def test_upload_accepts_every_documented_format(
    client: ToAPIsClient, fake: FakeToAPIs, fmt: str
) -> None:
    await client.upload_image(
        make_image(20, 20, fmt), filename=f"a.{fmt.lower()}", content_type=f"image/{fmt.lower()}"
    )
    assert len(fake.uploads) == 1


async def test_upload_sends_the_file_part_and_purpose(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    await client.upload_image(make_image(20, 20), filename="ref.jpg", content_type="image/jpeg")
    upload = fake.uploads[0]
    assert (upload["filename"], upload["content_type"], upload["purpose"]) == (
        "ref.jpg",
        "image/jpeg",
        "generation",
    )


async def test_upload_of_a_too_large_file_raises_bad_request(client: ToAPIsClient) -> None:
    with pytest.raises(BadRequestError) as info:
        await client.upload_image(
            b"\0" * (10 * 1024 * 1024 + 1), filename="huge.png", content_type="image/png"
        )
    assert info.value.provider_message == "File Too Large"


async def test_upload_of_a_non_image_raises_bad_request(client: ToAPIsClient) -> None:
    with pytest.raises(BadRequestError):
        await client.upload_image(b"hello", filename="notes.txt", content_type="text/plain")


async def test_upload_is_not_retried_on_503(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    fake.inject("POST", UPLOADS, 503, times=5)
    with pytest.raises(ServerError):
        await client.upload_image(make_image(20, 20), filename="a.jpg", content_type="image/jpeg")
    assert requests_to(fake, "POST", UPLOADS) == 1


# --------------------------------------------------------------------------- session


async def test_close_leaves_a_borrowed_session_open(fake: FakeToAPIs) -> None:
    async with aiohttp.ClientSession() as session:
        async with ToAPIsClient(fake.base_url, KEY, session=session) as client:
            await client.balance()
        assert not session.closed


def test_client_package_does_not_import_discord() -> None:
    imported: set[str] = set()
    for module in Path(toapis.__file__).parent.glob("*.py"):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        imported |= {
            alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.split(".")[0] == "discord" for name in imported)


# --------------------------------------------------------------------------- balance


async def test_balance_reads_every_figure(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    balance = await client.balance()
    assert (balance, balance.unlimited, balance.describe(), fake.submit_attempts) == (
        Balance(10.5, 2.3, 2100, 460, 200, False),
        False,
        "$10.50 left (2,100 credits)",
        0,
    )


async def test_balance_of_minus_one_is_unlimited(client: ToAPIsClient, fake: FakeToAPIs) -> None:
    fake.balance.update(remain_balance=-1, unlimited_quota=True)
    balance = await client.balance()
    assert (balance.unlimited, balance.describe()) == (True, "unlimited")


async def test_balance_with_an_unknown_key_is_an_authentication_error(
    make_client: Callable[..., ToAPIsClient],
) -> None:
    with pytest.raises(AuthenticationError) as caught:
        await make_client(api_key="sk-unknown-key-789").balance()
    assert "sk-unknown-key-789" not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, {"success": False, "message": "invalid token sk-unknown"}),  # success false with 200
        (401, {"error": {"message": "Invalid API key", "type": "authentication_error"}}),
        (400, {"success": False, "message": "invalid token"}),
    ],
)
async def test_balance_reads_both_error_shapes_as_a_rejected_key(
    client: ToAPIsClient, fake: FakeToAPIs, status: int, body: dict[str, object]
) -> None:
    fake.inject("GET", "/v1/balance", status, body)
    with pytest.raises(AuthenticationError):
        await client.balance()


async def test_balance_refused_for_the_account_is_insufficient_balance(
    client: ToAPIsClient, fake: FakeToAPIs
) -> None:
    fake.inject("GET", "/v1/balance", 403, {"success": False, "message": "account disabled"})
    with pytest.raises(InsufficientBalanceError):
        await client.balance()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"success": True, "remain_balance": "3.5", "remain_credits": 700},
            Balance(3.5, 0, 700, 0, 0, False),
        ),
        ({"data": {"remain_balance": 1, "unlimited_quota": True}}, Balance(1, 0, 0, 0, 0, True)),
    ],
)
def test_parse_balance_tolerates_strings_envelopes_and_missing_figures(
    body: dict[str, object], expected: Balance
) -> None:
    assert parse_balance(body) == expected


@pytest.mark.parametrize("body", [[], {"success": True}, {"remain_balance": None}, {"remain_balance": True}])
def test_parse_balance_refuses_an_answer_without_a_balance(body: object) -> None:
    with pytest.raises(InvalidResponseError):
        parse_balance(body)


# --------------------------------------------------------------------------- rate-limit headers


async def test_a_429s_headers_correct_the_rate_budget(
    make_client: Callable[..., ToAPIsClient], fake: FakeToAPIs
) -> None:
    budget = RateBudget(RateLimits.for_group("default"))
    client = make_client(rate_budget=budget, max_submit_attempts=1)
    fake.rate_limits = ProviderRateLimits.group(submit=(5, 1), query=(50, 1))
    task = await client.submit(**SUBMIT)
    assert budget.submit.tokens > 40  # nothing said yet: our own count stands
    with pytest.raises(RateLimitedError):
        await client.submit(**SUBMIT)
    # The provider said its bucket is empty and when to come back: ours follows.
    assert budget.submit.wait_time() >= 1.0
    await client.get_task(task.id)
    with pytest.raises(RateLimitedError):
        await make_client(rate_budget=budget, max_get_attempts=1).get_task(task.id)
    assert budget.query.wait_time() >= 1.0


async def test_every_provider_429_is_reported_with_its_bucket(
    make_client: Callable[..., ToAPIsClient], fake: FakeToAPIs
) -> None:
    heard: list[str] = []
    client = make_client(on_rate_limited=heard.append)
    fake.inject("POST", GENERATIONS, 429, {"error": {"message": "rate"}}, headers={"Retry-After": "0"})
    with pytest.raises(RateLimitedError):  # the caller sends it again from the head of the line
        await client.submit(**SUBMIT)
    task = await client.submit(**SUBMIT)
    fake.inject("GET", GENERATIONS, 429, None, headers={"Retry-After": "0"}, times=2)
    for _ in range(2):  # a status query is one request: the poller decides when to ask again
        with pytest.raises(RateLimitedError):
            await client.get_task(task.id)
    await client.get_task(task.id)
    await client.balance()  # not a rate-limit bucket: never reported
    assert heard == ["submit", "query", "query"]
