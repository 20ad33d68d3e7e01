"""Logging for `python -m bot`: levels that keep secrets out of the log, and a filter that redacts any left.

Secrets are kept out at the source first: the database engine never puts statement parameters
in its messages or errors (they carry interaction tokens), the database libraries' statement
logging stays off at every `LOG_LEVEL`, and discord.py logs at INFO at most (its DEBUG lines
are gateway payloads and request URLs, which carry interaction tokens). What can still carry a
secret — discord.py's rate-limit warnings name the webhook URL, a traceback may show a URL or a
provider's answer — passes :class:`SecretRedactor` on its way to the handler.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from bot.config import Settings
from bot.webhooks.signing import SigningSecret

REDACTED = "[redacted]"

# Libraries whose DEBUG/INFO output is statements, parameters and result rows: WARNING at most.
QUIET_LOGGERS = ("sqlalchemy", "aiosqlite", "asyncpg")

# Settings whose values are secrets (a new one is covered by its name alone).
_SECRET_NAME = re.compile(r"(token|key|secret|secrets|password)$")
# Shorter values are too likely to be ordinary words to replace wherever they appear.
_MIN_SECRET_CHARS = 4

# Secrets recognised by their shape, for values the filter was not told about. Repeats are
# bounded so a long line cannot make a pattern backtrack for long.
_TOKEN_SHAPES = (
    # Interaction tokens in webhook and interaction callback URLs.
    (re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/\s?#'\"]+"), r"\1" + REDACTED),
    # "token": "…" in JSON, 'token': '…' in a logged dict (INTERACTION_CREATE, IDENTIFY).
    (
        re.compile(r"""(["'](?:[a-z]{1,40}_)?(?:token|secret|password)["']\s*:\s*["'])[^"']*"""),
        r"\1" + REDACTED,
    ),
    # Authorization headers: "Bot …", "Bearer …".
    (re.compile(r"(?i)\b(bot|bearer)(\s+)[A-Za-z0-9_\-.=]{16,}"), r"\1\2" + REDACTED),
    # A Discord bot token: three base64url parts separated by dots.
    (re.compile(r"\b[A-Za-z0-9_\-]{20,40}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{25,60}"), REDACTED),
    # API keys of the sk-… form.
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), REDACTED),
    # Passwords in URLs (DATABASE_URL).
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
)


class SecretRedactor(logging.Filter):
    """Replaces known secret values and token-shaped text in every record, traceback included.

    Meant for handlers: a handler's filter sees the records of every logger, including those
    that propagate from libraries.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        values = sorted({s for s in secrets if len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, values))) if values else None
        self._formatter = logging.Formatter()

    def redact(self, text: str) -> str:
        """`text` with every known secret and token-shaped value replaced by `[redacted]`."""
        if self._known is not None:
            text = self._known.sub(REDACTED, text)
        for pattern, replacement in _TOKEN_SHAPES:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging would report it; show it raw but redacted
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


# How every log line names a job (`JobRecord.log_name`): `job 12 (guild 3, user 5)`.
JOB_LOG_NAME = re.compile(r"\bjob (?P<job_id>\d+) \(guild (?P<guild_id>\d+|None), user (?P<user_id>\d+)\)")
# The ids a JSON line carries as fields: given with `extra=`, else read from the job the line names.
ID_FIELDS = ("job_id", "guild_id", "user_id")


class JsonLogFormatter(logging.Formatter):
    """`LOG_FORMAT=json`: one JSON object per line, for log collectors.

    Keys: `time` (UTC, ISO 8601), `level`, `logger`, `message`, the ids `job_id`, `guild_id`,
    `user_id` when the line has them (as numbers), and `exception` with the traceback. Every
    line about a job names it the same way (`JobRecord.log_name`), so its ids are read from
    there unless the call passed them with `extra=`. The text is the redacted text: the
    handler's :class:`SecretRedactor` runs before any formatter.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        named = JOB_LOG_NAME.search(message)
        for key in ID_FIELDS:
            value = getattr(record, key, None)
            if value is None and named is not None and named[key] != "None":
                value = int(named[key])
            if value is not None:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold: tokens, keys, secrets (one or a list) and the database password."""
    found: list[str] = []
    for field in dataclasses.fields(settings):
        if not _SECRET_NAME.search(field.name):
            continue
        value = getattr(settings, field.name)
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, Iterable):
            for item in value:
                if isinstance(item, str):
                    found.append(item)
                elif isinstance(item, SigningSecret):
                    found.extend(item.texts)
    password = urlsplit(settings.database_url).password
    if password:
        found += [password, unquote(password)]
    return found


def configure_logging(settings: Settings) -> SecretRedactor:
    """Set up the process's logging at `LOG_LEVEL` in `LOG_FORMAT`, with secrets kept out; returns the
    redactor in use."""
    level = logging.getLevelName(settings.log_level)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)-8s %(name)s: %(message)s", stream=sys.stderr
    )
    redactor = SecretRedactor(secret_values(settings))
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
        if settings.log_format == "json":
            handler.setFormatter(JsonLogFormatter())
    # discord.py's INFO logging is chatty about gateway internals.
    logging.getLogger("discord").setLevel(max(logging.INFO, level))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, level))
    return redactor
