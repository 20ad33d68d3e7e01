"""The shared text helpers: every message that counts, shortens, sizes or dates something uses these."""

from __future__ import annotations

import pytest

from bot.text import byte_size, clip, limit_size, plural, relative_time


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 bytes"), (999, "999 bytes"), (1000, "1.0 kB"), (87_249, "87.2 kB"), (12_345_678, "12.3 MB")],
)
def test_byte_size_uses_decimal_units(n, text):
    assert byte_size(n) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 images"), (1, "1 image"), (2, "2 images"), (15, "15 images")],
)
def test_plural_adds_an_s_to_every_count_but_one(count, text):
    assert plural(count, "image") == text


def test_plural_takes_an_irregular_plural():
    assert (plural(1, "entry", "entries"), plural(3, "entry", "entries")) == ("1 entry", "3 entries")


@pytest.mark.parametrize(
    ("text", "limit", "clipped"),
    [("a red fox", 9, "a red fox"), ("a red fox", 8, "a red f…"), ("a red fox", 1, "…")],
)
def test_clip_keeps_text_within_the_limit_and_marks_a_cut(text, limit, clipped):
    assert (clip(text, limit), len(clip(text, limit)) <= limit) == (clipped, True)


def test_relative_time_is_discords_ticking_timestamp_in_whole_seconds():
    assert relative_time(1_700_000_123.9) == "<t:1700000123:R>"


def test_a_limit_set_in_binary_units_reads_as_the_number_it_was_set_to():
    assert [limit_size(50 * 1024 * 1024), limit_size(64 * 1024), limit_size(512)] == [
        "50 MB",
        "64 KB",
        "512 bytes",
    ]
