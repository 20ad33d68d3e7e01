"""Settings, read once from the environment and passed in explicitly.

Nothing here reads the environment at import time: `Settings.from_env()` is called
by `bot.__main__` (after python-dotenv has loaded `.env`) and by tests with a dict.
Every problem raises `ConfigError` whose message is one line naming the variable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bot.blocklist import Blocklist, BlocklistError, parse_blocklist_file
from bot.text import UnreadableFileError, read_text_file
from bot.toapis.budget import RATE_GROUPS, Allowance, RateLimits
from bot.webhooks.signing import SigningSecret, parse_signing_secret

DEFAULT_BASE_URL = "https://toapis.com"
DEFAULT_DATABASE_URL = "sqlite:///data/imagine.db"
DEFAULT_MODEL = "doubao-seedream-5-0"
# The provider's polling advice: at least this many seconds between status queries of one task.
ADVISED_POLL_FLOOR = 5.0

_HINT = "see .env.example"


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable."""


def _problem(name: str, what: str) -> ConfigError:
    return ConfigError(f"{name} {what} ({_HINT})")


def database_url_for_sqlalchemy(url: str) -> str:
    """Turn a deployer's DATABASE_URL into an async SQLAlchemy URL.

    Accepts `sqlite:///relative/or/absolute.db`, `postgresql://…` and the
    Heroku-style `postgres://…`; anything else raises `ValueError`.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not rest:
        raise ValueError("must look like sqlite:///path/to/file.db or postgresql://user:pass@host/db")
    scheme = scheme.lower()
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        path = rest[1:] if rest.startswith("/") else ""
        if not path:
            raise ValueError("needs a file path: sqlite:///data/imagine.db")
        return f"sqlite+aiosqlite:///{path}"
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        host = urlsplit(f"x://{rest}").hostname
        if not host and "host=" not in rest:
            raise ValueError("needs a host: postgresql://user:password@host:5432/dbname")
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"has an unsupported scheme {scheme!r}: use sqlite:/// or postgresql://")


@dataclass(frozen=True)
class Settings:
    """Everything the bot can be configured with (see `.env.example`)."""

    discord_token: str = field(repr=False)
    toapis_api_key: str = field(repr=False)
    toapis_base_url: str = DEFAULT_BASE_URL
    database_url: str = DEFAULT_DATABASE_URL
    default_model: str = DEFAULT_MODEL
    log_level: str = "INFO"
    log_format: str = "text"  # "json": one JSON object per line, for log collectors
    dev_guild_id: int | None = None
    model_catalog_file: Path | None = None
    job_timeout_seconds: float = 600.0
    progress_edit_interval: float = 2.0
    poll_interval_queued: float = 5.0
    poll_interval_running: float = 5.0
    toapis_timeout_seconds: float = 30.0
    discord_api_base_url: str | None = None
    global_daily_image_cap: int | None = None
    owner_ids: frozenset[int] = frozenset()
    allowed_guild_ids: frozenset[int] | None = None
    allow_dms: bool = False
    # The operator's own prompt blocklist, applied everywhere (servers, DMs, user installs).
    operator_blocklist_file: Path | None = None
    watermark: bool = False
    metrics_log_seconds: float = 0.0
    shard_count: int | None = None
    shard_ids: tuple[int, ...] | None = None
    discord_gateway_url: str | None = None
    balance_check_minutes: float = 10.0
    low_balance_usd: float | None = None
    operator_channel_id: int | None = None
    http_port: int | None = None  # None: no HTTP server
    http_host: str = "127.0.0.1"
    toapis_callback_url: str | None = None
    toapis_webhook_secrets: tuple[SigningSecret, ...] = field(default=(), repr=False)
    startup_retry_seconds: float = 60.0
    job_retention_days: int | None = 90  # None: job details are kept until someone asks
    toapis_rate_group: str = "default"
    toapis_submit_per_second: float | None = None
    toapis_submit_burst: float | None = None
    toapis_query_per_second: float | None = None
    toapis_query_burst: float | None = None
    max_queued_jobs: int = 500
    queue_timeout_seconds: float = 900.0

    @property
    def webhooks_enabled(self) -> bool:
        """Whether ToAPIs is asked to call the bot when a task ends (and the bot serves that route)."""
        return self.toapis_callback_url is not None

    @property
    def sqlalchemy_url(self) -> str:
        return database_url_for_sqlalchemy(self.database_url)

    @property
    def rate_limits(self) -> RateLimits:
        """The account's documented limits for its rate group, with any explicit value in their place."""
        group = RateLimits.for_group(self.toapis_rate_group)
        return RateLimits(
            Allowance(
                self.toapis_submit_per_second or group.submit.per_second,
                self.toapis_submit_burst or group.submit.burst,
            ),
            Allowance(
                self.toapis_query_per_second or group.query.per_second,
                self.toapis_query_burst or group.query.burst,
            ),
        )

    @property
    def shard_share(self) -> float:
        """The part of the account's rate limits this process may spend: its share of the shards."""
        if self.shard_count is None or self.shard_ids is None:
            return 1.0
        return len(self.shard_ids) / self.shard_count

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping, validating every value.

        Variables are read in a fixed order, so a deployer with several mistakes always sees
        the same one first.
        """
        return cls(
            discord_token=_required(env, "DISCORD_TOKEN"),
            toapis_api_key=_required(env, "TOAPIS_API_KEY"),
            database_url=_database_url(env, "DATABASE_URL"),
            log_level=_log_level(env, "LOG_LEVEL"),
            log_format=_choice(env, "LOG_FORMAT", ("text", "json")),
            dev_guild_id=_whole(env, "DEV_GUILD_ID", "a server id (digits only)"),
            model_catalog_file=_path(env, "MODEL_CATALOG_FILE"),
            shard_count=(shard_count := _whole(env, "SHARD_COUNT", "a whole number (1 or more)", low=1)),
            shard_ids=_shard_ids(env, "SHARD_IDS", shard_count),
            discord_gateway_url=_websocket_url(env, "DISCORD_GATEWAY_URL"),
            global_daily_image_cap=_whole(env, "GLOBAL_DAILY_IMAGE_CAP", "a whole number of images"),
            toapis_base_url=_http_url(env, "TOAPIS_BASE_URL") or DEFAULT_BASE_URL,
            default_model=_text(env, "DEFAULT_MODEL") or DEFAULT_MODEL,
            job_timeout_seconds=_number(env, "JOB_TIMEOUT_SECONDS", 600.0, 1, 24 * 3600),
            progress_edit_interval=_number(env, "PROGRESS_EDIT_INTERVAL_SECONDS", 2.0, 0.05, 300),
            poll_interval_queued=_poll_floor(env, "POLL_INTERVAL_QUEUED_SECONDS"),
            poll_interval_running=_poll_floor(env, "POLL_INTERVAL_RUNNING_SECONDS"),
            toapis_timeout_seconds=_number(env, "TOAPIS_TIMEOUT_SECONDS", 30.0, 0.1, 600),
            discord_api_base_url=_http_url(env, "DISCORD_API_BASE_URL"),
            owner_ids=_ids(env, "OWNER_IDS") or frozenset(),
            allowed_guild_ids=_ids(env, "ALLOWED_GUILD_IDS"),
            allow_dms=_flag(env, "ALLOW_DMS", False),
            operator_blocklist_file=_path(env, "OPERATOR_BLOCKLIST_FILE"),
            watermark=_flag(env, "WATERMARK", False),
            metrics_log_seconds=_number(env, "METRICS_LOG_SECONDS", 0.0, 0, 3600),
            balance_check_minutes=_number(env, "BALANCE_CHECK_MINUTES", 10.0, 0, 24 * 60),
            low_balance_usd=(
                _number(env, "LOW_BALANCE_USD", 0.0, 0, 100_000) if _text(env, "LOW_BALANCE_USD") else None
            ),
            operator_channel_id=_whole(env, "OPERATOR_CHANNEL_ID", "a channel id (digits only)"),
            http_port=(http_port := _port(env, "HTTP_PORT")),
            http_host=_text(env, "HTTP_HOST") or "127.0.0.1",
            toapis_callback_url=(callback := _callback_url(env, "TOAPIS_CALLBACK_URL", http_port)),
            toapis_webhook_secrets=_webhook_secrets(env, "TOAPIS_WEBHOOK_SECRETS", callback),
            startup_retry_seconds=_number(env, "STARTUP_RETRY_SECONDS", 60.0, 0, 3600),
            job_retention_days=_retention_days(env, "JOB_RETENTION_DAYS"),
            toapis_rate_group=_rate_group(env, "TOAPIS_RATE_GROUP"),
            toapis_submit_per_second=_optional_number(env, "TOAPIS_SUBMIT_PER_SECOND", 0.01, 10_000),
            toapis_submit_burst=_optional_number(env, "TOAPIS_SUBMIT_BURST", 1, 100_000),
            toapis_query_per_second=_optional_number(env, "TOAPIS_QUERY_PER_SECOND", 0.01, 100_000),
            toapis_query_burst=_optional_number(env, "TOAPIS_QUERY_BURST", 1, 1_000_000),
            max_queued_jobs=_whole(env, "MAX_QUEUED_JOBS", "a whole number (1 or more)", low=1) or 500,
            queue_timeout_seconds=_number(env, "QUEUE_TIMEOUT_SECONDS", 900.0, 10, 24 * 3600),
        )


# --- one parser per kind of value; each names its variable in any ConfigError ----------------


def _text(env: Mapping[str, str], name: str) -> str | None:
    """The value without surrounding blanks; None when unset or blank."""
    value = env.get(name)
    if value is None:
        return None
    return value.strip() or None


def _required(env: Mapping[str, str], name: str) -> str:
    value = _text(env, name)
    if value is None:
        raise _problem(name, "is missing: set it in the environment or in .env")
    return value


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    """A number within [low, high]; `default` when unset."""
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _problem(name, f"must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise _problem(name, f"must be between {low:g} and {high:g}, got {raw}")
    return value


def _poll_floor(env: Mapping[str, str], name: str) -> float:
    """Least seconds between two status queries of a task: the provider's 5 s or more."""
    raw = _text(env, name)
    if raw is not None:
        try:
            below = float(raw) < ADVISED_POLL_FLOOR
        except ValueError:
            below = False  # (_number names the problem)
        if below:
            raise _problem(
                name,
                f"must be at least {ADVISED_POLL_FLOOR:g}: the image service asks for "
                f"{ADVISED_POLL_FLOOR:g} s between status queries of a task, got {raw}",
            )
    return _number(env, name, ADVISED_POLL_FLOOR, ADVISED_POLL_FLOOR, 60)


def _optional_number(env: Mapping[str, str], name: str, low: float, high: float) -> float | None:
    """A number within [low, high]; None when unset."""
    return _number(env, name, 0.0, low, high) if _text(env, name) is not None else None


def _rate_group(env: Mapping[str, str], name: str) -> str:
    group = (_text(env, name) or "default").lower()
    if group not in RATE_GROUPS:
        raise _problem(
            name, f"must be one of {', '.join(RATE_GROUPS)} (see your ToAPIs account), got {group!r}"
        )
    return group


def _whole(env: Mapping[str, str], name: str, what: str, *, low: int = 0) -> int | None:
    """A whole number written in digits, at least `low`; None when unset. `what` words the rule."""
    raw = _text(env, name)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < low:
        raise _problem(name, f"must be {what}, got {raw!r}")
    return int(raw)


def _ids(env: Mapping[str, str], name: str) -> frozenset[int] | None:
    """Discord ids separated by commas or blanks; None when unset."""
    raw = _text(env, name)
    if raw is None:
        return None
    parts = raw.replace(",", " ").split()
    if not all(p.isdigit() for p in parts):
        raise _problem(name, f"must be ids (digits) separated by commas, got {raw!r}")
    return frozenset(int(p) for p in parts)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _text(env, name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise _problem(name, f"must be true or false, got {raw!r}")


def _http_url(env: Mapping[str, str], name: str) -> str | None:
    """An http(s) base URL without its trailing slash; None when unset."""
    raw = _text(env, name)
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _problem(name, f"must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def _websocket_url(env: Mapping[str, str], name: str) -> str | None:
    raw = _text(env, name)
    if raw is not None and urlsplit(raw).scheme not in ("ws", "wss"):
        raise _problem(name, f"must be a ws:// or wss:// URL, got {raw!r}")
    return raw


def _database_url(env: Mapping[str, str], name: str) -> str:
    """The deployer's database URL as written (checked to be one SQLAlchemy can use)."""
    url = _text(env, name) or DEFAULT_DATABASE_URL
    try:
        database_url_for_sqlalchemy(url)
    except ValueError as exc:
        raise _problem(name, str(exc)) from None
    return url


def _log_level(env: Mapping[str, str], name: str) -> str:
    level = (_text(env, name) or "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        raise _problem(name, f"must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    return level


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (any case); the first when unset."""
    value = (_text(env, name) or choices[0]).lower()
    if value not in choices:
        raise _problem(name, f"must be {' or '.join(choices)}, got {value!r}")
    return value


def load_operator_blocklist(path: Path | None) -> Blocklist | None:
    """The operator's blocklist from `OPERATOR_BLOCKLIST_FILE` (None when unset), checked entry by
    entry: a file that is missing, unreadable or holds an entry the server blocklist would refuse
    stops start-up with one line naming the file and the line."""
    if path is None:
        return None
    name = "OPERATOR_BLOCKLIST_FILE"
    try:
        text = read_text_file(path)
    except UnreadableFileError as exc:
        raise ConfigError(f"{name} {path}: {exc}") from None
    try:
        return parse_blocklist_file(text)
    except BlocklistError as exc:
        raise ConfigError(f"{name} {path}: {exc}") from None


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = _text(env, name)
    return Path(raw) if raw else None


def _retention_days(env: Mapping[str, str], name: str) -> int | None:
    """Days a finished job keeps its details: 90 when unset, None (keep them) for 0."""
    days = _whole(env, name, "a whole number of days (0 = keep job details until someone asks)")
    if days is None:
        return 90
    return days or None


def _shard_ids(env: Mapping[str, str], name: str, shard_count: int | None) -> tuple[int, ...] | None:
    """The shards this process runs, sorted; each below `shard_count`, which must be set."""
    ids = _ids(env, name)
    if ids is None:
        return None
    if shard_count is None:
        raise _problem(name, "needs SHARD_COUNT (how many shards there are in all)")
    if not ids:
        raise _problem(name, f"must be ids (digits) separated by commas, got {_text(env, name)!r}")
    if max(ids) >= shard_count:
        raise _problem(name, f"must be below SHARD_COUNT ({shard_count}): {sorted(ids)}")
    return tuple(sorted(ids))


def _port(env: Mapping[str, str], name: str) -> int | None:
    """A TCP port to listen on (1–65535); None when unset."""
    port = _whole(env, name, "a port number from 1 to 65535 (empty = no HTTP server)", low=1)
    if port is not None and port > 65535:
        raise _problem(name, f"must be a port number from 1 to 65535, got {port}")
    return port


# Routes of the bot's own HTTP server that the webhook route may not take.
RESERVED_PATHS = ("/healthz", "/metrics")


def _callback_url(env: Mapping[str, str], name: str, http_port: int | None) -> str | None:
    """The public HTTPS address ToAPIs calls; its path is the route the bot serves. None when unset.

    Whether its host is public is checked by `--check` (it needs DNS), not here.
    """
    raw = _text(env, name)
    if raw is None:
        return None
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 -- raises ValueError for a malformed port
    except ValueError:
        raise _problem(name, f"must be an https:// URL, got {raw!r}") from None
    if parts.scheme != "https" or not parts.hostname:
        raise _problem(name, f"must be a public https:// URL (ToAPIs calls only HTTPS), got {raw!r}")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise _problem(name, f"must not carry a user name, password or #fragment, got {raw!r}")
    if (parts.path or "/") in RESERVED_PATHS:
        raise _problem(name, f"must not use the path {parts.path} (the bot serves it for monitoring)")
    if http_port is None:
        raise _problem(name, "needs HTTP_PORT: the port your reverse proxy forwards the webhooks to")
    return raw


def _webhook_secrets(
    env: Mapping[str, str], name: str, callback_url: str | None
) -> tuple[SigningSecret, ...]:
    """One signing secret, or the current and the previous one separated by a comma (rotation).

    The values never appear in an error: a message names the position of a bad one instead.
    """
    raw = _text(env, name)
    if raw is None:
        if callback_url is not None:
            raise _problem(
                name, "is missing: TOAPIS_CALLBACK_URL needs the signing secret from the ToAPIs console"
            )
        return ()
    if callback_url is None:
        raise _problem(name, "is set but TOAPIS_CALLBACK_URL is not: set both, or neither")
    texts = [part.strip() for part in raw.split(",")]
    if len(texts) > 2 or not all(texts):
        raise _problem(name, "must be one secret, or the current and the previous one separated by a comma")
    secrets: list[SigningSecret] = []
    for position, text in zip(("the first", "the second"), texts, strict=False):
        try:
            secrets.append(parse_signing_secret(text))
        except ValueError as exc:
            raise _problem(name, f"has a malformed secret ({position}): {exc}") from None
    return tuple(secrets)
