"""The image models the bot offers, as data.

The built-in catalog holds the Seedream models ToAPIs documents. Operators can add,
change or remove models without code changes by pointing :func:`load_catalog` at a TOML
or JSON file.

File format
-----------
A TOML file (``*.toml``) has one ``[models."<id>"]`` table per model; a JSON file
(``*.json``) has the same data as ``{"models": {"<id>": {...}}}``. The id is what the
bot sends as ``model``. Allowed keys:

=======================  ===========================  =================================
key                      type                         default for a new model
=======================  ===========================  =================================
``display_name``         string, 1–100 chars          required for a new model
``ratios``               list of ``"W:H"`` strings    the 9 documented ratios
``supports_auto``        bool                         false (``auto`` needs references)
``resolutions``          list of strings              ``[]`` (no resolution option)
``default_resolution``   string (``""`` = none)       none (provider default)
``resolution_field``     dotted path                  ``"metadata.resolution"``
``max_prompt_length``    integer 1–6000               1000
``max_reference_images`` integer 0–10                 10
``max_images``           integer 1–15                 15
``watermark_default``    bool                         false (what the provider does unasked)
``speed_modes``          list of strings              ``[]`` (no ``speed`` option)
``price_per_image``      number ≥ 0 (USD)             none (usage shows no cost for it)
``supports_layers``      bool                         false (``layer_decomposition``)
``extra_reference_billing`` bool                      false (each reference after the first is charged)
``remove``               bool                         drop a built-in model
=======================  ===========================  =================================

Giving an existing id merges the given keys over the built-in entry (it keeps its
place in the list); a new id is appended. ``remove = true`` must stand alone. Example::

    # models.toml
    [models."doubao-seedream-4-5"]
    resolutions = ["2K"]                # offer only 2K of this model

    [models."doubao-seedream-4-0"]
    remove = true

    [models."my-new-model"]
    display_name = "My New Model"
    ratios = ["1:1", "16:9", "9:16"]
    max_reference_images = 4

The same in JSON::

    {"models": {
        "doubao-seedream-4-5": {"resolutions": ["2K"]},
        "doubao-seedream-4-0": {"remove": true},
        "my-new-model": {"display_name": "My New Model", "ratios": ["1:1", "16:9", "9:16"],
                         "max_reference_images": 4}}}

Validation is strict: any problem raises :class:`CatalogError` naming the file, the
model and the problem. At most 25 models (Discord's limit on slash-command choices).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.text import UnreadableFileError, read_text_file

log = logging.getLogger(__name__)

#: The aspect ratios ToAPIs documents for every Seedream model (``size``). Documented fact.
DOCUMENTED_RATIOS: tuple[str, ...] = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9", "9:21")
#: The special ``size`` value meaning "match the reference image".
AUTO_RATIO = "auto"

#: Discord allows at most 25 choices per slash-command option.
MAX_CHOICES = 25
#: Discord limits a choice's name and value to 100 characters.
_MAX_CHOICE_TEXT = 100
#: Discord's longest string option / message is 6000 characters.
PROMPT_LENGTH_RANGE = (1, 6000)
#: ToAPIs: "image_urls ... At most 10."
REFERENCE_IMAGES_RANGE = (0, 10)
#: ToAPIs: "n: integer 1–15" and "Reference images + generated images ≤ 15": the most images one
#: request involves, references included.
MAX_TOTAL_IMAGES = 15
IMAGES_RANGE = (1, MAX_TOTAL_IMAGES)

# Top-level request fields the API client sets itself; a resolution must not clobber them.
_RESERVED_FIELDS = frozenset({"model", "prompt", "size", "n", "image_urls"})
_RATIO_RE = re.compile(r"[1-9][0-9]*:[1-9][0-9]*")
_FIELD_PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_MODEL_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*")
#: ToAPIs' prompt-optimisation modes (``metadata.optimize_prompt_options.mode``). Documented fact.
SPEED_MODES: tuple[str, ...] = ("standard", "fast")
#: The mode the provider uses when none is sent.
DEFAULT_SPEED = "standard"


@dataclass(frozen=True)
class ModelSpec:
    """One model the bot can use, and the options it accepts.

    Construction validates the values and raises ``ValueError`` with a plain-English
    message on nonsense (used by the file loader, which adds the file and model name).
    """

    id: str
    display_name: str
    ratios: tuple[str, ...] = DOCUMENTED_RATIOS
    supports_auto: bool = False
    resolutions: tuple[str, ...] = ()
    default_resolution: str | None = None
    resolution_field: str = "metadata.resolution"
    max_prompt_length: int = 1000
    max_reference_images: int = 10
    max_images: int = MAX_TOTAL_IMAGES
    # What the provider does when `metadata.watermark` is not sent: only informs Details about jobs
    # recorded before the bot said it explicitly (every submission says it now).
    watermark_default: bool = False
    # Prompt-optimisation modes the model documents (a subset of SPEED_MODES); () = no `speed` option.
    speed_modes: tuple[str, ...] = ()
    # What the operator pays per image, for the usage report's cost estimate; None = unknown.
    price_per_image: float | None = None
    # The model can return its image split into transparent layers (top-level `layer_decomposition`).
    supports_layers: bool = False
    # The first reference image is free, each further one is charged (for cost estimates).
    extra_reference_billing: bool = False

    def __post_init__(self) -> None:
        for problem in _spec_problems(self):
            raise ValueError(problem)

    def request_fields(self, resolution: str | None) -> dict[str, Any]:
        """Return the extra request-body fields that select ``resolution``.

        The value is nested along :attr:`resolution_field`, e.g.
        ``{"metadata": {"resolution": "3K"}}``. ``None`` gives ``{}`` (let the provider
        use its default). Callers must deep-merge the result into the request body.

        Raises:
            ValueError: ``resolution`` is not one this model offers.
        """
        if resolution is None:
            return {}
        if resolution not in self.resolutions:
            offered = ", ".join(self.resolutions) or "none"
            raise ValueError(f"{self.display_name} has no resolution {resolution!r} (offers: {offered})")
        *parents, leaf = self.resolution_field.split(".")
        fields: dict[str, Any] = {leaf: resolution}
        for name in reversed(parents):
            fields = {name: fields}
        return fields

    @property
    def ratio_choices(self) -> tuple[str, ...]:
        """The ratios a user may pick for this model, with ``auto`` last when supported."""
        return (*self.ratios, AUTO_RATIO) if self.supports_auto else self.ratios


def _spec_problems(spec: ModelSpec) -> Iterator[str]:
    """Yield what is wrong with ``spec`` (first problem wins)."""
    if not isinstance(spec.id, str) or not _MODEL_ID_RE.fullmatch(spec.id) or len(spec.id) > _MAX_CHOICE_TEXT:
        yield f"model id {spec.id!r} must be 1–100 letters, digits or ._:/- characters"
    if not isinstance(spec.display_name, str) or not spec.display_name.strip():
        yield "display_name must be a non-empty string"
    if spec.display_name != spec.display_name.strip():
        yield "display_name must not start or end with spaces"
    if len(spec.display_name) > _MAX_CHOICE_TEXT:
        yield f"display_name must be at most {_MAX_CHOICE_TEXT} characters"
    if not _is_str_tuple(spec.ratios):
        yield "ratios must be a tuple of strings"
    if not spec.ratios:
        yield "ratios must not be empty"
    for ratio in spec.ratios:
        if ratio == AUTO_RATIO:
            yield f'ratios must not contain "{AUTO_RATIO}"; set supports_auto = true instead'
        if not _RATIO_RE.fullmatch(ratio):
            yield f'ratio "{ratio}" is not of the form "W:H" (e.g. "16:9")'
    if len(set(spec.ratios)) != len(spec.ratios):
        yield "ratios contain duplicates"
    if len(spec.ratios) + spec.supports_auto > MAX_CHOICES:
        yield f"at most {MAX_CHOICES} ratios (including auto) fit in a Discord choice list"
    if not isinstance(spec.supports_auto, bool):
        yield "supports_auto must be true or false"
    if not _is_str_tuple(spec.resolutions):
        yield "resolutions must be a tuple of strings"
    for resolution in spec.resolutions:
        if not resolution.strip() or len(resolution) > _MAX_CHOICE_TEXT:
            yield "resolutions must be non-empty strings of at most 100 characters"
    if len(set(spec.resolutions)) != len(spec.resolutions):
        yield "resolutions contain duplicates"
    if len(spec.resolutions) > MAX_CHOICES:
        yield f"at most {MAX_CHOICES} resolutions fit in a Discord choice list"
    if spec.default_resolution is not None and spec.default_resolution not in spec.resolutions:
        offered = ", ".join(f'"{r}"' for r in spec.resolutions) or "none"
        yield (
            f'default_resolution "{spec.default_resolution}" is not one of resolutions [{offered}]'
            " (set both together)"
        )
    if not isinstance(spec.resolution_field, str) or not _FIELD_PATH_RE.fullmatch(spec.resolution_field):
        yield f'resolution_field "{spec.resolution_field}" must be a dotted path like "metadata.resolution"'
    elif spec.resolution_field.split(".")[0] in _RESERVED_FIELDS:
        yield (
            f'resolution_field "{spec.resolution_field}" would overwrite a request field the bot sets itself'
        )
    for name, (low, high) in (
        ("max_prompt_length", PROMPT_LENGTH_RANGE),
        ("max_reference_images", REFERENCE_IMAGES_RANGE),
        ("max_images", IMAGES_RANGE),
    ):
        value = getattr(spec, name)
        if not _is_int(value) or not low <= value <= high:
            yield f"{name} must be an integer from {low} to {high} (got {value!r})"
    if not isinstance(spec.watermark_default, bool):
        yield "watermark_default must be true or false"
    if not _is_str_tuple(spec.speed_modes):
        yield "speed_modes must be a tuple of strings"
    for mode in spec.speed_modes:
        if mode not in SPEED_MODES:
            yield f'speed mode "{mode}" is not one ToAPIs documents ({", ".join(SPEED_MODES)})'
    if len(set(spec.speed_modes)) != len(spec.speed_modes):
        yield "speed_modes contain duplicates"
    price = spec.price_per_image
    if price is not None and (
        isinstance(price, bool) or not isinstance(price, int | float) or not math.isfinite(price) or price < 0
    ):
        yield f"price_per_image must be a number of USD, 0 or more (got {price!r})"
    for name in ("supports_layers", "extra_reference_billing"):
        if not isinstance(getattr(spec, name), bool):
            yield f"{name} must be true or false"
    if spec.supports_auto and spec.max_reference_images < 1:
        yield "supports_auto needs max_reference_images of at least 1 (auto matches a reference image)"


def _is_int(value: object) -> bool:
    # bool is an int subclass; `true` is never a sensible count.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_tuple(value: object) -> bool:
    return isinstance(value, tuple) and all(isinstance(item, str) for item in value)


class CatalogError(Exception):
    """The operator's model file is missing, unreadable or invalid; the message says where and why."""


class Catalog:
    """An immutable, ordered collection of :class:`ModelSpec`, keyed by id.

    Iterating yields the specs in order. At most 25 models; ids and display names must
    be unique (case-insensitively, so :meth:`find` is unambiguous).
    """

    def __init__(self, models: Iterable[ModelSpec]) -> None:
        """Build a catalog; raises ``ValueError`` if it is empty, too long or ambiguous."""
        self._models: dict[str, ModelSpec] = {}
        # casefolded id or display name -> (owning model id, "id" or "display name")
        names: dict[str, tuple[str, str]] = {}
        for spec in models:
            if spec.id in self._models:
                raise ValueError(f'model "{spec.id}" is listed twice')
            keys = [("id", spec.id)]
            if spec.display_name.casefold() != spec.id.casefold():
                keys.append(("display name", spec.display_name))
            for kind, text in keys:
                clash = names.get(text.casefold())
                if clash is not None:
                    owner, owner_kind = clash
                    if kind == owner_kind == "display name":
                        raise ValueError(
                            f'models "{owner}" and "{spec.id}" have the same display name "{text}"'
                        )
                    raise ValueError(
                        f'the {kind} of model "{spec.id}" ("{text}") clashes with the {owner_kind} '
                        f'of model "{owner}" (names are compared ignoring case)'
                    )
                names[text.casefold()] = (spec.id, kind)
            self._models[spec.id] = spec
        if not self._models:
            raise ValueError("the catalog has no models")
        if len(self._models) > MAX_CHOICES:
            raise ValueError(
                f"{len(self._models)} models is more than the {MAX_CHOICES} a Discord choice list can show"
            )
        if len(self.all_resolutions()) > MAX_CHOICES:
            raise ValueError(f"more than {MAX_CHOICES} distinct resolutions across all models")
        if len(self.all_ratios()) > MAX_CHOICES:
            raise ValueError(f"more than {MAX_CHOICES} distinct ratios across all models")
        self._names = names

    def get(self, model_id: str) -> ModelSpec:
        """Return the model with exactly this id; raises ``KeyError`` if there is none."""
        try:
            return self._models[model_id]
        except KeyError:
            raise KeyError(f"unknown model {model_id!r}") from None

    def find(self, id_or_display_name: str) -> ModelSpec | None:
        """Look a model up by id or display name, ignoring case and surrounding spaces."""
        found = self._names.get(id_or_display_name.strip().casefold())
        return None if found is None else self._models[found[0]]

    @property
    def ids(self) -> tuple[str, ...]:
        """All model ids, in catalog order."""
        return tuple(self._models)

    def all_resolutions(self) -> tuple[str, ...]:
        """Every resolution any model offers (for slash-command choices): those that start with a
        number (`1K` … `4K`) smallest first, then any others in first-seen order."""
        seen = list(dict.fromkeys(r for spec in self._models.values() for r in spec.resolutions))

        def order(resolution: str) -> tuple[float, int]:
            digits = re.match(r"\d+", resolution)
            return (int(digits.group()) if digits else float("inf"), seen.index(resolution))

        return tuple(sorted(seen, key=order))

    def all_ratios(self) -> tuple[str, ...]:
        """Every ratio any model offers, first-seen order, ``auto`` last if any model supports it."""
        ratios = dict.fromkeys(r for spec in self._models.values() for r in spec.ratios)
        if any(spec.supports_auto for spec in self._models.values()):
            ratios[AUTO_RATIO] = None
        return tuple(ratios)

    def with_overrides(self, entries: Mapping[str, Any], *, source: str = "overrides") -> Catalog:
        """Return a new catalog with ``entries`` (the file format's ``models`` table) applied.

        ``source`` names where the entries came from in error messages.

        Raises:
            CatalogError: an entry or the resulting catalog is invalid.
        """
        if not isinstance(entries, Mapping):
            raise CatalogError(f'{source}: "models" must be a table of model entries')
        models = dict(self._models)
        for model_id, entry in entries.items():
            where = f'{source}: model "{model_id}"'
            if not isinstance(entry, Mapping):
                raise CatalogError(f"{where}: must be a table of settings")
            unknown = sorted(set(entry) - _ENTRY_KEYS)
            if unknown:
                allowed = ", ".join(sorted(_ENTRY_KEYS))
                raise CatalogError(f'{where}: unknown key "{unknown[0]}" (allowed: {allowed})')
            if "remove" in entry:
                if not isinstance(entry["remove"], bool):
                    raise CatalogError(f"{where}: remove must be true or false")
                if entry["remove"]:
                    if len(entry) > 1:
                        raise CatalogError(f"{where}: remove = true cannot be combined with other keys")
                    if model_id not in models:
                        raise CatalogError(f"{where}: cannot remove a model that does not exist")
                    del models[model_id]
                    log.info("Model catalog: %s removed %s", source, model_id)
                    continue
            values = {}
            for key, value in entry.items():
                if key == "remove":
                    continue
                try:
                    values[key] = _CONVERTERS[key](value)
                except (TypeError, ValueError) as exc:
                    raise CatalogError(f"{where}: {key} {exc}") from None
            try:
                if model_id in models:
                    models[model_id] = dataclasses.replace(models[model_id], **values)
                    log.info("Model catalog: %s overrides %s (%s)", source, model_id, ", ".join(values))
                else:
                    if "display_name" not in values:
                        raise ValueError("a new model needs a display_name")
                    models[model_id] = ModelSpec(id=model_id, **values)
                    log.info("Model catalog: %s adds %s", source, model_id)
            except ValueError as exc:
                raise CatalogError(f"{where}: {exc}") from None
        try:
            return Catalog(models.values())
        except ValueError as exc:
            raise CatalogError(f"{source}: {exc}") from None

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Catalog):
            return NotImplemented
        return list(self._models.values()) == list(other._models.values())

    def __repr__(self) -> str:
        return f"Catalog({list(self._models)!r})"


# --- converting raw file values -------------------------------------------------------------
# Each converter checks the JSON/TOML type and returns the ModelSpec value, raising
# TypeError/ValueError with the rest of a sentence that starts with the key name.


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("must be a string")
    return value


def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError("must be a list of strings")
    return tuple(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("must be true or false")
    return value


def _int(value: Any) -> int:
    if not _is_int(value):
        raise TypeError("must be an integer")
    return value


def _price(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("must be a number of USD (e.g. 0.035)")
    return float(value)


def _optional_str(value: Any) -> str | None:
    # TOML has no null, so "" also means "no default resolution".
    if value is None or value == "":
        return None
    return _str(value)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "display_name": _str,
    "ratios": _str_list,
    "supports_auto": _bool,
    "resolutions": _str_list,
    "default_resolution": _optional_str,
    "resolution_field": _str,
    "max_prompt_length": _int,
    "max_reference_images": _int,
    "max_images": _int,
    "watermark_default": _bool,
    "speed_modes": _str_list,
    "price_per_image": _price,
    "supports_layers": _bool,
    "extra_reference_billing": _bool,
}
_ENTRY_KEYS = frozenset(_CONVERTERS) | {"remove"}


# --- built-ins ------------------------------------------------------------------------------

BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        id="doubao-seedream-4-0",
        display_name="Seedream 4.0",
        ratios=DOCUMENTED_RATIOS,  # documented
        supports_auto=True,  # documented for Seedream 4.0 only
        resolutions=("1K", "2K", "4K"),  # documented
        default_resolution="2K",  # documented provider default
        max_prompt_length=1000,  # documented maximum for Seedream 4.0
        max_reference_images=10,  # documented (image_urls: at most 10)
        max_images=MAX_TOTAL_IMAGES,  # documented (n: 1–15)
        watermark_default=True,  # documented: on unless the request says otherwise
        speed_modes=SPEED_MODES,  # documented prompt-optimisation modes
    ),
    ModelSpec(
        id="doubao-seedream-4-5",
        display_name="Seedream 4.5",
        ratios=DOCUMENTED_RATIOS,  # documented
        supports_auto=False,  # conservative: auto is documented for 4.0 only
        resolutions=("2K", "4K"),  # documented
        default_resolution="2K",  # documented provider default
        max_prompt_length=1000,  # conservative: only documented for 4.0
        max_reference_images=10,  # documented
        max_images=MAX_TOTAL_IMAGES,  # documented
        watermark_default=True,  # documented
        speed_modes=SPEED_MODES,  # documented
    ),
    ModelSpec(
        id="doubao-seedream-5-0",
        display_name="Seedream 5.0",
        ratios=DOCUMENTED_RATIOS,  # documented
        supports_auto=False,  # conservative: auto is documented for 4.0 only
        resolutions=("2K", "3K"),  # documented
        default_resolution="2K",  # documented provider default
        max_prompt_length=1000,  # conservative: not documented for 5.0
        max_reference_images=10,  # documented
        max_images=MAX_TOTAL_IMAGES,  # documented
    ),
    ModelSpec(
        id="doubao-seedream-5-0-pro",
        display_name="Seedream 5.0 Pro",
        ratios=DOCUMENTED_RATIOS,  # documented
        supports_auto=False,  # conservative: auto is documented for 4.0 only
        resolutions=("1K", "2K"),  # documented
        default_resolution="2K",  # documented provider default
        max_prompt_length=1000,  # conservative: not documented for 5.0 Pro
        max_reference_images=10,  # documented
        max_images=10,  # documented (n: 1–10 on 5.0 Pro)
        supports_layers=True,  # documented: layer_decomposition
        extra_reference_billing=True,  # documented: the first reference is free, each further one charged
    ),
)


def builtin_catalog() -> Catalog:
    """The catalog of documented ToAPIs Seedream models."""
    return Catalog(BUILTIN_MODELS)


# --- loading --------------------------------------------------------------------------------


def load_catalog(path: str | Path | None) -> Catalog:
    """Return the built-in catalog, with the operator's model file applied if ``path`` is given.

    The file is TOML (``.toml``) or JSON (``.json``); see the module docstring for its
    format. Raises :class:`CatalogError` naming the file and the problem.
    """
    if path is None:
        return builtin_catalog()
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise CatalogError(f"{source}: model file must end in .toml or .json")
    try:
        text = read_text_file(path)
    except UnreadableFileError as exc:
        raise CatalogError(f"{source}: {exc}") from None

    if suffix == ".toml":
        try:
            document: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CatalogError(f"{source}: invalid TOML: {exc}") from None
    else:
        try:
            document = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise CatalogError(
                f"{source}: invalid JSON: {exc.msg} (at line {exc.lineno}, column {exc.colno})"
            ) from None
        except _DuplicateKeyError as exc:
            raise CatalogError(f"{source}: invalid JSON: {exc}") from None

    if not isinstance(document, dict):
        raise CatalogError(f'{source}: expected a top-level object with a "models" table')
    unknown = sorted(set(document) - {"models"})
    if unknown:
        raise CatalogError(f'{source}: unknown top-level key "{unknown[0]}" (only "models" is allowed)')
    if "models" not in document:
        raise CatalogError(f'{source}: no "models" table')
    catalog = builtin_catalog().with_overrides(document["models"], source=source)
    log.info("Model catalog from %s: %s", source, ", ".join(catalog.ids))
    return catalog


class _DuplicateKeyError(ValueError):
    pass


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads silently keeps the last duplicate; an operator typo should not vanish.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f'duplicate key "{key}"')
        result[key] = value
    return result
