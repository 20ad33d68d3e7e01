"""A job's own messages in its reader's language, end to end through the fakes (real discord.py).

The member who asks reads the placeholder, progress, result, failure and buttons in their own
Discord language, also after a restart; the server's audit line is in the server's language; a
job recorded before jobs kept their languages reads English.

Each expected text is the catalog's translation of the English message, and must differ from
the English: these tests hold once the catalogs are translated.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bot import i18n
from bot.i18n import Readable, Text, _, _n
from bot.jobs.progress import progress_bar
from bot.jobs.records import JobRecord, JobState
from bot.jobs.runner import duration_words
from tests.cogs.test_durable_e2e import STALLED, final_job_of, job_of, job_store, let_tasks_finish, until
from tests.fakes.discord import FakeMessage, InteractionRecord
from tests.fakes.toapis import TaskPlan, make_image
from tests.rig import RunningBot, embed_fields

pytestmark = pytest.mark.asyncio

JA = "ja"
FR = "fr"
# Progress the member can see: queued, then half-way, a step every half second.
VISIBLE_PROGRESS = TaskPlan(steps=[("queued", 0), ("in_progress", 50)], advance="time", step_seconds=0.5)
DONE_BUTTONS = (_("Reroll"), _("Vary"), _("Remix"), _("Delete"), _("Details"))
FAILED_BUTTONS = (_("Reroll"), _("Remix"), _("Details"))


# --------------------------------------------------------------------------- helpers


def translated(text: Readable, locale: str) -> str:
    """`text` in `locale`, which must not be its English (else the catalog lacks it)."""
    rendered = i18n.render(text, locale)
    assert rendered != i18n.render(text, "en-US"), f"no {locale} translation of {text!r}"
    return rendered


def status_in(body: FakeMessage | dict[str, Any], locale: str) -> str:
    """The Status field of a job message (or of one write's body), named in `locale`."""
    embeds = body.embeds if isinstance(body, FakeMessage) else (body.get("embeds") or [])
    return embed_fields(embeds[0]).get(i18n.render(_("Status"), locale), "") if embeds else ""


def started(status: Readable, job: JobRecord) -> Text:
    """`<status> · started <when>`, as the job's message shows where it is."""
    return _("{status} · started {when}", status=status, when=f"<t:{int(job.created_at)}:R>")


def labels(message: FakeMessage) -> list[str]:
    return [component.get("label", "") for component in message.component_list]


async def imagine(
    rig: RunningBot, *, locale: str, user_id: int | None = None, **options: Any
) -> InteractionRecord:
    payload = rig.discord.slash_command("imagine", options, locale=locale, user_id=user_id)
    return await rig.discord.send_interaction(payload)


async def finished(rig: RunningBot, record: InteractionRecord, locale: str) -> FakeMessage:
    """The job's message once it shows its final state, read in `locale`."""

    def final(_fake: object) -> FakeMessage | None:
        message = record.original
        shown = status_in(message, locale) if message is not None else ""
        return message if "✅" in shown or "❌" in shown else None

    return await rig.discord.wait_for(final, timeout=20)


def done_lines(images: int, locale: str) -> set[str]:
    """Every way the first line of a finished job's status may read (the time it took varies)."""
    count = _n("{count} image", "{count} images", images)
    return {
        i18n.render(_("✅ {images} in {duration}", images=count, duration=duration_words(seconds)), locale)
        for seconds in range(1, 90)
    }


# --------------------------------------------------------------------------- the member's language


async def test_a_japanese_member_reads_the_placeholder_progress_result_and_buttons_in_japanese(start_bot):
    rig = await start_bot()
    rig.toapis.plan = VISIBLE_PROGRESS
    record = await imagine(rig, locale=JA, prompt="a red fox in snow", n=2)
    message = await finished(rig, record, JA)
    job = await final_job_of(rig, record)

    placeholder = record.callback["data"]["embeds"][0]
    statuses = [status_in(body, JA) for body in message.history]
    assert (
        [field["name"] for field in placeholder["fields"]],
        status_in(record.callback["data"], JA),
        translated(started(_("🎨 Generating {bar}", bar=progress_bar(50)), job), JA) in statuses,
        status_in(message, JA).splitlines()[0] in done_lines(2, JA),
        labels(message),
        (job.locale, job.guild_locale),
    ) == (
        [
            translated(name, JA)
            for name in (_("Model"), _("Ratio"), _("Resolution"), _("Images"), _("Requested by"), _("Status"))
        ],
        translated(started(_("⏳ Queued"), job), JA),
        True,
        True,
        [translated(label, JA) for label in DONE_BUTTONS],
        (JA, "en-US"),
    )
    assert status_in(message, JA).splitlines()[0] not in done_lines(2, "en-US")


async def test_a_japanese_member_reads_why_a_job_failed_in_japanese(start_bot):
    rig = await start_bot()
    rig.toapis.plan = TaskPlan(outcome="failed", failure_message="The prompt was rejected")
    record = await imagine(rig, locale=JA, prompt="something refused")
    message = await finished(rig, record, JA)
    job = await final_job_of(rig, record)

    reason = _("The image service could not make this image: {reason}", reason="The prompt was rejected")
    assert (
        status_in(message, JA).splitlines()[0],
        labels(message),
        job.error,  # the record keeps the English, for operators and reports
    ) == (
        translated(_("❌ {reason}", reason=reason), JA),
        [translated(label, JA) for label in FAILED_BUTTONS],
        str(reason),
    )


async def test_a_japanese_member_waiting_in_line_reads_their_place_in_japanese(start_bot):
    rig = await start_bot()
    queue = rig.bot.runner.submit_queue
    queue.refresh_seconds = 0.05  # positions shown quickly (the default is every few seconds)
    queue.hold_off(100)  # as if the provider had asked for a pause
    record = await imagine(rig, locale=JA, prompt="a patient fox")
    job = await job_of(rig, record)

    place = _("🕒 Waiting in line — {ahead} ahead, about {wait}", ahead="0", wait=duration_words(100))
    expected = translated(started(place, job), JA)
    shown = await rig.discord.wait_for(
        lambda _fake: (
            record.original if record.original and status_in(record.original, JA) == expected else None
        ),
        timeout=20,
    )
    assert status_in(shown, JA) == expected


async def test_a_reroll_speaks_the_language_of_the_member_who_pressed_it(start_bot):
    rig = await start_bot()
    record = await imagine(rig, locale="en-US", prompt="a red fox")
    original = await finished(rig, record, "en-US")
    job = await final_job_of(rig, record)

    presser = rig.discord.snowflake()
    payload = rig.discord.component_interaction(
        original, f"imagine:reroll:{job.id}", component_type=2, user_id=presser, locale=JA
    )
    reroll = await rig.discord.send_interaction(payload)
    rerolled = await finished(rig, reroll, JA)
    again = await final_job_of(rig, reroll)
    assert (
        labels(original),
        status_in(rerolled, JA).splitlines()[0] in done_lines(1, JA),
        labels(rerolled),
        again.locale,
    ) == (
        [str(label) for label in DONE_BUTTONS],
        True,
        [translated(label, JA) for label in DONE_BUTTONS],
        JA,
    )


async def test_a_reference_image_refused_when_asked_is_explained_in_the_members_language(start_bot):
    rig = await start_bot()
    tiny = rig.discord.make_attachment("tiny.png", make_image(10, 10, "PNG"))
    record = await imagine(rig, locale=JA, prompt="like this", image1=tiny)
    await rig.discord.wait_for(lambda _fake: record.acknowledged)

    rule = _(
        "{filename} is {size} pixels; reference images must be more than "
        "{least} pixels wide and tall — use a larger image.",
        filename="`tiny.png`",
        size="10×10",
        least="14",
    )
    assert (record.ephemeral, record.callback["data"]["content"], rig.toapis.submit_attempts) == (
        True,
        translated(rule, JA),
        0,
    )


# --------------------------------------------------------------------------- the server's language


async def test_a_french_servers_audit_line_is_french_while_its_japanese_member_reads_japanese(start_bot):
    rig = await start_bot()
    guild = rig.discord.guild_id
    rig.discord.guild_locales[guild] = FR
    audit = rig.discord.snowflake()
    rig.discord.channel(audit, guild_id=guild)
    await rig.bot.guild_settings.update(guild, lambda s: dataclasses.replace(s, audit_channel_id=audit))
    member = rig.discord.snowflake()

    record = await imagine(rig, locale=JA, user_id=member, prompt="a red fox", model="doubao-seedream-5-0")
    message = await finished(rig, record, JA)
    job = await final_job_of(rig, record)
    line = await rig.discord.wait_for_message(lambda m: m.channel_id == audit and f"<@{member}>" in m.content)

    outcome = _n("✅ {delivered}/{count} image", "✅ {delivered}/{count} images", 1, delivered="1")
    link = f"https://discord.com/channels/{guild}/{job.channel_id}/{job.message_id}"
    expected = " · ".join(
        [
            translated(
                _(
                    "{outcome} · {member} in {channel}",
                    outcome=outcome,
                    member=f"<@{member}>",
                    channel=f"<#{job.channel_id}>",
                ),
                FR,
            ),
            "Seedream 5.0",
            "“a red fox”",
            # French keeps the word "message": the same text as the English, on purpose.
            i18n.render(_("[message]({link})", link=link), FR),
        ]
    )
    assert (
        line.content,
        line.pings,
        (job.locale, job.guild_locale),
        status_in(message, JA).splitlines()[0] in done_lines(1, JA),
    ) == (expected, set(), (JA, FR), True)


# --------------------------------------------------------------------------- after a restart


async def _stopped_while_running(start_bot, locale: str) -> tuple[InteractionRecord, JobRecord]:
    """A job of a member reading `locale`, running (its task stalled) when the bot stops."""
    rig = await start_bot()
    rig.toapis.plan = STALLED
    record = await imagine(rig, locale=locale, prompt="a fox that survives restarts", n=2)

    async def running() -> JobRecord | None:
        job = await job_of(rig, record)
        return job if job.state is JobState.RUNNING and job.task_id else None

    job = await until(running)
    await rig.bot.close()
    return record, job


async def test_a_job_resumed_after_a_restart_keeps_its_members_language(start_bot):
    record, _job = await _stopped_while_running(start_bot, JA)
    again = await start_bot()
    let_tasks_finish(again.toapis)

    message = await finished(again, record, JA)
    assert (status_in(message, JA).splitlines()[0] in done_lines(2, JA), labels(message)) == (
        True,
        [translated(label, JA) for label in DONE_BUTTONS],
    )


async def test_a_job_recorded_before_jobs_kept_their_language_reads_english(start_bot, bot_settings):
    record, job = await _stopped_while_running(start_bot, JA)
    async with job_store(bot_settings) as jobs:
        await jobs.update(job.id, locale=None, guild_locale=None)  # as migration 11 leaves older rows
    again = await start_bot()
    let_tasks_finish(again.toapis)

    message = await finished(again, record, "en-US")
    assert (status_in(message, "en-US").splitlines()[0] in done_lines(2, "en-US"), labels(message)) == (
        True,
        [str(label) for label in DONE_BUTTONS],
    )
    # Not what the member's own language would have shown.
    assert labels(message) != [translated(label, JA) for label in DONE_BUTTONS]
