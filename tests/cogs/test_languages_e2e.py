"""The bot in ten languages, as Discord sees it: the slash commands registered with every localisation."""

from __future__ import annotations

from typing import Any

from cogs.translator import translate_command_string
from tests.rig import RunningBot, StartBot

# Discord's locale codes for our nine translated languages (es-419 reads the es-ES catalog).
TRANSLATED_LOCALES = ("zh-CN", "zh-TW", "ja", "ko", "es-ES", "es-419", "pt-BR", "fr", "de", "ru")


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
