"""How a server's image generation settings read: one line per setting, and all of them in one message.

- `setting_lines`: `**Label:** value` for every setting, keyed by setting (each answer of
  `/imagine-admin` ends with the lines it changed).
- `settings_text`: every setting in one message (`/imagine-admin show`).

Mentions (`<#id>`, `<@&id>`, `<@id>`) are written as such; the Discord layer sends every text
with mentions disabled, so they render as names and ping no one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bot.blocklist import describe
from bot.catalog import Catalog
from bot.guild_settings import GuildSettings
from bot.text import MESSAGE_LIMIT, clip, plural


def limit_words(value: int | None) -> str:
    """`no limit` for None (or 0), else the number."""
    return str(value) if value else "no limit"


def model_names(ids: Iterable[str], catalog: Catalog) -> list[str]:
    """Display names for model ids (an id the catalog no longer has is shown as is)."""
    return [spec.display_name if (spec := catalog.find(i)) else i for i in ids]


def _listed(items: Sequence[str], most: int, empty: str) -> str:
    if not items:
        return empty
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def settings_text(settings: GuildSettings, catalog: Catalog, *, operator_watermark: bool = False) -> str:
    """Every setting, one line each, short enough for one Discord message.

    `operator_watermark` is the bot's default (`WATERMARK`), shown when the server keeps it."""
    text = ""
    # Long lists are cut shorter and shorter until the whole summary fits.
    for most in (10, 5, 2):
        lines = setting_lines(settings, catalog, most=most, operator_watermark=operator_watermark)
        text = "\n".join(["**Image generation settings for this server**", *lines.values()])
        if len(text) <= MESSAGE_LIMIT:
            return text
    return clip(text, MESSAGE_LIMIT)


def setting_lines(
    s: GuildSettings, catalog: Catalog, *, most: int = 10, operator_watermark: bool = False
) -> dict[str, str]:
    """`**Label:** value` for every setting, keyed by setting; lists show at most `most` items.

    `operator_watermark` is the bot's default, shown when the server keeps it."""
    channels = [f"<#{c}>" for c in s.allowed_channels]
    denied = [f"<#{c}>" for c in s.denied_channels]
    roles = [f"<@&{r}>" for r in s.allowed_roles]
    admins = [f"<@&{r}>" for r in s.admin_roles]
    banned = [f"<@{u}>" for u in s.banned_users]
    role_quotas = [f"<@&{r}>: {q}" for r, q in s.role_quotas]
    entries = [f"`{clip(describe(e), 60)}`" for e in s.blocklist]
    count = f"{plural(len(entries), 'entry', 'entries')}: " if entries else ""
    exceptions = [f"`{clip(phrase, 60)}`" for phrase in s.blocklist_exceptions]
    exempt = f" · never matched: {_listed(exceptions, min(most, 5), '')}" if exceptions else ""
    cooldown = f"{s.cooldown_seconds} s between a member's requests" if s.cooldown_seconds else "none"
    audit = f"<#{s.audit_channel_id}>" if s.audit_channel_id else "off"
    if s.watermark is None:
        watermark = f"the bot's default ({_on_off(operator_watermark)})"
    else:
        watermark = _on_off(s.watermark)
    return {
        "enabled": f"**Generation:** {'on' if s.enabled else 'off'}",
        "allowed_channels": f"**Allowed channels:** {_listed(channels, most, 'all channels')}",
        "denied_channels": f"**Denied channels:** {_listed(denied, most, 'none')}",
        "allowed_roles": f"**Allowed roles:** {_listed(roles, most, 'everyone')}",
        "admin_roles": f"**Admin roles:** {_listed(admins, most, 'none (Manage Server only)')}",
        "banned_users": f"**Banned members:** {_listed(banned, most, 'none')}",
        "allowed_models": f"**Models:** {_listed(model_names(s.allowed_models, catalog), most, 'all')}",
        "allowed_resolutions": f"**Resolutions:** {_listed(list(s.allowed_resolutions), most, 'all')}",
        "allowed_speeds": f"**Speeds:** {_listed(list(s.allowed_speeds), most, 'all')}",
        "watermark": f"**Watermark:** {watermark}",
        "spoiler": f"**Every result a spoiler:** {_on_off(s.spoiler)}",
        "max_n": f"**Images per request (n):** {limit_words(s.max_n)}",
        "max_references": f"**Reference images per request:** {limit_words(s.max_references)}",
        "cooldown_seconds": f"**Cooldown:** {cooldown}",
        "concurrent": f"**Running jobs:** per member {limit_words(s.max_concurrent_member)} · "
        f"per server {limit_words(s.max_concurrent_server)}",
        "daily_member_quota": f"**Daily images per member:** {limit_words(s.daily_member_quota)}",
        "role_quotas": f"**Daily images by role:** {_listed(role_quotas, most, 'none')}",
        "server_quota": f"**Server images:** per day {limit_words(s.daily_server_quota)} · "
        f"per month {limit_words(s.monthly_server_quota)}",
        "blocklist": f"**Prompt blocklist:** {count}{_listed(entries, min(most, 5), 'empty')}{exempt}",
        "audit_channel_id": f"**Audit channel:** {audit}",
    }
