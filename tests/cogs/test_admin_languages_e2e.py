"""What admins and members read from /imagine-admin and /imagine-quota, in their languages, end to end.

Admin answers are in the server's language (its `guild_locale`), whatever the admin's own
Discord is set to; /imagine-quota and permission refusals are in the member's own language.
The expected texts are the catalogs' readings of the English ids; each test also checks that
the reading is not the English, so it only passes once the catalogs are translated.
"""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import pytest

from bot import i18n
from bot.guild_settings import GuildSettings
from bot.i18n import _
from bot.settings_text import setting_lines, setting_value, settings_text
from bot.usage import CSV_COLUMNS, period_of
from cogs.admin import NOT_ADMIN
from cogs.admin._settings import waiting_line
from tests.cogs import test_admin_e2e
from tests.cogs.test_admin_e2e import GUILD, MANAGER, MEMBER, Server, encode, private_answer
from tests.fakes.discord import FakeAttachment, InteractionRecord

pytestmark = pytest.mark.asyncio

# The admin tests' fixtures: the bot in one announced server.
discord_fake = test_admin_e2e.discord_fake
server = test_admin_e2e.server

SERVER_LANGUAGE = "fr"
ADMINS_OWN = "en-US"


async def send(
    server: Server,
    command: str,
    options: dict[str, Any] | None = None,
    *,
    locale: str = ADMINS_OWN,
    permissions: int = MANAGER,
    user_id: int | None = None,
) -> InteractionRecord:
    """`command` from a member whose Discord is in `locale`, in the French-speaking server."""
    server.fake.guild_locales[GUILD] = SERVER_LANGUAGE
    listed, resolved = encode(server.fake, options or {})
    payload = server.fake.slash_command(
        command,
        listed,
        permissions=permissions,
        user_id=user_id,
        resolved=resolved or None,
        locale=locale,
    )
    return await server.fake.send_interaction(payload)


async def admin(server: Server, command: str, options: dict[str, Any] | None = None, **who: Any) -> str:
    return await private_answer(server.fake, await send(server, f"imagine-admin {command}", options, **who))


def french(text: i18n.Readable) -> str:
    """`text` as the French server reads it; it must not be the English (the catalog translates it)."""
    read = i18n.render(text, SERVER_LANGUAGE)
    assert read != str(text), f"not translated into {SERVER_LANGUAGE}: {text}"
    return read


def lines_of(settings: GuildSettings, server: Server) -> dict[str, i18n.Text]:
    return setting_lines(
        settings, server.rig.bot.catalog, operator_watermark=server.rig.bot.operator.watermark
    )


async def test_show_is_in_the_servers_language_for_an_english_speaking_admin(server: Server):
    answer = await admin(server, "show")

    expected = settings_text(
        GuildSettings(),
        server.rig.bot.catalog,
        operator_watermark=server.rig.bot.operator.watermark,
        read=french,
    )
    assert answer == f"{expected}\n{french(waiting_line(0))}"


async def test_setting_a_limit_answers_in_the_servers_language(server: Server):
    answer = await admin(server, "limits", {"max_n": 4})

    old, new = lines_of(GuildSettings(), server), lines_of(await server.stored(), server)
    changed = _("{setting} (was: {value})", setting=new["max_n"], value=setting_value(old["max_n"]))
    assert answer.splitlines() == [
        french(_("Updated. Now:")),
        french(changed),
        french(new["max_references"]),
        french(new["cooldown_seconds"]),
        french(new["concurrent"]),
    ]


async def test_blocklist_add_remove_and_refusals_answer_in_the_servers_language(server: Server):
    added = await admin(server, "blocklist add", {"kind": "word", "pattern": "hate"})
    stored = lines_of(await server.stored(), server)
    assert added.splitlines() == [
        french(_("Added `{entry}`: prompts matching it are refused.", entry="word: hate")),
        french(stored["blocklist"]),
    ]

    again = await admin(server, "blocklist add", {"kind": "word", "pattern": "hate"})
    assert again == french(_("`{entry}` is already on the blocklist.", entry="word: hate"))

    invalid = await admin(server, "blocklist add", {"kind": "regex", "pattern": "a*"})
    reason = _(
        "{pattern} can match without matching any text, so it would block nearly every "
        "prompt. Make sure it always needs at least one character "
        "(for example `a+` rather than `a*`).",
        pattern="`a*`",
    )
    assert invalid == french(_("Not added: {reason}", reason=reason))

    removed = await admin(server, "blocklist remove", {"pattern": "hate"})
    assert removed.splitlines() == [
        french(_("Removed `{entry}`.", entry="word: hate")),
        french(lines_of(await server.stored(), server)["blocklist"]),
    ]
    assert (await server.stored()).blocklist == ()


async def test_the_usage_report_is_in_the_servers_language_and_its_csv_is_unchanged(server: Server):
    await server.accepted(await server.imagine("a fox"))
    record = await send(server, "imagine-admin usage", {"period": "today"})
    report = (await private_answer(server.fake, record)).splitlines()

    label = period_of("today", time.time()).label
    assert report[0] == french(_("**Image usage today** ({period}, UTC)", period=label))
    assert report[-1] == french(_("The attached CSV lists every job of the period."))
    assert french(_("**Failures:** none")) in report

    # The CSV is data for spreadsheets and tools: English column names, in every language.
    assert record.original is not None and len(record.original.attachments) == 1
    attachment: FakeAttachment = record.original.attachments[0]
    rows = list(csv.reader(io.StringIO(attachment.data.decode("utf-8-sig"))))
    assert (tuple(rows[0]), len(rows), rows[1][CSV_COLUMNS.index("prompt")]) == (CSV_COLUMNS, 2, "a fox")


async def test_imagine_quota_answers_a_korean_member_in_korean_in_a_french_server(server: Server):
    record = await send(server, "imagine-quota", locale="ko", permissions=MEMBER)
    answer = await private_answer(server.fake, record)

    english = "**No image quota applies to you.**\n• You: no daily limit of your own in this server"
    korean = i18n.render(
        i18n.join(
            [_("**No image quota applies to you.**"), _("• You: no daily limit of your own in this server")]
        ),
        "ko",
    )
    assert (answer, answer != english) == (korean, True)


async def test_the_permission_refusal_is_in_the_members_own_language(server: Server):
    answer = await admin(server, "show", locale="ja", permissions=MEMBER, user_id=server.new_member())

    assert (answer, answer != str(NOT_ADMIN)) == (i18n.render(NOT_ADMIN, "ja"), True)
