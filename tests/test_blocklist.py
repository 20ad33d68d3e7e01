"""The prompt blocklist: normalisation, whole-word and regex matching, and what admins may not add."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import bot.blocklist
from bot.blocklist import (
    MAX_ENTRIES,
    MAX_ENTRY_LENGTH,
    MAX_PROMPT_CHARS,
    BlockEntry,
    Blocklist,
    BlocklistError,
    describe,
    normalize,
    validate_entry,
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
    assert (
        refusal("regex", "[a-")
        == "`[a-` is not a valid regular expression: unterminated character set at position 0."
    )


def test_a_regex_with_a_backtick_is_quoted_so_discord_shows_it():
    assert refusal("regex", "`(").startswith("`` `( `` is not a valid regular expression")


def test_an_absurd_repeat_count_is_refused_not_crashed_on():
    assert "not a valid regular expression" in refusal("regex", "a{99999999999}")


@pytest.mark.parametrize("pattern", ["a*", "x?", "(a|)", "^", "$", r"\b", "(?=x)", "(foo)?", ".*", "a{0,3}"])
def test_a_regex_that_can_match_no_text_is_refused(pattern):
    assert "would block nearly every prompt" in refusal("regex", pattern)


@pytest.mark.parametrize(
    "pattern",
    ["(a+)+", "(a*)*", "(.*)*", r"(?:\w+\s?)+", "(x|y{1,3})*", "((a+)b)+", "(?=(a+)+)b", "(a+){2,}"],
)
def test_a_regex_with_nested_repetition_is_refused(pattern):
    assert "repeats something that itself repeats" in refusal("regex", pattern)


@pytest.mark.parametrize(
    "pattern", ["(ab)+", "a+b+", "(ab{2})+", "(ab?)+", "foo.*bar", "(a+)?x", r"\bh[a4]te\b"]
)
def test_a_regex_without_nested_repetition_is_allowed(pattern):
    assert validate_entry("regex", pattern) == BlockEntry("regex", pattern)


@pytest.mark.parametrize(
    "pattern", ["kill.*your.*self", r"\w+\w+x", "[a-z]*kill[a-z]*self", ".*a.*b", "(ab)+c.*d"]
)
def test_a_regex_with_two_open_ended_repetitions_is_refused(pattern):
    message = refusal("regex", pattern)
    assert "more than one open-ended repetition" in message
    assert "`kill.{0,50}your.{0,50}self`" in message


@pytest.mark.parametrize(
    "pattern",
    [
        "kill.{0,50}your.{0,50}self",
        ".*bad.*",  # a trailing repeat never gives characters back
        "kill.*|hate.*",  # alternatives are tried one at a time
        r"\bf+u+c+k+(ing|er)?\b",  # repeats of single characters are not open-ended broad ones
        "h[a4@]+t[e3]+d",
    ],
)
def test_a_regex_with_one_open_ended_repetition_per_path_is_allowed(pattern):
    assert validate_entry("regex", pattern) == BlockEntry("regex", pattern)


def test_a_bounded_rewrite_of_a_refused_regex_still_matches():
    blocklist = regexes("kill.{0,50}your.{0,50}self")
    assert blocklist.match("I'd kill for your cake myself") is not None
    assert blocklist.match("killyour" * 750) is None  # the crafted prompt that took seconds unbounded


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
    with pytest.raises(BlocklistError, match="itself repeats"):
        Blocklist([BlockEntry("regex", "(a+)+")])


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


def test_the_module_imports_only_the_standard_library():
    tree = ast.parse(Path(bot.blocklist.__file__).read_text(encoding="utf-8"))
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert "discord" not in imported
    assert imported <= sys.stdlib_module_names


def test_a_stored_entry_that_no_longer_validates_is_skipped_not_fatal():
    from bot.guild_settings import GuildSettings

    stored = GuildSettings(blocklist=(BlockEntry("regex", "(a+)+"), BlockEntry("word", "hate")))
    assert (stored.compiled_blocklist.match("I hate it"), stored.compiled_blocklist.match("aaaa")) == (
        BlockEntry("word", "hate"),
        None,
    )
