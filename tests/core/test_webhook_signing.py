"""The webhook settings and the signature check, exactly as ToAPIs documents them (§3)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from bot.config import ConfigError, Settings
from bot.webhooks.events import MalformedEventError, parse_event, task_status
from bot.webhooks.signing import SignatureError, parse_signing_secret, verify_signature

SECRET_BYTES = bytes(range(32))
HEX = SECRET_BYTES.hex()
BODY = b'{"id":"evt_1","type":"generation.completed"}'
NOW = 1_800_000_000


def sign(key: bytes, event_id: str = "evt_1", timestamp: str = str(NOW), body: bytes = BODY) -> str:
    return hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(
    signature: str | None, *, secrets=(HEX,), timestamp: str | None = str(NOW), now: float = NOW
) -> None:
    verify_signature(
        [parse_signing_secret(s) for s in secrets],
        event_id="evt_1",
        timestamp=timestamp,
        signature=signature,
        body=BODY,
        now=now,
    )


def refusal(signature: str | None, **kwargs) -> tuple[int, str]:
    with pytest.raises(SignatureError) as caught:
        verify(signature, **kwargs)
    return caught.value.status, caught.value.reason


def env(**values: str) -> dict[str, str]:
    return {"DISCORD_TOKEN": "t", "TOAPIS_API_KEY": "k", **values}


# ---------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "written",
    [
        HEX,
        HEX.upper(),
        base64.b64encode(SECRET_BYTES).decode(),
        base64.b64encode(SECRET_BYTES).decode().rstrip("="),
        base64.urlsafe_b64encode(bytes(range(200, 232))).decode(),
        "whsec_" + base64.b64encode(SECRET_BYTES).decode(),
    ],
    ids=["hex", "HEX", "base64", "base64-unpadded", "base64url", "whsec-prefixed"],
)
def test_a_32_byte_secret_is_read_in_hex_or_base64(written: str) -> None:
    secret = parse_signing_secret(written)
    assert len(secret.keys[0]) == 32


@pytest.mark.parametrize(
    "written",
    ["", "short", "ab" * 31, "ab" * 33, base64.b64encode(bytes(16)).decode(), "z" * 64],
    ids=["empty", "short", "31-bytes-hex", "33-bytes-hex", "16-bytes-base64", "not-hex-nor-32-bytes"],
)
def test_a_secret_that_is_not_32_bytes_is_refused_without_repeating_it(written: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_signing_secret(written)
    assert (written == "" or written not in str(caught.value), "32-byte" in str(caught.value)) == (True, True)


def test_a_secret_is_never_shown_in_a_repr() -> None:
    settings = Settings.from_env(
        env(HTTP_PORT="8080", TOAPIS_CALLBACK_URL="https://bot.example.com/hook", TOAPIS_WEBHOOK_SECRETS=HEX)
    )
    assert HEX not in repr(settings) and SECRET_BYTES.hex() not in repr(settings.toapis_webhook_secrets)


def test_the_log_scrubs_webhook_secrets_however_they_are_written() -> None:
    from bot.logsetup import SecretRedactor, secret_values

    written = "whsec_" + base64.b64encode(SECRET_BYTES).decode()
    settings = Settings.from_env(
        env(
            HTTP_PORT="8080",
            TOAPIS_CALLBACK_URL="https://bot.example.com/hook",
            TOAPIS_WEBHOOK_SECRETS=written,
        )
    )
    line = SecretRedactor(secret_values(settings)).redact(f"oops {written} {HEX}")
    assert line == "oops [redacted] [redacted]"


# ---------------------------------------------------------------- settings


def test_webhook_settings_are_read_with_rotation() -> None:
    other = bytes(range(1, 33)).hex()
    settings = Settings.from_env(
        env(
            HTTP_PORT="8080",
            HTTP_HOST="0.0.0.0",
            TOAPIS_CALLBACK_URL="https://bot.example.com/toapis/events?k=1",
            TOAPIS_WEBHOOK_SECRETS=f"{HEX}, {other}",
        )
    )
    assert (
        settings.http_port,
        settings.http_host,
        settings.toapis_callback_url,
        len(settings.toapis_webhook_secrets),
        settings.webhooks_enabled,
    ) == (8080, "0.0.0.0", "https://bot.example.com/toapis/events?k=1", 2, True)


def test_without_http_settings_there_is_no_server_and_no_webhooks() -> None:
    settings = Settings.from_env(env())
    assert (settings.http_port, settings.http_host, settings.webhooks_enabled) == (None, "127.0.0.1", False)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"HTTP_PORT": "0"}, "HTTP_PORT must be a port number from 1 to 65535"),
        ({"HTTP_PORT": "70000"}, "HTTP_PORT must be a port number from 1 to 65535"),
        ({"HTTP_PORT": "http"}, "HTTP_PORT must be a port number from 1 to 65535"),
        (
            {
                "HTTP_PORT": "80",
                "TOAPIS_CALLBACK_URL": "http://bot.example.com/h",
                "TOAPIS_WEBHOOK_SECRETS": HEX,
            },
            "TOAPIS_CALLBACK_URL must be a public https:// URL",
        ),
        (
            {"TOAPIS_CALLBACK_URL": "https://bot.example.com/h", "TOAPIS_WEBHOOK_SECRETS": HEX},
            "TOAPIS_CALLBACK_URL needs HTTP_PORT",
        ),
        (
            {
                "HTTP_PORT": "80",
                "TOAPIS_CALLBACK_URL": "https://bot.example.com/metrics",
                "TOAPIS_WEBHOOK_SECRETS": HEX,
            },
            "TOAPIS_CALLBACK_URL must not use the path /metrics",
        ),
        (
            {
                "HTTP_PORT": "80",
                "TOAPIS_CALLBACK_URL": "https://u:p@bot.example.com/h",
                "TOAPIS_WEBHOOK_SECRETS": HEX,
            },
            "TOAPIS_CALLBACK_URL must not carry a user name",
        ),
        (
            {"HTTP_PORT": "80", "TOAPIS_CALLBACK_URL": "https://bot.example.com/h"},
            "TOAPIS_WEBHOOK_SECRETS is missing",
        ),
        ({"TOAPIS_WEBHOOK_SECRETS": HEX}, "TOAPIS_WEBHOOK_SECRETS is set but TOAPIS_CALLBACK_URL is not"),
        (
            {
                "HTTP_PORT": "80",
                "TOAPIS_CALLBACK_URL": "https://b.example.com/h",
                "TOAPIS_WEBHOOK_SECRETS": f"{HEX},{HEX},{HEX}",
            },
            "TOAPIS_WEBHOOK_SECRETS must be one secret, or the current and the previous one",
        ),
        (
            {
                "HTTP_PORT": "80",
                "TOAPIS_CALLBACK_URL": "https://b.example.com/h",
                "TOAPIS_WEBHOOK_SECRETS": f"{HEX},oops-not-a-secret",
            },
            "TOAPIS_WEBHOOK_SECRETS has a malformed secret (the second)",
        ),
    ],
)
def test_each_bad_http_or_webhook_setting_is_named(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env(**values))
    assert str(caught.value).startswith(message) and "oops-not-a-secret" not in str(caught.value)


# ---------------------------------------------------------------- the signature


def test_a_signature_made_with_the_secret_over_id_timestamp_and_body_is_accepted() -> None:
    verify(f"v1={sign(SECRET_BYTES)}")  # raises if refused


def test_a_signature_made_with_the_secret_as_text_is_accepted_too() -> None:
    verify(f"v1={sign(HEX.encode())}")


def test_any_v1_value_is_accepted_and_other_schemes_are_ignored() -> None:
    verify(f"v0=abc, v1={'0' * 64},v1={sign(SECRET_BYTES)}")


def test_rotation_accepts_a_signature_by_either_secret() -> None:
    previous = bytes(range(100, 132))
    verify(f"v1={sign(previous)}", secrets=(HEX, previous.hex()))


def test_a_wrong_secret_is_refused_401() -> None:
    assert refusal(f"v1={sign(bytes(32))}") == (401, "the signature does not match the signing secret")


def test_a_signature_over_another_body_is_refused_401() -> None:
    assert refusal(f"v1={sign(SECRET_BYTES, body=b'{}')}")[0] == 401


@pytest.mark.parametrize("skew", [301, -301])
def test_a_timestamp_more_than_5_minutes_away_is_refused_401(skew: int) -> None:
    stamp = str(NOW + skew)
    assert refusal(f"v1={sign(SECRET_BYTES, timestamp=stamp)}", timestamp=stamp) == (
        401,
        "the timestamp is more than 5 minutes from the local clock",
    )


def test_a_timestamp_just_within_5_minutes_is_accepted() -> None:
    stamp = str(NOW - 300)
    verify(f"v1={sign(SECRET_BYTES, timestamp=stamp)}", timestamp=stamp)


@pytest.mark.parametrize(
    ("signature", "timestamp", "expected"),
    [
        (None, str(NOW), (400, "a webhook header is missing")),
        ("v1=00", None, (400, "a webhook header is missing")),
        ("v1=00", "yesterday", (400, "the timestamp header is not a number")),
        ("sha256=00", str(NOW), (401, "no v1 signature")),
    ],
)
def test_malformed_requests_are_refused_400_and_unsigned_ones_401(signature, timestamp, expected) -> None:
    assert refusal(signature, timestamp=timestamp) == expected


# ---------------------------------------------------------------- the event


def test_a_completion_event_reads_as_a_completed_status_with_its_images() -> None:
    event = parse_event(
        b'{"id":"evt_1","type":"generation.completed","data":{"task_id":"task_img_1","status":"SUCCESS",'
        b'"progress":"100%","result":{"type":"image","data":[{"url":"https://f.example/1.jpg"},'
        b'{"url":"https://f.example/2.jpg"}]},"finished_at":1800000000}}',
        "evt_1",
    )
    status = task_status(event.data)
    assert (event.task_id, status.status, status.progress, status.image_urls, status.completed_at) == (
        "task_img_1",
        "completed",
        100,
        ("https://f.example/1.jpg", "https://f.example/2.jpg"),
        1800000000,
    )


def test_a_failure_event_reads_as_a_failed_status_with_the_providers_reason() -> None:
    event = parse_event(
        b'{"id":"evt_2","type":"generation.failed","data":{"task_id":"task_img_1","status":"FAILURE",'
        b'"error":{"code":"generation_failed","message":"Refused by the content policy"}}}',
        "evt_2",
    )
    status = task_status(event.data)
    assert (status.status, status.error_code, status.error_message) == (
        "failed",
        "generation_failed",
        "Refused by the content policy",
    )


def test_a_status_word_that_is_not_an_end_reads_as_nothing() -> None:
    assert task_status({"task_id": "t", "status": "RUNNING"}) is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        b'{"id":"evt_other","type":"x"}',
        b'{"id":"evt_1"}',
        b'{"id":"evt_1","type":"x","data":[]}',
    ],
    ids=["not-json", "not-object", "id-not-signed", "no-type", "data-not-object"],
)
def test_a_body_that_is_not_a_readable_event_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedEventError):
        parse_event(body, "evt_1")
