"""LOG_FORMAT=json: one JSON object per line, the ids of the job a line names as fields, secrets redacted."""

from __future__ import annotations

import io
import json
import logging

from bot.config import Settings
from bot.jobs.records import JobStore, NewJob
from bot.logsetup import JOB_LOG_NAME, JsonLogFormatter, SecretRedactor, secret_values

API_KEY = "sk-json-test-key-0123456789"


def json_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    """A logger whose handler is set up as `configure_logging` sets it up for LOG_FORMAT=json."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretRedactor(secret_values(Settings(discord_token="x" * 8, toapis_api_key=API_KEY))))
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_job_line_carries_the_jobs_ids_as_numbers():
    logger, stream = json_logger("test.json.job")
    logger.info("%s: submitted as task %s", "job 12 (guild 345, user 678)", "task_1")
    (entry,) = lines(stream)
    assert (
        {k: entry[k] for k in ("level", "logger", "message", "job_id", "guild_id", "user_id")},
        str(entry["time"]).endswith("+00:00"),
    ) == (
        {
            "level": "INFO",
            "logger": "test.json.job",
            "message": "job 12 (guild 345, user 678): submitted as task task_1",
            "job_id": 12,
            "guild_id": 345,
            "user_id": 678,
        },
        True,
    )


def test_a_direct_message_job_has_no_guild_id_and_extra_fields_win():
    logger, stream = json_logger("test.json.dm")
    logger.info("job 3 (guild None, user 9): done")
    logger.info("user deleted their history", extra={"user_id": 42})
    first, second = lines(stream)
    assert (
        (first.get("job_id"), "guild_id" in first, first.get("user_id")),
        (second.get("user_id"), "job_id" in second),
    ) == ((3, False, 9), (42, False))


def test_secrets_are_redacted_in_the_message_and_the_exception():
    logger, stream = json_logger("test.json.secret")
    try:
        raise RuntimeError(f"the service refused {API_KEY}")
    except RuntimeError:
        logger.exception("job 1 (guild 2, user 3): call with key %s failed", API_KEY)
    (entry,) = lines(stream)
    text = json.dumps(entry)
    assert (
        API_KEY in text,
        "[redacted]" in str(entry["message"]),
        "RuntimeError" in str(entry["exception"]),
    ) == (
        False,
        True,
        True,
    )


async def test_the_pattern_reads_the_name_every_job_log_line_uses(store):
    job = await JobStore(store).create(
        NewJob(
            guild_id=1234567890123456789,
            channel_id=2,
            user_id=987654321098765432,
            application_id=4,
            upload_limit=1,
            prompt="a fox",
            model="doubao-seedream-5-0",
            ratio="1:1",
            n=1,
        )
    )
    found = JOB_LOG_NAME.search(f"{job.log_name}: done")
    assert found is not None and (int(found["job_id"]), int(found["guild_id"]), int(found["user_id"])) == (
        job.id,
        1234567890123456789,
        987654321098765432,
    )
