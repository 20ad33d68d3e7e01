"""A member's own defaults for /imagine (`/imagine-settings`): stored, validated, and applied.

Preferences belong to the member, not to a server: a member's taste follows them from server
to server, and each server's rules still decide what is allowed there. So they are applied in
two steps:

- `change_preferences` validates what a member sets against the model catalog (the model the
  preferences would draw with: their own default model, else the bot's), and says exactly
  what to change when a value does not fit;
- `fill` completes a *new* request's options the member left out, skipping (with a note saying
  which and why) any default the model or the server does not allow. Whatever the member typed
  is never touched: an explicit option the server forbids is refused by `bot.policy` as always.
  A reroll asks for the job's own options again, so only what that job left open is filled.

`spoiler_wanted` decides whether a job's images are posted as spoilers: the member's wish, the
server's `/imagine-admin spoiler`, or a reroll of a spoilered result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bot import i18n
from bot.catalog import AUTO_RATIO, MAX_TOTAL_IMAGES, Catalog, ModelSpec
from bot.guild_settings import GuildSettings
from bot.i18n import Readable, Text, TextError, _, _n, _p, join
from bot.jobs.request import RequestOptions
from bot.schema import member_preferences_table
from bot.store import Store

log = logging.getLogger(__name__)

PREFERENCES_VERSION = 1
# Several processes may share one database: a cached copy is trusted this long (seconds).
CACHE_SECONDS = 5.0
# Most members read in one query when many requests arrive at once.
BATCH_SIZE = 500

# What `/imagine-settings reset:` can clear, in the order settings are listed.
FIELDS: tuple[str, ...] = ("model", "ratio", "resolution", "n", "speed", "spoiler")
EVERYTHING = "everything"


@dataclass(frozen=True)
class MemberPreferences:
    """A member's defaults. None (and `spoiler=False`) means "the bot's own default"."""

    model: str | None = None  # a model id of the catalog
    ratio: str | None = None
    resolution: str | None = None
    n: int | None = None
    speed: str | None = None
    spoiler: bool = False  # post my images as spoilers

    @property
    def is_empty(self) -> bool:
        return self == NO_PREFERENCES

    def to_json(self) -> str:
        return json.dumps({"version": PREFERENCES_VERSION, **dataclasses.asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MemberPreferences:
        """Decode stored preferences; unknown keys (from a newer version) are ignored."""
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in known})


NO_PREFERENCES = MemberPreferences()


class PreferenceError(TextError):
    """A value a member tried to set does not fit; `text` says what to change."""


def _listing(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"`{v}`" for v in values)


def _model_of(prefs: MemberPreferences, catalog: Catalog, default_model: str) -> ModelSpec | None:
    """The model the preferences draw with when a request names none."""
    return catalog.find(prefs.model or default_model)


def _problem(spec: ModelSpec, field: str, value: Any) -> Text | None:
    """Why `spec` cannot take `value` for `field` (None if it can), as a clause without a full stop."""
    name = spec.display_name
    if field == "ratio":
        if value == AUTO_RATIO:
            return None if spec.supports_auto else _("{model} has no `auto` ratio", model=name)
        if value in spec.ratios:
            return None
        return _("{model} does not support the ratio `{ratio}`", model=name, ratio=value)
    if field == "resolution":
        if not spec.resolutions:
            return _("{model} has no resolution option", model=name)
        if value in spec.resolutions:
            return None
        return _("{model} does not offer resolution `{resolution}`", model=name, resolution=value)
    if field == "speed":
        if not spec.speed_modes:
            return _("{model} has no speed option", model=name)
        if value in spec.speed_modes:
            return None
        return _("{model} does not offer speed `{speed}`", model=name, speed=value)
    if field == "n":
        most = min(spec.max_images, MAX_TOTAL_IMAGES)
        return (
            None
            if 1 <= value <= most
            else _("{model} makes 1 to {most} images per request", model=name, most=most)
        )
    return None


def _choices(spec: ModelSpec, field: str, *, or_set_model: bool) -> Text:
    """What `spec` offers for `field`, as a sentence; with `or_set_model`, ending in the advice to
    first set a model that has it (one whole sentence each, for translators)."""
    offered = {
        "ratio": spec.ratios + ((AUTO_RATIO,) if spec.supports_auto else ()),
        "resolution": spec.resolutions,
        "speed": spec.speed_modes,
    }.get(field)
    if offered:
        if or_set_model:
            return _(
                "Choose one of: {choices}, or first set a `model` that has it.", choices=_listing(offered)
            )
        return _("Choose one of: {choices}.", choices=_listing(offered))
    if field == "n":
        most = min(spec.max_images, MAX_TOTAL_IMAGES)
        if or_set_model:
            return _("Choose 1 to {most}, or first set a `model` that has it.", most=most)
        return _("Choose 1 to {most}.", most=most)
    if or_set_model:
        return _(
            "Leave `{option}` empty, or first set a `model` that has it.", option=i18n.option_name(field)
        )
    return _("Leave `{option}` empty.", option=i18n.option_name(field))


def _cleared(field: str, value: Any, problem: Text) -> Text:
    """The note that a stored default no longer fits the chosen model and was cleared."""
    return {
        "ratio": _("Your default ratio `{value}` was cleared: {reason}.", value=value, reason=problem),
        "resolution": _(
            "Your default resolution `{value}` was cleared: {reason}.", value=value, reason=problem
        ),
        "n": _("Your default n `{value}` was cleared: {reason}.", value=value, reason=problem),
        "speed": _("Your default speed `{value}` was cleared: {reason}.", value=value, reason=problem),
    }[field]


def change_preferences(
    current: MemberPreferences,
    catalog: Catalog,
    *,
    default_model: str,
    changes: dict[str, Any],
    reset: str | None = None,
) -> tuple[MemberPreferences, list[Text]]:
    """`current` with `reset` cleared (a field, or `everything`) and then `changes` set.

    Every value is checked against the model the preferences draw with (the member's default
    model, else the bot's): `PreferenceError` says what to change, and nothing is stored. A
    stored default the newly chosen model cannot take is cleared, and the returned notes say so.
    """
    if reset is not None and reset != EVERYTHING and reset not in FIELDS:
        raise PreferenceError(
            _(
                "`{reset}` is not a setting. Reset one of: {settings}, or `{everything}`.",
                reset=reset,
                settings=i18n.join([i18n.code(i18n.choice_name(field)) for field in FIELDS], ", "),
                everything=i18n.choice_name(EVERYTHING),
            )
        )
    new = NO_PREFERENCES if reset == EVERYTHING else current
    if reset in FIELDS:
        new = dataclasses.replace(new, **{reset: getattr(NO_PREFERENCES, reset)})
    notes: list[Text] = []
    if "model" in changes:
        spec = catalog.find(str(changes["model"]))
        if spec is None:
            names = [m.display_name for m in catalog]
            raise PreferenceError(
                _(
                    "Unknown model `{model}`. Choose one of: {models}.",
                    model=changes["model"],
                    models=_listing(names),
                )
            )
        new = dataclasses.replace(new, model=spec.id)
    spec = _model_of(new, catalog, default_model)
    if spec is None:  # the bot's default model always exists; a stored one may have been removed
        raise PreferenceError(_("Your default model is no longer offered. Choose another `model`."))
    for field in ("ratio", "resolution", "n", "speed"):
        if field in changes:
            problem = _problem(spec, field, changes[field])
            if problem is not None:
                advice = _choices(spec, field, or_set_model="model" not in changes)
                # Translators: a default refused: why it does not fit, then what to choose instead.
                raise PreferenceError(_("{problem}. {advice}", problem=problem, advice=advice))
            new = dataclasses.replace(new, **{field: changes[field]})
        elif (value := getattr(new, field)) is not None and (problem := _problem(spec, field, value)):
            # A model change (values are checked when set) or a changed catalog: drop what no longer fits.
            cleared: dict[str, Any] = {field: None}
            new = dataclasses.replace(new, **cleared)
            notes.append(_cleared(field, value, problem))
    if "spoiler" in changes:
        new = dataclasses.replace(new, spoiler=bool(changes["spoiler"]))
    return new, notes


def preferences_text(prefs: MemberPreferences, catalog: Catalog, *, default_model: str) -> Text:
    """The member's defaults, one line each (what `/imagine-settings` answers with)."""
    default_spec = catalog.find(default_model)
    bot_model = default_spec.display_name if default_spec else default_model
    model: Readable
    if prefs.model is None:
        model = _("the bot's default ({model})", model=bot_model)
    else:
        spec = catalog.find(prefs.model)
        model = spec.display_name if spec else _("`{model}` (no longer offered)", model=prefs.model)

    def value(field: str, bot_default: Text) -> Readable:
        chosen = getattr(prefs, field)
        return f"`{chosen}`" if chosen is not None else bot_default

    model_default = _("the model's default")
    # (Texts in their own variables: Babel's extractor skips a text nested in a call inside another's.)
    default_ratio = _("the bot default (1:1)")
    default_n = _("the bot default (1)")
    # Translators: the state of the "spoiler my images" setting.
    spoiler = _p("setting", "on") if prefs.spoiler else _p("setting", "off")
    return _(
        "**Your /imagine defaults** (everywhere you use the bot; a server's rules still apply)\n"
        "**Model:** {model}\n"
        "**Ratio:** {ratio}\n"
        "**Resolution:** {resolution}\n"
        "**Images (n):** {n}\n"
        "**Speed:** {speed}\n"
        "**Spoiler my images:** {spoiler}",
        model=model,
        ratio=value("ratio", default_ratio),
        resolution=value("resolution", model_default),
        n=value("n", default_n),
        speed=value("speed", model_default),
        spoiler=spoiler,
    )


@dataclass(frozen=True)
class Filled:
    """A request's options completed from the member's defaults, and the defaults that were skipped."""

    options: RequestOptions
    spoiler: bool = False  # post the images as spoilers (`spoiler_wanted`)
    skipped: tuple[Text, ...] = ()  # one phrase per skipped default: "model Seedream 4.5 (why)"

    @property
    def note(self) -> Text | None:
        """The short private note for the member, or None when every default was used."""
        if not self.skipped:
            return None
        return _(
            "Not used from your /imagine-settings: {skipped}. Change them with `/imagine-settings`.",
            skipped=join(self.skipped, "; "),
        )


def _server_forbids(settings: GuildSettings | None, field: str, value: Any) -> Text | None:
    """Why the server's rules (as `bot.policy.check` applies them) forbid `value`; None if not."""
    if settings is None:
        return None
    if field == "model" and settings.allowed_models and value not in settings.allowed_models:
        return _("this server allows only {allowed}", allowed=_listing(settings.allowed_models))
    if field == "resolution" and settings.allowed_resolutions and value not in settings.allowed_resolutions:
        return _("this server allows only {allowed}", allowed=_listing(settings.allowed_resolutions))
    if field == "speed" and settings.allowed_speeds and value not in settings.allowed_speeds:
        return _("this server allows only {allowed}", allowed=_listing(settings.allowed_speeds))
    if field == "n" and settings.max_n is not None and value > settings.max_n:
        return _n(
            "this server allows at most {count} image per request",
            "this server allows at most {count} images per request",
            settings.max_n,
        )
    return None


def fill(
    options: RequestOptions,
    prefs: MemberPreferences,
    catalog: Catalog,
    *,
    default_model: str,
    settings: GuildSettings | None,
) -> Filled:
    """`options` with what the member left out (None) taken from `prefs`, where the model and the
    server (`settings`; None in direct messages) allow it.

    A default that cannot apply is skipped and named in the note, except where the model has no
    such option at all (a speed on a model without speeds) or `auto` without a reference image:
    those simply do not apply, and saying so on every request would be noise.
    """
    spoiler = spoiler_wanted(settings, prefs, asked=options.spoiler)
    if prefs.is_empty:
        return Filled(options, spoiler)
    skipped: list[Text] = []
    changes: dict[str, Any] = {}
    if options.model_id is None and prefs.model is not None:
        spec = catalog.find(prefs.model)
        if spec is None:
            skipped.append(_("model `{model}` (no longer offered)", model=prefs.model))
        elif why := _server_forbids(settings, "model", spec.id):
            skipped.append(_("model {model} ({reason})", model=spec.display_name, reason=why))
        else:
            changes["model_id"] = spec.id
    spec = catalog.find(changes.get("model_id") or options.model_id or default_model)
    if spec is None:  # an unknown model the member typed: `build_request` says so
        return Filled(options, spoiler, tuple(skipped))
    references = len(options.references) + len(options.hosted_references)

    if options.ratio is None and prefs.ratio is not None:
        if prefs.ratio == AUTO_RATIO and spec.supports_auto and not references:
            pass  # `auto` matches a reference image; without one the usual default applies
        elif problem := _problem(spec, "ratio", prefs.ratio):
            skipped.append(_("ratio `{value}` ({reason})", value=prefs.ratio, reason=problem))
        else:
            changes["ratio"] = prefs.ratio
    for field in ("resolution", "speed"):
        value = getattr(prefs, field)
        if getattr(options, field) is not None or value is None:
            continue
        offered = spec.resolutions if field == "resolution" else spec.speed_modes
        if not offered:
            continue  # the model has no such option at all
        if problem := _problem(spec, field, value) or _server_forbids(settings, field, value):
            skipped.append(
                _("resolution `{value}` ({reason})", value=value, reason=problem)
                if field == "resolution"
                else _("speed `{value}` ({reason})", value=value, reason=problem)
            )
        else:
            changes[field] = value
    if options.n is None and prefs.n is not None:
        if problem := _problem(spec, "n", prefs.n) or _server_forbids(settings, "n", prefs.n):
            skipped.append(
                _n("{count} image ({reason})", "{count} images ({reason})", prefs.n, reason=problem)
            )
        elif prefs.n + references > MAX_TOTAL_IMAGES:
            skipped.append(
                _n(
                    "{count} image (with {references}, at most {most})",
                    "{count} images (with {references}, at most {most})",
                    prefs.n,
                    references=_n("{count} reference image", "{count} reference images", references),
                    most=MAX_TOTAL_IMAGES - references,
                )
            )
        else:
            changes["n"] = prefs.n
    return Filled(dataclasses.replace(options, **changes), spoiler, tuple(skipped))


def spoiler_wanted(settings: GuildSettings | None, prefs: MemberPreferences, *, asked: bool) -> bool:
    """Whether a job's images are posted as spoilers: asked for (a reroll of a spoilered result),
    the member's own wish, or every result in this server."""
    return asked or prefs.spoiler or (settings is not None and settings.spoiler)


class PreferencesStore:
    """Reads and writes members' preferences, with a short-lived cache invalidated on write.

    Requests that arrive together are read in one query (a burst of /imagine must not cost a
    query each); a member who set nothing is cached as such.
    """

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._engine = store.engine
        self._clock = clock
        self._cache: dict[int, tuple[float, MemberPreferences]] = {}
        self._waiting: dict[int, asyncio.Future[MemberPreferences]] = {}  # not yet asked of the database
        self._loading: dict[int, asyncio.Future[MemberPreferences]] = {}  # being read now
        self._batch: asyncio.Task[None] | None = None
        self._writes: dict[int, int] = {}  # updates per member, so a slow read never caches stale data

    async def get(self, user_id: int) -> MemberPreferences:
        cached = self._cache.get(user_id)
        if cached is not None and self._clock() - cached[0] < CACHE_SECONDS:
            return cached[1]
        future = self._waiting.get(user_id) or self._loading.get(user_id)
        if future is None:
            future = self._waiting[user_id] = asyncio.get_running_loop().create_future()
            if self._batch is None:
                self._batch = asyncio.ensure_future(self._load_waiting())
        return await asyncio.shield(future)

    async def _load_waiting(self) -> None:
        batch: dict[int, asyncio.Future[MemberPreferences]] = {}
        try:
            await asyncio.sleep(0)  # let the requests of this moment join the batch
            self._batch = None
            batch, self._waiting = self._waiting, {}
            self._loading.update(batch)
            writes = {user_id: self._writes.get(user_id, 0) for user_id in batch}
            found = await self._read(list(batch))
        except BaseException as exc:  # a failed read (or shutdown) reaches every member waiting on it
            for future in (*batch.values(), *(() if batch else self._waiting.values())):
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                    future.exception()  # retrieved here: a caller may have stopped waiting
                else:
                    future.cancel()
            if not batch:
                self._batch, self._waiting = None, {}
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            for user_id in batch:
                self._loading.pop(user_id, None)
        now = self._clock()
        for user_id, future in batch.items():
            prefs = found.get(user_id, NO_PREFERENCES)
            if self._writes.get(user_id, 0) == writes[user_id]:  # an update meanwhile cached the newer value
                self._cache[user_id] = (now, prefs)
            if not future.done():
                future.set_result(prefs)

    async def _read(self, user_ids: list[int]) -> dict[int, MemberPreferences]:
        """The stored preferences of `user_ids` (members without a row are left out)."""
        table = member_preferences_table
        found: dict[int, MemberPreferences] = {}
        async with self._engine.connect() as conn:
            for start in range(0, len(user_ids), BATCH_SIZE):
                chunk = user_ids[start : start + BATCH_SIZE]
                rows = await conn.execute(
                    sa.select(table.c.user_id, table.c.data).where(table.c.user_id.in_(chunk))
                )
                found |= {user_id: MemberPreferences.from_json(text) for user_id, text in rows.all()}
        return found

    async def update(
        self, user_id: int, change: Callable[[MemberPreferences], MemberPreferences]
    ) -> tuple[MemberPreferences, MemberPreferences]:
        """Apply `change` to the stored preferences in one transaction; returns (before, after).

        `change` may raise (e.g. `PreferenceError`): nothing is written then.
        """
        table = member_preferences_table
        async with self._store.write() as conn:
            query = sa.select(table.c.data).where(table.c.user_id == user_id)
            text = (await conn.execute(query.with_for_update())).scalar()
            current = MemberPreferences.from_json(text) if text else NO_PREFERENCES
            new = change(current)
            if new.is_empty:
                await conn.execute(table.delete().where(table.c.user_id == user_id))
            elif text is None:
                await conn.execute(
                    table.insert().values(user_id=user_id, data=new.to_json(), updated_at=time.time())
                )
            else:
                await conn.execute(
                    table.update()
                    .where(table.c.user_id == user_id)
                    .values(data=new.to_json(), updated_at=time.time())
                )
        self._writes[user_id] = self._writes.get(user_id, 0) + 1
        self._cache[user_id] = (self._clock(), new)
        return current, new
