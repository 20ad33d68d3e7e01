"""`python -m bench.blocklist`: the worst time one prompt takes to check against a full blocklist.

Each regular expression of :data:`ADVERSARIAL_PATTERNS` (classic ReDoS shapes: nested and
overlapping repeats, polynomial ``.*a.*a``, counted repeats, back-references …) is tried as an
admin would add it. A refused one is counted and skipped; an accepted one joins 199 ordinary
entries (:func:`filler_entries`) to make a full 200-entry list, and every adversarial prompt
of at most 1000 characters built for it (:func:`adversarial_prompts`: long runs of the
pattern's own letters ending in a mismatch, pairs, spaced and dotted runs, look-alikes) goes
through the real :meth:`bot.blocklist.Blocklist.match`. Each prompt is timed three times and
its best time kept (noise on a shared machine only adds); the report gives the worst prompt,
the pattern responsible, and the same for 6000-character prompts. See bench/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
import time
from collections.abc import Iterator
from typing import TypedDict

from bot.blocklist import MAX_ENTRIES, MAX_PROMPT_CHARS, BlockEntry, Blocklist, BlocklistError, validate_entry

#: Worst single-prompt check time allowed for prompts of up to 1000 characters (seconds).
TARGET_SECONDS = 0.001
PROMPT_CHARS = 1000

#: Patterns that make a backtracking engine take seconds or forever, and natural admin
#: patterns a heuristic validator used to refuse.
ADVERSARIAL_PATTERNS: tuple[str, ...] = (
    # Measured to keep the old matcher busy for more than 100 ms, most for more than 5 s.
    r"(a|a)+$",
    r"(a|aa)+$",
    r"o+o+x",
    r"\w+o+x",
    r".{0,100}a.{0,100}b.{0,100}c",
    r"(a?){25}a{25}",
    r"(a+)(a+)\1b",
    # Nested quantifiers.
    r"(a+)+$",
    r"(a+)+b",
    r"(a*)*b",
    r"(x+x+)+y",
    r"(\w+\s?)+$",
    r"^(([a-z])+.)+[A-Z]([a-z])+$",
    r"(.*)*x",
    r"(\d+)*x",
    r"([a-zA-Z]+)*x",
    r"(a+){10}y",
    r"((ab)*)+c",
    r"(a*b?)*c",
    r"([ab]*a)*c",
    r"(?:a{1,10}){1,10}x",
    r"^(\w+)*@",
    r"(x+)+y\s*",
    r"^([a-zA-Z0-9])(([\-.]|[_]+)?([a-zA-Z0-9]+))*(@){1}[a-z0-9]+[.]{1}(([a-z]{2,3})|([a-z]{2,3}[.]{1}[a-z]{2,3}))$",
    # Overlapping alternations.
    r"(a|b|ab)*c",
    r"(a|a?)+b",
    r"(ab|a)*c",
    r"(a|ab)*c",
    r"(\d+|\d+a)*x",
    r"(a|aa|aaa)+x",
    r"(a{2}|a{3})+x",
    r"(a|a{2}){2,}$",
    r"(.|\n)*x",
    r"(\.|[^.])+x",
    r"(?:[a-z]|\w)+!",
    r"(hate|h4te|hat)+\s*(hate)+x",
    # Polynomial: several open-ended repeats over the same letters.
    r".*a.*a.*a.*a.*x",
    r".*.*.*=.*",
    r"kill.*your.*self",
    r"[a-z]*kill[a-z]*self",
    r"\w+\w+x",
    r"\w*\w*\w*x",
    r"[a-z]+[a-z]+[a-z]+!",
    r"a*a*a*a*a*a*x",
    r"\d*\d*\d*\d*x",
    r"[\s\S]*[\s\S]*x",
    r"\s*\s*\s*x",
    r"(\w|\d)+\s+\w+x",
    # Counted repetitions.
    r"a{1,30}a{1,30}a{1,30}x",
    r"(a?){30}a{30}",
    r"(.{0,100}a){5}x",
    r"a{0,1000}a{0,1000}x",
    r"(.{0,200}){5}x",
    r"(a{1,1000}){1,1000}",
    r"\pL{1000}",
    r"[a-z]{1000}",
    # Constructs only backtracking engines have.
    r"(?=a)(a+)+b",
    r"(?<=a)b+",
    r"(?<!a)b+",
    r"(?!a)\w+",
    r"a++b",
    r"(?>a+)+b",
    r"(\w)\1+x",
    r"(?P<c>a)(?P=c)+x",
    r"(a)?(?(1)b|c)",
    # Natural patterns.
    r"\bkill\s*(yo)?u?r?\s*self\b",
    r"(kill|murder)\s+(your|ur)\s*self",
    r"\bf+u+c+k+(ing|er)?\b",
    r"h[a4@]+t[e3]+d",
    r"n+[i1!]+g+[e3]+r+",
    r"\b\d{3}-\d{4}\b",
)

_ESCAPE = re.compile(r"\\.")


def filler_entries(count: int = MAX_ENTRIES - 1) -> list[BlockEntry]:
    """``count`` ordinary entries, three words for each regex, like a busy server's list."""
    entries = []
    for i in range(count):
        if i % 4 == 3:
            entries.append(validate_entry("regex", rf"\b(kill|murder)\s+(your|ur)\s*self{i}\b"))
        elif i % 4 == 2:
            entries.append(validate_entry("word", f"bad phrase {i}"))
        else:
            entries.append(validate_entry("word", f"blocked{i}"))
    return entries


def adversarial_prompts(pattern: str, length: int = PROMPT_CHARS) -> Iterator[tuple[str, str]]:
    """(description, prompt) pairs of at most ``length`` characters built for ``pattern``."""
    letters = sorted({c for c in _ESCAPE.sub("", pattern) if c.isalnum()} | {"a", "x"})
    for c in letters:
        yield f"{c!r} x {length}", c * length
        yield f"{c!r} x {length - 1} + '!'", c * (length - 1) + "!"
        yield f"'{c} ' x {length // 2}", f"{c} " * (length // 2)
        yield f"'{c}.' x {length // 2}", f"{c}." * (length // 2)
        yield f"'{c}{c}{c}_' x {length // 4}", f"{c}{c}{c}_" * (length // 4)
    for first, second in itertools.pairwise(letters):
        yield f"'{first}{second}' x {length // 2}", f"{first}{second}" * (length // 2)
    for text in ("killyour", "kill your ", "h a t e ", "ʜᴀᴛᴇ", "ħ", "h\u200ba", "hаte ", "a\n", "\t", " "):
        yield f"{text!r} repeated", (text * length)[:length]


def _best_of(blocklist: Blocklist, prompt: str, locale: str | None, runs: int = 5) -> float:
    """The best of up to ``runs`` timings; a first one far below the target is not repeated."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        blocklist.match(prompt, locale)
        best = min(best, time.perf_counter() - started)
        if best < TARGET_SECONDS / 4:
            break
    return best


class BlocklistRun(TypedDict):
    """What one run found: pattern counts, the median check and the five worst checks."""

    accepted: int
    refused: int
    prompts: int
    median_seconds: float
    worst: list[tuple[float, str, str, str]]  # (seconds, pattern, prompt description, locale)


def run(length: int = PROMPT_CHARS) -> BlocklistRun:
    """Check every accepted pattern's prompts: counts, the median, and the five worst checks."""
    fillers = filler_entries()
    timings: list[tuple[float, str, str, str]] = []
    accepted = refused = 0
    for pattern in ADVERSARIAL_PATTERNS:
        try:
            entry = validate_entry("regex", pattern)
        except BlocklistError:
            refused += 1
            continue
        accepted += 1
        # The tested pattern last, so every entry before it is searched too.
        blocklist = Blocklist([*fillers, entry])
        for description, prompt in adversarial_prompts(pattern, length):
            for locale in (None, "ru"):
                blocklist.match(prompt, locale)  # the first check of a list compiles its words
                seconds = _best_of(blocklist, prompt, locale)
                timings.append((seconds, pattern, description, locale or "none"))
    timings.sort(reverse=True)
    return {
        "accepted": accepted,
        "refused": refused,
        "prompts": len(timings),
        "median_seconds": timings[len(timings) // 2][0],
        "worst": timings[:5],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.blocklist", description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=PROMPT_CHARS, help="prompt length for the judged run")
    args = parser.parse_args(argv)
    print(f"{len(ADVERSARIAL_PATTERNS)} adversarial patterns, each in a {MAX_ENTRIES}-entry blocklist")
    for length, judged in ((args.chars, True), (MAX_PROMPT_CHARS, False)):
        result = run(length)
        worst = result["worst"]
        verdict = "PASS" if worst[0][0] <= TARGET_SECONDS else "FAIL"
        print(
            f"\nprompts of ≤ {length} chars: {result['accepted']} patterns accepted, "
            f"{result['refused']} refused, "
            f"{result['prompts']} prompt checks, median {result['median_seconds'] * 1000:.3f} ms"
            + (f"; worst ≤ {TARGET_SECONDS * 1000:.0f} ms: {verdict}" if judged else "")
        )
        for seconds, pattern, description, locale in worst:
            print(f"  {seconds * 1000:7.3f} ms  pattern {pattern!r}  prompt {description}  locale {locale}")
        if judged and verdict == "FAIL":
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
