"""What members are told in answer to their commands, in their own language, end to end.

The real bot through the fake Discord (each interaction carries the member's `locale`) and the
fake ToAPIs. The expected texts are the catalogs' own translations (`i18n.render` of the
message the bot says in English); each test also checks that the translation is not the
English, so that it proves a member really reads their language (the catalogs must have it).
A locale without a catalog (Indonesian) reads English.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import sqlalchemy as sa

from bot import i18n
from bot.i18n import _, _p
from bot.jobs.records import JobRecord
from bot.jobs.request import RequestOptions, request_for_job
from bot.policy import quota_refusal
from bot.preferences import (
    NO_PREFERENCES,
    MemberPreferences,
    PreferenceError,
    change_preferences,
    fill,
    preferences_text,
)
from bot.quota import Limit, QuotaExceededError, next_day
from bot.retention import forget_confirmation
from bot.schema import jobs_table
from cogs import render
from tests.cogs import test_admin_e2e as admin_e2e
from tests.cogs.test_admin_e2e import GUILD, Server, encode, private_answer
from tests.fakes.discord import (
    DEFAULT_APP_PERMISSIONS,
    EMBED_LINKS,
    SEND_MESSAGES,
    FakeMessage,
    InteractionRecord,
)
from tests.fakes.toapis import make_image
from tests.rig import RunningBot, eventually

pytestmark = pytest.mark.asyncio

# The server is announced to the bot, as in the /imagine-admin tests (members' roles resolve).
discord_fake = admin_e2e.discord_fake

JA, DE = "ja", "de"
UNKNOWN = "id"  # Indonesian: a Discord locale the bot has no catalog for


def in_language(text: i18n.Readable, locale: str) -> str:
    """`text` as a member reading `locale` must see it, which must not be its English."""
    translated = i18n.render(text, locale)
    assert translated != i18n.render(text), f"no {locale} translation of {str(text)!r}"
    return translated


@pytest.fixture
async def server(start_bot) -> Server:
    rig = await start_bot()
    await eventually(lambda: rig.bot.get_guild(GUILD), what="the server is known to the bot")
    return Server(rig)


async def command(
    server: Server, name: str, options: dict[str, Any] | None = None, *, locale: str, user_id: int
) -> InteractionRecord:
    """Run slash command `name` as member `user_id`, whose Discord reads `locale`."""
    listed, resolved = encode(server.fake, options or {})
    payload = server.fake.slash_command(
        name, listed, user_id=user_id, resolved=resolved or None, locale=locale
    )
    return await server.fake.send_interaction(payload)


async def refusal(server: Server, record: InteractionRecord) -> str:
    """The private refusal of a request that reached nothing (no image service call, no job)."""
    text = await private_answer(server.fake, record)
    assert await job_count(server.rig) == 0, "a refused request left a job record"
    return text


async def job_count(rig: RunningBot) -> int:
    assert rig.bot.store is not None
    async with rig.bot.store.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(jobs_table))).scalar_one()


async def finished_job(server: Server, record: InteractionRecord) -> tuple[FakeMessage, JobRecord]:
    """The final message and the final job record of an accepted /imagine (the message may show
    the result a moment before the record is marked final)."""
    message = await server.rig.finished(record)
    rig = server.rig
    assert rig.bot.store is not None
    async with rig.bot.store.engine.connect() as conn:
        query = sa.select(jobs_table.c.id).where(jobs_table.c.interaction_id == record.id)
        job_id = (await conn.execute(query)).scalar_one()

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while (job := await rig.bot.jobs.get(job_id)) is None or not job.is_final:
        assert loop.time() < deadline, f"job {job_id} is not final"
        await asyncio.sleep(0.02)
    return message, job


async def clicked(
    server: Server, message: FakeMessage, custom_id: str, *, locale: str, user_id: int
) -> InteractionRecord:
    payload = server.fake.component_interaction(message, custom_id, user_id=user_id, locale=locale)
    record = await server.fake.send_interaction(payload)
    await server.fake.wait_for(lambda _: record.acknowledged)
    return record


# --------------------------------------------------------------------------- refusals


async def test_a_japanese_member_reads_a_blocked_prompt_refusal_in_japanese(server: Server):
    await server.admin("blocklist add", {"kind": "word", "pattern": "hate"})
    member = server.new_member()
    record = await command(server, "imagine", {"prompt": "hate speech"}, locale=JA, user_id=member)
    expected = _(
        "Your prompt contains a word or phrase this server does not allow. Change the prompt and try again."
    )
    assert (await refusal(server, record), server.rig.toapis.submit_attempts) == (
        in_language(expected, JA),
        0,
    )


async def test_a_japanese_member_reads_the_daily_limit_in_japanese(server: Server):
    await server.admin("quota", {"member_daily": 1})
    member = server.new_member()
    first = await command(server, "imagine", {"prompt": "a fox"}, locale=JA, user_id=member)
    await finished_job(server, first)
    again = await command(server, "imagine", {"prompt": "a fox"}, locale=JA, user_id=member)
    text = await private_answer(server.fake, again)
    limit = Limit(key="", limit=1, rule="member_daily", resets_at=next_day(time.time()))
    expected = quota_refusal(QuotaExceededError(limit, 1, asked=1))
    assert (text, server.rig.toapis.submit_attempts) == (in_language(expected, JA), 1)


async def test_a_japanese_member_reads_a_bad_option_in_japanese(server: Server):
    member = server.new_member()
    options = {"prompt": "a fox", "model": "doubao-seedream-4-0", "ratio": "auto"}
    record = await command(server, "imagine", options, locale=JA, user_id=member)
    expected = _(
        "The `auto` ratio matches a reference image, so it needs at least one image: "
        "attach one, or choose a ratio."
    )
    assert (await refusal(server, record), server.rig.toapis.submit_attempts) == (
        in_language(expected, JA),
        0,
    )


async def test_a_locale_without_a_catalog_reads_english(server: Server):
    member = server.new_member()
    options = {"prompt": "a fox", "model": "doubao-seedream-4-0", "ratio": "auto"}
    record = await command(server, "imagine", options, locale=UNKNOWN, user_id=member)
    assert await refusal(server, record) == (
        "The `auto` ratio matches a reference image, so it needs at least one image: "
        "attach one, or choose a ratio."
    )
    answer = await private_answer(
        server.fake, await command(server, "imagine-settings", locale=UNKNOWN, user_id=member)
    )
    assert answer.splitlines()[0] == (
        "**Your /imagine defaults** (everywhere you use the bot; a server's rules still apply)"
    )


# --------------------------------------------------------------------------- /imagine-settings


async def test_a_japanese_member_reads_imagine_settings_in_japanese(server: Server):
    member = server.new_member()
    bot = server.rig.bot
    catalog, default_model = bot.catalog, bot.settings.default_model

    shown = await private_answer(
        server.fake, await command(server, "imagine-settings", locale=JA, user_id=member)
    )
    saved = await private_answer(
        server.fake,
        await command(
            server, "imagine-settings", {"ratio": "16:9", "spoiler": True}, locale=JA, user_id=member
        ),
    )
    refused = await private_answer(
        server.fake,
        await command(
            server,
            "imagine-settings",
            {"model": "doubao-seedream-5-0", "ratio": "auto"},
            locale=JA,
            user_id=member,
        ),
    )

    prefs = await bot.preferences.get(member)
    listing = preferences_text(NO_PREFERENCES, catalog, default_model=default_model)
    assert shown == i18n.render(
        i18n.join([listing, _("Change them with the options of `/imagine-settings`.")]), JA
    )
    assert shown.splitlines()[0] == in_language(listing, JA).splitlines()[0]
    assert saved == i18n.render(
        i18n.join([_("Saved."), preferences_text(prefs, catalog, default_model=default_model)]), JA
    )
    assert saved.splitlines()[0] == in_language(_("Saved."), JA)
    with pytest.raises(PreferenceError) as why:
        change_preferences(
            prefs,
            catalog,
            default_model=default_model,
            changes={"model": "doubao-seedream-5-0", "ratio": "auto"},
        )
    # The refusal says why and that nothing was changed, in Japanese; the stored ratio stays.
    assert (refused, prefs.ratio) == (
        i18n.render(i18n.join([why.value.text, _("Nothing was changed.")], " "), JA),
        "16:9",
    )
    assert refused.endswith(in_language(_("Nothing was changed."), JA))
    assert in_language(_p("setting", "on"), JA) in saved


async def test_a_japanese_member_is_told_in_japanese_which_defaults_the_server_skipped(server: Server):
    member = server.new_member()
    await server.admin("limits", {"max_n": 2})
    await private_answer(
        server.fake, await command(server, "imagine-settings", {"n": 4}, locale=JA, user_id=member)
    )
    record = await command(server, "imagine", {"prompt": "a lighthouse"}, locale=JA, user_id=member)
    message = await server.fake.wait_for(lambda _: record.followups[0] if record.followups else None)
    await finished_job(server, record)
    settings = await server.rig.bot.guild_settings.get(GUILD)
    asked = RequestOptions(prompt="a lighthouse")
    skipped = fill(
        asked,
        MemberPreferences(n=4),
        server.rig.bot.catalog,
        default_model=server.rig.bot.settings.default_model,
        settings=settings,
    ).note
    assert skipped is not None
    assert (message.ephemeral, message.content, server.rig.toapis.submissions[-1]["n"]) == (
        True,
        in_language(skipped, JA),
        1,
    )


# --------------------------------------------------------------------------- history and Details


async def test_a_japanese_member_reads_history_and_details_in_japanese(server: Server):
    member = server.new_member()
    empty = await private_answer(
        server.fake, await command(server, "imagine-history", locale=JA, user_id=member)
    )
    record = await command(server, "imagine", {"prompt": "a lighthouse"}, locale=JA, user_id=member)
    message, job = await finished_job(server, record)

    history = await private_answer(
        server.fake, await command(server, "imagine-history", locale=JA, user_id=member)
    )
    details = await clicked(server, message, f"imagine:details:{job.id}", locale=JA, user_id=member)
    await server.fake.wait_for(lambda _: details.acknowledged)
    assert (details.callback_type, details.ephemeral) == (4, True)

    assert empty == in_language(_("You have no images here yet. Try /imagine."), JA)
    english_history = render.history_text([job])
    assert history == render.history_text([job], JA) != english_history
    request = request_for_job(job, server.rig.bot.catalog)
    shown = details.callback["data"]["embeds"][0]
    expected = render.details_embed(job, request, JA).to_dict()
    english = render.details_embed(job, request).to_dict()
    assert (shown["title"], [f["name"] for f in shown["fields"]]) == (
        expected["title"],
        [f["name"] for f in expected["fields"]],
    )
    assert [f["name"] for f in shown["fields"]] != [f["name"] for f in english["fields"]]


# --------------------------------------------------------------------------- /imagine-forget


async def test_a_japanese_member_reads_the_forget_confirmation_and_its_buttons_in_japanese(server: Server):
    member = server.new_member()
    record = await command(server, "imagine-forget", locale=JA, user_id=member)
    await server.fake.wait_for(lambda _: record.acknowledged)
    confirmation = await server.fake.wait_for(
        lambda _: record.original if record.original and not record.original.loading else None
    )
    days = server.rig.bot.settings.job_retention_days
    assert (confirmation.ephemeral, confirmation.content) == (
        True,
        in_language(forget_confirmation(days), JA),
    )
    assert [c.get("label") for c in confirmation.component_list] == [
        in_language(_("Delete my history"), JA),
        in_language(_("Cancel"), JA),
    ]

    cancel = await clicked(server, confirmation, f"imagine:forget:no:{member}", locale=JA, user_id=member)
    cancelled = in_language(_("Nothing was deleted."), JA)
    edited = await server.fake.wait_for(
        lambda fake: m if (m := fake.messages.get(confirmation.id)) and m.content == cancelled else None
    )
    assert (cancel.callback_type, edited.component_list) == (7, [])


# --------------------------------------------------------------------------- the request form


def form_texts(record: InteractionRecord) -> tuple[str, list[str], str | None]:
    """A modal's title, its fields' labels, and the prompt field's placeholder, as Discord got them."""
    data = record.callback["data"]
    labels, placeholder = [], None
    for row in data["components"]:
        labels.append(row["label"])
        inner = row["component"]
        if inner.get("custom_id") == "prompt":
            placeholder = inner.get("placeholder")
    return data["title"], labels, placeholder


async def test_a_german_member_gets_the_form_in_german(server: Server):
    member = server.new_member()
    photo = server.fake.make_attachment("photo.png", make_image(320, 240, "PNG", seed=4))
    message = server.fake.post_message("like this", attachments=[photo])
    payload = server.fake.message_command("Imagine with these images", message, user_id=member, locale=DE)
    record = await server.fake.send_interaction(payload)
    await server.fake.wait_for(lambda _: record.acknowledged)
    assert record.callback_type == 9, record.callback

    title, labels, placeholder = form_texts(record)
    assert (title, labels, placeholder) == (
        in_language(_p("menu name", "Imagine with these images"), DE),
        [
            i18n.render(_("Prompt"), DE),  # German keeps the word "Prompt"
            in_language(_("Ratio"), DE),
            in_language(_("Number of images"), DE),
            in_language(_("Model"), DE),
        ],
        in_language(_("What should the model make?"), DE),
    )


async def test_a_japanese_member_reads_the_missing_permissions_by_their_japanese_names(server: Server):
    member = server.new_member()
    payload = server.fake.slash_command(
        "imagine",
        {"prompt": "a fox"},
        user_id=member,
        locale=JA,
        app_permissions=DEFAULT_APP_PERMISSIONS & ~(EMBED_LINKS | SEND_MESSAGES),
    )
    text = await refusal(server, await server.fake.send_interaction(payload))
    # As Discord's Japanese settings name them, so an admin finds them there.
    assert "**メッセージを送信**" in text and "**埋め込みリンク**" in text
    assert "Embed Links" not in text and "Send Messages" not in text
    assert server.rig.toapis.submit_attempts == 0
