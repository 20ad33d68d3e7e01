"""Validate request bodies the bot sends against Discord's own OpenAPI description.

The fake Discord server (``tests/fakes/discord/``) runs every request body through
:func:`validate_request`.  The spec file is never copied into the project: where it is
looked for (``DISCORD_API_SPEC``, ``../shared/discord-api-spec/``, the cache that
``scripts/fetch-discord-spec`` fills) is :mod:`tests.fakes.discord_spec_source`. When it is
absent only the hand-written checks run and :data:`SPEC_AVAILABLE` is ``False`` so the test
run can say so.

Besides the schema, the checks Discord enforces but the spec does not encode are applied
here too (content length, embed totals, action rows, attachment bookkeeping, file sizes,
lower-case command names); see the README beside the spec for the list of quirks.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.fakes.discord_spec_source import find_spec

__all__ = [
    "COMPONENTS_V2_FLAG",
    "DEFAULT_UPLOAD_LIMIT",
    "SPEC_AVAILABLE",
    "Violation",
    "form_error_body",
    "load_spec",
    "match_operation",
    "spec_available",
    "spec_path",
    "too_large_body",
    "validate_request",
]

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_ACTION_ROWS = 5
MAX_V2_COMPONENTS = 40
MAX_ATTACHMENTS = 10
COMPONENTS_V2_FLAG = 1 << 15
API_PREFIX = "/api/v10"

# A made-up absolute URI for the spec document so "#/components/..." refs resolve inside it.
_SPEC_URI = "urn:discord-openapi"
_FILE_PART = re.compile(r"^files\[(\d+)\]$")

# Operations whose body (or a part of it) is a message: template -> methods.
_MESSAGE_OPERATIONS: dict[str, set[str]] = {
    "/channels/{channel_id}/messages": {"POST"},
    "/channels/{channel_id}/messages/{message_id}": {"PATCH"},
    "/webhooks/{webhook_id}/{webhook_token}": {"POST"},
    "/webhooks/{webhook_id}/{webhook_token}/messages/@original": {"PATCH"},
    "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}": {"PATCH"},
    "/interactions/{interaction_id}/{interaction_token}/callback": {"POST"},
}
_COMMAND_OPERATIONS = {
    "/applications/{application_id}/commands",
    "/applications/{application_id}/guilds/{guild_id}/commands",
    "/applications/{application_id}/commands/{command_id}",
    "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
}


def spec_path() -> Path | None:
    """The OpenAPI document requests are validated against; None when none was found."""
    return find_spec()


def spec_available() -> bool:
    """True when the OpenAPI document exists, i.e. schema validation really runs."""
    return spec_path() is not None


def _spec_key() -> str:
    """The found document's path as a cache key ("" when there is none: nothing loads)."""
    path = spec_path()
    return str(path) if path is not None else ""


SPEC_AVAILABLE: bool = spec_available()


class Violation(str):
    """One reason Discord would refuse a request.

    It *is* the human-readable string (so lists of violations print nicely and compare
    with ``in``), and carries the JSON path, Discord's error code and the HTTP status.
    """

    path: tuple[str | int, ...]
    code: str
    message: str
    status: int

    def __new__(
        cls, where: str, path: Sequence[str | int], code: str, message: str, *, status: int = 400
    ) -> Violation:
        """Build the string ``"<where>: <json.path>: <message> [<CODE>]"`` and keep the parts."""
        dotted = ".".join(str(p) for p in path) or "<body>"
        self = super().__new__(cls, f"{where}: {dotted}: {message} [{code}]")
        self.path = tuple(path)
        self.code = code
        self.message = message
        self.status = status
        return self


# --------------------------------------------------------------------------- spec loading


@functools.lru_cache(maxsize=4)
def _load(path_str: str) -> dict[str, Any] | None:
    path = Path(path_str)
    if not path_str or not path.is_file():
        return None
    with path.open(encoding="utf-8") as fh:
        doc = json.load(fh)
    # Quirk: discord.py sends attachments[].id as an int, which Discord accepts.
    schemas = doc.get("components", {}).get("schemas", {})
    if "SnowflakeType" in schemas:
        original = schemas["SnowflakeType"]
        schemas["SnowflakeType"] = {"anyOf": [original, {"type": "integer", "minimum": 0}]}
    return doc


def load_spec() -> dict[str, Any] | None:
    """The parsed (and snowflake-widened) OpenAPI document, cached; None if absent."""
    return _load(_spec_key())


@functools.lru_cache(maxsize=4)
def _registry(path_str: str) -> Any:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    doc = _load(path_str)
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    return Registry().with_resource(_SPEC_URI, resource)


def _compile_templates(templates: Iterable[str]) -> list[tuple[re.Pattern[str], str]]:
    """Template regexes, most literal first (``@original`` beats ``{message_id}``)."""
    compiled = []
    for template in templates:
        parts = template.strip("/").split("/")
        regex = "".join("/[^/]+" if p.startswith("{") else "/" + re.escape(p) for p in parts)
        literals = sum(1 for p in parts if not p.startswith("{"))
        compiled.append((literals, re.compile(f"^{regex}$"), template))
    compiled.sort(key=lambda item: -item[0])
    return [(regex, template) for _, regex, template in compiled]


@functools.lru_cache(maxsize=4)
def _templates(path_str: str) -> list[tuple[re.Pattern[str], str]]:
    return _compile_templates((_load(path_str) or {}).get("paths", {}))


# Without the spec, the hand-written checks still need to know which operation this is.
_KNOWN_TEMPLATES = _compile_templates([*_MESSAGE_OPERATIONS, *_COMMAND_OPERATIONS])


def _known_template(path: str) -> str | None:
    concrete = _strip_prefix(path)
    return next((template for regex, template in _KNOWN_TEMPLATES if regex.match(concrete)), None)


def _strip_prefix(path: str) -> str:
    path = path.split("?", 1)[0]
    if path.startswith(API_PREFIX):
        path = path[len(API_PREFIX) :]
    return path or "/"


def match_operation(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """Find ``(template, operation)`` for a concrete request path, or None if the spec lacks it."""
    doc = load_spec()
    if doc is None:
        return None
    concrete = _strip_prefix(path)
    for regex, template in _templates(_spec_key()):
        if regex.match(concrete):
            operation = doc["paths"][template].get(method.lower())
            if isinstance(operation, dict):
                return template, operation
    return None


@functools.lru_cache(maxsize=256)
def _validator(path_str: str, template: str, method: str) -> Any:
    from jsonschema import Draft202012Validator

    pointer = "/".join(
        part.replace("~", "~0").replace("/", "~1")
        for part in ("paths", template, method, "requestBody", "content", "application/json", "schema")
    )
    schema = {"$ref": f"{_SPEC_URI}#/{pointer}"}
    return Draft202012Validator(schema, registry=_registry(path_str))


# --------------------------------------------------------------------------- schema errors

_CODES = {
    "maxLength": ("BASE_TYPE_MAX_LENGTH", "Must be {v} or fewer in length."),
    "maxItems": ("BASE_TYPE_MAX_LENGTH", "Must be {v} or fewer in length."),
    "minLength": ("BASE_TYPE_MIN_LENGTH", "Must be {v} or more in length."),
    "minItems": ("BASE_TYPE_MIN_LENGTH", "Must be {v} or more in length."),
    "maximum": ("NUMBER_TYPE_MAX", "int value should be less than or equal to {v}."),
    "minimum": ("NUMBER_TYPE_MIN", "int value should be greater than or equal to {v}."),
    "enum": ("BASE_TYPE_CHOICES", "Value must be one of {v}."),
    "const": ("BASE_TYPE_CHOICES", "Value must be one of ({v},)."),
}


def _leaf_errors(error: Any) -> list[Any]:
    """Descend through anyOf/oneOf to the errors of the branch the body was meant for.

    Discord's unions are discriminated by a ``type`` field: branches whose own ``type``
    check failed (or that want another JSON type, like ``null``) are dropped, so a
    too-long content in a type-4 callback is reported as such instead of "not valid
    under any of the given schemas".
    """
    if not error.context:
        return [error]
    branches: dict[Any, list[Any]] = {}
    for sub in error.context:
        branches.setdefault(sub.schema_path[0] if sub.schema_path else None, []).append(sub)

    def discriminator_failed(errs: list[Any]) -> bool:
        # Either the branch wants another JSON type (e.g. the null of "null or object"), or
        # its "type" field wants another value.
        for e in errs:
            relative = list(e.path)  # context errors' .path is relative to the union's instance
            if relative == [] and e.validator == "type":
                return True
            if relative == ["type"] and e.validator in ("enum", "const", "oneOf", "type"):
                return True
        return False

    candidates = [errs for errs in branches.values() if not discriminator_failed(errs)]
    if len(candidates) == 1:
        return [leaf for sub in candidates[0] for leaf in _leaf_errors(sub)]
    from jsonschema.exceptions import best_match

    best = best_match([error])
    return [best] if best is not None else [error]


def _schema_violations(where: str, errors: Iterable[Any], prefix: Sequence[str | int]) -> list[Violation]:
    out: list[Violation] = []
    for error in errors:
        for leaf in _leaf_errors(error):
            path = [*prefix, *leaf.absolute_path]
            if leaf.validator == "required" and isinstance(leaf.instance, Mapping):
                missing = [p for p in leaf.validator_value if p not in leaf.instance]
                for name in missing:
                    out.append(
                        Violation(where, [*path, name], "BASE_TYPE_REQUIRED", "This field is required")
                    )
                continue
            code, template = _CODES.get(leaf.validator, (f"SCHEMA_{str(leaf.validator).upper()}", ""))
            message = template.format(v=leaf.validator_value) if template else leaf.message
            out.append(Violation(where, path, code, message))
    return out


# --------------------------------------------------------------------------- extra checks


def _embed_chars(embed: Mapping[str, Any]) -> int:
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    for field in embed.get("fields") or []:
        total += len(field.get("name") or "") + len(field.get("value") or "")
    total += len((embed.get("footer") or {}).get("text") or "")
    total += len((embed.get("author") or {}).get("name") or "")
    return total


def _count_components(components: Iterable[Any]) -> int:
    total = 0
    for comp in components:
        if not isinstance(comp, Mapping):
            continue
        total += 1
        total += _count_components(comp.get("components") or [])
        for key in ("accessory", "component"):
            if isinstance(comp.get(key), Mapping):
                total += _count_components([comp[key]])
        total += len(comp.get("items") or []) if comp.get("type") == 12 else 0
    return total


def _message_checks(
    where: str,
    body: Mapping[str, Any],
    prefix: Sequence[str | int],
    *,
    file_fields: Sequence[str],
    file_sizes: Sequence[int],
    upload_limit: int,
    message_flags: int | None,
) -> list[Violation]:
    """Checks on a message body that the OpenAPI document does not encode."""
    out: list[Violation] = []
    p = list(prefix)
    content = body.get("content")
    if isinstance(content, str) and len(content) > MAX_CONTENT:
        # The spec allows 4000 on channel edits/creates; Discord's docs (and servers) say 2000.
        out.append(
            Violation(where, [*p, "content"], "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        )

    embeds = body.get("embeds")
    if isinstance(embeds, list):
        if len(embeds) > MAX_EMBEDS:
            out.append(
                Violation(where, [*p, "embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
            )
        total = sum(_embed_chars(e) for e in embeds if isinstance(e, Mapping))
        if total > MAX_EMBED_TOTAL:
            out.append(
                Violation(
                    where,
                    [*p, "embeds"],
                    "MAX_EMBED_SIZE_EXCEEDED",
                    f"Embed size exceeds maximum size of 6000 (got {total})",
                )
            )

    flags = body.get("flags")
    if not isinstance(flags, int):
        flags = message_flags or 0
    components = body.get("components")
    if isinstance(components, list):
        if flags & COMPONENTS_V2_FLAG:
            count = _count_components(components)
            if count > MAX_V2_COMPONENTS:
                out.append(
                    Violation(
                        where,
                        [*p, "components"],
                        "BASE_TYPE_MAX_LENGTH",
                        f"Must be 40 or fewer in length (got {count} components in total).",
                    )
                )
            for key in ("content", "embeds"):
                if body.get(key):
                    out.append(
                        Violation(
                            where,
                            [*p, key],
                            "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                            "The 'content' and 'embeds' fields cannot be used with IS_COMPONENTS_V2",
                        )
                    )
        else:
            if len(components) > MAX_ACTION_ROWS:
                out.append(
                    Violation(
                        where,
                        [*p, "components"],
                        "BASE_TYPE_MAX_LENGTH",
                        f"Must be 5 or fewer in length (got {len(components)} action rows).",
                    )
                )
            for i, comp in enumerate(components):
                if isinstance(comp, Mapping) and comp.get("type") != 1:
                    out.append(
                        Violation(
                            where,
                            [*p, "components", i, "type"],
                            "UNION_TYPE_CHOICES",
                            "Top-level components must be action rows without the IS_COMPONENTS_V2 flag",
                        )
                    )

    attachments = body.get("attachments")
    if isinstance(attachments, list) and len(attachments) > MAX_ATTACHMENTS:
        out.append(
            Violation(where, [*p, "attachments"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        )
    listed = {
        str(a.get("id")) for a in attachments or [] if isinstance(a, Mapping) and a.get("id") is not None
    }
    for index, field in enumerate(file_fields):
        match = _FILE_PART.match(field)
        if match is None:
            out.append(Violation(where, [field], "UNKNOWN_FORM_FIELD", "File parts must be named files[n]"))
            continue
        if match.group(1) not in listed:
            out.append(
                Violation(
                    where,
                    [*p, "attachments"],
                    "ATTACHMENT_NOT_LISTED",
                    f"Uploaded part {field} is not listed in attachments[].id",
                )
            )
        if index < len(file_sizes) and file_sizes[index] > upload_limit:
            out.append(
                Violation(
                    where,
                    [field],
                    "FILE_TOO_LARGE",
                    f"{field} is {file_sizes[index]} bytes; the upload limit is {upload_limit}",
                    status=413,
                )
            )
    return out


def _command_checks(where: str, body: Any) -> list[Violation]:
    """Chat-input command and option names must be lower case (context menus may not be)."""
    out: list[Violation] = []
    commands = body if isinstance(body, list) else [body]

    def walk_options(options: Any, path: list[str | int]) -> None:
        for i, option in enumerate(options or []):
            if not isinstance(option, Mapping):
                continue
            name = option.get("name")
            if isinstance(name, str) and name != name.lower():
                out.append(
                    Violation(
                        where,
                        [*path, i, "name"],
                        "APPLICATION_COMMAND_INVALID_NAME",
                        f"Option name {name!r} must be lower case",
                    )
                )
            walk_options(option.get("options"), [*path, i, "options"])

    for i, command in enumerate(commands):
        if not isinstance(command, Mapping) or command.get("type", 1) not in (1, None):
            continue
        base: list[str | int] = [i] if isinstance(body, list) else []
        name = command.get("name")
        if isinstance(name, str) and name != name.lower():
            out.append(
                Violation(
                    where,
                    [*base, "name"],
                    "APPLICATION_COMMAND_INVALID_NAME",
                    f"Command name {name!r} must be lower case",
                )
            )
        walk_options(command.get("options"), [*base, "options"])
    return out


# --------------------------------------------------------------------------- public API


def validate_request(
    method: str,
    path: str,
    payload: Any,
    *,
    file_fields: Sequence[str] = (),
    file_sizes: Sequence[int] = (),
    upload_limit: int = DEFAULT_UPLOAD_LIMIT,
    message_flags: int | None = None,
    template: str | None = None,
) -> list[Violation]:
    """Return every reason Discord would refuse this request body (empty list: fine).

    ``payload`` is the JSON body, or the parsed ``payload_json`` part for multipart
    requests; ``file_fields``/``file_sizes`` describe the uploaded parts in order.
    ``message_flags`` are the flags of the message being edited (so a PATCH without
    ``flags`` on a Components V2 message is judged as V2).  ``template`` is the route
    template when the caller already knows it; otherwise it comes from the spec (or, when
    the spec is absent, from the operations the extra checks know).
    """
    method = method.upper()
    where = f"{method} {_strip_prefix(path)}"
    out: list[Violation] = []
    matched = match_operation(method, path)
    template = template or _known_template(path)
    if matched is not None:
        template = matched[0]
        operation = matched[1]
        body_schema = operation.get("requestBody")
        if body_schema is not None:
            if payload is None and not file_fields:
                if body_schema.get("required"):
                    out.append(Violation(where, [], "BASE_TYPE_REQUIRED", "A request body is required"))
            elif "application/json" in body_schema.get("content", {}):
                validator = _validator(_spec_key(), template, method.lower())
                out.extend(_schema_violations(where, validator.iter_errors(payload), []))

    if template in _MESSAGE_OPERATIONS and method in _MESSAGE_OPERATIONS[template]:
        body, prefix = payload, []
        if template.startswith("/interactions/"):
            # Interaction callbacks carry the message under "data" (types 4, 5, 7); a modal's
            # data (type 9) is not a message.
            is_message = isinstance(payload, Mapping) and payload.get("type") in (4, 5, 7)
            body = payload.get("data") if is_message else None
            prefix = ["data"]
        out.extend(
            _message_checks(
                where,
                body if isinstance(body, Mapping) else {},
                prefix,
                file_fields=file_fields,
                file_sizes=file_sizes,
                upload_limit=upload_limit,
                message_flags=message_flags,
            )
        )
    elif template in _COMMAND_OPERATIONS and method in ("PUT", "POST", "PATCH"):
        out.extend(_command_checks(where, payload))

    # The schema and the extra checks can both catch e.g. content > 2000; report once.
    seen: set[tuple[tuple[str | int, ...], str]] = set()
    unique: list[Violation] = []
    for violation in out:
        key = (violation.path, violation.code)
        if key not in seen:
            seen.add(key)
            unique.append(violation)
    return unique


def form_error_body(violations: Iterable[Violation | str]) -> dict[str, Any]:
    """Discord's 400 ``Invalid Form Body`` answer, errors nested by JSON path."""
    errors: dict[str, Any] = {}
    for violation in violations:
        path = getattr(violation, "path", ())
        code = getattr(violation, "code", "BASE_TYPE_INVALID")
        message = getattr(violation, "message", str(violation))
        node = errors
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})
    return {"code": 50035, "message": "Invalid Form Body", "errors": errors}


def too_large_body() -> dict[str, Any]:
    """Discord's 413 answer when an uploaded file exceeds the limit."""
    return {"code": 40005, "message": "Request entity too large"}
