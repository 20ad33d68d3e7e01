"""Settings: every missing or invalid value stops start-up with one line naming the variable."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, database_url_for_sqlalchemy
from bot.toapis.budget import Allowance, RateLimits

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {"DISCORD_TOKEN": "discord-secret", "TOAPIS_API_KEY": "toapis-secret"}


def test_defaults_apply_when_only_the_two_secrets_are_set():
    settings = Settings.from_env(REQUIRED)
    assert (
        settings.toapis_base_url,
        settings.database_url,
        settings.job_timeout_seconds,
        settings.watermark,
    ) == (
        "https://toapis.com",
        "sqlite:///data/imagine.db",
        600.0,
        False,
    )


@pytest.mark.parametrize(
    ("value", "days"), [(None, 90), ("", 90), ("30", 30), ("0", None)], ids=["unset", "empty", "30", "0"]
)
def test_job_retention_days_defaults_to_90_and_0_keeps_job_details(value, days):
    env = REQUIRED if value is None else {**REQUIRED, "JOB_RETENTION_DAYS": value}
    assert Settings.from_env(env).job_retention_days == days


def test_startup_retry_and_log_format_defaults_and_values():
    default = Settings.from_env(REQUIRED)
    chosen = Settings.from_env({**REQUIRED, "STARTUP_RETRY_SECONDS": "5", "LOG_FORMAT": "JSON"})
    assert (
        default.startup_retry_seconds,
        default.log_format,
        chosen.startup_retry_seconds,
        chosen.log_format,
    ) == (
        60.0,
        "text",
        5.0,
        "json",
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
        ("STARTUP_RETRY_SECONDS", "-1"),
        ("LOG_FORMAT", "xml"),
        ("JOB_RETENTION_DAYS", "a month"),
        ("JOB_RETENTION_DAYS", "1.5"),
    ],
)
def test_invalid_value_names_the_variable(name, value):
    with pytest.raises(ConfigError, match=rf"^{name} "):
        Settings.from_env({**REQUIRED, name: value})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JOB_TIMEOUT_SECONDS": "ten"}, "JOB_TIMEOUT_SECONDS must be a number, got 'ten'"),
        ({"JOB_TIMEOUT_SECONDS": "86401"}, "JOB_TIMEOUT_SECONDS must be between 1 and 86400, got 86401"),
        (
            {"PROGRESS_EDIT_INTERVAL_SECONDS": "0"},
            "PROGRESS_EDIT_INTERVAL_SECONDS must be between 0.05 and 300, got 0",
        ),
        ({"DEV_GUILD_ID": "-1"}, "DEV_GUILD_ID must be a server id (digits only), got '-1'"),
        ({"SHARD_COUNT": "0"}, "SHARD_COUNT must be a whole number (1 or more), got '0'"),
        (
            {"GLOBAL_DAILY_IMAGE_CAP": "lots"},
            "GLOBAL_DAILY_IMAGE_CAP must be a whole number of images, got 'lots'",
        ),
        ({"OWNER_IDS": "alice,bob"}, "OWNER_IDS must be ids (digits) separated by commas, got 'alice,bob'"),
        ({"ALLOW_DMS": "maybe"}, "ALLOW_DMS must be true or false, got 'maybe'"),
        ({"WATERMARK": "sometimes"}, "WATERMARK must be true or false, got 'sometimes'"),
        ({"TOAPIS_BASE_URL": "toapis.com"}, "TOAPIS_BASE_URL must be an http(s) URL, got 'toapis.com'"),
        (
            {"DISCORD_GATEWAY_URL": "http://x"},
            "DISCORD_GATEWAY_URL must be a ws:// or wss:// URL, got 'http://x'",
        ),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got 'LOUD'"),
        (
            {"DATABASE_URL": "mysql://x/y"},
            "DATABASE_URL has an unsupported scheme 'mysql': use sqlite:/// or postgresql://",
        ),
        ({"SHARD_IDS": "0"}, "SHARD_IDS needs SHARD_COUNT (how many shards there are in all)"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "0,2"}, "SHARD_IDS must be below SHARD_COUNT (2): [0, 2]"),
        (
            {"SHARD_COUNT": "2", "SHARD_IDS": ","},
            "SHARD_IDS must be ids (digits) separated by commas, got ','",
        ),
    ],
)
def test_an_invalid_value_is_refused_in_one_line_saying_what_is_allowed(env, message):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({**REQUIRED, **env})
    assert str(refused.value) == f"{message} (see .env.example)"


def test_with_several_mistakes_the_missing_secret_is_named_first():
    with pytest.raises(ConfigError, match=r"^TOAPIS_API_KEY is missing"):
        Settings.from_env({"DISCORD_TOKEN": "x", "LOG_LEVEL": "loud", "JOB_TIMEOUT_SECONDS": "ten"})


def test_every_value_is_read_trimmed_and_typed():
    settings = Settings.from_env(
        {
            **REQUIRED,
            "TOAPIS_BASE_URL": " http://127.0.0.1:8080/ ",
            "LOG_LEVEL": "debug",
            "DEV_GUILD_ID": "42",
            "JOB_TIMEOUT_SECONDS": "90",
            "OWNER_IDS": "1, 2 3",
            "ALLOWED_GUILD_IDS": "7",
            "ALLOW_DMS": "yes",
            "WATERMARK": "on",
            "SHARD_COUNT": "4",
            "SHARD_IDS": "3,1",
            "GLOBAL_DAILY_IMAGE_CAP": "50",
        }
    )
    assert (
        settings.toapis_base_url,
        settings.log_level,
        settings.dev_guild_id,
        settings.job_timeout_seconds,
        settings.owner_ids,
        settings.allowed_guild_ids,
        settings.allow_dms,
        settings.watermark,
        settings.shard_count,
        settings.shard_ids,
        settings.global_daily_image_cap,
    ) == (
        "http://127.0.0.1:8080",
        "DEBUG",
        42,
        90.0,
        frozenset({1, 2, 3}),
        frozenset({7}),
        True,
        True,
        4,
        (1, 3),
        50,
    )


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


def test_balance_settings_default_to_a_ten_minute_check_and_no_alert():
    settings = Settings.from_env(REQUIRED)
    assert (settings.balance_check_minutes, settings.low_balance_usd, settings.operator_channel_id) == (
        10.0,
        None,
        None,
    )


def test_balance_settings_are_read():
    env = {**REQUIRED, "BALANCE_CHECK_MINUTES": "0", "LOW_BALANCE_USD": " 2.5 ", "OPERATOR_CHANNEL_ID": "42"}
    settings = Settings.from_env(env)
    assert (settings.balance_check_minutes, settings.low_balance_usd, settings.operator_channel_id) == (
        0.0,
        2.5,
        42,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOW_BALANCE_USD": "five"}, "LOW_BALANCE_USD must be a number, got 'five'"),
        ({"LOW_BALANCE_USD": "-1"}, "LOW_BALANCE_USD must be between 0 and 100000, got -1"),
        ({"BALANCE_CHECK_MINUTES": "-1"}, "BALANCE_CHECK_MINUTES must be between 0 and 1440, got -1"),
        (
            {"OPERATOR_CHANNEL_ID": "#ops"},
            "OPERATOR_CHANNEL_ID must be a channel id (digits only), got '#ops'",
        ),
    ],
)
def test_invalid_balance_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({**REQUIRED, **env})
    assert str(refused.value) == f"{message} (see .env.example)"


def test_every_setting_is_documented_in_env_example_and_the_readme():
    source = (ROOT / "bot" / "config.py").read_text()
    names = sorted(set(re.findall(r'\(env, "([A-Z_]+)"', source)))
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    missing = {
        ".env.example": [n for n in names if not re.search(rf"^{n}=", example, re.MULTILINE)],
        "README.md": [n for n in names if f"| `{n}` |" not in readme],
    }
    assert (len(names) > 20, missing) == (True, {".env.example": [], "README.md": []})


def test_polling_floors_default_to_the_providers_five_seconds_and_may_be_raised():
    defaults = Settings.from_env(REQUIRED)
    raised = Settings.from_env(
        {**REQUIRED, "POLL_INTERVAL_QUEUED_SECONDS": "6", "POLL_INTERVAL_RUNNING_SECONDS": "8"}
    )
    assert (
        (defaults.poll_interval_queued, defaults.poll_interval_running),
        (raised.poll_interval_queued, raised.poll_interval_running),
    ) == ((5.0, 5.0), (6.0, 8.0))


@pytest.mark.parametrize("name", ["POLL_INTERVAL_QUEUED_SECONDS", "POLL_INTERVAL_RUNNING_SECONDS"])
def test_a_polling_floor_below_five_seconds_is_refused_saying_why(name):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({**REQUIRED, name: "2.5"})
    assert str(refused.value) == (
        f"{name} must be at least 5: the image service asks for 5 s between status queries of a task, "
        "got 2.5 (see .env.example)"
    )


def test_rate_limits_default_to_the_default_group_and_the_queue_to_500_jobs_and_15_minutes():
    settings = Settings.from_env(REQUIRED)
    assert (
        settings.rate_limits,
        settings.max_queued_jobs,
        settings.queue_timeout_seconds,
        settings.shard_share,
    ) == (
        RateLimits(Allowance(5, 50), Allowance(50, 500)),
        500,
        900.0,
        1.0,
    )


def test_a_rate_group_sets_both_buckets_and_explicit_values_override_it():
    settings = Settings.from_env(
        {
            **REQUIRED,
            "TOAPIS_RATE_GROUP": " VIP ",
            "TOAPIS_SUBMIT_PER_SECOND": "2",
            "TOAPIS_QUERY_BURST": "40",
        }
    )
    assert settings.rate_limits == RateLimits(Allowance(2, 167), Allowance(10_000 / 60, 40))


def test_queue_settings_and_the_shard_share_are_read():
    settings = Settings.from_env(
        {
            **REQUIRED,
            "MAX_QUEUED_JOBS": "20",
            "QUEUE_TIMEOUT_SECONDS": "60",
            "SHARD_COUNT": "4",
            "SHARD_IDS": "1,3,2",
        }
    )
    assert (settings.max_queued_jobs, settings.queue_timeout_seconds, settings.shard_share) == (
        20,
        60.0,
        0.75,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TOAPIS_RATE_GROUP": "gold"}, r"^TOAPIS_RATE_GROUP must be one of default, vip, svip .*got 'gold'"),
        (
            {"TOAPIS_SUBMIT_PER_SECOND": "0"},
            r"^TOAPIS_SUBMIT_PER_SECOND must be between 0.01 and 10000, got 0",
        ),
        ({"TOAPIS_SUBMIT_BURST": "0.5"}, r"^TOAPIS_SUBMIT_BURST must be between 1 and 100000, got 0.5"),
        ({"TOAPIS_QUERY_PER_SECOND": "fast"}, r"^TOAPIS_QUERY_PER_SECOND must be a number, got 'fast'"),
        ({"TOAPIS_QUERY_BURST": "-3"}, r"^TOAPIS_QUERY_BURST must be between 1 and 1e\+06, got -3"),
        ({"MAX_QUEUED_JOBS": "0"}, r"^MAX_QUEUED_JOBS must be a whole number \(1 or more\), got '0'"),
        ({"MAX_QUEUED_JOBS": "many"}, r"^MAX_QUEUED_JOBS must be a whole number"),
        ({"QUEUE_TIMEOUT_SECONDS": "5"}, r"^QUEUE_TIMEOUT_SECONDS must be between 10 and 86400, got 5"),
    ],
)
def test_invalid_rate_and_queue_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**REQUIRED, **env})


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        pytest.param(lambda d: d / "missing.txt", "file not found", id="missing"),
        pytest.param(lambda d: d, "cannot read the file", id="a-directory"),
        pytest.param(lambda d: _write(d / "bad.txt", b"\xff\xfe word\n"), "not valid UTF-8", id="not-utf8"),
        pytest.param(
            lambda d: _write(d / "bad.txt", b"word: ok\nregex: (a)\\1\n"), "line 2: ", id="a-bad-entry"
        ),
    ],
)
def test_a_bad_operator_blocklist_file_stops_start_up_in_one_plain_line(tmp_path, make, problem):
    path = make(tmp_path)
    result = _run_main({**REQUIRED, "OPERATOR_BLOCKLIST_FILE": str(path)}, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert (
        result.returncode,
        len(lines),
        lines[0].startswith(f"error: OPERATOR_BLOCKLIST_FILE {path}: "),
    ) == (
        2,
        1,
        True,
    )
    assert problem in lines[0]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_the_operator_blocklist_file_is_read_in_the_server_blocklist_format(tmp_path):
    from bot.config import load_operator_blocklist

    path = _write(
        tmp_path / "list.txt",
        b"# comments and blank lines are skipped\n\n"
        b"word: dragon\nregex: /castle\\d+/\nexcept: dragonfly\ngoblin\n",
    )
    blocklist = load_operator_blocklist(path)
    assert blocklist is not None
    matched = {
        prompt: getattr(blocklist.match(prompt), "pattern", None)
        for prompt in ("a DRAG0N", "castle42", "a dragonfly", "goblins", "a goblin", "a meadow")
    }
    assert (load_operator_blocklist(None), matched) == (
        None,
        {
            "a DRAG0N": "dragon",
            "castle42": "castle\\d+",
            "a dragonfly": None,
            "goblins": None,
            "a goblin": "goblin",
            "a meadow": None,
        },
    )
