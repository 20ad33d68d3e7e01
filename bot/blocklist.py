"""A server's prompt blocklist: words and regular expressions checked before a prompt is sent.

Server admins keep a list of entries; a member's prompt that matches any of them is refused
before anything reaches the paid image API. This module only decides *whether* a prompt
matches; storing the list and talking to Discord happen elsewhere (it never imports discord).

Every pattern, the admins' regular expressions included, runs on RE2, whose matching time
grows linearly with the prompt whatever the pattern: no entry a server adds can make checking
a prompt slow for the other servers the bot serves.

Entries
-------
``word``
    A word or phrase, e.g. ``hate`` or ``kill yourself``. It is folded exactly like the
    prompt (see :func:`normalize`), so ``h4te``, ``HATE``, ``ʜᴀᴛᴇ`` and ``hâte`` are the same
    entry. It matches whole words only: ``ass`` matches ``ass``, ``A$$`` and ``ass!`` but not
    ``class`` or ``assistant``. The words of a phrase match with any run of non-letter,
    non-digit characters between them (``kill yourself``, ``kill-yourself``,
    ``kill_yourself``). Two disguises are caught as well:

    * letters written apart: three or more single letters in a row, each separated by at
      most three spaces or punctuation marks, are read as one word (``h a t e``,
      ``h.a.t.e``, ``k-i-l-l``). Ordinary text rarely has three single letters in a row, and
      a longer word breaks the run (``a the`` stays two words);
    * stretched letters: a letter of the entry written three or more times in a row
      (``haaate``, ``kiiilll``). A letter doubled only once does not count, so ``hatte``
      does not match ``hate``.
``regex``
    A regular expression in RE2 syntax (nearly Python's: no back-references, look-arounds,
    atomic groups or possessive repeats; ``\\w``, ``\\d`` and ``\\b`` are ASCII-only, ``\\pL``
    is any letter; repeat counts at most 1000). It is searched (not anchored), ignoring case,
    in two views of the prompt, and matches if it is found in either:

    * the normalised prompt (:func:`normalize`), so admins write patterns in plain
      lowercase ASCII: ``b[a-z]*d`` also catches ``ＢÄ\\u200bD``;
    * the prompt with only full-width/compatibility forms folded (NFKC), invisible
      characters removed, case folded and whitespace collapsed, so patterns that rely on
      digits, punctuation or accented letters (``\\d{4}``, ``c\\+\\+``, ``café``) still work —
      the normalised view turns digits and some punctuation into letters, and punctuation
      and symbols beyond ASCII into spaces.

    When the prompt has letters written apart, the normalised view with them joined is
    searched too.

Exceptions
----------
Admins may list phrases that are never treated as a match (``j'ai hâte``): wherever one
appears in the prompt as whole words (ignoring case, any whitespace between its words), it is
blanked out before anything is matched.

The server's language
---------------------
Folding look-alikes into Latin letters would refuse ordinary words of other languages
(French ``hâte``, Turkish ``göre``, Russian ``нате``). So :meth:`Blocklist.match` takes the
server's Discord locale (``guild_locale``), and the letters of that language's own alphabet
are left as they are — neither stripped of accents nor read as look-alikes — for that server:
French ``â é ç …``, German ``ä ö ü ß``, Turkish ``ç ğ ı ö ş ü``, Polish ``ą ć ę ł …``, the whole
Cyrillic script for Russian, Ukrainian and Bulgarian, Greek for Greek, and so on
(:data:`_NATIVE_LETTERS`, :data:`_NATIVE_SCRIPTS`). Entries are folded the same way, so an
entry ``hâte`` in a French server matches ``hâte`` but not ``hate``. One exception to the
exception: in a server whose language has its own script, a word mixing that script with
Latin letters (``hаte`` with a Cyrillic ``а``) is a disguise, and is folded as everywhere
else. English and every locale not listed keep every letter folded.

Validation (:func:`validate_entry`, :func:`validate_exception`, :class:`Blocklist`) refuses,
with a message for the admin: empty entries, entries over :data:`MAX_ENTRY_LENGTH`
characters, regular expressions RE2 cannot take (the message names the construct) or that
compile to more than :data:`MAX_PROGRAM_SIZE` steps, regular expressions that can match
without consuming any text (they would block nearly every prompt), and lists of more than
:data:`MAX_ENTRIES` entries or :data:`MAX_EXCEPTIONS` exceptions.

Build a :class:`Blocklist` once per settings change and reuse it for every prompt. The
constructor validates (each regex compiled once per process, cached); :meth:`Blocklist.prepare`
compiles the groups matching uses, per locale, and is worth running in a worker thread;
:meth:`Blocklist.match` then only folds the prompt and searches: a handful of RE2 passes over
it, whatever the number of entries.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import re2
from confusable_homoglyphs.confusables import confusables_data as _HOMOGLYPHS

from bot.i18n import Readable, Text, TextError, _, _n

#: Longest entry or exception (as typed) an admin may add.
MAX_ENTRY_LENGTH = 200
#: Most entries one blocklist may hold.
MAX_ENTRIES = 200
#: Most exceptions one blocklist may hold.
MAX_EXCEPTIONS = 100
#: Only this many characters of a prompt are checked. Discord and the catalog already cap
#: prompts at 6000 characters, so in practice nothing is left unchecked; the cap bounds the
#: work if a caller ever passes something longer.
MAX_PROMPT_CHARS = 6000
#: Memory RE2 may use for one pattern (its program and the states its fast engine learns);
#: when matching would need more, RE2 falls back to a slower, still linear, engine. Bounds
#: what a full list can hold on to.
_RE2_MAX_MEM = 1 << 18

EntryKind = Literal["word", "regex"]
_KINDS: tuple[str, ...] = ("word", "regex")

# --- the folding table ------------------------------------------------------------------

#: Characters that show nothing but are used to split words ("b\u200bad"): every format
#: character (category Cf: zero-width space and joiners, LRM/RLM, bidi controls, tag
#: characters, soft hyphen, BOM …) plus these blank letters and symbols.
_BLANK_LETTERS = "\u115f\u1160\u3164\uffa0\u2800\u034f"  # Hangul fillers, braille blank, CGJ

#: Cyrillic and Greek capitals that look like Latin capitals. Applied *before* case folding,
#: because some capitals look like a different Latin letter than their lowercase form does
#: (Greek "Ν" looks like N, its lowercase "ν" like v).
_CAPITAL_LOOKALIKES = str.maketrans(
    {
        **dict(zip("АВЕКМНОРСТУХЅІЈҺԚԜ", "ABEKMHOPCTYXSIJHQW", strict=True)),  # Cyrillic
        **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX", strict=True)),  # Greek
    }
)
#: Cyrillic and Greek lowercase letters that look like Latin letters but are missing from
#: (or mapped differently in) Unicode's confusables data.
_LOWERCASE_LOOKALIKES = str.maketrans(
    {
        **dict(zip("аеорсухіјѕкмнтвһԁԛԝ", "aeopcyxijskmhtbhdqw", strict=True)),  # Cyrillic
        **dict(zip("οαεικνρτυχ", "oaeikvptux", strict=True)),  # Greek
    }
)
#: Digits and symbols used in place of letters ("h4te", "a$$", "sh!t").
_ASCII_LOOKALIKES: dict[str, str] = {
    "0": "o",
    "1": "i",
    "3": "e",
    "4": "a",
    "5": "s",
    "7": "t",
    "8": "b",
    "@": "a",
    "$": "s",
    "!": "i",
    "|": "l",
}
#: The reverse: each letter and the characters that may stand in for it in a prompt.
_STAND_INS: dict[str, str] = {}
for _source, _letter in _ASCII_LOOKALIKES.items():
    _STAND_INS[_letter] = _STAND_INS.get(_letter, _letter) + _source

#: Fancy-text letters Unicode gives no decomposition to, read from their names: small
#: capitals (ʜᴀᴛᴇ), negative squared and regional-indicator letters (🅷🅰🆃🅴, 🇭🇦🇹🇪), and
#: letters with a stroke, bar or hook (ħ ł ø ŧ).
_NAMED_LATIN_LETTER = re.compile(
    r"\b(?:LATIN|REGIONAL INDICATOR SYMBOL)(?: CAPITAL| SMALL)? LETTER(?: SMALL CAPITAL| DOTLESS)? "
    r"([A-Z])(?: WITH .+)?$"
)
_MARKS = frozenset({"Mn", "Me"})


def _collapse_spaces(text: str) -> str:
    """Every run of whitespace as one space, none at either end (faster than a regex sub)."""
    return " ".join(text.split())


#: Letters kept as they are in a server of that language (after lowercasing): the letters its
#: alphabet has beyond a–z. Keys are Discord locales without their region ("pt-BR" → "pt").
_NATIVE_LETTERS: dict[str, str] = {
    "cs": "áčďéěíňóřšťúůýž",
    "da": "æøå",
    "de": "äöüß",
    "es": "áéíñóúü",
    "fi": "åäöšž",
    "fr": "àâæçéèêëîïôœùûüÿ",
    "hr": "čćđšž",
    "hu": "áéíóöőúüű",
    "it": "àèéìíîòóùú",
    "lt": "ąčęėįšųūž",
    "nl": "áéíóúàèëïöü",
    "no": "æøå",
    "pl": "ąćęłńóśźż",
    "pt": "áâãàçéêíóôõú",
    "ro": "ăâîșşțţ",
    "sv": "åäö",
    "tr": "çğıöşüâîû",
    "vi": "àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ",
}
#: Languages written in a script of their own: every letter of it is kept (Unicode names
#: starting with one of these words), except in a word that mixes it with Latin letters.
_NATIVE_SCRIPTS: dict[str, tuple[str, ...]] = {
    "bg": ("CYRILLIC",),
    "el": ("GREEK",),
    "hi": ("DEVANAGARI",),
    "ja": ("HIRAGANA", "KATAKANA", "CJK"),
    "ko": ("HANGUL",),
    "ru": ("CYRILLIC",),
    "th": ("THAI",),
    "uk": ("CYRILLIC",),
    "zh": ("CJK",),
}
# Code points scanned when the tables are built: the basic and supplementary multilingual
# planes (CJK extensions, which fold to nothing else, are left out), and the tag characters
# and variation selectors of plane 14.
_SCANNED = (range(0x20000), range(0xE0000, 0xE01F0))


def _homoglyph_targets() -> dict[str, str]:
    """Each non-ASCII character of Unicode's confusables data that looks like an ASCII letter or digit."""
    targets: dict[str, str] = {}
    for source, glyphs in _HOMOGLYPHS.items():
        source = source.strip("\u200e\u200f")  # the data wraps right-to-left characters in marks
        if len(source) != 1 or source.isascii():
            continue
        for glyph in glyphs:
            plain = "".join(c for c in glyph["c"] if unicodedata.category(c) not in _MARKS)
            plain = plain.strip("\u200e\u200f")
            if plain and plain.isascii() and plain.isalnum():
                targets[source] = plain.lower()
                break
    return targets


def _fold_char(ch: str, homoglyphs: dict[str, str]) -> str:
    """What one character becomes in the folded prompt (see :func:`normalize`)."""
    category = unicodedata.category(ch)
    if category in _MARKS or category == "Cf" or ch in _BLANK_LETTERS:
        return ""
    named = _NAMED_LATIN_LETTER.search(unicodedata.name(ch, ""))
    if named:
        return named.group(1).lower()
    if ch in homoglyphs:
        return homoglyphs[ch]
    text = unicodedata.normalize("NFKC", ch).translate(_CAPITAL_LOOKALIKES).casefold()
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if unicodedata.category(c) not in _MARKS)
    text = unicodedata.normalize("NFC", text).translate(_LOWERCASE_LOOKALIKES)
    text = "".join(homoglyphs.get(c, c) for c in text)
    # Punctuation, symbols and spaces beyond ASCII separate words like a space does.
    return "".join(c if c.isascii() or unicodedata.category(c)[0] in "LNM" else " " for c in text)


def _build_tables() -> tuple[dict[int, str], str, dict[str, frozenset[str]]]:
    """The folding changes, the invisible characters and each script's letters, built once."""
    homoglyphs = _homoglyph_targets()
    fold: dict[int, str] = {}
    invisible: list[str] = []
    scripts: dict[str, set[str]] = {word: set() for words in _NATIVE_SCRIPTS.values() for word in words}
    for code in itertools.chain(*_SCANNED):
        ch = chr(code)
        category = unicodedata.category(ch)
        if category in ("Cn", "Co", "Cs"):
            continue  # unassigned, private use, surrogates
        if category == "Cf" or ch in _BLANK_LETTERS:
            invisible.append(ch)
        elif category[0] == "L" and code > 0x7F:
            script = unicodedata.name(ch, "").split(" ", 1)[0]
            if script in scripts:
                scripts[script].add(ch)
        if category == "Lo" and not unicodedata.decomposition(ch) and ch not in homoglyphs:
            # Caseless letters without a decomposition (CJK, Hangul, …) fold to themselves,
            # unless blank; checked first because they are most of what is scanned.
            if ch in _BLANK_LETTERS:
                fold[code] = ""
            continue
        folded = _fold_char(ch, homoglyphs)
        if folded != ch:
            fold[code] = folded
    return fold, "".join(invisible), {name: frozenset(letters) for name, letters in scripts.items()}


_FOLD_CHANGES, _INVISIBLE_CHARS, _SCRIPT_LETTERS = _build_tables()


def _char_class(chars: str) -> str:
    """A Python regex character class of ``chars``, as ranges of consecutive code points."""
    codes = sorted(map(ord, chars))
    ranges = []
    for _start, run in itertools.groupby(enumerate(codes), key=lambda pair: pair[1] - pair[0]):
        members = [code for _index, code in run]
        ranges.append(
            re.escape(chr(members[0])) + ("-" + re.escape(chr(members[-1])) if len(members) > 1 else "")
        )
    return "[" + "".join(ranges) + "]"


#: Invisible characters, found by one C-level scan.
_INVISIBLE = re.compile(_char_class(_INVISIBLE_CHARS) + "+")
#: Only code points below this are looked up in a folding table; the rest (CJK extensions,
#: plane 14, whose invisible characters are removed beforehand) are kept as they are.
_TABLE_SIZE = 0x20000


def _table(changes: dict[int, str]) -> list[int | str]:
    """A translate table as a list indexed by code point: a lookup never misses (a dict's misses
    raise KeyError inside ``str.translate``, which made folding a non-ASCII prompt ten times slower)."""
    table: list[int | str] = list(range(_TABLE_SIZE))
    for code, folded in changes.items():
        if code < _TABLE_SIZE:
            table[code] = folded
    return table


_FOLD = _table(_FOLD_CHANGES)
_ASCII_TABLE = _table({ord(k): v for k, v in _ASCII_LOOKALIKES.items()})


@dataclass(frozen=True)
class _Folding:
    """How prompts are folded in a server of one language."""

    table: list[int | str]
    native: frozenset[str]  # letters of a script of its own (empty for Latin-alphabet languages)


def _language(locale: str | None) -> str:
    """The language whose letters are kept: ``"pt-BR"`` → ``"pt"``; ``""`` for English, None and
    languages written in plain a–z."""
    language = (locale or "").split("-", 1)[0].lower()
    return language if language in _NATIVE_LETTERS or language in _NATIVE_SCRIPTS else ""


_FOLDINGS: dict[str, _Folding] = {}


def _folding(locale: str | None) -> _Folding:
    """The folding for a server's locale, made on first use (a handful of languages exist)."""
    language = _language(locale)
    folding = _FOLDINGS.get(language)
    if folding is None:
        kept = set(_NATIVE_LETTERS.get(language, ""))
        native = frozenset().union(*(_SCRIPT_LETTERS[s] for s in _NATIVE_SCRIPTS.get(language, ())))
        kept |= native
        table = list(_FOLD)
        for letter in kept:
            for form in {letter, letter.upper()}:
                if len(form) == 1:
                    table[ord(form)] = letter
        folding = _FOLDINGS[language] = _Folding(table, native)
    return folding


_WORD = re.compile(r"[^\W_]+")
_LATIN_LETTER = re.compile(r"[A-Za-z\u00c0-\u024f\uff21-\uff3a\uff41-\uff5a]")


def _fold(text: str, locale: str | None = None) -> str:
    """Every step of :func:`normalize` except the digit/symbol look-alikes (see there)."""
    return _fold_visible(unicodedata.normalize("NFC", _without_invisible(text)), locale)


def _fold_visible(text: str, locale: str | None) -> str:
    """:func:`_fold` of a text already NFC and without invisible characters."""
    folding = _folding(locale)
    if folding.native and _LATIN_LETTER.search(text) and not folding.native.isdisjoint(text):
        native = folding.native

        # A word mixing the server's own script with Latin letters is a disguise: its letters
        # of that script are folded like everywhere else (what they become, the table keeps).
        def fold_mixed(match: re.Match[str]) -> str:
            word = match.group()
            if _LATIN_LETTER.search(word) and not native.isdisjoint(word):
                return word.translate(_FOLD)
            return word

        text = _WORD.sub(fold_mixed, text)
    text = text.translate(folding.table)
    return _collapse_spaces(text)


def normalize(text: str, locale: str | None = None) -> str:
    """Return ``text`` in the form blocklist entries and prompts are compared in.

    Each character is folded on its own through a table built once at import:

    1. Invisible characters are removed: every format character (Unicode category Cf —
       zero-width space and joiners, word joiner, soft hyphen, BOM, LRM/RLM and the other
       bidi controls, tag characters), the Hangul fillers, the braille blank and the
       combining grapheme joiner (``"b\\u200bad"`` → ``"bad"``).
    2. Accents and other combining marks are removed, including those that case folding
       would turn into letters (``"hate\\u0345"`` → ``"hate"``, ``"café"`` → ``"cafe"``).
    3. Fancy letters Unicode gives no plain form are read from their names: small capitals,
       negative squared and regional-indicator letters, letters with a stroke, bar or hook
       (``"ʜᴀᴛᴇ"``, ``"🅷🅰🆃🅴"``, ``"🇭🇦🇹🇪"``, ``"ħ"`` → ``"hate"``, ``"h"``).
    4. Characters that Unicode's confusables data (UTS #39, as shipped by the
       ``confusable-homoglyphs`` package) says look like an ASCII letter or digit become it
       (Armenian ``օ``, Cherokee ``Ꭺ``, IPA ``ɑ``, dotless ``ı`` …).
    5. Otherwise: Unicode NFKC (``"ＢＡＤ"`` → ``"BAD"``, ``"ﬁ"`` → ``"fi"``, ``"𝐛"`` → ``"b"``),
       Cyrillic and Greek capitals that look like Latin capitals (Greek ``Ν`` → ``N``),
       ``str.casefold`` (``"ß"`` → ``"ss"``), marks removed again, then Cyrillic and Greek
       lowercase look-alikes (``а е о р с у х і ј ѕ к м н т в һ ԁ ԛ ԝ`` → ``a e o p c y x i j
       s k m h t b h d q w``; ``ο α ε ι κ ν ρ τ υ χ`` → ``o a e i k v p t u x``).
       Punctuation, symbols and spaces beyond ASCII become spaces (``"hate—speech"`` →
       ``"hate speech"``).
    6. Digits and symbols used as letters: 0→o 1→i 3→e 4→a 5→s 7→t 8→b @→a $→s !→i |→l
       (``"h4te"`` → ``"hate"``, ``"a$$"`` → ``"ass"``).
    7. Every run of whitespace becomes one space, stripped from both ends.

    With a ``locale`` (the server's Discord locale), the letters of that language are kept,
    only lowercased (see the module docstring): ``normalize("j'ai hâte", "fr")`` is
    ``"j'ai hâte"``. Decomposed accents are composed (NFC) first so this holds for them too.
    Because entries go through the same function, a ``word`` entry ``h4te`` and the prompt
    ``hate`` both become ``hate``.
    """
    return _fold(text, locale).translate(_ASCII_TABLE)


def _without_invisible(text: str) -> str:
    return text if text.isascii() else _INVISIBLE.sub("", text)


def _light_fold(text: str) -> str:
    """A regex's second view of a prompt: NFKC, no invisible characters, casefolded, spaces collapsed."""
    return _collapse_spaces(unicodedata.normalize("NFKC", _without_invisible(text)).casefold())


# The folded prompt has only ASCII punctuation (the rest became spaces): anything ASCII but a
# letter or digit separates words; letters of any script are word characters.
_EDGE = r"[\x00-\x2f\x3a-\x60\x7b-\x7f]"
_LETTER = r"[^\x00-\x2f\x3a-\x60\x7b-\x7f]"
#: Three or more single letters or digits in a row, each apart from the next by one to three
#: other characters: "h a t e", "h.a.t.e" (RE2, so finding them stays linear).
_SPACED_LETTERS = re2.compile(f"(?:^|{_EDGE})({_LETTER}(?:{_EDGE}{{1,3}}{_LETTER}){{2,}})(?:{_EDGE}|$)")
_DROP_EDGES = str.maketrans(
    dict.fromkeys(map(chr, itertools.chain(range(0x30), range(0x3A, 0x61), range(0x7B, 0x80))))
)


def _join_spaced_letters(text: str) -> str:
    """``text`` (folded) with every run of letters written apart joined into one word.

    A single-letter word next to the run joins it too ("i h a t e u" reads "ihateu"), so each
    run of four or more letters is also added at the end without its first letter, its last,
    and both.
    """
    pieces = []
    trimmed = []
    end = 0
    for found in _SPACED_LETTERS.finditer(text):
        start, stop = found.span(1)
        joined = text[start:stop].translate(_DROP_EDGES)
        pieces += [text[end:start], joined]
        if len(joined) >= 4:
            trimmed += [joined[1:], joined[:-1], joined[1:-1]]
        end = stop
    if not pieces:
        return text
    return " ".join(["".join([*pieces, text[end:]]), *trimmed])


# --- entries ------------------------------------------------------------------------------


class BlocklistError(TextError, ValueError):
    """An entry or list an admin tried to save is refused; ``text`` is the message to show them."""


@dataclass(frozen=True)
class BlockEntry:
    """One blocklist entry. Build it with :func:`validate_entry`, which checks it."""

    kind: EntryKind
    #: The word, phrase or regular expression as the admin typed it (a word without
    #: surrounding whitespace).
    pattern: str


def describe(entry: BlockEntry) -> str:
    """How an entry is shown to admins: ``word: foo`` or ``regex: /foo.*bar/``."""
    if entry.kind == "regex":
        return f"regex: /{entry.pattern}/"
    return f"word: {entry.pattern}"


def _code(text: str) -> str:
    """``text`` as Discord inline code."""
    # A single-backtick span cannot contain a backtick; a double-backtick one can.
    return f"`` {text} ``" if "`" in text else f"`{text}`"


# What may be empty or too long, by kind: one whole sentence each, for translators.
_EMPTY: dict[str, Text] = {
    "word": _("A blocklist word can't be empty."),
    "regex": _("A blocklist regex can't be empty."),
    "exception": _("A blocklist exception can't be empty."),
}


def _too_long(what: str, length: int) -> Text:
    if what == "regex":
        return _n(
            "That regex is {count} character long; it can be at most {most} characters.",
            "That regex is {count} characters long; it can be at most {most} characters.",
            length,
            most=MAX_ENTRY_LENGTH,
        )
    if what == "exception":
        return _n(
            "That exception is {count} character long; it can be at most {most} characters.",
            "That exception is {count} characters long; it can be at most {most} characters.",
            length,
            most=MAX_ENTRY_LENGTH,
        )
    return _n(
        "That word is {count} character long; it can be at most {most} characters.",
        "That word is {count} characters long; it can be at most {most} characters.",
        length,
        most=MAX_ENTRY_LENGTH,
    )


def _check_length(what: str, text: str) -> None:
    if not text.strip():
        raise BlocklistError(_EMPTY[what])
    if len(text) > MAX_ENTRY_LENGTH:
        raise BlocklistError(_too_long(what, len(text)))


def validate_entry(kind: str, pattern: str) -> BlockEntry:
    """Check an entry an admin wants to add and return it, or raise :class:`BlocklistError`.

    ``kind`` must be ``"word"`` or ``"regex"``. A word is stored without surrounding
    whitespace; a regex exactly as given (spaces in it are significant). Refused:

    * an empty entry, or a word that is empty once folded (e.g. only invisible characters);
    * an entry longer than :data:`MAX_ENTRY_LENGTH` characters;
    * a regex RE2 cannot compile: invalid syntax, or a construct only backtracking engines
      have (back-references, look-aheads and look-behinds, atomic groups, possessive repeats,
      conditionals), repeat counts over 1000 — the message names the construct;
    * a regex compiling to more than :data:`MAX_PROGRAM_SIZE` steps (or too big for RE2 to
      compile in :data:`_RE2_MAX_MEM` bytes): on prompts built against it, even RE2 would
      take milliseconds;
    * a regex that can match without consuming any text, such as ``a*``, ``x?``, ``(a|)``,
      ``^`` or ``\\b``: it would match somewhere in (nearly) every prompt.
    """
    if kind not in _KINDS:
        raise BlocklistError(_("Unknown entry kind {kind}: use `word` or `regex`.", kind=repr(kind)))
    if kind == "word":
        pattern = pattern.strip()
    _check_length(kind, pattern)
    if kind == "word":
        if not normalize(pattern):
            raise BlocklistError(
                _(
                    "{pattern} is empty once invisible characters and accents are removed.",
                    pattern=_code(pattern),
                )
            )
        return BlockEntry("word", pattern)
    _compile_regex(pattern)
    return BlockEntry("regex", pattern)


def validate_exception(phrase: str) -> str:
    """Check a phrase an admin wants to exempt and return it trimmed, or raise :class:`BlocklistError`."""
    phrase = _collapse_spaces(phrase)
    _check_length("exception", phrase)
    if not _WORD.search(phrase):
        raise BlocklistError(
            _("{phrase} has no letters or digits; an exception must contain a word.", phrase=_code(phrase))
        )
    return phrase


def _re2_options(*, case_sensitive: bool) -> re2.Options:
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.max_mem = _RE2_MAX_MEM
    options.log_errors = False  # refusals are answered to the admin; nothing for the logs
    options.never_capture = True
    return options


_REGEX_OPTIONS = _re2_options(case_sensitive=False)
_WORD_OPTIONS = _re2_options(case_sensitive=True)  # word patterns see folded, lowercase text

#: RE2's parse errors for constructs of backtracking engines, and what to tell the admin.
_UNSUPPORTED: tuple[tuple[str, Text], ...] = (
    ("(?=", _("look-aheads like `(?=…)` aren't supported")),
    ("(?!", _("negative look-aheads like `(?!…)` aren't supported")),
    ("(?<=", _("look-behinds like `(?<=…)` aren't supported")),
    ("(?<!", _("negative look-behinds like `(?<!…)` aren't supported")),
    ("(?>", _("atomic groups like `(?>…)` aren't supported (nor needed: every pattern runs in linear time)")),
    ("(?P=", _("named back-references like `(?P=name)` aren't supported")),
    ("(?(", _("conditionals like `(?(1)…|…)` aren't supported")),
    ("(?#", _("comments like `(?#…)` aren't supported")),
)
_BACK_REFERENCE = re.compile(r"invalid escape sequence: \\([1-9])")
_POSSESSIVE = re.compile(r"bad repetition operator: (\S+)\+$")


def _explain_re2_error(message: str) -> Readable:
    """A friendly reason for an RE2 compile error (RE2's own words when we have none)."""
    if message.startswith("invalid perl operator: "):
        operator = message.removeprefix("invalid perl operator: ")
        for prefix, reason in _UNSUPPORTED:
            if operator.startswith(prefix) or prefix.startswith(operator):
                return reason
    if reference := _BACK_REFERENCE.search(message):
        return _("back-references like `{reference}` aren't supported", reference="\\" + reference.group(1))
    if message == "invalid escape sequence: \\Z":
        return _("`\\Z` isn't supported: use `\\z` for the end of the prompt")
    if possessive := _POSSESSIVE.search(message):
        return _(
            "possessive repeats like `{repeat}+` aren't supported: "
            "use `{repeat}` (every pattern runs in linear time anyway)",
            repeat=possessive.group(1),
        )
    if message.startswith("invalid repetition size"):
        return _(
            "a repeat count can be at most 1000, and repeats inside repeats multiply ({repeat} is too many)",
            repeat=message.removeprefix("invalid repetition size: "),
        )
    if message.startswith("pattern too large"):
        return _("it is too big to check quickly: use smaller repeat counts or a shorter pattern")
    return message


#: Texts on which a pattern that can match without consuming anything will do so somewhere:
#: every satisfiable combination of ^, $, \b and \B holds at some position of one of them.
_EMPTY_MATCH_PROBES = ("", "a", " ", "a a", " a ", "\n", "a\na")


@functools.lru_cache(maxsize=4096)
def _compile_regex(pattern: str) -> re2._Regexp:
    """Compile an admin's regex with RE2, applying the checks :func:`validate_entry` documents.

    Cached: the same entries are compiled again whenever a server's settings are reloaded, and
    a compiled pattern keeps what RE2 learnt from earlier prompts.
    """
    try:
        compiled = re2.compile(pattern, options=_REGEX_OPTIONS)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else ""
        message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        raise BlocklistError(
            _(
                "{pattern} can't be used as a regular expression: {reason}.",
                pattern=_code(pattern),
                reason=_explain_re2_error(message),
            )
        ) from None
    try:
        # Entries are searched together as `(?:a)|(?:b)`; an unclosed \Q quote would swallow the rest.
        re2.compile(f"(?:{pattern})|x", options=_REGEX_OPTIONS)
    except re2.error:
        raise BlocklistError(
            _(
                "{pattern} can't be used as a regular expression: end its `\\Q…` quote with `\\E`.",
                pattern=_code(pattern),
            )
        ) from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise BlocklistError(
            _(
                "{pattern} is too big to check quickly (it compiles to {steps} steps; the limit is {most}). "
                "Use smaller repeat counts, such as {short} rather than {long}, or split it into several "
                "entries.",
                pattern=_code(pattern),
                steps=compiled.programsize,
                most=MAX_PROGRAM_SIZE,
                short="`.{0,30}`",
                long="`.{0,100}`",
            )
        )
    for probe in _EMPTY_MATCH_PROBES:
        found = compiled.search(probe)
        if found is not None and found.start() == found.end():
            raise BlocklistError(
                _(
                    "{pattern} can match without matching any text, so it would block nearly every "
                    "prompt. Make sure it always needs at least one character "
                    "(for example `a+` rather than `a*`).",
                    pattern=_code(pattern),
                )
            )
    return compiled


# --- matching -----------------------------------------------------------------------------

# Word boundaries and phrase gaps: the folded prompt has only ASCII punctuation and spaces
# (the rest became spaces), so anything ASCII but a letter or digit separates words, "_" and
# the stand-in symbols included ("bad_word" and "$ass" contain "bad" and "ass"). Letters of
# other scripts are word characters.
_BEFORE_WORD = f"(?:^|{_EDGE})"
_AFTER_WORD = f"(?:{_EDGE}|$)"
_PHRASE_GAP = f"{_EDGE}+"
# Exceptions are found in the prompt as typed, so their edges are Unicode's.
_BEFORE_PHRASE = r"(?:^|[^\pL\pN])"
_AFTER_PHRASE = r"(?:[^\pL\pN]|$)"
#: Largest compiled program (RE2 instructions) an admin's regex may have. Above it, prompts
#: built to defeat RE2's fast engine (``.{0,100}a.{0,100}b.{0,100}c`` on ``a a a …``) take
#: milliseconds; ``kill.{0,50}your.{0,50}self`` needs about 900.
MAX_PROGRAM_SIZE = 1000
#: Patterns are searched together, in alternations of at most this many instructions each:
#: one search per group and view instead of one per entry. Word patterns are plain sequences
#: whose union RE2 handles well; admins' regexes are grouped more cautiously.
_WORD_GROUP_PROGRAM_SIZE = 50_000
_REGEX_GROUP_PROGRAM_SIZE = 4000


def _literal(ch: str) -> str:
    """One character as an RE2 pattern (RE2 refuses escapes of letters and of non-ASCII)."""
    return "\\" + ch if ch.isascii() and not ch.isalnum() else ch


def _word_pattern(word: str, locale: str | None) -> str:
    """The RE2 pattern a ``word`` entry becomes; it is searched in :func:`_fold` of the prompt.

    It is not searched in the fully normalised prompt, where "kill!" would read "killi" and
    hide the word "kill". Instead, each letter that a digit or symbol may stand in for
    accepts either (``ass`` → ``[a4@][s5$][s5$]``), so a stand-in counts as a letter inside
    the word and as punctuation next to it. A letter written once in the entry also matches
    three or more times in a row, a doubled one two or more times (stretched letters).
    """
    key = normalize(word, locale)
    parts = [_BEFORE_WORD if key[0].isalnum() else ""]
    for ch, run in itertools.groupby(key):
        count = len(list(run))
        if ch == " ":
            parts.append(_PHRASE_GAP)
            continue
        one = "[" + "".join(map(_literal, _STAND_INS[ch])) + "]" if ch in _STAND_INS else _literal(ch)
        # Once: once, or stretched to three or more. Twice or more: at least as often.
        parts.append(f"{one}(?:{one}{{2,}})?" if count == 1 else f"{one}{{{count},}}")
    parts.append(_AFTER_WORD if key[-1].isalnum() else "")
    return "".join(parts)


def _exceptions_regex(phrases: tuple[str, ...]) -> re2._Regexp | None:
    """One RE2 pattern finding any exception as whole words, ignoring case, any spaces between words."""
    if not phrases:
        return None
    alternatives = []
    for phrase in phrases:
        text = unicodedata.normalize("NFC", phrase)
        body = "".join(r"\s+" if ch == " " else _literal(ch) for ch in text)
        before = _BEFORE_PHRASE if text[0].isalnum() else ""
        after = _AFTER_PHRASE if text[-1].isalnum() else ""
        alternatives.append(before + body + after)
    return re2.compile("|".join(f"(?:{a})" for a in alternatives), options=_REGEX_OPTIONS)


@functools.lru_cache(maxsize=4096)
def _word_regex(word: str, language: str) -> re2._Regexp:
    """A word entry's compiled pattern; cached, as the same entries are compiled again on every
    settings change and per language."""
    return re2.compile(_word_pattern(word, language), options=_WORD_OPTIONS)


@dataclass(frozen=True)
class _Compiled:
    index: int  # place in the list: the first matching entry is the one reported
    entry: BlockEntry
    regex: re2._Regexp


@dataclass(frozen=True)
class _Group:
    """Entries searched together: one alternation of all of them, then each on a hit."""

    regex: re2._Regexp
    members: tuple[_Compiled, ...]

    which: re2.Set  # the members again, to learn in one pass which of them match

    def first_match(self, views: list[bytes]) -> _Compiled | None:
        if not any(self.regex.search(view) for view in views):
            return None
        found = {index for view in views for index in self.which.Match(view) or ()}
        if found:
            return self.members[min(found)]
        # RE2 sets report nothing when they run out of memory: ask each member instead.
        return next(m for m in self.members if any(m.regex.search(view) for view in views))


def _groups(items: list[_Compiled], *, case_sensitive: bool, budget: int) -> tuple[_Group, ...]:
    """``items`` split into alternations of at most ``budget`` instructions."""
    options = _re2_options(case_sensitive=case_sensitive)
    options.max_mem = _RE2_MAX_MEM * 16
    groups: list[_Group] = []
    batch: list[_Compiled] = []
    size = 0

    def close() -> None:
        if batch:
            alternation = "|".join(f"(?:{m.regex.pattern})" for m in batch)
            which = re2.Set.SearchSet(options)
            for member in batch:
                which.Add(member.regex.pattern)
            which.Compile()
            groups.append(_Group(re2.compile(alternation, options=options), tuple(batch), which))
            batch.clear()

    for item in items:
        if batch and size + item.regex.programsize > budget:
            close()
            size = 0
        batch.append(item)
        size += item.regex.programsize
    close()
    return tuple(groups)


class Blocklist:
    """A server's blocklist (and its exceptions), compiled once and reused for every prompt.

    ``Blocklist(entries, exceptions)`` re-validates each entry and exception (so stored or
    hand-built ones get the same checks as new ones) and refuses more than
    :data:`MAX_ENTRIES` entries or :data:`MAX_EXCEPTIONS` exceptions, raising
    :class:`BlocklistError`. To check whether an admin may add something, build the list
    they would end up with.
    """

    __slots__ = (
        "_exceptions",
        "_phrases",
        "_regex_groups",
        "_regexes",
        "_word_groups",
        "entries",
        "exceptions",
    )

    def __init__(self, entries: Iterable[BlockEntry] = (), exceptions: Iterable[str] = ()) -> None:
        self.entries: tuple[BlockEntry, ...] = tuple(entries)
        self.exceptions: tuple[str, ...] = tuple(exceptions)
        if len(self.entries) > MAX_ENTRIES:
            raise BlocklistError(
                _(
                    "A blocklist can hold at most {most} entries, and this one would have {count}. "
                    "Remove some entries first.",
                    most=MAX_ENTRIES,
                    count=len(self.entries),
                )
            )
        if len(self.exceptions) > MAX_EXCEPTIONS:
            raise BlocklistError(
                _(
                    "A blocklist can hold at most {most} exceptions, and this one would have {count}. "
                    "Remove some exceptions first.",
                    most=MAX_EXCEPTIONS,
                    count=len(self.exceptions),
                )
            )
        regexes = []
        for index, entry in enumerate(self.entries):
            checked = validate_entry(entry.kind, entry.pattern)
            if checked.kind == "regex":
                regexes.append(_Compiled(index, entry, _compile_regex(checked.pattern)))
        self._regexes: tuple[_Compiled, ...] = tuple(regexes)
        self._phrases = tuple(validate_exception(p) for p in self.exceptions)
        # Compiled on first use (see `prepare`); word entries fold like the prompt, so per language.
        self._regex_groups: tuple[_Group, ...] | None = None
        self._exceptions: re2._Regexp | None = None
        self._word_groups: dict[str, tuple[_Group, ...]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"Blocklist({len(self.entries)} entries, {len(self.exceptions)} exceptions)"

    def _words_for(self, locale: str | None) -> tuple[_Group, ...]:
        language = _language(locale)
        groups = self._word_groups.get(language)
        if groups is None:
            words = [
                _Compiled(index, entry, _word_regex(entry.pattern, language))
                for index, entry in enumerate(self.entries)
                if entry.kind == "word"
            ]
            groups = self._word_groups[language] = _groups(
                words, case_sensitive=True, budget=_WORD_GROUP_PROGRAM_SIZE
            )
        return groups

    def prepare(self, locale: str | None = None) -> None:
        """Compile everything :meth:`match` needs for ``locale``, if not done yet.

        :meth:`match` does it itself; for a full list it takes a few hundred milliseconds, so
        callers on an event loop run this first in a worker thread.
        """
        if self._regex_groups is None:
            if self._phrases:
                self._exceptions = _exceptions_regex(self._phrases)
            self._regex_groups = _groups(
                list(self._regexes), case_sensitive=False, budget=_REGEX_GROUP_PROGRAM_SIZE
            )
        self._words_for(locale)

    def compiled_regexes(self) -> tuple[re2._Regexp, ...]:
        """The compiled form of every regex entry (all RE2), in list order."""
        return tuple(item.regex for item in self._regexes)

    def _without_exceptions(self, text: str) -> str:
        if self._exceptions is None:
            return text
        # A match takes the separator after it, so two exceptions in a row need a second pass.
        for _pass in range(2):
            text = self._exceptions.sub(" ", text)
        return text

    def match(self, prompt: str, locale: str | None = None) -> BlockEntry | None:
        """The first entry, in list order, that matches ``prompt``; ``None`` if none does.

        ``locale`` is the server's Discord locale (``"fr"``, ``"pt-BR"``…): the letters of
        its language are not read as look-alikes (see the module docstring). Only the first
        :data:`MAX_PROMPT_CHARS` characters of the prompt are checked.
        """
        if not self.entries:
            return None
        self.prepare(locale)
        assert self._regex_groups is not None
        text = unicodedata.normalize("NFC", _without_invisible(prompt[:MAX_PROMPT_CHARS]))
        text = self._without_exceptions(_collapse_spaces(text))
        folded = _fold_visible(text, locale)
        joined = _join_spaced_letters(folded)
        # Views are encoded once: RE2 then searches bytes without converting the text per entry.
        word_views = [folded.encode()]
        light = _collapse_spaces(unicodedata.normalize("NFKC", text).casefold())
        regex_views = [folded.translate(_ASCII_TABLE).encode(), light.encode()]
        if joined != folded:
            word_views.append(joined.encode())
            regex_views.append(joined.translate(_ASCII_TABLE).encode())
        found = [g.first_match(word_views) for g in self._words_for(locale)]
        found += [g.first_match(regex_views) for g in self._regex_groups]
        hits = [item for item in found if item is not None]
        return min(hits, key=lambda item: item.index).entry if hits else None


def parse_blocklist_file(text: str) -> Blocklist:
    """A blocklist kept as a text file (the operator's `OPERATOR_BLOCKLIST_FILE`), one entry a line,
    written the way `/imagine-admin blocklist list` shows entries:

    * ``word: kill yourself`` — a word or phrase (a line with no prefix is a word too);
    * ``regex: b[a-z]*d`` — a regular expression (``regex: /b[a-z]*d/`` as listed works as well);
    * ``except: j'ai hâte`` — a phrase that is never treated as a match.

    Blank lines and lines starting with ``#`` are skipped. Every entry is checked like an admin's
    (:func:`validate_entry`); :class:`BlocklistError` names the first bad line.
    """
    entries: list[BlockEntry] = []
    exceptions: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kind, _, rest = line.partition(":")
        kind = kind.strip().lower()
        try:
            if kind == "regex" and rest.strip():
                pattern = rest.strip()
                if len(pattern) > 1 and pattern.startswith("/") and pattern.endswith("/"):
                    pattern = pattern[1:-1]
                entries.append(validate_entry("regex", pattern))
            elif kind == "except" and rest.strip():
                exceptions.append(validate_exception(rest))
            elif kind == "word" and rest.strip():
                entries.append(validate_entry("word", rest))
            else:
                entries.append(validate_entry("word", line))
        except BlocklistError as exc:
            raise BlocklistError(f"line {number}: {exc}") from None
    try:
        return Blocklist(dict.fromkeys(entries), dict.fromkeys(exceptions))
    except BlocklistError as exc:
        raise BlocklistError(f"the list as a whole: {exc}") from None
