"""Settings: every missing or invalid value stops start-up with one line naming the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, database_url_for_sqlalchemy

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {"DISCORD_TOKEN": "discord-secret", "TOAPIS_API_KEY": "toapis-secret"}


def test_defaults_apply_when_only_the_two_secrets_are_set():
    settings = Settings.from_env(REQUIRED)
    assert (settings.toapis_base_url, settings.database_url, settings.job_timeout_seconds) == (
        "https://toapis.com",
        "sqlite:///data/imagine.db",
        600.0,
    )


@pytest.mark.parametrize("missing", ["DISCORD_TOKEN", "TOAPIS_API_KEY"])
def test_missing_secret_names_the_variable_and_env_example(missing):
    env = {k: v for k, v in REQUIRED.items() if k != missing}
    with pytest.raises(ConfigError, match=rf"^{missing} is missing.*\.env\.example"):
        Settings.from_env(env)


def test_blank_secret_counts_as_missing():
    with pytest.raises(ConfigError, match=r"^DISCORD_TOKEN is missing"):
        Settings.from_env({**REQUIRED, "DISCORD_TOKEN": "   "})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOAPIS_BASE_URL", "toapis.com"),
        ("DATABASE_URL", "mysql://x/y"),
        ("DATABASE_URL", "sqlite://"),
        ("LOG_LEVEL", "LOUD"),
        ("DEV_GUILD_ID", "my-server"),
        ("JOB_TIMEOUT_SECONDS", "ten"),
        ("PROGRESS_EDIT_INTERVAL_SECONDS", "0"),
        ("DISCORD_API_BASE_URL", "ftp://x"),
    ],
)
def test_invalid_value_names_the_variable(name, value):
    with pytest.raises(ConfigError, match=rf"^{name} "):
        Settings.from_env({**REQUIRED, name: value})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///data/imagine.db", "sqlite+aiosqlite:///data/imagine.db"),
        ("sqlite:////var/lib/imagine.db", "sqlite+aiosqlite:////var/lib/imagine.db"),
        ("postgresql://u:p@db:5432/imagine", "postgresql+asyncpg://u:p@db:5432/imagine"),
        ("postgres://u:p@db.example:5432/imagine", "postgresql+asyncpg://u:p@db.example:5432/imagine"),
    ],
)
def test_database_url_forms_deployers_use_are_accepted(given, expected):
    assert database_url_for_sqlalchemy(given) == expected


def test_secrets_do_not_appear_in_the_settings_repr():
    text = repr(Settings.from_env(REQUIRED))
    assert "discord-secret" not in text and "toapis-secret" not in text


def _run_main(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_start_without_token_prints_one_line_and_no_traceback(tmp_path):
    result = _run_main({"TOAPIS_API_KEY": "k"}, cwd=tmp_path)
    assert (result.returncode, result.stderr.strip().splitlines()) == (
        2,
        ["error: DISCORD_TOKEN is missing: set it in the environment or in .env (see .env.example)"],
    )


def test_dotenv_file_in_the_working_directory_is_read(tmp_path):
    (tmp_path / ".env").write_text("DISCORD_TOKEN=x\nTOAPIS_API_KEY=y\nDEFAULT_MODEL=no-such-model\n")
    result = _run_main({}, cwd=tmp_path)
    assert result.stderr.startswith("error: DEFAULT_MODEL 'no-such-model' is not in the model catalog")


def test_malformed_catalog_file_stops_start_up_naming_the_file(tmp_path):
    bad = tmp_path / "models.toml"
    bad.write_text("[models.x\n")
    result = _run_main({**REQUIRED, "MODEL_CATALOG_FILE": str(bad)}, cwd=tmp_path)
    assert result.returncode == 2 and "models.toml" in result.stderr and "Traceback" not in result.stderr
