"""A server's prompt blocklist: words and regular expressions checked before a prompt is sent.

Server admins keep a list of entries; a member's prompt that matches any of them is refused
before anything reaches the paid image API. This module only decides *whether* a prompt
matches; storing the list and talking to Discord happen elsewhere (it never imports discord).

Entries
-------
``word``
    A word or phrase, e.g. ``hate`` or ``kill yourself``. It is normalised exactly like the
    prompt (see :func:`normalize`), so ``h4te``, ``HATE`` and ``hâte`` are the same entry.
    It matches whole words only: ``ass`` matches ``ass``, ``A$$`` and ``ass!`` but not
    ``class`` or ``assistant``. The words of a phrase match with any run of non-letter,
    non-digit characters between them (``kill yourself``, ``kill   yourself``,
    ``kill-yourself``, ``kill_yourself``).
``regex``
    A Python regular expression, searched (not anchored) with ``re.IGNORECASE`` in two
    views of the prompt, and matching if it is found in either:

    * the normalised prompt (:func:`normalize`), so admins write patterns in plain
      lowercase ASCII: ``b[a-z]*d`` also catches ``ＢÄ\u200bD``;
    * the prompt with only full-width/compatibility forms folded (NFKC), zero-width
      characters removed, case folded and whitespace collapsed, so patterns that rely on
      digits, punctuation or accented letters (``\\d{4}``, ``c\\+\\+``, ``café``) still work —
      the normalised view turns digits and some punctuation into letters.

Validation (:func:`validate_entry`, :class:`Blocklist`) refuses, with a message for the admin:
empty entries, entries over :data:`MAX_ENTRY_LENGTH` characters, invalid regular expressions,
regular expressions that can match without consuming any text (they would block nearly
every prompt), regular expressions whose backtracking a crafted prompt could make take
seconds or more (nested repetition such as ``(a+)+``, or two open-ended repetitions such as
``kill.*your.*self``; see :func:`validate_entry`), and lists of more than :data:`MAX_ENTRIES`
entries.

Build a :class:`Blocklist` once per settings change and reuse it for every prompt: all
patterns are compiled in the constructor, and :meth:`Blocklist.match` only searches.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from re import _constants as _sre_constants  # the parser `re.compile` itself uses (Python ≥ 3.11)
from re import _parser as _sre_parser
from typing import Any, Literal

#: Longest entry (as typed) an admin may add.
MAX_ENTRY_LENGTH = 200
#: Most entries one blocklist may hold; keeps a prompt check to a few hundred searches at most.
MAX_ENTRIES = 200
#: Only this many characters of a prompt are checked. Discord and the catalog already cap
#: prompts at 6000 characters, so in practice nothing is left unchecked; the cap bounds the
#: work if a caller ever passes something longer.
MAX_PROMPT_CHARS = 6000

EntryKind = Literal["word", "regex"]
_KINDS: tuple[str, ...] = ("word", "regex")

# --- normalisation tables -----------------------------------------------------------------

#: Invisible characters used to split words ("b\u200bad"): zero width space, non-joiner,
#: joiner, word joiner, byte order mark / zero width no-break space, soft hyphen.
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))

#: Cyrillic and Greek capitals that look like Latin capitals. Applied *before* case folding,
#: because some capitals look like a different Latin letter than their lowercase form does
#: (Greek "Ν" looks like N, its lowercase "ν" like v).
_CAPITAL_LOOKALIKES = str.maketrans(
    {
        **dict(zip("АВЕКМНОРСТУХЅІЈҺԚԜ", "ABEKMHOPCTYXSIJHQW", strict=True)),  # Cyrillic
        **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX", strict=True)),  # Greek
    }
)
#: Cyrillic and Greek lowercase letters that look like Latin letters.
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
_ASCII_LOOKALIKES_TABLE = str.maketrans(_ASCII_LOOKALIKES)
#: The reverse: each letter and the characters that may stand in for it in a prompt.
_STAND_INS: dict[str, str] = {}
for _source, _letter in _ASCII_LOOKALIKES.items():
    _STAND_INS[_letter] = _STAND_INS.get(_letter, _letter) + _source

_WHITESPACE_RUN = re.compile(r"\s+")
# Nonspacing and enclosing marks: accents, and the "z̷a̷l̷g̷o̷" / "b⃝" decorations used to dodge filters.
_MARK_CATEGORIES = frozenset({"Mn", "Me"})


def _fold(text: str) -> str:
    """Every step of :func:`normalize` except the digit/symbol look-alikes (see there)."""
    text = text.translate(_ZERO_WIDTH)
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(_CAPITAL_LOOKALIKES)
    text = text.casefold()
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _MARK_CATEGORIES)
    # Recompose what stripping left decomposed (Hangul syllables, for one).
    text = unicodedata.normalize("NFC", text)
    text = text.translate(_LOWERCASE_LOOKALIKES)
    return _WHITESPACE_RUN.sub(" ", text).strip()


def normalize(text: str) -> str:
    """Return ``text`` in the form blocklist entries and prompts are compared in.

    The steps, in order:

    1. Remove zero-width characters: U+200B ZERO WIDTH SPACE, U+200C ZERO WIDTH NON-JOINER,
       U+200D ZERO WIDTH JOINER, U+2060 WORD JOINER, U+FEFF ZERO WIDTH NO-BREAK SPACE and
       U+00AD SOFT HYPHEN (``"b\\u200bad"`` → ``"bad"``).
    2. Unicode NFKC: full-width and other compatibility forms become their plain letters
       (``"ＢＡＤ"`` → ``"BAD"``, ``"ﬁ"`` → ``"fi"``, ``"𝐛"`` → ``"b"``, ``"①"`` → ``"1"``).
    3. Map Cyrillic and Greek capitals that look like Latin capitals to those capitals:
       Cyrillic А В Е К М Н О Р С Т У Х Ѕ І Ј Һ Ԛ Ԝ → A B E K M H O P C T Y X S I J H Q W,
       Greek Α Β Ε Ζ Η Ι Κ Μ Ν Ο Ρ Τ Υ Χ → A B E Z H I K M N O P T Y X.
    4. ``str.casefold`` (``"BAD"`` → ``"bad"``, ``"ß"`` → ``"ss"``).
    5. Remove accents and other combining marks: decompose (NFKD), drop every nonspacing
       (Mn) or enclosing (Me) mark, recompose (NFC) (``"café"`` → ``"cafe"``).
    6. Map Cyrillic and Greek lowercase letters that look like Latin letters to them:
       Cyrillic а е о р с у х і ј ѕ к м н т в һ ԁ ԛ ԝ → a e o p c y x i j s k m h t b h d q w,
       Greek ο α ε ι κ ν ρ τ υ χ → o a e i k v p t u x.
    7. Map digits and symbols used as letters: 0→o 1→i 3→e 4→a 5→s 7→t 8→b @→a $→s !→i |→l
       (``"h4te"`` → ``"hate"``, ``"a$$"`` → ``"ass"``).
    8. Collapse every run of whitespace to one space and strip it from both ends.

    Nothing else changes: other punctuation, other digits and other scripts stay as they
    are. Because entries go through the same function, a ``word`` entry ``h4te`` and the
    prompt ``hate`` both become ``hate``. Step 5 also drops Mn marks that scripts such as
    Devanagari use as vowel signs; harmless here because both sides lose them alike.
    """
    return _fold(text).translate(_ASCII_LOOKALIKES_TABLE)


def _light_fold(text: str) -> str:
    """The prompt for a regex's second look: NFKC, zero-width removed, casefolded, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text.translate(_ZERO_WIDTH)).casefold()
    return _WHITESPACE_RUN.sub(" ", text).strip()


# --- entries ------------------------------------------------------------------------------


class BlocklistError(ValueError):
    """An entry or list an admin tried to save is refused; ``str(error)`` is the message to show them."""


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


def validate_entry(kind: str, pattern: str) -> BlockEntry:
    """Check an entry an admin wants to add and return it, or raise :class:`BlocklistError`.

    ``kind`` must be ``"word"`` or ``"regex"``. A word is stored without surrounding
    whitespace; a regex exactly as given (spaces in it are significant). Refused:

    * an empty entry, or a word that is empty once normalised (e.g. only zero-width characters);
    * an entry longer than :data:`MAX_ENTRY_LENGTH` characters;
    * a regex that does not compile (the message says why and where);
    * a regex that can match without consuming any text, such as ``a*``, ``x?``, ``(a|)``,
      ``^``, ``\\b`` or ``(?=x)``: it would match somewhere in (nearly) every prompt;
    * a regex with nested repetition: a repeat (``*``, ``+``, ``{m,}``, or ``{m,n}`` with
      n > 1) around something that contains a variable-length repeat, at any depth, through
      groups, alternations and lookarounds — ``(a+)+``, ``(a*)*``, ``(.*)*``,
      ``(?:\\w+\\s?)+``, ``(x|y{1,3})*``. These can take exponential time on a prompt that
      almost matches. Fixed counts (``(ab{2})+``) and single optional parts (``(ab?)+``) are
      allowed;
    * a regex with more than one open-ended repetition on one path: a repeat allowing more
      than 100 repetitions of anything but one literal character or a list of them (``.*``,
      ``\\w+``, ``[a-z]{2,}``, ``(ab)+`` count; ``u+``, ``[a4@]+``, ``.{0,50}`` don't), not
      counting one that ends the pattern or its branch, taking the worst branch of an
      alternation. ``kill.*your.*self`` is refused (a prompt of 750 "killyour"s takes about
      six seconds to check), ``kill.*your.{0,50}self``, ``.*bad.*`` and ``f+u+c+k+\\w*`` are
      allowed.

    Both backtracking checks are structural and cheap, not a proof. Not caught: overlapping
    alternatives (``(a|ab)+``), a broad repeat next to an overlapping narrow one
    (``\\w+o+x``), repeats of the same character (``o+o+x``, ``a?a?a?…aaa``) and several large
    bounded gaps (``.{0,100}`` three times). Allowed patterns can still take quadratic time
    (``\\w+x`` needs about 0.3 s, both views, for a prompt of 6000 ``a``); the prompt-length
    cap bounds that.
    """
    if kind not in _KINDS:
        raise BlocklistError(f"Unknown entry kind {kind!r}: use `word` or `regex`.")
    if kind == "word":
        pattern = pattern.strip()
    if not pattern.strip():
        raise BlocklistError(f"A blocklist {kind} can't be empty.")
    if len(pattern) > MAX_ENTRY_LENGTH:
        raise BlocklistError(
            f"That {kind} is {len(pattern)} characters long; entries can be at most "
            f"{MAX_ENTRY_LENGTH} characters."
        )
    if kind == "word":
        if not normalize(pattern):
            raise BlocklistError(
                f"{_code(pattern)} is empty once invisible characters and accents are removed."
            )
        return BlockEntry("word", pattern)
    _compile_regex(pattern)
    return BlockEntry("regex", pattern)


def _compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile an admin's regex, applying the checks :func:`validate_entry` documents."""
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise BlocklistError(
            f"{_code(pattern)} is not a valid regular expression: {exc.msg}{where}."
        ) from None
    except (OverflowError, RecursionError) as exc:
        # A repeat count beyond sys.maxsize, or absurd nesting, fails outside re.error.
        raise BlocklistError(f"{_code(pattern)} is not a valid regular expression: {exc}.") from None
    # The same parse re.compile just did, kept as a tree we can inspect. Its FutureWarnings
    # ("possible nested set") were already issued by re.compile.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        tree = _sre_parser.parse(pattern, re.IGNORECASE)
    # Nested repetition first: `(a*)*` also matches empty text, but that is the graver fault.
    if _has_nested_repeat(tree):
        raise BlocklistError(
            f"{_code(pattern)} repeats something that itself repeats (like `(a+)+` or `(.*)*`), "
            "which can make checking a prompt take practically forever. "
            "Remove one of the repetitions (for example `a+` rather than `(a+)+`)."
        )
    if _open_ended_repeats(tree, at_end=True) > 1:
        raise BlocklistError(
            f"{_code(pattern)} has more than one open-ended repetition (like `.*`, `\\w+` or `[a-z]+`), "
            "so a crafted prompt could take minutes to check. Give them a limit, for example "
            "`kill.{0,50}your.{0,50}self` rather than `kill.*your.*self`. Patterns are searched anywhere "
            "in the prompt, so a leading or trailing `.*` is never needed."
        )
    if tree.getwidth()[0] == 0:
        raise BlocklistError(
            f"{_code(pattern)} can match without matching any text, so it would block nearly every "
            "prompt. Make sure it always needs at least one character (for example `a+` rather than `a*`)."
        )
    return compiled


#: A repeat allowing more repetitions than this counts as open-ended for the backtracking check.
_LONG_REPEAT = 100
_REPEAT_OPS = frozenset(
    {_sre_constants.MAX_REPEAT, _sre_constants.MIN_REPEAT, _sre_constants.POSSESSIVE_REPEAT}
)


def _nested_trees(value: Any) -> Iterator[Any]:
    """The sub-trees inside one opcode's argument (groups, alternatives, lookarounds, ...)."""
    # Walking arguments generically instead of per opcode keeps up with parser changes.
    if isinstance(value, _sre_parser.SubPattern):
        yield value
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _nested_trees(item)


def _has_nested_repeat(tree: Any, *, inside_repeat: bool = False) -> bool:
    """Whether a repeat of more than one (``inside_repeat``) contains a variable-length repeat."""
    for op, arg in tree:
        if op in _REPEAT_OPS:
            low, high, body = arg
            if inside_repeat and high > 1 and high != low:
                return True
            if _has_nested_repeat(body, inside_repeat=inside_repeat or high > 1):
                return True
        elif any(_has_nested_repeat(sub, inside_repeat=inside_repeat) for sub in _nested_trees(arg)):
            return True
    return False


def _is_narrow(body: Any) -> bool:
    """Whether a repeated part is one literal character or a list of them: ``u``, ``[a4@]``."""
    if len(body) != 1:
        return False
    op, arg = body[0]
    if op is _sre_constants.LITERAL:
        return True
    return op is _sre_constants.IN and all(item_op is _sre_constants.LITERAL for item_op, _ in arg)


def _open_ended_repeats(tree: Any, *, at_end: bool) -> int:
    """How many open-ended broad repeats one path through ``tree`` may have to backtrack over.

    Counted: repeats allowing more than :data:`_LONG_REPEAT` repetitions of anything but a
    narrow part (``.*``, ``\\w+``, ``[a-z]{2,}``, ``(ab)+``). Not counted: a repeat that ends the
    pattern (nothing after it can fail, so it never gives characters back). Alternatives are
    tried one at a time, so they count their worst branch, not their sum.
    """
    total = 0
    items = list(tree)
    for index, (op, arg) in enumerate(items):
        last = at_end and index == len(items) - 1
        if op in _REPEAT_OPS:
            _low, high, body = arg
            if high > _LONG_REPEAT and not _is_narrow(body) and not last:
                total += 1
            total += _open_ended_repeats(body, at_end=False)
        elif op is _sre_constants.BRANCH:
            total += max(_open_ended_repeats(branch, at_end=last) for branch in arg[1])
        elif op is _sre_constants.SUBPATTERN:
            total += _open_ended_repeats(arg[-1], at_end=last)
        else:
            total += sum(_open_ended_repeats(sub, at_end=False) for sub in _nested_trees(arg))
    return total


# --- matching -----------------------------------------------------------------------------

# Boundaries and phrase gaps count letters and digits as word characters, but not "_":
# "bad_word" contains the word "bad", as it would with a space or hyphen.
_NOT_AFTER_WORD_CHAR = r"(?<![^\W_])"
_NOT_BEFORE_WORD_CHAR = r"(?![^\W_])"
_PHRASE_GAP = r"[\W_]+"
_WORD_CHAR = re.compile(r"[^\W_]")


def _word_regex(word: str) -> re.Pattern[str]:
    """The regex a ``word`` entry becomes; it is searched in :func:`_fold` of the prompt.

    It is not searched in the fully normalised prompt, where "kill!" would read "killi" and
    hide the word "kill". Instead, each letter that a digit or symbol may stand in for
    accepts either (``ass`` → ``[a4@][s5$][s5$]``), so a stand-in counts as a letter inside
    the word and as punctuation next to it. Everything the normalised prompt would match
    still matches; the price is that "$ass" matches "ass" too.
    """
    key = normalize(word)
    parts = []
    for ch in key:
        if ch == " ":
            parts.append(_PHRASE_GAP)
        elif ch in _STAND_INS:
            parts.append(f"[{re.escape(_STAND_INS[ch])}]")
        else:
            parts.append(re.escape(ch))
    # Like \b, only demand a boundary on a side that ends in a letter or digit: "c++" still
    # matches in "c++20", and "..." after a word.
    before = _NOT_AFTER_WORD_CHAR if _WORD_CHAR.match(key[0]) else ""
    after = _NOT_BEFORE_WORD_CHAR if _WORD_CHAR.match(key[-1]) else ""
    return re.compile(before + "".join(parts) + after)


@dataclass(frozen=True)
class _Compiled:
    entry: BlockEntry
    regex: re.Pattern[str]


class Blocklist:
    """A server's blocklist, compiled once and reused for every prompt.

    ``Blocklist(entries)`` re-validates each entry (so stored or hand-built entries get the
    same checks as new ones) and refuses more than :data:`MAX_ENTRIES`, raising
    :class:`BlocklistError`. To check whether an admin may add an entry, build the list
    they would end up with.
    """

    __slots__ = ("_compiled", "entries")

    def __init__(self, entries: Iterable[BlockEntry] = ()) -> None:
        self.entries: tuple[BlockEntry, ...] = tuple(entries)
        if len(self.entries) > MAX_ENTRIES:
            raise BlocklistError(
                f"A blocklist can hold at most {MAX_ENTRIES} entries, and this one would have "
                f"{len(self.entries)}. Remove some entries first."
            )
        compiled = []
        for entry in self.entries:
            checked = validate_entry(entry.kind, entry.pattern)
            if checked.kind == "word":
                regex = _word_regex(checked.pattern)
            else:
                regex = _compile_regex(checked.pattern)
            compiled.append(_Compiled(entry, regex))
        self._compiled: tuple[_Compiled, ...] = tuple(compiled)

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"Blocklist({len(self.entries)} entries)"

    def match(self, prompt: str) -> BlockEntry | None:
        """The first entry, in list order, that matches ``prompt``; ``None`` if none does.

        Only the first :data:`MAX_PROMPT_CHARS` characters of the prompt are checked.
        """
        if not self._compiled:
            return None
        prompt = prompt[:MAX_PROMPT_CHARS]
        folded = _fold(prompt)
        # Two more views for regex entries, computed once per prompt (see the module docstring).
        normalized = folded.translate(_ASCII_LOOKALIKES_TABLE)
        light = _light_fold(prompt)
        for item in self._compiled:
            if item.entry.kind == "word":
                if item.regex.search(folded):
                    return item.entry
            elif item.regex.search(normalized) or item.regex.search(light):
                return item.entry
        return None
