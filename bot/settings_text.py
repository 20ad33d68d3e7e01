"""How a server's image generation settings read: one line per setting, and all of them in one message.

- `setting_lines`: `**Label:** value` for every setting, keyed by setting (each answer of
  `/imagine-admin` ends with the lines it changed).
- `settings_text`: every setting in one message (`/imagine-admin show`), fitted to Discord's
  limit in the reader's language.

Every line is a text to translate (`bot.i18n`); the Discord layer reads it in the server's language.

Mentions (`<#id>`, `<@&id>`, `<@id>`) are written as such; the Discord layer sends every text
with mentions disabled, so they render as names and ping no one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from bot.blocklist import describe
from bot.catalog import Catalog
from bot.guild_settings import GuildSettings
from bot.i18n import Readable, Text, _, _n, join
from bot.text import MESSAGE_LIMIT, clip

# How many items of each list `/imagine-admin show` names, tried in turn until the summary fits.
SUMMARY_SIZES = (10, 5, 2)


def limit_words(value: int | None) -> Readable:
    """`no limit` for None (or 0), else the number."""
    return str(value) if value else _("no limit")


def model_names(ids: Iterable[str], catalog: Catalog) -> list[str]:
    """Display names for model ids (an id the catalog no longer has is shown as is)."""
    return [spec.display_name if (spec := catalog.find(i)) else i for i in ids]


def _listed(items: Sequence[str], most: int, empty: Readable) -> Readable:
    if not items:
        return empty
    shown = ", ".join(items[:most])
    if len(items) <= most:
        return shown
    return _n("{shown} and {count} more", "{shown} and {count} more", len(items) - most, shown=shown)


def _on_off(value: bool) -> Text:
    # Translators: a setting's state, as in "Watermark: on".
    return _("on") if value else _("off")


def setting_value(line: Text) -> Readable:
    """The value part of a setting line (what follows its label)."""
    value: Readable = line.values["value"]
    return value


def settings_text(
    settings: GuildSettings,
    catalog: Catalog,
    *,
    operator_watermark: bool = False,
    read: Callable[[Readable], str] = str,
    room: int = MESSAGE_LIMIT,
) -> str:
    """Every setting, one line each, as `read` reads it (the reader's language; English by default),
    in at most `room` characters.

    Long lists are cut shorter and shorter until the whole summary fits, measured in the reader's
    language (a translation may be longer than the English).
    `operator_watermark` is the bot's default (`WATERMARK`), shown when the server keeps it."""
    text = ""
    for most in SUMMARY_SIZES:
        lines = setting_lines(settings, catalog, most=most, operator_watermark=operator_watermark)
        text = read(join([_("**Image generation settings for this server**"), *lines.values()]))
        if len(text) <= room:
            return text
    return clip(text, room)


def setting_lines(
    s: GuildSettings, catalog: Catalog, *, most: int = 10, operator_watermark: bool = False
) -> dict[str, Text]:
    """`**Label:** value` for every setting, keyed by setting; lists show at most `most` items.

    Every line has one placeholder, `{value}` (see :func:`setting_value`).
    `operator_watermark` is the bot's default, shown when the server keeps it."""
    channels = [f"<#{c}>" for c in s.allowed_channels]
    denied = [f"<#{c}>" for c in s.denied_channels]
    roles = [f"<@&{r}>" for r in s.allowed_roles]
    admins = [f"<@&{r}>" for r in s.admin_roles]
    banned = [f"<@{u}>" for u in s.banned_users]
    role_quotas = [f"<@&{r}>: {q}" for r, q in s.role_quotas]
    entries = [f"`{clip(describe(e), 60)}`" for e in s.blocklist]
    exceptions = [f"`{clip(phrase, 60)}`" for phrase in s.blocklist_exceptions]
    blocklist: Readable = _("empty")
    if entries and exceptions:
        blocklist = _n(
            "{count} entry: {entries} · never matched: {exceptions}",
            "{count} entries: {entries} · never matched: {exceptions}",
            len(entries),
            entries=_listed(entries, min(most, 5), ""),
            exceptions=_listed(exceptions, min(most, 5), ""),
        )
    elif entries:
        blocklist = _n(
            "{count} entry: {entries}",
            "{count} entries: {entries}",
            len(entries),
            entries=_listed(entries, min(most, 5), ""),
        )
    elif exceptions:
        blocklist = _("empty · never matched: {exceptions}", exceptions=_listed(exceptions, min(most, 5), ""))
    cooldown: Readable = (
        _("{seconds} s between a member's requests", seconds=s.cooldown_seconds)
        if s.cooldown_seconds
        else _("none")
    )
    audit: Readable = f"<#{s.audit_channel_id}>" if s.audit_channel_id else _on_off(False)
    if s.watermark is None:
        watermark: Readable = _("the bot's default ({setting})", setting=_on_off(operator_watermark))
    else:
        watermark = _on_off(s.watermark)
    # Translators: "all" of a list of models, resolutions or speeds (none is left out).
    everything = _("all")
    # (Texts nested in a call inside another text's values are missed by the extraction: kept apart.)
    all_channels, everyone, managers_only = _("all channels"), _("everyone"), _("none (Manage Server only)")
    # Translators: an empty list or no setting, as in "Denied channels: none".
    none = _("none")
    return {
        "enabled": _("**Generation:** {value}", value=_on_off(s.enabled)),
        "allowed_channels": _("**Allowed channels:** {value}", value=_listed(channels, most, all_channels)),
        "denied_channels": _("**Denied channels:** {value}", value=_listed(denied, most, none)),
        "allowed_roles": _("**Allowed roles:** {value}", value=_listed(roles, most, everyone)),
        "admin_roles": _("**Admin roles:** {value}", value=_listed(admins, most, managers_only)),
        "banned_users": _("**Banned members:** {value}", value=_listed(banned, most, none)),
        "allowed_models": _(
            "**Models:** {value}", value=_listed(model_names(s.allowed_models, catalog), most, everything)
        ),
        "allowed_resolutions": _(
            "**Resolutions:** {value}", value=_listed(list(s.allowed_resolutions), most, everything)
        ),
        "allowed_speeds": _("**Speeds:** {value}", value=_listed(list(s.allowed_speeds), most, everything)),
        "watermark": _("**Watermark:** {value}", value=watermark),
        "spoiler": _("**Every result a spoiler:** {value}", value=_on_off(s.spoiler)),
        "max_n": _("**Images per request (n):** {value}", value=limit_words(s.max_n)),
        "max_references": _("**Reference images per request:** {value}", value=limit_words(s.max_references)),
        "cooldown_seconds": _("**Cooldown:** {value}", value=cooldown),
        "concurrent": _(
            "**Running jobs:** {value}",
            value=_(
                "per member {member} · per server {server}",
                member=limit_words(s.max_concurrent_member),
                server=limit_words(s.max_concurrent_server),
            ),
        ),
        "daily_member_quota": _(
            "**Daily images per member:** {value}", value=limit_words(s.daily_member_quota)
        ),
        "role_quotas": _("**Daily images by role:** {value}", value=_listed(role_quotas, most, none)),
        "server_quota": _(
            "**Server images:** {value}",
            value=_(
                "per day {day} · per month {month}",
                day=limit_words(s.daily_server_quota),
                month=limit_words(s.monthly_server_quota),
            ),
        ),
        "blocklist": _("**Prompt blocklist:** {value}", value=blocklist),
        "audit_channel_id": _("**Audit channel:** {value}", value=audit),
    }
