"""Keep the message catalogs in step with the code: ``.venv/bin/python -m cogs.message_catalogs``.

1. Extracts every marked text (``_``, ``_n``, ``_p`` of ``bot/i18n.py``) from ``bot/`` and
   ``cogs/`` with Babel, plus every command string of the slash-command tree (names,
   descriptions, options, choices, the message menu), into ``bot/locales/imagine.pot``.
2. Updates each language's ``.po`` from it: new texts appear untranslated, texts gone from the
   code are dropped; a changed text is a new entry, to translate again (no guesses).

``--check`` changes nothing and exits 1 when the template is out of date (used by the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from bot import i18n
from cogs.translator import command_strings, offline_command_tree

ROOT = Path(__file__).resolve().parent.parent

KEYWORDS = {"_": None, "_n": (1, 2), "_p": ((1, "c"), 2)}
TEMPLATE = i18n.CATALOG_DIR / f"{i18n.DOMAIN}.pot"
# A fixed date in the headers, so that regenerating an unchanged catalog changes no line.
HEADER: dict[str, Any] = {
    "project": "imagine-bot",
    "version": "1",
    "copyright_holder": "the imagine-bot authors",
    "msgid_bugs_address": "",
    "creation_date": datetime(2026, 11, 30, tzinfo=UTC),
    "revision_date": datetime(2026, 11, 30, tzinfo=UTC),
    "fuzzy": False,
}


def _code_messages(catalog: Catalog) -> None:
    # Babel writes a warning for every f-string among a marker's arguments; ours are values
    # (`size=f"{w}×{h}"`), never the text itself (the catalog test checks that), so those
    # warnings are dropped and anything else it says is passed on.
    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        for folder in ("bot", "cogs"):
            for filename, lineno, message, comments, context in extract_from_dir(
                ROOT / folder,
                method_map=[("**.py", "python")],
                keywords=KEYWORDS,
                comment_tags=("Translators:",),
                strip_comment_tags=True,
            ):
                where = [(f"{folder}/{filename}", lineno)]
                catalog.add(message, None, where, auto_comments=comments, context=context)
    for line in said.getvalue().splitlines():
        if "Skipping f-string" not in line:
            print(line, file=sys.stderr)


async def _command_tree_strings(catalog: Catalog) -> None:
    tree = await offline_command_tree()
    for string in command_strings(tree):
        catalog.add(string.message, None, [(string.where, 0)], context=string.context)


def template() -> Catalog:
    """The template of every message the code and the command tree hold, as Babel sees them."""
    catalog = Catalog(domain=i18n.DOMAIN, **HEADER)
    _code_messages(catalog)
    asyncio.run(_command_tree_strings(catalog))
    return catalog


def _forms(message: Message) -> tuple[str, ...]:
    """A message's translation as its forms (one, or one per plural form)."""
    string = message.string
    return tuple(string) if isinstance(string, tuple | list) else (string or "",)


def _po_bytes(catalog: Catalog) -> bytes:
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=100, omit_header=False, sort_output=False, include_lineno=False)
    return buffer.getvalue()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if out of date")
    args = parser.parse_args(argv)
    fresh = template()
    if args.check:
        with TEMPLATE.open("rb") as current:
            known = {(m.context, m.id) for m in read_po(current) if m.id}
        wanted = {(m.context, m.id) for m in fresh if m.id}
        missing, stale = wanted - known, known - wanted
        for context, message in sorted(missing, key=str):
            print(f"not in the template: {context or ''} {message!r}")
        for context, message in sorted(stale, key=str):
            print(f"no longer in the code: {context or ''} {message!r}")
        return 1 if missing or stale else 0
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    TEMPLATE.write_bytes(_po_bytes(fresh))
    for language in i18n.LANGUAGES:
        if language == i18n.SOURCE_LANGUAGE:
            continue
        path = i18n.catalog_path(language)
        if path.is_file():
            with path.open("rb") as po:
                catalog = read_po(po, locale=language, domain=i18n.DOMAIN)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            catalog = Catalog(locale=language, domain=i18n.DOMAIN, **HEADER)
            catalog.language_team = i18n.LANGUAGES[language]
            catalog.last_translator = "the imagine-bot authors"
        # No guessing from similar texts: a guess reads as a translation until someone checks it.
        catalog.update(fresh, no_fuzzy_matching=True, update_header_comment=False)
        path.write_bytes(_po_bytes(catalog))
        untranslated = sum(1 for m in catalog if m.id and not all(_forms(m)))
        print(f"{language}: {len(catalog)} messages, {untranslated} untranslated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
