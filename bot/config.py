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

DEFAULT_BASE_URL = "https://toapis.com"
DEFAULT_DATABASE_URL = "sqlite:///data/imagine.db"
DEFAULT_MODEL = "doubao-seedream-5-0"

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
    dev_guild_id: int | None = None
    model_catalog_file: Path | None = None
    job_timeout_seconds: float = 600.0
    progress_edit_interval: float = 2.0
    poll_interval_queued: float = 2.5
    poll_interval_running: float = 4.0
    toapis_timeout_seconds: float = 30.0
    discord_api_base_url: str | None = None
    global_daily_image_cap: int | None = None
    owner_ids: frozenset[int] = frozenset()
    allowed_guild_ids: frozenset[int] | None = None
    allow_dms: bool = False
    metrics_log_seconds: float = 0.0
    shard_count: int | None = None
    shard_ids: tuple[int, ...] | None = None
    discord_gateway_url: str | None = None

    @property
    def sqlalchemy_url(self) -> str:
        return database_url_for_sqlalchemy(self.database_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping, validating every value."""

        def get(name: str) -> str | None:
            value = env.get(name)
            if value is None:
                return None
            value = value.strip()
            return value or None

        def required(name: str) -> str:
            value = get(name)
            if value is None:
                raise _problem(name, "is missing: set it in the environment or in .env")
            return value

        def number(name: str, default: float, low: float, high: float) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise _problem(name, f"must be a number, got {raw!r}") from None
            if not low <= value <= high:
                raise _problem(name, f"must be between {low:g} and {high:g}, got {raw}")
            return value

        def base_url(name: str, default: str | None) -> str | None:
            raw = get(name)
            if raw is None:
                return default
            parts = urlsplit(raw)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise _problem(name, f"must be an http(s) URL, got {raw!r}")
            return raw.rstrip("/")

        discord_token = required("DISCORD_TOKEN")
        toapis_api_key = required("TOAPIS_API_KEY")

        database_url = get("DATABASE_URL") or DEFAULT_DATABASE_URL
        try:
            database_url_for_sqlalchemy(database_url)
        except ValueError as exc:
            raise _problem("DATABASE_URL", str(exc)) from None

        log_level = (get("LOG_LEVEL") or "INFO").upper()
        if not isinstance(logging.getLevelName(log_level), int):
            raise _problem("LOG_LEVEL", f"must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")

        dev_guild_raw = get("DEV_GUILD_ID")
        dev_guild_id = None
        if dev_guild_raw is not None:
            if not dev_guild_raw.isdigit():
                raise _problem("DEV_GUILD_ID", f"must be a server id (digits only), got {dev_guild_raw!r}")
            dev_guild_id = int(dev_guild_raw)

        catalog_raw = get("MODEL_CATALOG_FILE")

        def ids(name: str) -> frozenset[int] | None:
            raw = get(name)
            if raw is None:
                return None
            parts = [p for p in raw.replace(",", " ").split() if p]
            if not all(p.isdigit() for p in parts):
                raise _problem(name, f"must be ids (digits) separated by commas, got {raw!r}")
            return frozenset(int(p) for p in parts)

        def flag(name: str, default: bool) -> bool:
            raw = get(name)
            if raw is None:
                return default
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise _problem(name, f"must be true or false, got {raw!r}")

        shard_count_raw = get("SHARD_COUNT")
        if shard_count_raw is not None and (not shard_count_raw.isdigit() or int(shard_count_raw) < 1):
            raise _problem("SHARD_COUNT", f"must be a whole number (1 or more), got {shard_count_raw!r}")
        shard_count = int(shard_count_raw) if shard_count_raw is not None else None
        shard_ids = ids("SHARD_IDS")
        if shard_ids is not None:
            if shard_count is None:
                raise _problem("SHARD_IDS", "needs SHARD_COUNT (how many shards there are in all)")
            if max(shard_ids) >= shard_count:
                raise _problem("SHARD_IDS", f"must be below SHARD_COUNT ({shard_count}): {sorted(shard_ids)}")

        gateway_raw = get("DISCORD_GATEWAY_URL")
        if gateway_raw is not None and urlsplit(gateway_raw).scheme not in ("ws", "wss"):
            raise _problem("DISCORD_GATEWAY_URL", f"must be a ws:// or wss:// URL, got {gateway_raw!r}")

        cap_raw = get("GLOBAL_DAILY_IMAGE_CAP")
        if cap_raw is not None and not cap_raw.isdigit():
            raise _problem("GLOBAL_DAILY_IMAGE_CAP", f"must be a whole number of images, got {cap_raw!r}")

        return cls(
            discord_token=discord_token,
            toapis_api_key=toapis_api_key,
            toapis_base_url=base_url("TOAPIS_BASE_URL", DEFAULT_BASE_URL) or DEFAULT_BASE_URL,
            database_url=database_url,
            default_model=get("DEFAULT_MODEL") or DEFAULT_MODEL,
            log_level=log_level,
            dev_guild_id=dev_guild_id,
            model_catalog_file=Path(catalog_raw) if catalog_raw else None,
            job_timeout_seconds=number("JOB_TIMEOUT_SECONDS", 600.0, 1, 24 * 3600),
            progress_edit_interval=number("PROGRESS_EDIT_INTERVAL_SECONDS", 2.0, 0.05, 300),
            poll_interval_queued=number("POLL_INTERVAL_QUEUED_SECONDS", 2.5, 0.01, 60),
            poll_interval_running=number("POLL_INTERVAL_RUNNING_SECONDS", 4.0, 0.01, 60),
            toapis_timeout_seconds=number("TOAPIS_TIMEOUT_SECONDS", 30.0, 0.1, 600),
            discord_api_base_url=base_url("DISCORD_API_BASE_URL", None),
            global_daily_image_cap=int(cap_raw) if cap_raw is not None else None,
            owner_ids=ids("OWNER_IDS") or frozenset(),
            allowed_guild_ids=ids("ALLOWED_GUILD_IDS"),
            allow_dms=flag("ALLOW_DMS", False),
            metrics_log_seconds=number("METRICS_LOG_SECONDS", 0.0, 0, 3600),
            shard_count=shard_count,
            shard_ids=tuple(sorted(shard_ids)) if shard_ids is not None else None,
            discord_gateway_url=gateway_raw,
        )
