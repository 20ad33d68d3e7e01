"""A server's switches and numbers: `show`, `reset`, `enable`, `disable`, `limits`, `quota` and `audit`."""

# No `from __future__ import annotations`: discord.py reads the parameter annotations of the
# commands below at definition time.
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot import i18n
from bot.catalog import Catalog
from bot.guild_settings import DEFAULTS, GuildSettings
from bot.i18n import Readable, Text, _, _n, join
from bot.settings_text import setting_lines, setting_value, settings_text
from bot.text import MESSAGE_LIMIT
from cogs import render
from cogs.admin._channels_and_roles import AuditPlace
from cogs.admin._group import NO_QUOTA_ROLE_NOTE, AdminGroup, may_change_admins
from cogs.replies import reply_privately, server_locale

if TYPE_CHECKING:
    from cogs.admin._cog import AdminCog

log = logging.getLogger(__name__)


def waiting_line(waiting: int) -> Text:
    """How many of the server's requests wait in line for the image service right now."""
    if not waiting:
        return _("**Waiting in line:** none of this server's requests right now.")
    return _n(
        "**Waiting in line:** {number} of this server's request is waiting for its turn to be sent "
        "(the image service takes only so many a second; servers take turns).",
        "**Waiting in line:** {number} of this server's requests are waiting for their turn to be sent "
        "(the image service takes only so many a second; servers take turns).",
        waiting,
        number=f"{waiting:,}",
    )


def settings_summary(
    cog: "AdminCog", catalog: Catalog, settings: GuildSettings, interaction: discord.Interaction, *, room: int
) -> str:
    """Every setting in the server's language, fitted into `room` characters of that language."""
    locale = server_locale(interaction)
    return settings_text(
        settings,
        catalog,
        operator_watermark=cog.bot.operator.watermark,
        read=lambda text: i18n.render(text, locale),
        room=room,
    )


def add_overview_commands(group: AdminGroup, cog: "AdminCog", catalog: Catalog) -> None:
    """Add `show`, `reset`, `enable` and `disable` to `group`."""

    @group.command(name="show", description="Show every image generation setting of this server")
    async def show(interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        settings = await cog.bot.guild_settings.get(interaction.guild_id)
        locale = server_locale(interaction)
        waiting = i18n.render(waiting_line(cog.bot.launcher.waiting_in(interaction.guild_id)), locale)
        # A long settings text is shortened to fit one message, never the line about waiting.
        text = settings_summary(cog, catalog, settings, interaction, room=MESSAGE_LIMIT - len(waiting) - 1)
        await reply_privately(interaction, f"{text}\n{waiting}")

    @group.command(name="reset", description="Restore every setting of this server to the defaults")
    async def reset(interaction: discord.Interaction) -> None:
        if may_change_admins(cog, interaction):
            await cog.change(
                interaction,
                lambda _current: DEFAULTS,
                lambda _old, new: _after_reset(
                    cog, catalog, new, interaction, _("Every setting is back to its default.")
                ),
            )
            return
        # A member who is admin through an admin role may not drop the admin roles: that would lock
        # them and every other role-admin out, which only someone with Manage Server may decide.
        await cog.change(
            interaction,
            lambda s: DEFAULTS.replace(admin_roles=s.admin_roles),
            lambda _old, new: _after_reset(
                cog,
                catalog,
                new,
                interaction,
                _(
                    "Every setting is back to its default, except the admin roles: they were kept, because "
                    "only members with the **Manage Server** permission can change the admin roles."
                ),
            ),
        )

    @group.command(name="enable", description="Turn image generation on in this server")
    async def enable(interaction: discord.Interaction) -> None:
        await cog.change(
            interaction,
            lambda s: s.replace(enabled=True),
            lambda old, new: join(
                [
                    _("It was already on.") if old.enabled else _("Image generation is on again."),
                    cog.line(new, "enabled"),
                ]
            ),
        )

    @group.command(name="disable", description="Turn image generation off in this server")
    async def disable(interaction: discord.Interaction) -> None:
        await cog.change(
            interaction,
            lambda s: s.replace(enabled=False),
            lambda old, new: join(
                [
                    _("It was already off. Turn it back on with `/imagine-admin enable`.")
                    if not old.enabled
                    else _(
                        "Image generation is off: /imagine now refuses every member. "
                        "Turn it back on with `/imagine-admin enable`."
                    ),
                    cog.line(new, "enabled"),
                ]
            ),
        )


def add_watermark_command(group: AdminGroup, cog: "AdminCog") -> None:
    """Add `watermark on|off|default` to `group`."""

    @group.command(
        name="watermark", description="Whether images made here carry the image service's watermark"
    )
    @app_commands.describe(setting="on: marked as generated · off: clean · default: the bot's default")
    @app_commands.choices(
        setting=[app_commands.Choice(name=name, value=name) for name in ("on", "off", "default")]
    )
    async def watermark(interaction: discord.Interaction, setting: str) -> None:
        value = {"on": True, "off": False}.get(setting)
        await cog.change(
            interaction,
            lambda s: s.replace(watermark=value),
            lambda _old, new: join(
                [
                    {
                        "on": _("New images will carry the image service's watermark."),
                        "off": _("New images will be made without a watermark."),
                    }.get(setting, _("New images follow the bot's default.")),
                    cog.line(new, "watermark"),
                ]
            ),
        )


def add_number_commands(group: AdminGroup, cog: "AdminCog") -> None:
    """Add `limits`, `quota` and `audit` to `group`."""

    @group.command(name="limits", description="Per-request and per-member limits (0 = no limit)")
    @app_commands.describe(
        max_n="Most images per request (0 = no limit)",
        max_references="Most reference images per request (0 = no limit)",
        cooldown_seconds="Seconds a member waits between requests (0 = none)",
        concurrent_member="Jobs one member may have running at once (0 = no limit)",
        concurrent_server="Jobs the whole server may have running at once (0 = no limit)",
    )
    async def limits(
        interaction: discord.Interaction,
        max_n: app_commands.Range[int, 0, 15] | None = None,
        max_references: app_commands.Range[int, 0, 10] | None = None,
        cooldown_seconds: app_commands.Range[int, 0, 86_400] | None = None,
        concurrent_member: app_commands.Range[int, 0, 100] | None = None,
        concurrent_server: app_commands.Range[int, 0, 1000] | None = None,
    ) -> None:
        given = {
            "max_n": max_n,
            "max_references": max_references,
            "max_concurrent_member": concurrent_member,
            "max_concurrent_server": concurrent_server,
        }
        changes: dict[str, int | None] = {k: v or None for k, v in given.items() if v is not None}
        if cooldown_seconds is not None:
            changes["cooldown_seconds"] = cooldown_seconds
        keys = ("max_n", "max_references", "cooldown_seconds", "concurrent")
        await _change_numbers(cog, interaction, changes, keys)

    @group.command(name="quota", description="Daily and monthly image quotas (0 = no limit)")
    @app_commands.describe(
        member_daily="Images each member may generate per UTC day (0 = no limit; see role quota)",
        server_daily="Images the whole server may generate per UTC day (0 = no limit)",
        server_monthly="Images the whole server may generate per UTC month (0 = no limit)",
    )
    async def quota(
        interaction: discord.Interaction,
        member_daily: app_commands.Range[int, 0, 100_000] | None = None,
        server_daily: app_commands.Range[int, 0, 1_000_000] | None = None,
        server_monthly: app_commands.Range[int, 0, 10_000_000] | None = None,
    ) -> None:
        given = {
            "daily_member_quota": member_daily,
            "daily_server_quota": server_daily,
            "monthly_server_quota": server_monthly,
        }
        changes = {k: v or None for k, v in given.items() if v is not None}
        await _change_numbers(
            cog, interaction, changes, ("daily_member_quota", "role_quotas", "server_quota")
        )

    @group.command(name="audit", description="Post one line per finished job in a channel (empty = off)")
    @app_commands.describe(channel="Where the audit lines go; leave empty to stop them")
    async def audit(interaction: discord.Interaction, channel: AuditPlace | None = None) -> None:
        assert interaction.guild_id is not None
        if channel is not None:
            # Prove the bot can post there before relying on it (which may take more than 3 s).
            await interaction.response.defer(ephemeral=True, thinking=True)
            target = cog.bot.get_partial_messageable(channel.id, guild_id=interaction.guild_id)
            try:
                await target.send(
                    i18n.render(
                        _(
                            "📋 Image generation audit: one line per finished /imagine job will be posted "
                            "here (set by {admin}).",
                            admin=interaction.user.mention,
                        ),
                        server_locale(interaction),
                    ),
                    allowed_mentions=render.NO_PINGS,
                )
            except discord.HTTPException as exc:
                log.info("guild %s: cannot post in audit channel (%s)", interaction.guild_id, exc.status)
                await reply_privately(
                    interaction,
                    _(
                        "I can't post in {channel} (Discord said {status}). Give me the **View Channel** and "
                        "**Send Messages** permissions there and try again. Nothing was changed.",
                        channel=f"<#{channel.id}>",
                        status=exc.status,
                    ),
                    locale=server_locale(interaction),
                )
                return
        channel_id = channel.id if channel is not None else None
        await cog.change(
            interaction,
            lambda s: s.replace(audit_channel_id=channel_id),
            lambda _old, new: join(
                [
                    _("Every finished job will be logged in {channel}.", channel=f"<#{channel_id}>")
                    if channel_id
                    else _("Audit lines are off."),
                    cog.line(new, "audit_channel_id"),
                ]
            ),
        )


async def _change_numbers(
    cog: "AdminCog", interaction: discord.Interaction, changes: dict[str, int | None], keys: tuple[str, ...]
) -> None:
    """Set numeric settings; with no option given, show them."""
    assert interaction.guild_id is not None
    if not changes:
        settings = await cog.bot.guild_settings.get(interaction.guild_id)
        lines = [cog.line(settings, key) for key in keys]
        await reply_privately(
            interaction,
            join([_("Nothing given, nothing changed. Now:"), *lines]),
            locale=server_locale(interaction),
        )
        return

    def answer(old: GuildSettings, new: GuildSettings) -> Readable:
        before = setting_lines(old, cog.bot.catalog, operator_watermark=cog.bot.operator.watermark)
        after = setting_lines(new, cog.bot.catalog, operator_watermark=cog.bot.operator.watermark)
        lines: list[Readable] = [
            _("{setting} (was: {value})", setting=after[k], value=setting_value(before[k]))
            if before[k] != after[k]
            else after[k]
            for k in keys
        ]
        if new.role_quotas and new.daily_member_quota is None and "daily_member_quota" in keys:
            lines.append(NO_QUOTA_ROLE_NOTE)
        return join([_("Updated. Now:"), *lines])

    await cog.change(interaction, lambda s: s.replace(**changes), answer)


def _after_reset(
    cog: "AdminCog", catalog: Catalog, new: GuildSettings, interaction: discord.Interaction, said: Text
) -> str:
    """What a reset answers: `said`, then every setting, in the server's language and in one message."""
    first = i18n.render(said, server_locale(interaction))
    summary = settings_summary(cog, catalog, new, interaction, room=MESSAGE_LIMIT - len(first) - 1)
    return f"{first}\n{summary}"
