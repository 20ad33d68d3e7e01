"""A member's defaults: validated against the catalog when set, applied to new requests within a
server's rules, stored per member (SQLite, and PostgreSQL when TEST_DATABASE_URL is set)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest
import sqlalchemy as sa

from bot.catalog import builtin_catalog
from bot.guild_settings import GuildSettings
from bot.jobs.request import RequestOptions
from bot.preferences import (
    NO_PREFERENCES,
    MemberPreferences,
    PreferenceError,
    PreferencesStore,
    change_preferences,
    fill,
    spoiler_wanted,
)
from bot.references import ReferenceSource
from bot.schema import member_preferences_table
from bot.store import Store
from tests.core.older_databases import as_before, asked, reopened

CATALOG = builtin_catalog()
DEFAULT_MODEL = "doubao-seedream-5-0"
PICTURE = ReferenceSource(
    filename="fox.png",
    url="https://cdn.example/fox.png",
    content_type="image/png",
    size=1,
    width=64,
    height=64,
)


def change(current: MemberPreferences = NO_PREFERENCES, reset: str | None = None, **changes: Any):
    """The preferences changed, and their notes in English."""
    prefs, notes = change_preferences(
        current, CATALOG, default_model=DEFAULT_MODEL, changes=changes, reset=reset
    )
    return prefs, [str(note) for note in notes]


def english(text: Any) -> str | None:
    """A text as an English reader sees it (None stays None)."""
    return None if text is None else str(text)


def filled(prefs: MemberPreferences, settings: GuildSettings | None = None, **asked: Any):
    options = RequestOptions(prompt="a fox", **asked)
    return fill(options, prefs, CATALOG, default_model=DEFAULT_MODEL, settings=settings)


# --------------------------------------------------------------------------- setting


def test_values_are_checked_against_the_bots_default_model_when_no_model_is_chosen():
    with pytest.raises(PreferenceError) as refused:
        change(resolution="1K")
    assert str(refused.value) == (
        "Seedream 5.0 does not offer resolution `1K`. Choose one of: `2K`, `3K`, "
        "or first set a `model` that has it."
    )


def test_values_are_checked_against_the_model_set_with_them():
    prefs, notes = change(model="Seedream 4.0", resolution="1K", speed="fast", ratio="auto")
    assert (prefs, notes) == (
        MemberPreferences(model="doubao-seedream-4-0", ratio="auto", resolution="1K", speed="fast"),
        [],
    )


def test_an_unknown_model_names_the_models_there_are():
    with pytest.raises(PreferenceError, match=r"^Unknown model `nope`\. Choose one of: `Seedream 4\.0`"):
        change(model="nope")


def test_a_speed_on_a_model_without_speeds_is_refused():
    with pytest.raises(PreferenceError, match=r"^Seedream 5\.0 has no speed option\. Leave `speed` empty"):
        change(speed="fast")


def test_auto_ratio_needs_a_model_that_has_it():
    with pytest.raises(PreferenceError, match=r"^Seedream 5\.0 has no `auto` ratio\. Choose one of: `1:1`"):
        change(ratio="auto")


def test_reset_clears_before_setting():
    start, _ = change(n=3, ratio="16:9", spoiler=True)
    one, _ = change(start, reset="n", ratio="4:3")
    everything, _ = change(start, reset="everything")
    assert (one, everything) == (MemberPreferences(ratio="4:3", spoiler=True), NO_PREFERENCES)


def test_a_stored_value_from_an_older_catalog_is_cleared_when_it_no_longer_fits():
    stored = MemberPreferences(model="doubao-seedream-5-0-pro", n=12)  # set when the model took 15
    prefs, notes = change(stored, spoiler=True)
    assert (prefs.n, notes) == (
        None,
        ["Your default n `12` was cleared: Seedream 5.0 Pro makes 1 to 10 images per request."],
    )


def test_json_keeps_every_value_and_ignores_keys_from_a_newer_version():
    prefs = MemberPreferences(model="m", ratio="16:9", resolution="2K", n=3, speed="fast", spoiler=True)
    newer = prefs.to_json().replace('"version": 1', '"version": 2, "colour": "blue"')
    assert MemberPreferences.from_json(newer) == prefs


# --------------------------------------------------------------------------- filling a request


def test_only_what_the_member_left_out_is_filled():
    prefs = MemberPreferences(model="doubao-seedream-4-0", ratio="16:9", n=4, speed="fast", resolution="4K")
    result = filled(prefs, ratio="1:1", n=2)
    assert (result.options.model_id, result.options.ratio, result.options.n, result.options.speed) == (
        "doubao-seedream-4-0",
        "1:1",
        2,
        "fast",
    )
    assert (result.options.resolution, english(result.note)) == ("4K", None)


def test_defaults_the_chosen_model_cannot_take_are_skipped_with_a_note():
    prefs = MemberPreferences(model="doubao-seedream-4-0", resolution="4K", ratio="auto")
    result = filled(prefs, model_id="doubao-seedream-5-0-pro", references=(PICTURE,))
    assert (result.options.resolution, result.options.ratio) == (None, None)
    assert tuple(map(str, result.skipped)) == (
        "ratio `auto` (Seedream 5.0 Pro has no `auto` ratio)",
        "resolution `4K` (Seedream 5.0 Pro does not offer resolution `4K`)",
    )


def test_options_a_model_does_not_have_at_all_are_left_out_silently():
    prefs = MemberPreferences(model="doubao-seedream-4-0", speed="fast")
    result = filled(prefs, model_id="doubao-seedream-5-0")
    assert (result.options.speed, english(result.note)) == (None, None)


def test_auto_without_a_reference_image_falls_back_silently():
    prefs = MemberPreferences(model="doubao-seedream-4-0", ratio="auto")
    without, with_one = filled(prefs), filled(prefs, references=(PICTURE,))
    assert (without.options.ratio, english(without.note), with_one.options.ratio) == (None, None, "auto")


def test_server_rules_skip_defaults_and_say_why():
    settings = GuildSettings(
        allowed_models=("doubao-seedream-5-0",),
        allowed_resolutions=("2K",),
        max_n=2,
        allowed_speeds=("standard",),
    )
    prefs = MemberPreferences(model="doubao-seedream-4-5", resolution="3K", n=4)
    result = filled(prefs, settings)
    assert (result.options.model_id, result.options.resolution, result.options.n) == (None, None, None)
    assert english(result.note) == (
        "Not used from your /imagine-settings: model Seedream 4.5 (this server allows only "
        "`doubao-seedream-5-0`); resolution `3K` (this server allows only `2K`); 4 images "
        "(this server allows at most 2 images per request). Change them with `/imagine-settings`."
    )


def test_images_plus_references_stay_within_fifteen():
    prefs = MemberPreferences(n=14)
    result = filled(prefs, references=(PICTURE, PICTURE))
    assert (result.options.n, tuple(map(str, result.skipped))) == (
        None,
        ("14 images (with 2 reference images, at most 13)",),
    )


def test_a_model_removed_from_the_catalog_is_skipped_with_a_note():
    result = filled(MemberPreferences(model="doubao-seedream-3-0"))
    assert (result.options.model_id, tuple(map(str, result.skipped))) == (
        None,
        ("model `doubao-seedream-3-0` (no longer offered)",),
    )


@pytest.mark.parametrize(
    ("server", "member", "asked", "expected"),
    [
        (False, False, False, False),
        (True, False, False, True),
        (False, True, False, True),
        (False, False, True, True),
    ],
)
def test_spoiler_from_the_server_the_member_or_the_job_repeated(server, member, asked, expected):
    settings = GuildSettings(spoiler=server)
    assert spoiler_wanted(settings, MemberPreferences(spoiler=member), asked=asked) is expected


# --------------------------------------------------------------------------- storing


async def test_preferences_are_stored_per_member_and_read_by_a_new_store(store: Store):
    await PreferencesStore(store).update(1, lambda _: MemberPreferences(n=3, spoiler=True))
    fresh = PreferencesStore(store)
    assert (await fresh.get(1), await fresh.get(2)) == (MemberPreferences(n=3, spoiler=True), NO_PREFERENCES)


async def test_resetting_everything_leaves_no_row(store: Store):
    prefs = PreferencesStore(store)
    await prefs.update(1, lambda _: MemberPreferences(n=3))
    await prefs.update(1, lambda _: NO_PREFERENCES)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(sa.func.count()).select_from(member_preferences_table))).scalar()
    assert rows == 0


async def test_a_refused_change_writes_nothing(store: Store):
    prefs = PreferencesStore(store)
    await prefs.update(1, lambda _: MemberPreferences(n=3))

    def bad(_: MemberPreferences) -> MemberPreferences:
        raise PreferenceError("no")

    with pytest.raises(PreferenceError):
        await prefs.update(1, bad)
    assert await PreferencesStore(store).get(1) == MemberPreferences(n=3)


async def test_requests_arriving_together_are_read_in_one_query(store: Store):
    for user in range(1, 4):
        await PreferencesStore(store).update(
            user, functools.partial(lambda n, _: MemberPreferences(n=n), user)
        )
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        if "member_preferences" in statement:
            statements.append(statement)

    sync_engine = store.engine.sync_engine
    sa.event.listen(sync_engine, "before_cursor_execute", count)
    try:
        got = await asyncio.gather(*(PreferencesStore(store).get(u) for u in range(1, 4)))
        shared = PreferencesStore(store)
        together = await asyncio.gather(*(shared.get(u) for u in (1, 2, 3, 9)))
    finally:
        sa.event.remove(sync_engine, "before_cursor_execute", count)
    assert [p.n for p in got] == [1, 2, 3]
    assert ([p.n for p in together], len(statements)) == ([1, 2, 3, None], 3 + 1)


async def test_a_failed_read_reaches_every_waiting_request_and_the_next_read_tries_again(store: Store):
    prefs = PreferencesStore(store)
    await prefs.update(1, lambda _: MemberPreferences(n=3))
    reader = PreferencesStore(store)
    async with store.engine.begin() as conn:
        await conn.execute(sa.text("ALTER TABLE member_preferences RENAME TO gone"))
    results = await asyncio.gather(reader.get(1), reader.get(2), return_exceptions=True)
    async with store.engine.begin() as conn:
        await conn.execute(sa.text("ALTER TABLE gone RENAME TO member_preferences"))
    assert ([isinstance(r, sa.exc.DBAPIError) for r in results], await reader.get(1)) == (
        [True, True],
        MemberPreferences(n=3),
    )


async def test_a_database_from_before_preferences_gets_the_table_and_its_jobs_are_not_spoilers(
    store, database_url
):
    from bot.jobs.records import JobStore
    from bot.schema import MIGRATIONS, _m009_member_preferences_and_spoilers

    job = await JobStore(store).create(asked())
    await as_before(
        store, _m009_member_preferences_and_spoilers, columns=("spoiler",), tables=("member_preferences",)
    )
    async with reopened(database_url) as again:
        assert await again.migrate() == len(MIGRATIONS)
        migrated = await JobStore(again).get(job.id)
        await PreferencesStore(again).update(3, lambda _: MemberPreferences(spoiler=True))
        fresh = await JobStore(again).create(asked(spoiler=True))
        stored = (await JobStore(again).get(fresh.id), await PreferencesStore(again).get(3))
    assert migrated is not None and stored[0] is not None
    assert (migrated.spoiler, stored[0].spoiler, stored[1]) == (False, True, MemberPreferences(spoiler=True))
