"""Every text a member or admin reads, in their language.

Texts are gettext messages whose id is the English text itself, written where the text is
decided (``_("You have {count} images left today.", count=n)``). Building one does not
translate it: a :class:`Text` keeps its id and values, and only the Discord layer, which knows
who reads it, renders it with :func:`render` in that reader's locale — a member's own
``locale`` for what they see, the server's ``guild_locale`` for audit lines and admin answers.
The core never needs to know a language.

The catalogs are gettext ``.po`` files under ``bot/locales/<language>/LC_MESSAGES/``, one per
language, compiled in memory with Babel when first needed (nothing binary is kept in the
repository). ``python -m cogs.message_catalogs`` extracts new messages and updates every catalog. English is
the source and the fallback: a message missing from a catalog, or whose translation is broken
(a placeholder it does not know), reads in English.

Markers, which ``pybabel extract`` knows (see ``cogs/message_catalogs.py``):

- ``_(message, **values)`` — one text;
- ``_n(singular, plural, count, **values)`` — a text that depends on a number (``{count}`` is
  filled in); each language has its own plural rules (Russian three forms, Japanese one);
- ``_p(context, message, **values)`` — a text whose English alone is ambiguous.

Values may themselves be texts (rendered in the same language) or anything with ``str``.
"""

from __future__ import annotations

import functools
import gettext
import io
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

log = logging.getLogger(__name__)

DOMAIN = "imagine"
CATALOG_DIR = Path(__file__).parent / "locales"
SOURCE_LANGUAGE = "en"

# Discord's locale codes (what an interaction's `locale` and `guild_locale` carry) → our catalogs.
# Discord locales without a catalog of their own read in the nearest one, or in English.
DISCORD_LOCALES: Mapping[str, str] = {
    "en-US": "en",
    "en-GB": "en",
    "zh-CN": "zh_CN",
    "zh-TW": "zh_TW",
    "ja": "ja",
    "ko": "ko",
    "es-ES": "es_ES",
    "es-419": "es_ES",
    "pt-BR": "pt_BR",
    "fr": "fr",
    "de": "de",
    "ru": "ru",
}

# The languages we ship a catalog for, with their names as their speakers write them.
LANGUAGES: Mapping[str, str] = {
    "en": "English",
    "zh_CN": "简体中文",
    "zh_TW": "繁體中文",
    "ja": "日本語",
    "ko": "한국어",
    "es_ES": "Español",
    "pt_BR": "Português (Brasil)",
    "fr": "Français",
    "de": "Deutsch",
    "ru": "Русский",
}


def language_of(locale: str | None) -> str:
    """The catalog for a Discord locale code (``"ja"``, ``"pt-BR"``); English when we have none."""
    if not locale:
        return SOURCE_LANGUAGE
    locale = str(locale)
    if locale in LANGUAGES:
        return locale
    return DISCORD_LOCALES.get(locale, SOURCE_LANGUAGE)


def catalog_path(language: str) -> Path:
    """Where the ``.po`` catalog of `language` (one of :data:`LANGUAGES`) lives."""
    return CATALOG_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalog of `language` (cached); English (no translation) when it has none.

    A catalog that cannot be read is logged once and the language falls back to English,
    rather than stopping the bot over a typo in one translation file.
    """
    path = catalog_path(language)
    if language == SOURCE_LANGUAGE or not path.is_file():
        return gettext.NullTranslations()
    try:
        with path.open("rb") as po:
            catalog = read_po(po, locale=language, domain=DOMAIN)
        compiled = io.BytesIO()
        write_mo(compiled, catalog)
        compiled.seek(0)
        return Translations(compiled, domain=DOMAIN)
    except Exception as exc:  # any damage in a catalog file: English beats no answer
        log.error("the %s catalog (%s) cannot be read, using English: %s", language, path, exc)
        return gettext.NullTranslations()


@dataclass(frozen=True, slots=True)
class Text:
    """A message not yet translated: its English id, its values, and how to pick its form.

    ``str(text)`` is its English; :meth:`render` its reading in any locale.
    """

    message: str
    values: Mapping[str, Any] = field(default_factory=dict)
    plural: str | None = None
    count: int | None = None
    context: str | None = None

    def render(self, locale: str | None = None) -> str:
        language = language_of(locale)
        catalog = translations(language)
        template = self._template(catalog)
        try:
            return self._fill(template, locale)
        except (KeyError, IndexError, ValueError) as exc:
            if template == self._template(gettext.NullTranslations()):
                raise
            log.warning("the %s translation of %r is broken, using English: %s", language, self.message, exc)
            return self._fill(self._template(gettext.NullTranslations()), locale)

    def _template(self, catalog: gettext.NullTranslations) -> str:
        if self.plural is not None:
            count = self.count if self.count is not None else 0
            if self.context is not None:
                return catalog.npgettext(self.context, self.message, self.plural, count)
            return catalog.ngettext(self.message, self.plural, count)
        if self.context is not None:
            return catalog.pgettext(self.context, self.message)
        return catalog.gettext(self.message)

    def _fill(self, template: str, locale: str | None) -> str:
        values = {key: render(value, locale) for key, value in self.values.items()}
        if self.count is not None:
            values.setdefault("count", str(self.count))
        return template.format_map(values) if values else template

    def __str__(self) -> str:
        return self.render(SOURCE_LANGUAGE)


@dataclass(frozen=True, slots=True)
class Joined:
    """Texts read one after the other, joined by `separator` (a line break, a bullet, a space)."""

    parts: tuple[Text | Joined | str, ...]
    separator: str = "\n"

    def render(self, locale: str | None = None) -> str:
        return self.separator.join(render(part, locale) for part in self.parts)

    def __str__(self) -> str:
        return self.render(SOURCE_LANGUAGE)


Readable = Text | Joined | str
"""Anything the Discord layer can show: a text to translate, or a string that is already final
(a member's own prompt, a model's name, a number)."""


def _(message: str, /, **values: Any) -> Text:
    """A text to translate; `values` fill its ``{placeholders}``."""
    return Text(message, values)


def _n(singular: str, plural: str, count: int, /, **values: Any) -> Text:
    """A text whose form depends on `count` (``{count}`` is filled in)."""
    return Text(singular, values, plural=plural, count=count)


def _p(context: str, message: str, /, **values: Any) -> Text:
    """A text with a context, for English words that read differently by their use."""
    return Text(message, values, context=context)


def option_name(name: str) -> Text:
    """A slash-command option's name as the member's command picker shows it (``n`` reads ``枚数``
    in Japanese): the commands' own translation, so a message names what the member sees."""
    return Text(name, context="option name")


def choice_name(name: str) -> Text:
    """A choice's name as the member's command picker shows it (see :func:`option_name`)."""
    return Text(name, context="choice name")


def code(text: Readable) -> Joined:
    """`text` in Markdown's inline code, as it reads in the reader's language."""
    return Joined(("`", text, "`"), "")


def join(parts: Iterable[Readable], separator: str = "\n") -> Joined:
    """Texts one after the other; empty strings are left out."""
    return Joined(tuple(part for part in parts if part != ""), separator)


class TextError(Exception):
    """An error whose message is for a member or an admin: `text`, shown in the reader's language
    by whoever answers; ``str(exc)`` is its English (for logs and records)."""

    def __init__(self, text: Readable) -> None:
        super().__init__(str(text))
        self.text = text


def render(text: Readable | Any, locale: str | None = None) -> str:
    """`text` in the language of `locale` (a Discord locale code, or one of :data:`LANGUAGES`)."""
    if isinstance(text, Text | Joined):
        return text.render(locale)
    return str(text)
