"""Slash commands in the member's language: names, descriptions, options and choices.

Discord shows each member the command names and descriptions of their own client's language,
from the localisations sent at registration. discord.py asks :class:`CatalogTranslator` for
every string of every command in every Discord locale; it answers from the same gettext
catalogs as every other text (``bot/i18n.py``), with a context per kind of string, since
"model" the option name and "model" the choice may need different words. No answer means
English.

:func:`command_strings` lists every such string of a command tree: ``python -m cogs.message_catalogs`` adds
them to the message template, and the catalog test checks each translation against Discord's
rules for its kind.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where

from bot import i18n

# The gettext context of each kind of command string.
CONTEXTS: dict[Where, str] = {
    Where.command_name: "command name",
    Where.group_name: "command name",
    Where.command_description: "command description",
    Where.group_description: "command description",
    Where.parameter_name: "option name",
    Where.parameter_description: "option description",
    Where.choice_name: "choice name",
}


def _context_of(context: app_commands.TranslationContextTypes) -> str | None:
    if context.location is Where.command_name and isinstance(context.data, app_commands.ContextMenu):
        return "menu name"
    return CONTEXTS.get(context.location)


# Slash command and option names follow Discord's naming rule (lower case, no spaces, 1–32).
NAME_CONTEXTS = frozenset({"command name", "option name"})


class CatalogTranslator(app_commands.Translator):
    """Localisations for registration, read from the catalogs; None (English) when untranslated."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        return translate_command_string(string.message, locale.value, _context_of(context))


def translate_command_string(message: str, locale: str, context: str | None) -> str | None:
    """The translation of one command string, or None where the language has no catalog or entry."""
    language = i18n.language_of(locale)
    if context is None or language == i18n.SOURCE_LANGUAGE:
        return None
    translated = i18n.translations(language).pgettext(context, message)
    if translated == message:
        # Untranslated (or translated as itself, e.g. a model name): Discord falls back on its own.
        return None
    return translated


@dataclass(frozen=True)
class CommandString:
    context: str
    message: str
    where: str  # e.g. "/imagine-admin limit" — for people reading the catalog or a failing test


def command_strings(tree: app_commands.CommandTree) -> Iterator[CommandString]:
    """Every translatable string of the tree's commands, menus and their options and choices."""
    for command in tree.get_commands():
        yield from _strings_of(command, "")


def _strings_of(
    command: app_commands.Command | app_commands.Group | app_commands.ContextMenu, parent: str
) -> Iterator[CommandString]:
    where = f"{parent} {command.name}".strip()
    if isinstance(command, app_commands.ContextMenu):
        # Menu names are shown as written (spaces and capitals allowed), unlike slash commands'.
        yield CommandString("menu name", command.name, where)
        return
    yield CommandString("command name", command.name, f"/{where}")
    yield CommandString("command description", command.description, f"/{where}")
    if isinstance(command, app_commands.Group):
        for child in command.commands:
            yield from _strings_of(child, where)
        return
    for parameter in command.parameters:
        yield CommandString("option name", parameter.name, f"/{where} {parameter.name}")
        yield CommandString("option description", parameter.description, f"/{where} {parameter.name}")
        for choice in parameter.choices:
            if not _is_a_name(choice.name):
                yield CommandString("choice name", choice.name, f"/{where} {parameter.name}")


def _is_a_name(choice: str) -> bool:
    """Ratios, resolutions and model names ("16:9", "2K", "Seedream 4.5") read alike everywhere."""
    return any(character.isdigit() for character in choice)


async def offline_command_tree() -> app_commands.CommandTree:
    """The bot's command tree with the built-in model catalog, built without connecting anywhere."""
    from bot.catalog import builtin_catalog
    from bot.config import Settings
    from cogs.app import EXTENSIONS, ImagineBot

    settings = Settings.from_env({"DISCORD_TOKEN": "offline", "TOAPIS_API_KEY": "offline"})
    bot = ImagineBot(settings, builtin_catalog())
    for extension in EXTENSIONS:
        await bot.load_extension(extension)
    return bot.tree
