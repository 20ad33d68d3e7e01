"""Start-up: command registration only on change, `python -m bot --check`, and the Discord-free core."""

from __future__ import annotations

import asyncio
import json
import pkgutil
import socket
import subprocess
import sys
from pathlib import Path

import bot
from cogs.app import TOKEN_REJECTED
from tests.process_launcher import spawn_bot_process

ROOT = Path(__file__).resolve().parents[2]


async def test_first_start_registers_imagine_with_exactly_the_documented_options(start_bot):
    rig = await start_bot()
    (scope, body), *rest = rig.discord.command_syncs
    imagine = next(c for c in body if c["name"] == "imagine")
    options = {o["name"]: o for o in imagine["options"]}
    assert (
        scope,
        rest,
        list(options),
        [c["name"] for c in options["model"]["choices"]],
        [c["value"] for c in options["ratio"]["choices"]],
        [c["value"] for c in options["resolution"]["choices"]],
        options["n"]["min_value"],
        options["n"]["max_value"],
        options["prompt"]["required"],
        {options[f"image{i}"]["type"] for i in range(1, 5)},
        sorted((c["name"], c["type"]) for c in body),
    ) == (
        "global",
        [],
        [
            "prompt",
            "ratio",
            "n",
            "model",
            "resolution",
            "speed",
            "image1",
            "image2",
            "image3",
            "image4",
            "layers",
        ],
        ["Seedream 4.0", "Seedream 4.5", "Seedream 5.0", "Seedream 5.0 Pro"],
        ["1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9", "9:21", "auto"],
        ["1K", "2K", "3K", "4K"],
        1,
        15,
        True,
        {11},  # attachment options
        [  # 3: a message context menu
            ("Imagine with these images", 3),
            ("imagine", 1),
            ("imagine-admin", 1),
            ("imagine-forget", 1),
            ("imagine-history", 1),
            ("imagine-quota", 1),
            ("imagine-settings", 1),
        ],
    )


async def test_restart_with_unchanged_commands_does_not_register_again(start_bot):
    first = await start_bot()
    await first.bot.close()
    await start_bot()
    assert len(first.discord.command_syncs) == 1


async def test_changed_command_definitions_are_registered_on_the_next_start(start_bot, tmp_path):
    first = await start_bot()
    await first.bot.close()
    catalog = tmp_path / "models.toml"
    catalog.write_text('[models."doubao-seedream-6-0"]\ndisplay_name = "Seedream 6.0"\n')
    await start_bot(model_catalog_file=catalog)
    models = [
        c["name"]
        for c in next(c for c in first.discord.command_syncs[-1][1] if c["name"] == "imagine")["options"][3][
            "choices"
        ]
    ]
    assert (len(first.discord.command_syncs), models[-1]) == (2, "Seedream 6.0")


async def test_dev_guild_gets_the_commands_instantly_instead_of_globally(start_bot):
    guild_id = 777000111
    rig = await start_bot(dev_guild_id=guild_id)
    assert [scope for scope, _ in rig.discord.command_syncs] == [guild_id]


async def _run_module(env: dict[str, str], *args: str, cwd: Path) -> tuple[int, str, str]:
    """Run `python -m bot` as its own process while this test's event loop keeps the fakes serving."""
    proc = await spawn_bot_process(env, *args, cwd=cwd)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None  # communicate() returns once the process has exited
    return proc.returncode, out.decode(), err.decode()


def _env(discord_fake, toapis_fake, tmp_path) -> dict[str, str]:
    return {
        "DISCORD_TOKEN": discord_fake.token,
        "TOAPIS_API_KEY": toapis_fake.api_key,
        "TOAPIS_BASE_URL": toapis_fake.base_url,
        "DISCORD_API_BASE_URL": discord_fake.api_base,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'imagine.db'}",
    }


async def test_check_proves_both_credentials_and_prints_both_install_links(
    discord_fake, toapis_fake, tmp_path
):
    code, out, _ = await _run_module(_env(discord_fake, toapis_fake, tmp_path), "--check", cwd=tmp_path)
    # View Channel, Send Messages, Embed Links, Attach Files, Read Message History, Send Messages in Threads
    permissions = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 38)
    authorize = f"https://discord.com/oauth2/authorize?client_id={discord_fake.application_id}"
    server_install = (
        f"{authorize}&scope=bot+applications.commands&permissions={permissions}&integration_type=0"
    )
    user_install = f"{authorize}&scope=applications.commands&integration_type=1"
    assert (code, out.splitlines()[-2:], len(toapis_fake.submissions)) == (
        0,
        [
            f"Add the bot to a server: {server_install}",
            f"Add it to your own account (use it anywhere): {user_install}",
        ],
        0,
    )


async def test_check_with_a_wrong_toapis_key_fails_without_showing_the_key(
    discord_fake, toapis_fake, tmp_path
):
    env = {**_env(discord_fake, toapis_fake, tmp_path), "TOAPIS_API_KEY": "sk-wrong-key-123"}
    code, out, err = await _run_module(env, "--check", cwd=tmp_path)
    assert (code, "did not accept TOAPIS_API_KEY" in out, "sk-wrong-key-123" in out + err) == (1, True, False)


async def test_check_shows_the_remaining_balance_and_credits(discord_fake, toapis_fake, tmp_path):
    toapis_fake.balance.update(remain_balance=7.25, remain_credits=1450)
    code, out, _ = await _run_module(_env(discord_fake, toapis_fake, tmp_path), "--check", cwd=tmp_path)
    assert (code, out.splitlines()[1], toapis_fake.balance_reads, len(toapis_fake.submissions)) == (
        0,
        f"ToAPIs: the API key works ({toapis_fake.base_url}); balance: $7.25 left (1,450 credits)",
        1,
        0,
    )


async def test_check_says_when_the_balance_is_unlimited(discord_fake, toapis_fake, tmp_path):
    toapis_fake.balance.update(remain_balance=-1, unlimited_quota=True)
    code, out, _ = await _run_module(_env(discord_fake, toapis_fake, tmp_path), "--check", cwd=tmp_path)
    assert (code, out.splitlines()[1].endswith("balance: unlimited")) == (0, True)


async def test_check_says_plainly_that_the_toapis_key_was_rejected(discord_fake, toapis_fake, tmp_path):
    env = {**_env(discord_fake, toapis_fake, tmp_path), "TOAPIS_API_KEY": "sk-wrong-key-456"}
    code, out, err = await _run_module(env, "--check", cwd=tmp_path)
    assert (code, out.splitlines()[-1], "sk-wrong-key-456" in out + err, "Traceback" in err) == (
        1,
        f"error: ToAPIs at {toapis_fake.base_url} did not accept TOAPIS_API_KEY: the key was rejected",
        False,
        False,
    )


async def test_check_says_plainly_that_toapis_could_not_be_reached(discord_fake, toapis_fake, tmp_path):
    # A port nothing listens on: the connection is refused.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    unreachable = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    env = {**_env(discord_fake, toapis_fake, tmp_path), "TOAPIS_BASE_URL": unreachable}
    code, out, err = await _run_module(env, "--check", cwd=tmp_path)
    assert (code, out.splitlines()[-1], "Traceback" in err) == (
        1,
        f"error: could not reach ToAPIs at {unreachable} (check TOAPIS_BASE_URL and the network): "
        "Could not connect to the image service.",
        False,
    )


async def test_check_with_a_wrong_discord_token_says_so(discord_fake, toapis_fake, tmp_path):
    env = {**_env(discord_fake, toapis_fake, tmp_path), "DISCORD_TOKEN": "not-the-token"}
    code, out, err = await _run_module(env, "--check", cwd=tmp_path)
    assert (code, out.splitlines()[-1], "Traceback" in err) == (
        1,
        f"error: {TOKEN_REJECTED}",
        False,
    )


def test_core_modules_never_import_discord():
    # ruff's banned-api rule stops `import discord` written in bot/; this catches what it cannot
    # see: discord arriving at run time through another module or a dependency.
    core = sorted(
        m.name for m in pkgutil.walk_packages(bot.__path__, prefix="bot.") if m.name != "bot.__main__"
    )
    probe = (
        "import importlib, json, sys\n"
        f"for name in {core!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'discord' or m.startswith('discord.'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert (len(core) >= 8, json.loads(result.stdout)) == (True, [])
