"""Start-up failures of the real process (`python -m bot`): one plain line, a non-zero exit, no traceback.

Each case starts the bot as a deployment would, pointed at something that fails: a closed
loopback port (refused), a name under `.invalid` (never resolves), a loopback server that never
answers, the fake Discord and fake ToAPIs refusing credentials, and a small PostgreSQL
stand-in that refuses the password the way a real server does. `STARTUP_RETRY_SECONDS` is 1 so
the retries end quickly.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cogs.app import DISCORD_ADVICE, TOKEN_REJECTED
from tests.fakes.discord import FakeDiscord
from tests.fakes.toapis import FakeToAPIs
from tests.process_launcher import BotProcess, spawn_bot_process

DATABASE_ADVICE = "check that the database server is running and that DATABASE_URL names its host and port"


@pytest.fixture
def bot_env(discord_fake: FakeDiscord, toapis_fake: FakeToAPIs, tmp_path: Path) -> dict[str, str]:
    return {
        "DISCORD_TOKEN": discord_fake.token,
        "TOAPIS_API_KEY": toapis_fake.api_key,
        "TOAPIS_BASE_URL": toapis_fake.base_url,
        "DISCORD_API_BASE_URL": discord_fake.api_base,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'imagine.db'}",
        "STARTUP_RETRY_SECONDS": "1",
    }


async def _run(env: dict[str, str], *args: str, cwd: Path) -> tuple[int, list[str]]:
    """Run `python -m bot` to its end; its exit code and every line it printed (stdout, then stderr)."""
    proc = await spawn_bot_process(env, *args, cwd=cwd)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, (out.decode() + err.decode()).splitlines()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A loopback port that accepts connections and never answers (a host behind a black hole)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()


def _no_traceback(lines: list[str]) -> bool:
    return not any("Traceback" in line for line in lines)


# --------------------------------------------------------------------------- Discord


async def test_discord_refusing_connections_is_retried_then_one_line_and_exit_1(bot_env, tmp_path):
    base = f"http://127.0.0.1:{_closed_port()}/api/v10"
    code, lines = await _run({**bot_env, "DISCORD_API_BASE_URL": base}, cwd=tmp_path)
    assert (code, lines[-1], any("trying again in" in line for line in lines), _no_traceback(lines)) == (
        1,
        f"error: could not reach Discord at {base} (connection refused; tried for 1s): {DISCORD_ADVICE}",
        True,
        True,
    )


async def test_discord_name_that_does_not_resolve_says_so(bot_env, tmp_path):
    base = "http://discord.invalid/api/v10"
    code, lines = await _run({**bot_env, "DISCORD_API_BASE_URL": base}, cwd=tmp_path)
    assert (code, lines[-1], _no_traceback(lines)) == (
        1,
        f"error: could not reach Discord at {base} (the name discord.invalid does not resolve; "
        f"tried for 1s): {DISCORD_ADVICE}",
        True,
    )


async def test_discord_not_answering_in_time_says_so(bot_env, tmp_path, silent_port):
    base = f"http://127.0.0.1:{silent_port}/api/v10"
    code, lines = await _run({**bot_env, "DISCORD_API_BASE_URL": base}, cwd=tmp_path)
    assert (code, lines[-1], _no_traceback(lines)) == (
        1,
        f"error: could not reach Discord at {base} (no answer in time; tried for 1s): {DISCORD_ADVICE}",
        True,
    )


async def test_discord_gateway_unreachable_says_so(bot_env, tmp_path, discord_fake):
    gateway = f"ws://127.0.0.1:{_closed_port()}"
    env = {**bot_env, "DISCORD_GATEWAY_URL": gateway, "SHARD_COUNT": "1"}
    code, lines = await _run(env, cwd=tmp_path)
    assert (code, lines[-1], _no_traceback(lines)) == (
        1,
        f"error: could not reach Discord at {discord_fake.api_base} (its gateway {gateway} could not be "
        f"reached: connection refused; tried for 1s): {DISCORD_ADVICE}",
        True,
    )


async def test_discord_answering_5xx_is_retried_then_one_line(bot_env, tmp_path, discord_fake):
    discord_fake.inject("GET", r"^/users/@me$", 503, times=1000)
    code, lines = await _run(bot_env, cwd=tmp_path)
    assert (code, lines[-1], _no_traceback(lines)) == (
        1,
        f"error: could not reach Discord at {discord_fake.api_base} (it answered HTTP 503; tried for 1s): "
        f"{DISCORD_ADVICE}",
        True,
    )


async def test_discord_back_after_a_failed_try_lets_the_bot_start(bot_env, tmp_path, discord_fake, processes):
    discord_fake.inject("GET", r"^/users/@me$", 503, times=1)
    process = await BotProcess.start({**bot_env, "STARTUP_RETRY_SECONDS": "30"}, tmp_path)
    processes.append(process)
    await discord_fake.wait_for(lambda fake: next(iter(fake.connected_sessions()), None), timeout=30)
    code = await process.stop(signal.SIGTERM)
    retried = [
        line for line in process.log.splitlines() if "(it answered HTTP 503); trying again in 1s" in line
    ]
    assert (code, len(retried), _no_traceback(process.log.splitlines())) == (0, 1, True)


async def test_check_reports_discord_unreachable_in_one_line(bot_env, tmp_path):
    base = f"http://127.0.0.1:{_closed_port()}/api/v10"
    code, lines = await _run({**bot_env, "DISCORD_API_BASE_URL": base}, "--check", cwd=tmp_path)
    assert (code, [line for line in lines if line.startswith("error:")], _no_traceback(lines)) == (
        1,
        [f"error: could not reach Discord at {base} (connection refused; tried for 0s): {DISCORD_ADVICE}"],
        True,
    )


async def test_a_rejected_discord_token_points_at_the_developer_portal(bot_env, tmp_path):
    code, lines = await _run({**bot_env, "DISCORD_TOKEN": "not-the-token"}, cwd=tmp_path)
    assert (code, lines[-1], _no_traceback(lines)) == (2, f"error: {TOKEN_REJECTED}", True)


# --------------------------------------------------------------------------- the database


async def test_database_unreachable_names_database_url_with_the_password_hidden(bot_env, tmp_path):
    port = _closed_port()
    url = f"postgresql://imagine:s3cret-pw@127.0.0.1:{port}/imagine"
    code, lines = await _run({**bot_env, "DATABASE_URL": url}, cwd=tmp_path)
    shown = f"postgresql://imagine:***@127.0.0.1:{port}/imagine"
    assert (code, lines[-1], any("s3cret-pw" in line for line in lines), _no_traceback(lines)) == (
        1,
        f"error: could not reach the database at DATABASE_URL {shown} (connection refused; tried for 1s): "
        f"{DATABASE_ADVICE}",
        False,
        True,
    )


async def postgres_stand_in(sqlstate: str, message: str) -> asyncio.Server:
    """A PostgreSQL stand-in speaking the protocol's start-up: it asks for the password, then ends
    the login with `sqlstate`, as a real server does for a wrong password (28P01) or a database
    that does not exist (3D000)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length, code = struct.unpack("!ii", await reader.readexactly(8))
                if code in (80877103, 80877104):  # SSLRequest / GSSENCRequest: not offered
                    writer.write(b"N")
                    continue
                await reader.readexactly(length - 8)  # the rest of the StartupMessage
                break
            writer.write(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
            await reader.readexactly(1)  # 'p'
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            await reader.readexactly(length - 4)
            fields = b"SFATAL\0VFATAL\0C" + sqlstate.encode() + b"\0M" + message.encode() + b"\0\0"
            writer.write(b"E" + struct.pack("!i", 4 + len(fields)) + fields)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


@pytest.fixture
async def postgres_refusing_passwords() -> AsyncIterator[int]:
    server = await postgres_stand_in("28P01", 'password authentication failed for user "imagine"')
    yield server.sockets[0].getsockname()[1]
    server.close()


@pytest.fixture
async def postgres_without_the_database() -> AsyncIterator[int]:
    server = await postgres_stand_in("3D000", 'database "imagine" does not exist')
    yield server.sockets[0].getsockname()[1]
    server.close()


async def test_a_database_that_does_not_exist_says_so_at_once(
    bot_env, tmp_path, postgres_without_the_database
):
    port = postgres_without_the_database
    url = f"postgresql://imagine:pw-789@127.0.0.1:{port}/imagine?ssl=disable"
    env = {**bot_env, "DATABASE_URL": url, "STARTUP_RETRY_SECONDS": "60"}
    code, lines = await asyncio.wait_for(_run(env, cwd=tmp_path), 30)
    assert (code, lines[-1], _no_traceback(lines)) == (
        2,
        "error: the database named in DATABASE_URL "
        f"postgresql://imagine:***@127.0.0.1:{port}/imagine?ssl=disable does not exist: create it first",
        True,
    )


async def test_a_sqlite_file_whose_folder_cannot_be_made_says_so(bot_env, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    url = f"sqlite:///{blocker}/imagine.db"
    code, lines = await _run({**bot_env, "DATABASE_URL": url}, cwd=tmp_path)
    assert (code, lines[-1], _no_traceback(lines)) == (
        2,
        f"error: DATABASE_URL {url}: its folder cannot be created (File exists); "
        "check the path and the permissions",
        True,
    )


async def test_database_refusing_the_password_says_so_at_once_with_the_password_hidden(
    bot_env, tmp_path, postgres_refusing_passwords
):
    port = postgres_refusing_passwords
    url = f"postgresql://imagine:wrong-pw-123@127.0.0.1:{port}/imagine?ssl=disable"
    # A long budget: a refusal must stop at once, not be tried again.
    env = {**bot_env, "DATABASE_URL": url, "STARTUP_RETRY_SECONDS": "60"}
    code, lines = await asyncio.wait_for(_run(env, cwd=tmp_path), 30)
    shown = f"postgresql://imagine:***@127.0.0.1:{port}/imagine?ssl=disable"
    assert (code, lines[-1], any("wrong-pw-123" in line for line in lines), _no_traceback(lines)) == (
        2,
        f"error: the database refused the user name or password in DATABASE_URL {shown}: correct them",
        False,
        True,
    )


async def test_check_reports_an_unreachable_database_in_one_line(bot_env, tmp_path):
    port = _closed_port()
    env = {**bot_env, "DATABASE_URL": f"postgresql://imagine:pw-456@127.0.0.1:{port}/imagine"}
    code, lines = await _run(env, "--check", cwd=tmp_path)
    assert (code, [line for line in lines if line.startswith("error:")], _no_traceback(lines)) == (
        1,
        [
            "error: could not reach the database at DATABASE_URL "
            f"postgresql://imagine:***@127.0.0.1:{port}/imagine (connection refused; tried for 0s): "
            f"{DATABASE_ADVICE}"
        ],
        True,
    )


# --------------------------------------------------------------------------- ToAPIs


async def test_a_rejected_toapis_key_stops_start_up_in_one_line(bot_env, tmp_path, toapis_fake):
    code, lines = await _run({**bot_env, "TOAPIS_API_KEY": "sk-wrong-key-789"}, cwd=tmp_path)
    assert (code, lines[-1], any("sk-wrong-key-789" in line for line in lines), _no_traceback(lines)) == (
        2,
        f"error: ToAPIs at {toapis_fake.base_url} did not accept TOAPIS_API_KEY: the key was rejected "
        "(copy it again from toapis.com → API keys)",
        False,
        True,
    )


async def test_toapis_unreachable_at_start_up_is_a_warning_and_the_bot_comes_online(
    bot_env, tmp_path, discord_fake, processes
):
    unreachable = f"http://127.0.0.1:{_closed_port()}"
    process = await BotProcess.start({**bot_env, "TOAPIS_BASE_URL": unreachable}, tmp_path)
    processes.append(process)
    await discord_fake.wait_for(lambda fake: next(iter(fake.connected_sessions()), None), timeout=30)
    code = await process.stop(signal.SIGTERM)
    lines = process.log.splitlines()
    warnings = [line for line in lines if "could not reach ToAPIs" in line]
    assert (code, len(warnings), _no_traceback(lines)) == (0, 1, True)
    assert warnings[0].endswith(
        f"could not reach ToAPIs at {unreachable} (Could not connect to the image service.): "
        "starting anyway; members' requests fail until it answers (check TOAPIS_BASE_URL and the network)"
    )


# --------------------------------------------------------------------------- voice


async def test_a_start_prints_no_warning_about_voice_libraries(bot_env, tmp_path, discord_fake, processes):
    # The bot never uses voice; a warning that still matters (ToAPIs unreachable) is printed.
    unreachable = f"http://127.0.0.1:{_closed_port()}"
    process = await BotProcess.start({**bot_env, "TOAPIS_BASE_URL": unreachable}, tmp_path)
    processes.append(process)
    await discord_fake.wait_for(lambda fake: next(iter(fake.connected_sessions()), None), timeout=30)
    await process.stop(signal.SIGTERM)
    code, check_lines = await _run(bot_env, "--check", cwd=tmp_path)
    printed = process.log + "\n".join(check_lines)
    assert (code, "voice will NOT be supported" in printed, "could not reach ToAPIs" in printed) == (
        0,
        False,
        True,
    )


@pytest.fixture
async def not_toapis() -> AsyncIterator[str]:
    """A web server that is not ToAPIs (a wrong TOAPIS_BASE_URL): every path answers a web page."""
    from aiohttp import web

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<html>Welcome</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_toapis_answering_something_else_is_a_warning_and_the_bot_starts(
    bot_env, tmp_path, discord_fake, processes, not_toapis
):
    process = await BotProcess.start({**bot_env, "TOAPIS_BASE_URL": not_toapis}, tmp_path)
    processes.append(process)
    await discord_fake.wait_for(lambda fake: next(iter(fake.connected_sessions()), None), timeout=30)
    code = await process.stop(signal.SIGTERM)
    lines = process.log.splitlines()
    warnings = [line for line in lines if f"ToAPIs at {not_toapis} could not show the balance" in line]
    assert (code, len(warnings), warnings[0].endswith(": starting anyway"), _no_traceback(lines)) == (
        0,
        1,
        True,
        True,
    )
