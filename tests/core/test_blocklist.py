"""The prompt blocklist: normalisation, whole-word and regex matching, and what admins may not add."""

from __future__ import annotations

import ast
import sys
import unicodedata
from pathlib import Path

import pytest
import re2

import bot.blocklist
from bench.blocklist import ADVERSARIAL_PATTERNS, adversarial_prompts, filler_entries
from bot.blocklist import (
    MAX_ENTRIES,
    MAX_ENTRY_LENGTH,
    MAX_EXCEPTIONS,
    MAX_PROMPT_CHARS,
    BlockEntry,
    Blocklist,
    BlocklistError,
    describe,
    normalize,
    validate_entry,
    validate_exception,
)


def words(*patterns: str) -> Blocklist:
    return Blocklist([validate_entry("word", p) for p in patterns])


def regexes(*patterns: str) -> Blocklist:
    return Blocklist([validate_entry("regex", p) for p in patterns])


def refusal(kind: str, pattern: str) -> str:
    with pytest.raises(BlocklistError) as excinfo:
        validate_entry(kind, pattern)
    return str(excinfo.value)


# --- normalize ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("café", "cafe"),
        ("cafe\u0301", "cafe"),  # decomposed accent
        ("ＢＡＤ", "bad"),  # full-width
        ("b\u200bad", "bad"),
        ("b\u200c\u200d\u2060\ufeff\u00adad", "bad"),
        ("h4te", "hate"),
        ("0134578", "oieastb"),
        ("@$!|", "asil"),
        ("bаd", "bad"),  # Cyrillic а
        ("ѕехосрутмнвкіј", "sexocpytmhbkij"),  # Cyrillic look-alikes
        ("οαεικνρτυχ", "oaeikvptux"),  # Greek look-alikes
        ("ΝUDE", "nude"),  # Greek capital Nu looks like N, not like its lowercase ν
        ("Һate", "hate"),  # Cyrillic capital shha
        ("Straße", "strasse"),
        ("  many \t\n  spaces\u3000here ", "many spaces here"),
        ("z̷a̷l̷g̷o̷", "zalgo"),
        ("ﬁne 𝐛𝐨𝐥𝐝", "fine bold"),
        ("2 + 2 = 9?", "2 + 2 = 9?"),  # other digits and punctuation are left alone
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_a_word_and_a_prompt_written_with_digits_normalise_alike():
    assert normalize("h4te") == normalize("hate") == normalize("HATE") == "hate"


# --- word entries -------------------------------------------------------------------------


def test_accented_prompt_matches_plain_entry():
    assert words("cafe").match("meet me at the café") is not None


def test_plain_prompt_matches_accented_entry():
    assert words("café").match("meet me at the cafe") is not None


def test_full_width_prompt_matches():
    assert words("bad").match("something ＢＡＤ here") is not None


@pytest.mark.parametrize("prompt", ["i hate you", "i h4te you", "i HAT3 you", "i hаte you"])
def test_look_alikes_in_the_prompt_match(prompt):
    assert words("hate").match(prompt) is not None


def test_an_entry_written_with_look_alikes_matches_the_plain_word():
    assert words("h4te").match("pure hate") is not None


def test_zero_width_characters_do_not_split_a_word():
    assert words("bad").match("a b\u200bad dream") is not None


@pytest.mark.parametrize("prompt", ["BAD", "Bad", "bAd"])
def test_matching_ignores_case(prompt):
    assert words("bad").match(prompt) is not None


@pytest.mark.parametrize("prompt", ["a class photo", "my assistant", "bass guitar", "sassy", "a_ss", "1ass"])
def test_a_word_does_not_match_inside_longer_words(prompt):
    assert words("ass").match(prompt) is None


@pytest.mark.parametrize("prompt", ["ass", "an ass.", "A$$", "@$$ and more", "(ass)", "bad_ass"])
def test_a_word_matches_on_its_own_and_through_look_alikes(prompt):
    assert words("ass").match(prompt) is not None


@pytest.mark.parametrize("prompt", ["I will kill!", "kill!!!", "k1ll!", "sh!t!"])
def test_punctuation_after_a_word_is_not_read_as_a_letter(prompt):
    # In normalize(), "!" reads as "i"; next to a word it must still count as punctuation.
    assert words("kill", "shit").match(prompt) is not None


@pytest.mark.parametrize(
    "prompt",
    ["please kill yourself", "kill   yourself", "KILL\nyourself", "kill-yourself", "kill_yourself"],
)
def test_a_phrase_matches_with_any_separator_between_its_words(prompt):
    assert words("kill yourself").match(prompt) is not None


@pytest.mark.parametrize("prompt", ["killyourself", "kill yourselfie", "skill yourself", "kill your self"])
def test_a_phrase_matches_only_whole_words(prompt):
    assert words("kill yourself").match(prompt) is None


def test_a_word_ending_in_punctuation_needs_no_boundary_there():
    blocklist = words("c++")
    assert blocklist.match("written in c++20") is not None
    assert blocklist.match("abc++") is None


# --- regex entries ------------------------------------------------------------------------


def test_a_regex_ignores_case_and_sees_the_normalised_prompt():
    blocklist = regexes(r"b[a-z]*d\b")
    assert blocklist.match("very ＢÄ\u200bD") is not None
    assert blocklist.match("B4D") is not None
    assert blocklist.match("good") is None


def test_an_uppercase_regex_still_matches():
    assert regexes("HATE").match("hate") is not None


def test_a_regex_also_sees_digits_and_punctuation_of_the_original_prompt():
    assert regexes(r"\b\d{3}-\d{4}\b").match("call 555-1234 now") is not None
    assert regexes(r"c\+\+").match("I like C++") is not None
    assert regexes("café").match("CAFÉ au lait") is not None


def test_a_regex_is_searched_anywhere_in_the_prompt():
    assert regexes("oo").match("a good dog") is not None


def test_an_invalid_regex_is_refused_with_a_helpful_message():
    assert refusal("regex", "[a-") == "`[a-` can't be used as a regular expression: missing ]: [a-."


def test_a_regex_with_a_backtick_is_quoted_so_discord_shows_it():
    assert refusal("regex", "`(").startswith("`` `( `` can't be used as a regular expression")


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a+)(a+)\1b", "back-references like `\\1` aren't supported"),
        (r"(?P<x>a)(?P=x)", "named back-references like `(?P=name)` aren't supported"),
        ("(?=kill)k", "look-aheads like `(?=…)` aren't supported"),
        ("(?!kill)k", "negative look-aheads like `(?!…)` aren't supported"),
        ("(?<=a)b", "look-behinds like `(?<=…)` aren't supported"),
        ("(?<!a)b", "negative look-behinds like `(?<!…)` aren't supported"),
        ("(?>a+)b", "atomic groups like `(?>…)` aren't supported"),
        ("a++b", "possessive repeats like `++` aren't supported: use `+`"),
        ("(a)?(?(1)b|c)", "conditionals like `(?(1)…|…)` aren't supported"),
        (r"bad\Z", "`\\Z` isn't supported: use `\\z`"),
    ],
)
def test_a_construct_only_backtracking_engines_have_is_refused_by_name(pattern, reason):
    assert reason in refusal("regex", pattern)


def test_an_unclosed_quote_is_refused_as_it_would_swallow_the_entries_searched_with_it():
    assert "end its `\\Q…` quote with `\\E`" in refusal("regex", r"\Qa.b")
    assert regexes(r"\Qa.b\E", "x+y").match("xxy") == BlockEntry("regex", "x+y")


@pytest.mark.parametrize("pattern", ["a{1001}", "(a{1000}){1000}", "(?:x{100}){11}"])
def test_a_repeat_count_over_1000_is_refused_not_crashed_on(pattern):
    assert "a repeat count can be at most 1000" in refusal("regex", pattern)


@pytest.mark.parametrize("pattern", [r"\pL{1000}", r".{0,100}a.{0,100}b.{0,100}c", "[a-z]{1000}"])
def test_a_regex_too_big_to_check_quickly_is_refused_with_what_to_change(pattern):
    message = refusal("regex", pattern)
    assert "too big to check quickly" in message
    assert "smaller repeat counts" in message


def test_an_absurd_repeat_count_is_read_as_text_not_crashed_on():
    # RE2 reads a repeat count it cannot parse as the characters themselves.
    blocklist = regexes("a{99999999999}")
    assert blocklist.match("a" * 1000) is None
    assert blocklist.match("see a{99999999999}") is not None


@pytest.mark.parametrize(
    "pattern", ["a*", "x?", "(a|)", "^", "$", r"\b", r"\B", "(foo)?", ".*", "a{0,3}", "x*$|y*"]
)
def test_a_regex_that_can_match_no_text_is_refused(pattern):
    assert "would block nearly every prompt" in refusal("regex", pattern)


@pytest.mark.parametrize("pattern", ADVERSARIAL_PATTERNS)
def test_every_adversarial_pattern_is_refused_or_runs_on_re2(pattern):
    # RE2 matches in time linear in the prompt whatever the pattern: an accepted pattern must
    # be compiled by it, never by the backtracking `re` engine.
    try:
        entry = validate_entry("regex", pattern)
    except BlocklistError as exc:
        assert "can't be used as a regular expression" in str(exc) or "too big to check" in str(exc)
        return
    blocklist = Blocklist([*filler_entries(), entry])
    assert [type(r) for r in blocklist.compiled_regexes()] == [re2._Regexp] * 50
    for _, prompt in adversarial_prompts(pattern):
        blocklist.match(prompt)


def test_the_patterns_that_froze_the_bot_are_accepted_and_run_on_re2():
    # (a|a)+$ and friends took seconds on a 30-character prompt with the backtracking engine.
    frozen = [r"(a|a)+$", r"(a|aa)+$", "o+o+x", r"\w+o+x", r"(a?){25}a{25}"]
    blocklist = regexes(*frozen)
    assert all(isinstance(r, re2._Regexp) for r in blocklist.compiled_regexes())
    assert blocklist.match("a" * 24 + "!") is None
    assert blocklist.match("o" * 29 + "x") == BlockEntry("regex", "o+o+x")


@pytest.mark.parametrize(
    ("pattern", "prompt"),
    [
        (r"\bkill\s*(yo)?u?r?\s*self\b", "just kill yourself"),
        (r"\bkill\s*(yo)?u?r?\s*self\b", "killurself"),
        (r"\bkill\s*(yo)?u?r?\s*self\b", "kill your self"),
        (r"(kill|murder)\s+(your|ur)\s*self", "go murder your self"),
        (r"(kill|murder)\s+(your|ur)\s*self", "KILL ur self"),
        ("kill.*your.*self", "kill it, your honour, yourself"),
        ("(a+)+b", "aaab"),
    ],
)
def test_natural_patterns_the_old_validator_refused_now_work(pattern, prompt):
    blocklist = regexes(pattern)
    assert blocklist.match(prompt) == BlockEntry("regex", pattern)
    assert blocklist.match("a lovely meadow") is None


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["word", "regex"])
@pytest.mark.parametrize("pattern", ["", "   "])
def test_an_empty_entry_is_refused(kind, pattern):
    assert "can't be empty" in refusal(kind, pattern)


def test_a_word_of_only_invisible_characters_is_refused():
    assert "empty once" in refusal("word", "\u200b\u00ad")


@pytest.mark.parametrize("kind", ["word", "regex"])
def test_an_entry_over_the_length_limit_is_refused(kind):
    assert validate_entry(kind, "x" * MAX_ENTRY_LENGTH).pattern == "x" * MAX_ENTRY_LENGTH
    message = refusal(kind, "x" * (MAX_ENTRY_LENGTH + 1))
    assert f"{MAX_ENTRY_LENGTH + 1} characters long" in message
    assert f"at most {MAX_ENTRY_LENGTH} characters" in message


def test_an_unknown_kind_is_refused():
    assert "use `word` or `regex`" in refusal("phrase", "foo")


def test_a_word_is_stored_trimmed_and_a_regex_verbatim():
    assert validate_entry("word", "  h4te ") == BlockEntry("word", "h4te")
    assert validate_entry("regex", " bad ") == BlockEntry("regex", " bad ")


def test_more_than_the_maximum_number_of_entries_is_refused():
    entries = [BlockEntry("word", f"w{i}") for i in range(MAX_ENTRIES + 1)]
    assert len(Blocklist(entries[:MAX_ENTRIES])) == MAX_ENTRIES
    with pytest.raises(BlocklistError, match=f"at most {MAX_ENTRIES} entries.*would have {MAX_ENTRIES + 1}"):
        Blocklist(entries)


def test_a_blocklist_revalidates_entries_it_is_given():
    with pytest.raises(BlocklistError, match="back-references"):
        Blocklist([BlockEntry("regex", r"(a)\1")])


# --- matching a list ----------------------------------------------------------------------


def test_no_match_returns_none():
    assert words("bad", "worse").match("a lovely sunny meadow") is None
    assert Blocklist().match("anything at all") is None


def test_the_first_matching_entry_in_list_order_is_returned():
    blocklist = Blocklist(
        [
            BlockEntry("word", "meadow"),
            BlockEntry("regex", "sun+y"),
            BlockEntry("word", "lovely"),
        ]
    )
    assert blocklist.match("a lovely sunny day") == BlockEntry("regex", "sun+y")


def test_only_the_first_max_prompt_chars_are_checked():
    blocklist = words("bad")
    assert blocklist.match("x " * (MAX_PROMPT_CHARS // 2 - 2) + "bad") is not None
    assert blocklist.match("x" * MAX_PROMPT_CHARS + " bad") is None


def test_a_full_list_checks_a_long_prompt():
    blocklist = Blocklist(
        [BlockEntry("word", f"word{i}") for i in range(MAX_ENTRIES - 1)] + [BlockEntry("regex", "z+q")]
    )
    prompt = "a " * (MAX_PROMPT_CHARS // 2 - 3) + "zzq"
    assert blocklist.match(prompt) == BlockEntry("regex", "z+q")


# --- display and hygiene ------------------------------------------------------------------


def test_describe_shows_the_kind_and_the_pattern_as_typed():
    assert describe(BlockEntry("word", "foo")) == "word: foo"
    assert describe(BlockEntry("regex", "foo.*bar")) == "regex: /foo.*bar/"


def test_the_module_imports_no_discord_and_only_its_two_matching_libraries():
    tree = ast.parse(Path(bot.blocklist.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    outside = {str(name).split(".")[0] for name in imported} - sys.stdlib_module_names
    # Of the bot itself, only the translatable texts its refusals are written in.
    assert (outside, {name for name in imported if str(name).startswith("bot")}) == (
        {"re2", "confusable_homoglyphs", "bot"},
        {"bot.i18n"},
    )


def test_a_stored_entry_that_no_longer_validates_is_skipped_not_fatal():
    from bot.guild_settings import GuildSettings

    stored = GuildSettings(blocklist=(BlockEntry("regex", r"(a)\1"), BlockEntry("word", "hate")))
    assert (stored.compiled_blocklist.match("I hate it"), stored.compiled_blocklist.match("aaaa")) == (
        BlockEntry("word", "hate"),
        None,
    )


# --- disguises ----------------------------------------------------------------------------

TROLL_WORDS = ("hate", "kill", "nazi", "gore")


@pytest.mark.parametrize(
    ("prompt", "word"),
    [
        ("hate\u0345", "hate"),  # U+0345 casefolds to a Greek iota; it is a combining mark
        ("h a t e", "hate"),
        ("h.a.t.e", "hate"),
        ("k-i-l-l them", "kill"),
        ("n_a_z_i", "nazi"),
        ("g . o . r . e", "gore"),
        ("ʜᴀᴛᴇ", "hate"),  # small capitals
        ("🅷🅰🆃🅴", "hate"),  # negative squared letters
        ("\U0001f1ed\U0001f1e6\U0001f1f9\U0001f1ea", "hate"),  # regional indicators
        ("h\u200eate", "hate"),  # LRM
        ("h\u200fa\u202et\u2066e", "hate"),  # RLM and bidi controls
        ("h\U000e0041ate", "hate"),  # a tag character
        ("k\u3164ill", "kill"),  # Hangul filler
        ("ħaŧe", "hate"),  # stroked letters
        ("kiłł", "kill"),
        ("gøre", "gore"),
        ("haaate", "hate"),  # stretched letters
        ("kiiiilllll", "kill"),
        ("nnnaaazzziii", "nazi"),
        ("gօrе", "gore"),  # Armenian o
        ("ɡore", "gore"),  # IPA script g
        ("kıll", "kill"),  # dotless i
        ("ᎻᎪᎢᎬ", "hate"),  # Cherokee
        ("ոazi", "nazi"),  # Armenian n
    ],
)
def test_disguises_common_on_discord_are_caught(prompt, word):
    assert words(*TROLL_WORDS).match(prompt) == BlockEntry("word", word)


def test_unicode_confusables_of_blocked_letters_are_caught():
    # Every character Unicode's confusables data says looks like a letter of a blocked word.
    from confusable_homoglyphs.confusables import confusables_data

    blocklist = words(*TROLL_WORDS)
    missed = []
    for source, glyphs in confusables_data.items():
        source = source.strip("\u200e\u200f")
        for letter in {g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii()}:
            if len(source) != 1 or not letter.isalpha() or unicodedata.normalize("NFKC", source).isascii():
                continue  # compatibility forms of ASCII letters (Ｉ) read as that letter
            for word in TROLL_WORDS:
                if letter.lower() in word:
                    disguised = word.replace(letter.lower(), source, 1)
                    if blocklist.match(disguised) is None:
                        missed.append(disguised)
    assert missed == []


@pytest.mark.parametrize(
    "prompt",
    ["whatever you want", "a skill tree", "Ashkenazi history", "nasi goreng", "I hatted the snowman"],
)
def test_english_words_containing_a_blocked_word_stay_allowed(prompt):
    assert words(*TROLL_WORDS).match(prompt) is None


@pytest.mark.parametrize(
    "prompt",
    [
        "a the",
        "a cat and a dog at the park",
        "Plan B: a big red bus",
        "I am a fan of x and y",
        "the A team, a b c of painting",
        "he hatte a goose, good geese, a small sheep",
        "a classic bass, assorted sassy cats",
        "u s a flag",
        "a kilt, a kiln, skilled hands",
    ],
)
def test_spaced_and_stretched_letters_do_not_make_ordinary_text_match(prompt):
    assert words(*TROLL_WORDS, "ass", "cab", "sheep farm").match(prompt) is None


@pytest.mark.parametrize("prompt", ["I h a t e you", "h a t e u", "i h a t e u", "a h.a.t.e"])
def test_letters_written_apart_next_to_a_single_letter_word_are_caught(prompt):
    assert words("hate").match(prompt) == BlockEntry("word", "hate")


def test_a_word_of_three_letters_written_apart_is_caught():
    assert words("ass").match("what an a s s") == BlockEntry("word", "ass")


def test_a_phrase_written_apart_is_caught_as_one_word():
    assert words("killyourself").match("k i l l y o u r s e l f") is not None


def test_a_regex_sees_letters_written_apart_joined():
    assert regexes("ha+te").match("h . a . t . e") == BlockEntry("regex", "ha+te")


# --- the server's language ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "locale"),
    [
        ("j'ai hâte de voir ça", "fr"),
        ("en toute hâte", "fr"),
        ("bana göre", "tr"),
        ("fotoğrafa göre bir resim", "tr"),
        ("eine freche Göre", "de"),
        ("нате, держите", "ru"),
        ("НАТЕ", "uk"),
        ("J'AI HÂTE", "fr"),
        ("ja\u0302i ha\u0302te", "fr"),  # decomposed accents
    ],
)
def test_everyday_words_of_the_servers_language_are_allowed(prompt, locale):
    blocklist = words(*TROLL_WORDS)
    assert blocklist.match(prompt, locale) is None
    # The same text in an English server is read as a disguise.
    assert blocklist.match(prompt, "en-US") is not None


@pytest.mark.parametrize(
    ("prompt", "locale"),
    [
        ("hаte", "ru"),  # Cyrillic а mixed into a Latin word
        ("Нate", "ru"),
        ("nаzi", "bg"),
        ("h4te", "fr"),
        ("ʜᴀᴛᴇ", "fr"),
        ("h a t e", "tr"),
        ("haaate", "de"),
        ("gøre", "tr"),  # ø is not a Turkish letter
        ("hate", "pt-BR"),
    ],
)
def test_disguises_are_still_caught_in_servers_of_other_languages(prompt, locale):
    assert words(*TROLL_WORDS).match(prompt, locale) is not None


def test_an_entry_in_the_servers_language_keeps_its_letters():
    blocklist = words("hâte")
    assert blocklist.match("j'ai hâte", "fr") == BlockEntry("word", "hâte")
    assert blocklist.match("I hate it", "fr") is None
    assert blocklist.match("I hate it", "en-US") == BlockEntry("word", "hâte")


def test_normalize_keeps_the_letters_of_the_given_language():
    assert normalize("J'ai HÂTE", "fr") == "j'ai hâte"
    assert normalize("Göre", "tr") == "göre"
    assert normalize("Göre", "fr") == "gore"
    assert normalize("нате", "ru") == "нате"
    assert normalize("нате") == "hate"


# --- exceptions ---------------------------------------------------------------------------


def test_an_exception_is_never_treated_as_a_match():
    blocklist = Blocklist([validate_entry("word", "hate")], ["j'ai hâte"])
    assert blocklist.match("j'ai hâte de te voir") is None
    assert blocklist.match("J'AI   HÂTE") is None
    assert blocklist.match("j'ai hâte, j'ai hâte j'ai hâte") is None
    assert blocklist.match("j'ai hâte but I hate mondays") == BlockEntry("word", "hate")
    assert blocklist.match("hâte") == BlockEntry("word", "hate")  # only the whole phrase is exempt


def test_an_exception_covers_whole_words_only():
    blocklist = Blocklist([validate_entry("word", "hate")], ["hâte"])
    assert blocklist.match("en toute hâte") is None
    assert blocklist.match("hâtehate") is None  # neither word is "hate" on its own
    assert blocklist.match("xhâte hate") == BlockEntry("word", "hate")


def test_an_exception_applies_to_regex_entries_too():
    blocklist = Blocklist([validate_entry("regex", "h[aâ]te")], ["en toute hâte"])
    assert blocklist.match("en toute hâte") is None
    assert blocklist.match("hâte") is not None


@pytest.mark.parametrize(
    ("phrase", "message"), [("", "can't be empty"), ("  ", "can't be empty"), ("!!", "no letters")]
)
def test_an_empty_exception_is_refused(phrase, message):
    with pytest.raises(BlocklistError, match=message):
        validate_exception(phrase)


def test_an_exception_is_stored_trimmed_and_too_many_are_refused():
    assert validate_exception("  j'ai   hâte ") == "j'ai hâte"
    with pytest.raises(BlocklistError, match=f"at most {MAX_EXCEPTIONS} exceptions"):
        Blocklist([], [f"word{i}" for i in range(MAX_EXCEPTIONS + 1)])


def test_a_refusal_carries_a_text_to_translate_whose_english_is_the_message():
    with pytest.raises(BlocklistError) as excinfo:
        validate_entry("regex", "(?=a)")
    text = excinfo.value.text
    assert (text.message, str(text), str(excinfo.value)) == (
        "{pattern} can't be used as a regular expression: {reason}.",
        "`(?=a)` can't be used as a regular expression: look-aheads like `(?=…)` aren't supported.",
        "`(?=a)` can't be used as a regular expression: look-aheads like `(?=…)` aren't supported.",
    )
