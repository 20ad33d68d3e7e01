"""Texts in any language: the catalog's reading, its plural rules, and English whenever a catalog fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

from bot import i18n


def _write_catalog(
    root: Path, language: str, entries: list[tuple[str | tuple[str, str], str | tuple[str, ...]]]
) -> None:
    catalog = Catalog(locale=language, domain=i18n.DOMAIN)
    for message, translation in entries:
        catalog.add(message, translation)
    path = root / language / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"
    path.parent.mkdir(parents=True)
    with path.open("wb") as po:
        write_po(po, catalog)


@pytest.fixture
def catalogs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Catalogs written by the test instead of the shipped ones."""
    monkeypatch.setattr(i18n, "CATALOG_DIR", tmp_path)
    i18n.translations.cache_clear()
    yield tmp_path
    i18n.translations.cache_clear()


def test_a_text_reads_in_the_readers_language_with_its_values(catalogs: Path) -> None:
    _write_catalog(catalogs, "ja", [("Your images are ready, {name}.", "{name}さん、画像ができました。")])
    text = i18n._("Your images are ready, {name}.", name="Mika")
    assert text.render("ja") == "Mikaさん、画像ができました。"
    assert text.render("en-US") == "Your images are ready, Mika."
    assert str(text) == "Your images are ready, Mika."


def test_discord_locales_map_to_the_nearest_catalog() -> None:
    assert i18n.language_of("es-419") == "es_ES"
    assert i18n.language_of("pt-BR") == "pt_BR"
    assert i18n.language_of("zh-TW") == "zh_TW"
    assert i18n.language_of("en-GB") == "en"
    assert i18n.language_of("id") == "en"  # Indonesian: no catalog, English
    assert i18n.language_of(None) == "en"


def test_plural_forms_follow_each_languages_rules(catalogs: Path) -> None:
    _write_catalog(
        catalogs,
        "ru",
        [
            (
                ("{count} image", "{count} images"),
                ("{count} изображение", "{count} изображения", "{count} изображений"),
            )
        ],
    )
    readings = {n: i18n._n("{count} image", "{count} images", n).render("ru") for n in (1, 3, 5, 21)}
    assert readings == {
        1: "1 изображение",
        3: "3 изображения",
        5: "5 изображений",
        21: "21 изображение",
    }
    assert i18n._n("{count} image", "{count} images", 1).render("en-US") == "1 image"


def test_a_value_that_is_a_text_reads_in_the_same_language(catalogs: Path) -> None:
    _write_catalog(
        catalogs,
        "fr",
        [("Model {model}: {reason}", "Modèle {model} : {reason}"), ("not allowed here", "non autorisé ici")],
    )
    text = i18n._("Model {model}: {reason}", model="Seedream 4.5", reason=i18n._("not allowed here"))
    assert text.render("fr") == "Modèle Seedream 4.5 : non autorisé ici"
    lines = i18n.join([i18n._("not allowed here"), "—", "Seedream"], " ")
    assert lines.render("fr") == "non autorisé ici — Seedream"


def test_a_broken_translation_reads_in_english(catalogs: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_catalog(catalogs, "de", [("{count} left today", "heute noch {anzahl}")])
    text = i18n._("{count} left today", count=4)
    assert text.render("de") == "4 left today"
    assert "broken" in caplog.text


def test_a_damaged_catalog_file_leaves_that_language_in_english(
    catalogs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = catalogs / "ko" / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'msgid "Hello"\nmsgstr "\xff\xfe unterminated\n')
    assert i18n._("Hello").render("ko") == "Hello"
    assert "the ko catalog" in caplog.text and "cannot be read" in caplog.text


def test_an_untranslated_message_reads_in_english(catalogs: Path) -> None:
    _write_catalog(catalogs, "ja", [("Something else", "ほかのこと")])
    assert i18n._("Not in the catalog ({n})", n=2).render("ja") == "Not in the catalog (2)"


def test_option_and_choice_names_read_as_the_command_picker_shows_them() -> None:
    """A message naming an option uses the commands' own translation (the shipped catalogs)."""
    from cogs.translator import translate_command_string

    assert i18n.option_name("n").render("ja") == translate_command_string("n", "ja", "option name") != "n"
    assert i18n.choice_name("everything").render("de") == translate_command_string(
        "everything", "de", "choice name"
    )
    assert i18n.option_name("n").render("en-US") == "n"
    assert i18n.code(i18n.choice_name("speed")).render("en-US") == "`speed`"
