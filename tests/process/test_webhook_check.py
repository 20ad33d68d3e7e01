"""`python -m bot --check` with webhooks: the callback host must be public, the port free, the
secrets well formed; it says what to enter in the ToAPIs console and never prints a secret."""

from __future__ import annotations

import socket

from tests.process.test_startup import _env, _run_module

SECRET = bytes(range(32)).hex()
# A public address written as an IP, so the check needs no DNS here (93.184.215.14: example.com).
PUBLIC = "https://93.184.215.14/toapis/events"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def webhook_env(discord_fake, toapis_fake, tmp_path, **values: str) -> dict[str, str]:
    return {
        **_env(discord_fake, toapis_fake, tmp_path),
        "HTTP_PORT": str(free_port()),
        "TOAPIS_CALLBACK_URL": PUBLIC,
        "TOAPIS_WEBHOOK_SECRETS": SECRET,
        **values,
    }


async def test_check_says_what_to_enter_in_the_toapis_console(discord_fake, toapis_fake, tmp_path) -> None:
    env = webhook_env(discord_fake, toapis_fake, tmp_path)
    code, out, err = await _run_module(env, "--check", cwd=tmp_path)
    port = env["HTTP_PORT"]
    assert (code, SECRET in out + err) == (0, False), out + err
    assert [
        "Webhooks: in the ToAPIs console, for this API key, enter",
        f"  callback URL:   {PUBLIC}",
        "  signing secret: the one in TOAPIS_WEBHOOK_SECRETS",
        f"  and have your reverse proxy forward POST {PUBLIC} to http://127.0.0.1:{port}/toapis/events",
    ] == [
        line
        for line in out.splitlines()
        if line.startswith(("Webhooks:", "  callback", "  signing", "  and have"))
    ]


async def test_check_refuses_a_callback_host_that_is_not_public(discord_fake, toapis_fake, tmp_path) -> None:
    for host in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "[::1]"):
        env = webhook_env(discord_fake, toapis_fake, tmp_path, TOAPIS_CALLBACK_URL=f"https://{host}/hook")
        code, out, _ = await _run_module(env, "--check", cwd=tmp_path)
        assert (
            code,
            "is not a public address" in out,
            "ToAPIs refuses private, loopback and link-local" in out,
        ) == (
            1,
            True,
            True,
        ), host


async def test_check_refuses_a_port_already_in_use(discord_fake, toapis_fake, tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = webhook_env(discord_fake, toapis_fake, tmp_path, HTTP_PORT=str(port))
        code, out, _ = await _run_module(env, "--check", cwd=tmp_path)
    assert (code, f"error: HTTP_PORT {port} cannot be listened on at 127.0.0.1" in out) == (1, True)


async def test_check_names_a_malformed_secret_without_printing_it(
    discord_fake, toapis_fake, tmp_path
) -> None:
    env = webhook_env(discord_fake, toapis_fake, tmp_path, TOAPIS_WEBHOOK_SECRETS="hunter2-is-not-32-bytes")
    code, out, err = await _run_module(env, "--check", cwd=tmp_path)
    assert (
        code,
        "TOAPIS_WEBHOOK_SECRETS has a malformed secret (the first)" in err,
        "hunter2" in out + err,
    ) == (2, True, False)


async def test_the_bot_stops_with_one_line_when_its_http_port_is_taken(
    discord_fake, toapis_fake, tmp_path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**_env(discord_fake, toapis_fake, tmp_path), "HTTP_PORT": str(port)}
        code, out, err = await _run_module(env, cwd=tmp_path)
    # Like every failed start, the one line is the last one on stderr (--check prints to stdout).
    assert (
        code,
        err.splitlines()[-1].startswith(
            f"error: HTTP_PORT {port} cannot be listened on at HTTP_HOST 127.0.0.1"
        ),
        "Traceback" in out + err,
    ) == (
        2,
        True,
        False,
    ), out + err
