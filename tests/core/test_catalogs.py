"""Every language's catalog: complete, its placeholders intact, its command strings within Discord's rules.

A missing or broken translation does not crash the bot (English is read instead), so only these
tests stop one from shipping.
"""

from __future__ import annotations

import ast
import string
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import re2
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po

from bot import i18n
from cogs import message_catalogs as catalogs
from cogs.translator import NAME_CONTEXTS, command_strings, offline_command_tree

TRANSLATED = [language for language in i18n.LANGUAGES if language != i18n.SOURCE_LANGUAGE]
# Discord's rule for slash-command and option names (CHAT_INPUT), in every locale.
COMMAND_NAME = re2.compile(r"^[-_'\p{L}\p{N}\p{Devanagari}\p{Thai}]{1,32}$")
LIMITS = {  # Discord's length limits per kind of command string
    "command name": 32,
    "option name": 32,
    "menu name": 32,
    "command description": 100,
    "option description": 100,
    "choice name": 100,
}


def _read(path: Path, language: str | None = None) -> Catalog:
    with path.open("rb") as po:
        return read_po(po, locale=language, domain=i18n.DOMAIN)


def _placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def _forms(message: Message) -> list[str]:
    return (
        [str(form) for form in message.string]
        if isinstance(message.string, tuple | list)
        else [str(message.string or "")]
    )


def _ids(message: Message) -> list[str]:
    return [str(text) for text in message.id] if isinstance(message.id, tuple | list) else [str(message.id)]


@pytest.fixture(scope="module")
def template() -> Catalog:
    return _read(catalogs.TEMPLATE)


def test_the_template_holds_every_text_of_the_code_and_the_commands(template: Catalog) -> None:
    fresh = catalogs.template()
    wanted = {(m.context, m.id) for m in fresh if m.id}
    known = {(m.context, m.id) for m in template if m.id}
    assert wanted - known == set(), "run: .venv/bin/python -m cogs.message_catalogs"
    assert known - wanted == set(), "run: .venv/bin/python -m cogs.message_catalogs"


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated_with_the_same_placeholders(template: Catalog, language: str) -> None:
    catalog = _read(i18n.catalog_path(language), language)
    problems = []
    for wanted in template:
        if not wanted.id:
            continue
        message = catalog.get(wanted.id, context=wanted.context)
        where = f"{language}: {wanted.context or ''} {_ids(wanted)[0]!r}"
        if message is None or not all(_forms(message)) or message.fuzzy:
            problems.append(f"{where} is not translated")
            continue
        expected = set().union(*(_placeholders(text) for text in _ids(wanted)))
        for form in _forms(message):
            if _placeholders(form) != expected:
                problems.append(f"{where}: placeholders {sorted(_placeholders(form))} != {sorted(expected)}")
        if wanted.pluralizable and len(_forms(message)) != catalog.num_plurals:
            forms = len(_forms(message))
            problems.append(f"{where}: {forms} plural forms, the language has {catalog.num_plurals}")
    assert problems == []


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_translation_renders(language: str, template: Catalog) -> None:
    """Each translated text fills in with its values: no stray brace or unknown field."""
    for wanted in template:
        if not wanted.id or wanted.context in LIMITS:
            continue
        ids = _ids(wanted)
        values = {name: "x" for text in ids for name in _placeholders(text)}
        if wanted.pluralizable:
            values.pop("count", None)  # the count picks the form and fills {count}
            texts = [
                i18n.Text(ids[0], values, plural=ids[1], count=count, context=wanted.context)
                for count in (1, 2, 5, 21)
            ]
        else:
            texts = [i18n.Text(ids[0], values, context=wanted.context)]
        for text in texts:
            assert text.render(language.replace("_", "-"))


async def test_command_strings_keep_discords_rules_in_every_language() -> None:
    tree = await offline_command_tree()
    strings = list(command_strings(tree))
    problems = []
    names_by_place: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for language in TRANSLATED:
        catalog = i18n.translations(language)
        for item in strings:
            text = catalog.pgettext(item.context, item.message)
            where = f"{language}: {item.where} {item.context} {text!r}"
            if not 1 <= len(text) <= LIMITS[item.context]:
                problems.append(f"{where}: {len(text)} characters, Discord takes 1–{LIMITS[item.context]}")
            if item.context in NAME_CONTEXTS and (COMMAND_NAME.match(text) is None or text != text.lower()):
                problems.append(f"{where}: not a valid lower-case command name")
            if item.context in NAME_CONTEXTS:  # siblings must keep distinct names
                parent = item.where.rsplit(" ", 1)[0] if " " in item.where else "/"
                names_by_place[(language, item.context, parent)].append(text)
    for (language, context, parent), names in names_by_place.items():
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            problems.append(f"{language}: {parent} has two {context}s {duplicates}")
    assert problems == []


def test_english_is_the_fallback_for_a_message_no_catalog_has() -> None:
    text = i18n._("A text no catalog has ({value})", value=3)
    assert text.render("ja") == "A text no catalog has (3)"
    assert text.render("xx-YY") == "A text no catalog has (3)"
    assert text.render(None) == str(text)


def _marked_texts() -> Iterator[tuple[str, int, object, object]]:
    """Every ``_``/``_n``/``_p`` call in the code, as (file, line, context, message) — read with ``ast``.

    Babel's extractor silently skips a marker nested in some other call's arguments; this walk does
    not, so a text the extraction missed (and which would stay English) fails the test below.
    """
    root = Path(__file__).resolve().parents[2]
    for folder in ("bot", "cogs"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                    continue
                marker = node.func.id
                if marker not in ("_", "_n", "_p") or not node.args:
                    continue
                where = f"{path.relative_to(root)}:{node.lineno}"
                literals = [arg.value if isinstance(arg, ast.Constant) else None for arg in node.args]
                if marker == "_p":
                    yield where, node.lineno, literals[0], literals[1] if len(literals) > 1 else None
                else:
                    yield where, node.lineno, None, literals[0]


def test_every_marked_text_in_the_code_is_in_the_template(template: Catalog) -> None:
    known = {(m.context, m.id if isinstance(m.id, str) else m.id[0]) for m in template if m.id}
    problems = []
    for where, _line, context, message in _marked_texts():
        if not isinstance(message, str):
            problems.append(f"{where}: the text is not a literal string, so it cannot be translated")
        elif (context, message) not in known:
            problems.append(f"{where}: {message!r} is not in the template (run the catalogs tool)")
    assert problems == []
