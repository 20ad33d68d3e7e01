"""What job messages show, measured against Discord's embed limits with the largest inputs the bot accepts."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import discord
import pytest

from bot.catalog import builtin_catalog
from bot.images import FittedImage
from bot.jobs.progress import JobProgress, Phase
from bot.jobs.records import JobRecord, JobState
from bot.jobs.request import ImagineRequest
from bot.jobs.runner import JobOutcome
from cogs import render

NOW = datetime(2026, 11, 21, 15, 30, tzinfo=UTC).timestamp()
LONGEST_PROMPT = ("a red fox in snow " * 400)[:5999] + "!"  # the catalog allows at most 6,000
# Ten references (the most a model may take) behind long signed links: their field fills up.
REFERENCES = tuple(f"https://files.example.com/uploads/{i}.jpg?signature={'s' * 40}" for i in range(10))
LONGEST_MODEL = dataclasses.replace(
    builtin_catalog().get("doubao-seedream-5-0"),
    id="m" * 100,
    display_name="N" * 100,
    max_prompt_length=6000,
)


def request(prompt: str = LONGEST_PROMPT) -> ImagineRequest:
    return ImagineRequest(
        prompt=prompt,
        model=LONGEST_MODEL,
        ratio="16:9",
        n=15,
        resolution="R" * 100,
        requester_id=2**63 - 1,
        reference_urls=REFERENCES,
    )


def job(**changes: Any) -> JobRecord:
    values: dict[str, Any] = {
        "id": 2**31,
        "state": JobState.FAILED,
        "guild_id": 10,
        "channel_id": 30,
        "user_id": 2**63 - 1,
        "application_id": 1,
        "interaction_id": None,
        "interaction_token": None,
        "token_expires_at": None,
        "message_id": 40,
        "upload_limit": 10_000_000,
        "prompt": LONGEST_PROMPT,
        "model": LONGEST_MODEL.id,
        "ratio": "16:9",
        "resolution": "R" * 100,
        "n": 15,
        "reference_urls": REFERENCES,
        "task_id": "t" * 200,  # the longest the database keeps
        "progress": None,
        "result_urls": None,
        "result_expires_at": None,
        "delivered": None,
        "error": "refused " * 200,  # longer than any field may be
        "created_at": NOW - 3600,
        "updated_at": NOW,
        "submitted_at": NOW - 3500,
        "finished_at": NOW,
    }
    return JobRecord(**(values | changes))


def reduced_image(index: int) -> FittedImage:
    return FittedImage(
        data=b"x" * 9_000_000,
        filename=f"imagine-{index}.jpg",
        content_type="image/jpeg",
        width=2560,
        height=1440,
        reduced=True,
        original_bytes=48_000_000,
        original_width=6000,
        original_height=3375,
    )


def total(embed: discord.Embed) -> int:
    """Counted from what is sent, not with the code under test."""
    data = embed.to_dict()
    size = len(data.get("title", "")) + len(data.get("description", ""))
    return size + sum(len(f["name"]) + len(f["value"]) for f in data.get("fields", []))


def within_limits(embed: discord.Embed) -> bool:
    data = embed.to_dict()
    return (
        total(embed) <= 6000
        and len(data.get("title", "")) <= 256
        and len(data.get("description", "")) <= 4096
        and len(data.get("fields", [])) <= 25
        and all(len(f["name"]) <= 256 and 0 < len(f["value"]) <= 1024 for f in data.get("fields", []))
    )


def largest_embeds() -> dict[str, discord.Embed]:
    started = datetime.fromtimestamp(NOW, UTC)
    outcome = JobOutcome(
        task_id="t" * 200,
        images=tuple(reduced_image(i) for i in range(15)),
        requested=15,
        returned=15,
        elapsed=61,
    )
    return {
        "details": render.details_embed(job(), request()),
        "progress": render.progress_embed(request(), JobProgress(Phase.GENERATING, 42, slow=True), started),
        "result": render.result_embed(request(), outcome, upload_limit=10_000_000),
        "failure": render.failure_embed(request(), "refused " * 200, elapsed=61),
    }


@pytest.mark.parametrize("kind", ["details", "progress", "result", "failure"])
def test_the_largest_job_message_fits_every_embed_limit_and_says_the_prompt_was_shortened(kind):
    embed = largest_embeds()[kind]
    shown, note = (embed.description or "").rsplit("…", 1)
    assert (
        within_limits(embed),
        # The room is used, not wasted: the description or the total is at its limit.
        len(embed.description or "") == 4096 or total(embed) == 6000,
        LONGEST_PROMPT.startswith(shown),
        note,
    ) == (True, True, True, "\n*(prompt shortened to fit Discord's limits; it has 6,000 characters)*")


def test_details_keeps_a_prompt_that_fits_whole():
    prompt = "a red fox in snow, " * 100
    embed = render.details_embed(job(prompt=prompt), request(prompt))
    assert (embed.description, within_limits(embed), render.embed_size(embed)) == (
        prompt,
        True,
        total(embed),
    )


def test_a_spoilered_job_shows_no_picture_on_its_card_and_says_it_is_a_spoiler():
    spoilered = dataclasses.replace(request(), spoiler=True)
    embed = render.progress_embed(spoilered, JobProgress(Phase.QUEUED, 0), datetime.fromtimestamp(NOW, UTC))
    plain = render.progress_embed(request(), JobProgress(Phase.QUEUED, 0), datetime.fromtimestamp(NOW, UTC))
    fields = {f.name: f.value for f in embed.fields}
    assert (embed.thumbnail.url, plain.thumbnail.url, "Spoiler" in fields, within_limits(embed)) == (
        None,
        REFERENCES[0],
        True,
        True,
    )


def test_the_audit_line_of_a_spoilered_job_hides_its_prompt():
    line = render.audit_line(job(spoiler=True, prompt="a || fox"), request("a || fox"))
    assert "🙈 spoiler · ||“a ¦¦ fox”||" in line


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (JobProgress(Phase.WAITING, ahead=0, wait=5.0), "🕒 Waiting in line — 0 ahead, about 5 seconds"),
        (
            JobProgress(Phase.WAITING, ahead=1234, wait=240.0),
            "🕒 Waiting in line — 1,234 ahead, about 4 minutes",
        ),
        (JobProgress(Phase.WAITING, ahead=3), "🕒 Waiting in line — 3 ahead"),  # no budget: no estimate
    ],
)
def test_a_waiting_job_says_how_many_are_ahead_and_about_how_long(state, expected):
    started = datetime(2026, 1, 1, tzinfo=UTC)
    assert render.status_line(state, started) == f"{expected} · started <t:1767225600:R>"
