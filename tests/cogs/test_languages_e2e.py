"""The bot in ten languages, as Discord sees it: the slash commands registered with every localisation."""

from __future__ import annotations

from typing import Any

from bot.i18n import _
from cogs.translator import translate_command_string
from tests.cogs import test_admin_e2e as admin_e2e
from tests.cogs.test_admin_e2e import GUILD
from tests.fakes.discord import FakeDiscord
from tests.rig import RunningBot, StartBot, eventually

# Discord's locale codes for our nine translated languages (es-419 reads the es-ES catalog).
TRANSLATED_LOCALES = ("zh-CN", "zh-TW", "ja", "ko", "es-ES", "es-419", "pt-BR", "fr", "de", "ru")


# The server is announced to the bot (GUILD_CREATE), as in the /imagine-admin tests: it knows its language.
discord_fake = admin_e2e.discord_fake


def _localised(definition: dict[str, Any], key: str, locale: str) -> str | None:
    """The localisation Discord received; None where the language keeps the English word."""
    return definition.get(key, {}).get(locale)


def _registered(rig: RunningBot, name: str) -> dict[str, Any]:
    _scope, body = rig.discord.command_syncs[-1]
    return next(c for c in body if c["name"] == name)


async def test_commands_are_registered_with_every_languages_names_and_descriptions(
    start_bot: StartBot,
) -> None:
    rig = await start_bot()
    imagine = _registered(rig, "imagine")
    prompt = next(o for o in imagine["options"] if o["name"] == "prompt")
    speed = next(o for o in imagine["options"] if o["name"] == "speed")
    menu = _registered(rig, "Imagine with these images")
    for locale in TRANSLATED_LOCALES:
        expected_description = translate_command_string(imagine["description"], locale, "command description")
        assert expected_description is not None, f"{locale}: /imagine's description is not translated"
        assert imagine["description_localizations"][locale] == expected_description
        assert prompt["description_localizations"][locale] == translate_command_string(
            prompt["description"], locale, "option description"
        )
        # Some languages keep a word ("prompt"): then Discord gets no localisation and shows English.
        assert _localised(prompt, "name_localizations", locale) == translate_command_string(
            "prompt", locale, "option name"
        )
        assert menu["name_localizations"][locale] == translate_command_string(
            menu["name"], locale, "menu name"
        )
        fast = next(c for c in speed["choices"] if c["value"] == "fast")
        assert fast["name_localizations"][locale] == translate_command_string("fast", locale, "choice name")
    # English is the default: no localisation repeats it.
    assert "en-US" not in imagine["description_localizations"]
    assert "en-GB" not in imagine["description_localizations"]


async def test_the_japanese_description_is_japanese(start_bot: StartBot) -> None:
    rig = await start_bot()
    imagine = _registered(rig, "imagine")
    japanese = imagine["description_localizations"]["ja"]
    assert japanese != imagine["description"]
    assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in japanese)


async def test_the_low_balance_alert_reads_in_the_operator_channels_server_language(
    start_bot: StartBot, discord_fake: FakeDiscord
) -> None:
    operator = discord_fake.channel_id  # a channel of the bot's server
    discord_fake.guild_locales[GUILD] = "de"  # the server's language, set before the bot connects
    rig = await start_bot(low_balance_usd=5.0, operator_channel_id=operator, balance_check_minutes=0.001)
    await eventually(lambda: rig.bot.get_channel(operator) is not None, what="the operator channel")
    rig.toapis.balance.update(remain_balance=3.5, remain_credits=700)
    line = await rig.discord.wait_for_message(lambda m: m.channel_id == operator)
    alert = _(
        "⚠️ The ToAPIs balance is low: {balance}, below LOW_BALANCE_USD ({threshold}). "
        "Top up the account, or image requests will start failing.",
        balance="$3.50 left (700 credits)",
        threshold="$5.00",
    )
    assert alert.render("de") != str(alert)
    assert line.content == alert.render("de")
