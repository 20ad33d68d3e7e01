"""The Discord-free texts and files of moderation: a member's quota, usage and its CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.guild_settings import GuildSettings
from bot.jobs.records import JobRecord, JobState
from bot.policy import OperatorRules, Requester, quota_plan
from bot.usage import (
    CSV_COLUMNS,
    csv_filename,
    images_of,
    jobs_csv,
    period_of,
    quota_text,
    summarize,
    usage_text,
)

NOW = datetime(2026, 11, 21, 15, 30, tzinfo=UTC).timestamp()
MIDNIGHT = int(datetime(2026, 11, 22, tzinfo=UTC).timestamp())
NEXT_MONTH = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
GUILD, USER = 10, 20
EVERYWHERE = "across every server (the bot's own limit)"


def job(
    id: int, *, user: int = USER, state: JobState = JobState.DONE, n: int = 1, **changes: Any
) -> JobRecord:
    delivered = changes.pop("delivered_count", n if state is JobState.DONE else 0)
    values: dict[str, Any] = {
        "id": id,
        "state": state,
        "guild_id": GUILD,
        "channel_id": 30,
        "user_id": user,
        "application_id": 1,
        "interaction_id": None,
        "interaction_token": None,
        "token_expires_at": None,
        "message_id": 40 + id,
        "upload_limit": 10_000_000,
        "prompt": f"prompt {id}",
        "model": "doubao-seedream-5-0",
        "ratio": "1:1",
        "resolution": "2K",
        "n": n,
        "reference_urls": (),
        "task_id": None,
        "progress": None,
        "result_urls": None,
        "result_expires_at": None,
        "delivered": {"images": [{}] * delivered} if state is JobState.DONE else None,
        "error": "The service refused it" if state is JobState.FAILED else None,
        "created_at": NOW - 3600 + id,
        "updated_at": NOW,
        "submitted_at": None,
        "finished_at": NOW if state in (JobState.DONE, JobState.FAILED) else None,
    }
    return JobRecord(**(values | changes))


# --------------------------------------------------------------------------- /imagine-quota


def plan_for(settings: GuildSettings | None, operator: OperatorRules | None = None, **who: Any):
    requester = Requester(user_id=USER, guild_id=GUILD if settings else None, channel_id=30, **who)
    return quota_plan(settings, operator or OperatorRules(), requester, 1, NOW)


def test_quota_text_without_any_quota():
    plan = plan_for(GuildSettings())
    assert str(quota_text(plan, {}, NOW)) == (
        "**No image quota applies to you.**\n• You: no daily limit of your own in this server"
    )


def test_quota_text_lists_each_limit_with_what_is_left_and_when_it_resets():
    settings = GuildSettings(daily_member_quota=10, daily_server_quota=100, monthly_server_quota=1000)
    plan = plan_for(settings, OperatorRules(global_daily_cap=50))
    used = {
        "u:20:2026-11-21": 12,
        "m:10:20:2026-11-21": 4,
        "g:10:2026-11-21": 30,
        "g:10:2026-11": 995,
    }
    assert str(quota_text(plan, used, NOW)).splitlines() == [
        "**Images left for you: 5**",
        f"• You: 38 of 50 images left today {EVERYWHERE} — resets <t:{MIDNIGHT}:R>",
        f"• You: 6 of 10 images left today in this server — resets <t:{MIDNIGHT}:R>",
        f"• This server: 70 of 100 images left today — resets <t:{MIDNIGHT}:R>",
        f"• This server: 5 of 1000 images left this month — resets <t:{NEXT_MONTH}:R>",
    ]


def test_quota_text_uses_the_best_role_quota():
    settings = GuildSettings(daily_member_quota=2, role_quotas=((7, 20), (8, 5)))
    plan = plan_for(settings, role_ids=frozenset({7, 8}))
    assert str(quota_text(plan, {"m:10:20:2026-11-21": 3}, NOW)).splitlines()[:2] == [
        "**Images left for you: 17**",
        f"• You: 17 of 20 images left today in this server — resets <t:{MIDNIGHT}:R>",
    ]


def test_quota_text_when_exhausted_says_when_generation_is_possible_again():
    settings = GuildSettings(daily_member_quota=3, monthly_server_quota=10)
    plan = plan_for(settings)
    used = {"m:10:20:2026-11-21": 3, "g:10:2026-11": 10}
    lines = str(quota_text(plan, used, NOW)).splitlines()
    # Both are used up: the member waits for the later reset (the month's).
    assert lines[:2] == ["**Images left for you: 0**", f"You can generate again <t:{NEXT_MONTH}:R>."]


def test_quota_text_shows_running_jobs_and_cooldown():
    settings = GuildSettings(max_concurrent_member=2, max_concurrent_server=5, cooldown_seconds=60)
    plan = plan_for(settings)
    waiting = {"am:10:20": 1, "ag:10": 4, "cd:10:20": int((NOW - 20) * 1000)}
    assert str(quota_text(plan, waiting, NOW)).splitlines()[2:] == [
        "Running jobs: 1 of your 2.",
        "Running jobs: 4 of this server's 5.",
        f"Cooldown: 60 s between requests — you can generate again <t:{int(NOW + 40)}:R>.",
    ]
    ready = {"cd:10:20": int((NOW - 61) * 1000)}
    assert str(quota_text(plan, ready, NOW)).endswith(
        "Cooldown: 60 s between requests — you can generate now."
    )


def test_quota_text_in_direct_messages_has_only_the_operator_cap():
    plan = plan_for(None, OperatorRules(global_daily_cap=5))
    assert str(quota_text(plan, {"u:20:2026-11-21": 5}, NOW)).splitlines() == [
        "**Images left for you: 0**",
        f"You can generate again <t:{MIDNIGHT}:R>.",
        f"• You: 0 of 5 images left today {EVERYWHERE} — resets <t:{MIDNIGHT}:R>",
    ]


def test_owners_have_no_quota():
    settings = GuildSettings(daily_member_quota=1, cooldown_seconds=60)
    plan = quota_plan(
        settings,
        OperatorRules(global_daily_cap=1, owner_ids=frozenset({USER})),
        Requester(user_id=USER, guild_id=GUILD, channel_id=1),
        1,
        NOW,
    )
    assert str(quota_text(plan, {}, NOW)).splitlines()[0] == "**No image quota applies to you.**"


# --------------------------------------------------------------------------- periods and counting


@pytest.mark.parametrize(
    ("name", "when", "label", "start", "end"),
    [
        (
            "today",
            datetime(2026, 11, 21, 23, 59, 59, tzinfo=UTC),
            "2026-11-21",
            (2026, 11, 21),
            (2026, 11, 22),
        ),
        ("today", datetime(2026, 12, 31, 0, 0, tzinfo=UTC), "2026-12-31", (2026, 12, 31), (2027, 1, 1)),
        ("month", datetime(2026, 11, 1, 0, 0, tzinfo=UTC), "2026-11", (2026, 11, 1), (2026, 12, 1)),
        ("month", datetime(2026, 12, 15, tzinfo=UTC), "2026-12", (2026, 12, 1), (2027, 1, 1)),
    ],
)
def test_periods_are_utc_days_and_months(
    name: str, when: datetime, label: str, start: tuple[int, int, int], end: tuple[int, int, int]
):
    period = period_of(name, when.timestamp())
    assert (period.name, period.label, period.start, period.end) == (
        name,
        label,
        datetime(*start, tzinfo=UTC).timestamp(),
        datetime(*end, tzinfo=UTC).timestamp(),
    )


def test_an_unknown_period_is_an_error():
    with pytest.raises(ValueError):
        period_of("year", NOW)


def test_a_job_counts_the_images_its_quota_settles_to():
    assert [
        images_of(job(1, n=4)),
        images_of(job(2, n=4, delivered_count=2)),
        images_of(job(3, n=4, state=JobState.FAILED)),
        images_of(job(4, n=4, state=JobState.RUNNING)),
    ] == [4, 2, 0, 4]


def test_summary_counts_jobs_images_members_and_failures():
    jobs = [
        job(1, user=1, n=2),
        job(2, user=1, n=3, state=JobState.FAILED),
        job(3, user=2, n=4, delivered_count=3),
        job(4, user=3, n=1, state=JobState.FAILED, error="Timed out"),
        job(5, user=3, n=1, state=JobState.FAILED),
        job(6, user=1, n=1, state=JobState.SUBMITTING),
    ]
    summary = summarize(jobs)
    assert (summary.jobs, summary.done, summary.failed, summary.running, summary.images, summary.asked) == (
        6,
        2,
        3,
        1,
        6,
        12,
    )
    assert [(m.user_id, m.jobs, m.images) for m in summary.members] == [(1, 3, 3), (2, 1, 3), (3, 2, 0)]
    assert summary.failures == (("The service refused it", 2), ("Timed out", 1))


def test_usage_text():
    jobs = [job(1, user=1, n=2), job(2, user=2, state=JobState.FAILED)]
    settings = GuildSettings(daily_server_quota=100)
    text = str(usage_text(period_of("today", NOW), summarize(jobs), today=2, month=1, settings=settings))
    assert text.splitlines() == [
        "**Image usage today** (2026-11-21, UTC)",
        "**Today:** 2 images of 100 allowed",
        "**This month:** 1 image",
        "**Jobs today:** 2 — 1 done, 1 failed, 0 running · 2 images of 3 asked for",
        "**Top members:**",
        "1. <@1> — 2 images (1 job)",
        "2. <@2> — 0 images (1 job)",
        "**Failures:** 1",
        "• The service refused it ×1",
        "The attached CSV lists every job of the period.",
    ]
    empty = str(
        usage_text(period_of("month", NOW), summarize([]), today=0, month=0, settings=GuildSettings())
    )
    assert empty.splitlines()[0] == "**Image usage this month** (2026-11, UTC)"
    assert "**Failures:** none" in empty and "CSV" not in empty
    cut = str(
        usage_text(
            period_of("today", NOW), summarize(jobs), today=2, month=2, settings=settings, truncated=True
        )
    )
    assert cut.endswith("(only the first ones: there were too many).")


# --------------------------------------------------------------------------- CSV


def test_csv_has_one_row_per_job_and_never_a_formula():
    jobs = [
        job(1, n=2, prompt='a fox, "quoted"\nnew line'),
        job(2, state=JobState.FAILED, prompt='=HYPERLINK("http://x")', error="-oops"),
        job(3, state=JobState.RUNNING, message_id=None, prompt="@everyone +1"),
    ]
    data = jobs_csv(jobs)
    assert data.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["job_id"], r["state"], r["n"], r["images"]) for r in rows] == [
        ("1", "done", "2", "2"),
        ("2", "failed", "1", "0"),
        ("3", "running", "1", "1"),
    ]
    assert [r["prompt"] for r in rows] == [
        'a fox, "quoted"\nnew line',
        '\'=HYPERLINK("http://x")',
        "'@everyone +1",
    ]
    assert (rows[1]["error"], rows[0]["error"]) == ("'-oops", "")
    assert rows[0]["created_utc"] == "2026-11-21T14:30:01Z" and rows[2]["finished_utc"] == ""
    assert (rows[0]["message_url"], rows[2]["message_url"]) == ("https://discord.com/channels/10/30/41", "")


HOSTILE = (
    "a cat;=cmd|'/C calc'!A0",
    "a cat,=1+1",
    "a cat\t@SUM(A1:A9)",
    "first line\n-2+3",
    "first line\r\n+cmd",
    'a cat; \t=HYPERLINK("http://x")',
    " =1+1",
    "\uff1dcmd",
)
FORMULA_STARTERS = ("=", "+", "-", "@", "|", "\uff1d")


@pytest.mark.parametrize("prompt", HOSTILE)
def test_csv_cells_stay_text_whatever_separator_the_spreadsheet_splits_on(prompt):
    data = jobs_csv([job(1, prompt=prompt, error=prompt)]).decode("utf-8-sig")
    # Every cell quoted, so a reader splitting on `;` or tabs still keeps each cell whole.
    header, row = data.split("\r\n", 1)
    assert header == ",".join(f'"{name}"' for name in CSV_COLUMNS)
    assert row.startswith('"1","2026-11-21T14:30:01Z",')
    cells = next(csv.DictReader(io.StringIO(data)))
    for column in ("prompt", "error"):
        # Wherever the text is cut into cells (by `,` `;` tab or a line break), no piece starts a formula.
        pieces = cells[column].replace(";", ",").replace("\t", ",").replace("\r", ",").replace("\n", ",")
        for piece in pieces.split(","):
            assert not piece.lstrip(" ").startswith(FORMULA_STARTERS), (column, piece)
        # Nothing is lost: only apostrophes were added.
        assert cells[column].replace("'", "") == prompt.replace("'", "")


def test_csv_numbers_stay_numbers():
    cells = next(csv.DictReader(io.StringIO(jobs_csv([job(7, n=4)]).decode("utf-8-sig"))))
    assert [cells[c] for c in ("job_id", "user_id", "channel_id", "n", "images", "references")] == [
        "7",
        str(USER),
        "30",
        "4",
        "4",
        "0",
    ]


def test_csv_filename_names_the_server_and_period():
    assert csv_filename(GUILD, period_of("month", NOW)) == "imagine-usage-10-2026-11.csv"
