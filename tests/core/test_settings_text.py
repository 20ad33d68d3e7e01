"""How a server's settings read: the lines `/imagine-admin` answers with, and `/imagine-admin show`."""

from __future__ import annotations

from bot.blocklist import BlockEntry
from bot.catalog import builtin_catalog
from bot.guild_settings import GuildSettings
from bot.settings_text import setting_lines, setting_value, settings_text
from bot.text import MESSAGE_LIMIT

CATALOG = builtin_catalog()


def test_default_settings_read_as_no_restriction():
    assert settings_text(GuildSettings(), CATALOG).splitlines() == [
        "**Image generation settings for this server**",
        "**Generation:** on",
        "**Allowed channels:** all channels",
        "**Denied channels:** none",
        "**Allowed roles:** everyone",
        "**Admin roles:** none (Manage Server only)",
        "**Banned members:** none",
        "**Models:** all",
        "**Resolutions:** all",
        "**Speeds:** all",
        "**Watermark:** the bot's default (off)",
        "**Every result a spoiler:** off",
        "**Images per request (n):** no limit",
        "**Reference images per request:** no limit",
        "**Cooldown:** none",
        "**Running jobs:** per member no limit · per server no limit",
        "**Daily images per member:** no limit",
        "**Daily images by role:** none",
        "**Server images:** per day no limit · per month no limit",
        "**Prompt blocklist:** empty",
        "**Audit channel:** off",
    ]


def test_every_setting_has_a_line():
    fields = {
        "enabled",
        "allowed_channels",
        "denied_channels",
        "allowed_roles",
        "admin_roles",
        "banned_users",
    }
    lines = setting_lines(GuildSettings(), CATALOG)
    assert fields <= set(lines) and len(lines) == 20


def test_settings_name_models_and_mention_ids():
    settings = GuildSettings(
        allowed_models=("doubao-seedream-4-0", "gone-model"),
        role_quotas=((5, 30), (6, 40)),
        blocklist=(BlockEntry("word", "hate"), BlockEntry("regex", r"b[a4]d")),
        audit_channel_id=99,
        cooldown_seconds=45,
    )
    lines = setting_lines(settings, CATALOG)
    assert (
        str(lines["allowed_models"]),
        str(lines["role_quotas"]),
        str(lines["blocklist"]),
        str(lines["audit_channel_id"]),
        str(lines["cooldown_seconds"]),
    ) == (
        "**Models:** Seedream 4.0, gone-model",
        "**Daily images by role:** <@&5>: 30, <@&6>: 40",
        "**Prompt blocklist:** 2 entries: `word: hate`, `regex: /b[a4]d/`",
        "**Audit channel:** <#99>",
        "**Cooldown:** 45 s between a member's requests",
    )


def test_the_blocklist_line_names_its_exceptions():
    settings = GuildSettings(blocklist=(BlockEntry("word", "hate"),), blocklist_exceptions=("j'ai hâte",))
    assert str(setting_lines(settings, CATALOG)["blocklist"]) == (
        "**Prompt blocklist:** 1 entry: `word: hate` · never matched: `j'ai hâte`"
    )


def test_a_huge_configuration_still_fits_in_one_message():
    many = tuple(range(10**17, 10**17 + 200))
    settings = GuildSettings(
        allowed_channels=many,
        denied_channels=many,
        allowed_roles=many,
        admin_roles=many,
        banned_users=many,
        role_quotas=tuple((r, 5) for r in many),
        blocklist=tuple(BlockEntry("word", f"{'x' * 150}{i}") for i in range(200)),
    )
    text = settings_text(settings, CATALOG)
    assert len(text) <= MESSAGE_LIMIT
    assert "and 195 more" in text and text.endswith("**Audit channel:** off")


def test_the_summary_fits_in_the_readers_language_even_when_it_reads_longer():
    many = tuple(range(10**17, 10**17 + 200))
    settings = GuildSettings(allowed_channels=many, denied_channels=many, banned_users=many)

    def longer(text: object) -> str:
        # A language whose every sentence reads three times as long as the English.
        return "\n".join(line * 3 for line in str(text).splitlines())

    english, other = settings_text(settings, CATALOG), settings_text(settings, CATALOG, read=longer)
    fits = len(other) <= MESSAGE_LIMIT
    assert (fits, "and 190 more" in english, "and 198 more" in other) == (True, True, True)


def test_setting_lines_are_texts_to_translate_with_their_value_apart():
    line = setting_lines(GuildSettings(max_n=4), CATALOG)["max_n"]
    assert (line.message, str(setting_value(line)), str(line)) == (
        "**Images per request (n):** {value}",
        "4",
        "**Images per request (n):** 4",
    )
