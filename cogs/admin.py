"""/imagine-admin: a server's own rules for /imagine; /imagine-quota: what a member has left.

Thin adapter: settings live in `bot.guild_settings`, the rules are applied by `bot.policy` (the
one place deciding whether a member may run a job), texts and the CSV come from `bot.usage`.

Who may use /imagine-admin is enforced here, in code, for every subcommand: members with
Manage Server (or Administrator), members with one of the server's admin roles, and the bot's
owners (OWNER_IDS). `default_permissions(manage_guild=True)` only hides the commands from
others by default, and a server can change that in its Integrations settings. Changing the
admin roles themselves needs Manage Server, so a delegated admin cannot hand out admin.
"""

# No `from __future__ import annotations`: discord.py reads the parameter annotations of the
# commands built in the closures below at definition time.
import asyncio
import io
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import policy, usage
from bot.blocklist import BlockEntry, Blocklist, BlocklistError, describe, validate_entry, validate_exception
from bot.catalog import Catalog
from bot.guild_settings import DEFAULTS, GuildSettings
from cogs import render
from cogs.imagine import requester
from cogs.replies import reply_privately

if TYPE_CHECKING:
    from cogs.app import ImagineBot

log = logging.getLogger(__name__)

GROUP_NAME = "imagine-admin"
QUOTA_COMMAND = "imagine-quota"
GUILD_ONLY = "These commands only work in a server."
NOT_ADMIN = (
    "Only members with the **Manage Server** permission, or with one of this server's image admin "
    "roles, can change image generation settings."
)
NOT_MANAGER = "Only members with the **Manage Server** permission can change the admin roles."
# Most jobs one usage CSV lists (a month of a busy server stays far below).
MAX_CSV_ROWS = 20_000

# Where /imagine can run: a channel it may be allowed or denied in (threads follow their channel).
PLACE_TYPES = (
    discord.ChannelType.text,
    discord.ChannelType.news,
    discord.ChannelType.voice,
    discord.ChannelType.stage_voice,
    discord.ChannelType.forum,
    discord.ChannelType.public_thread,
    discord.ChannelType.private_thread,
    discord.ChannelType.news_thread,
)
# Where the audit line can be posted.
AUDIT_TYPES = (
    discord.ChannelType.text,
    discord.ChannelType.news,
    discord.ChannelType.voice,
    discord.ChannelType.public_thread,
    discord.ChannelType.private_thread,
)


class NotAllowedError(app_commands.CheckFailure):
    """The member may not use this command; the message says why (the tree answers it privately)."""


class ChangeRefusedError(Exception):
    """A settings change that would make no sense; nothing was written, the message says why."""


class ChannelOption(app_commands.Transformer):
    """A channel option limited to some channel types; only the resolved channel's id is used."""

    def __init__(self, *types: discord.ChannelType) -> None:
        super().__init__()
        self._types = list(types)

    @property
    def type(self) -> discord.AppCommandOptionType:
        return discord.AppCommandOptionType.channel

    @property
    def channel_types(self) -> list[discord.ChannelType]:
        return self._types

    async def transform(self, interaction: discord.Interaction, value: object) -> object:
        return value


Place = app_commands.Transform[app_commands.AppCommandChannel, ChannelOption(*PLACE_TYPES)]
AuditPlace = app_commands.Transform[app_commands.AppCommandChannel, ChannelOption(*AUDIT_TYPES)]


class AdminGroup(app_commands.Group):
    """A group whose every subcommand (and every subgroup's) first checks the member in code.

    discord.py only calls the *immediate* parent group's `interaction_check`, so the subgroups
    are AdminGroups too.
    """

    def __init__(self, cog: "AdminCog", **options: Any) -> None:
        super().__init__(**options)
        self.cog = cog

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        await self.cog.check_admin(interaction)
        return True


def _without(values: tuple, value: object) -> tuple:
    return tuple(v for v in values if v != value)


def _with(values: tuple, value: object) -> tuple:
    return values if value in values else (*values, value)


class AdminCog(commands.Cog):
    """/imagine-admin and /imagine-quota."""

    def __init__(self, bot: "ImagineBot") -> None:
        self.bot = bot
        self.group = build_admin_group(self, bot.catalog)
        self.quota_command: app_commands.Command[AdminCog, [], None] = app_commands.Command(
            name=QUOTA_COMMAND,
            description="How many images you can still generate, and when that resets",
            callback=self.quota,
        )

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.group)
        self.bot.tree.add_command(self.quota_command)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.group.name)
        self.bot.tree.remove_command(self.quota_command.name)

    # ------------------------------------------------------------------ who may

    async def is_admin(self, interaction: discord.Interaction) -> bool:
        """Manage Server (or Administrator), an admin role of this server, or a bot owner."""
        if interaction.user.id in self.bot.operator.owner_ids or _manages_server(interaction):
            return True
        assert interaction.guild_id is not None
        settings = await self.bot.guild_settings.get(interaction.guild_id)
        return bool(requester(interaction).role_ids & set(settings.admin_roles))

    async def check_admin(self, interaction: discord.Interaction) -> None:
        """Raise `NotAllowedError` (answered privately by the tree) unless the member may administer."""
        if interaction.guild_id is None:
            raise NotAllowedError(GUILD_ONLY)
        if not await self.is_admin(interaction):
            log.info(
                "refused /%s to user %s in guild %s: not an admin",
                _qualified(interaction),
                interaction.user.id,
                interaction.guild_id,
            )
            raise NotAllowedError(NOT_ADMIN)

    # ------------------------------------------------------------------ changing settings

    async def change(
        self,
        interaction: discord.Interaction,
        change: Callable[[GuildSettings], GuildSettings],
        answer: Callable[[GuildSettings, GuildSettings], str],
    ) -> GuildSettings | None:
        """Apply `change` atomically and answer privately with `answer(old, new)`.

        `change` may raise `ChangeRefusedError`: nothing is written and its message is the answer.
        """
        assert interaction.guild_id is not None
        before: list[GuildSettings] = []

        def apply(current: GuildSettings) -> GuildSettings:
            before.append(current)
            return change(current)

        try:
            new = await self.bot.guild_settings.update(interaction.guild_id, apply)
        except ChangeRefusedError as exc:
            await reply_privately(interaction, str(exc))
            return None
        log.info(
            "guild %s: settings changed with /%s by user %s",
            interaction.guild_id,
            _qualified(interaction),
            interaction.user.id,
        )
        await reply_privately(interaction, answer(before[-1], new))
        return new

    def line(self, settings: GuildSettings, key: str) -> str:
        """How one setting reads now (the same line `/imagine-admin show` prints)."""
        return usage.setting_lines(settings, self.bot.catalog)[key]

    # ------------------------------------------------------------------ /imagine-quota

    async def quota(self, interaction: discord.Interaction) -> None:
        """Images left today (and this month), when that resets, cooldown: exactly what /imagine enforces."""
        who = requester(interaction)
        settings = await self.bot.guild_settings.get(who.guild_id) if who.guild_id is not None else None
        now = time.time()
        plan = policy.quota_plan(settings, self.bot.operator, who, 1, now)
        keys = [limit.key for limit in (*plan.image_limits, *plan.active_limits)]
        if plan.cooldown is not None:
            keys.append(plan.cooldown.key)
        used = await self.bot.ledger.values(keys)
        lines = []
        if settings is not None and not settings.enabled:
            lines.append("Image generation is turned off in this server right now.")
        elif settings is not None and who.user_id in settings.banned_users:
            lines.append("You are not allowed to generate images in this server.")
        if who.user_id in self.bot.operator.owner_ids:
            lines.append("You are one of the bot's owners: no limit, quota or cooldown applies to you.")
        lines.append(usage.quota_text(plan, used, now))
        await reply_privately(interaction, "\n".join(lines))


def _manages_server(interaction: discord.Interaction) -> bool:
    perms = interaction.permissions
    return perms.manage_guild or perms.administrator


def _qualified(interaction: discord.Interaction) -> str:
    return interaction.command.qualified_name if interaction.command else "?"


def _model_set(settings: GuildSettings, catalog: Catalog) -> tuple[str, ...]:
    """The models the server allows, spelled out (an empty setting means all)."""
    return settings.allowed_models or catalog.ids


def _resolution_set(settings: GuildSettings, catalog: Catalog) -> tuple[str, ...]:
    return settings.allowed_resolutions or catalog.all_resolutions()


def build_admin_group(cog: AdminCog, catalog: Catalog) -> AdminGroup:
    """/imagine-admin and its subgroups. Choices come from the catalog, so it is built at load time."""
    group = AdminGroup(
        cog,
        name=GROUP_NAME,
        description="Control image generation in this server (admins only)",
        guild_only=True,
        allowed_contexts=app_commands.AppCommandContext(guild=True),
        default_permissions=discord.Permissions(manage_guild=True),
    )
    bot = cog.bot

    # ---------------------------------------------------------------- overview

    @group.command(name="show", description="Show every image generation setting of this server")
    async def show(interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        settings = await bot.guild_settings.get(interaction.guild_id)
        await reply_privately(interaction, usage.settings_text(settings, catalog))

    @group.command(name="reset", description="Restore every setting of this server to the defaults")
    async def reset(interaction: discord.Interaction) -> None:
        if _may_change_admins(cog, interaction):
            await cog.change(
                interaction,
                lambda _: DEFAULTS,
                lambda _, new: "Every setting is back to its default.\n" + usage.settings_text(new, catalog),
            )
            return
        # A member who is admin through an admin role may not drop the admin roles: that would lock
        # them and every other role-admin out, which only someone with Manage Server may decide.
        await cog.change(
            interaction,
            lambda s: DEFAULTS.replace(admin_roles=s.admin_roles),
            lambda _, new: (
                "Every setting is back to its default, except the admin roles: they were kept, because "
                "only members with the **Manage Server** permission can change the admin roles.\n"
                + usage.settings_text(new, catalog)
            ),
        )

    @group.command(name="enable", description="Turn image generation on in this server")
    async def enable(interaction: discord.Interaction) -> None:
        await cog.change(
            interaction,
            lambda s: s.replace(enabled=True),
            lambda old, new: (
                ("It was already on." if old.enabled else "Image generation is on again.")
                + "\n"
                + cog.line(new, "enabled")
            ),
        )

    @group.command(name="disable", description="Turn image generation off in this server")
    async def disable(interaction: discord.Interaction) -> None:
        await cog.change(
            interaction,
            lambda s: s.replace(enabled=False),
            lambda old, new: (
                (
                    "It was already off."
                    if not old.enabled
                    else "Image generation is off: /imagine now refuses every member."
                )
                + " Turn it back on with `/imagine-admin enable`.\n"
                + cog.line(new, "enabled")
            ),
        )

    # ---------------------------------------------------------------- members

    @group.command(name="ban", description="Stop a member from generating images in this server")
    @app_commands.describe(member="Who may no longer use /imagine here")
    async def ban(interaction: discord.Interaction, member: discord.User) -> None:
        await cog.change(
            interaction,
            lambda s: s.replace(banned_users=_with(s.banned_users, member.id)),
            lambda old, new: (
                (
                    f"{member.mention} was already banned."
                    if member.id in old.banned_users
                    else f"{member.mention} can no longer generate images in this server."
                )
                + "\n"
                + cog.line(new, "banned_users")
            ),
        )

    @group.command(name="unban", description="Let a banned member generate images again")
    @app_commands.describe(member="Who may use /imagine here again")
    async def unban(interaction: discord.Interaction, member: discord.User) -> None:
        await cog.change(
            interaction,
            lambda s: s.replace(banned_users=_without(s.banned_users, member.id)),
            lambda old, new: (
                (
                    f"{member.mention} can generate images again."
                    if member.id in old.banned_users
                    else f"{member.mention} was not banned."
                )
                + "\n"
                + cog.line(new, "banned_users")
            ),
        )

    # ---------------------------------------------------------------- limits and quotas

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

    # ---------------------------------------------------------------- audit and usage

    @group.command(name="audit", description="Post one line per finished job in a channel (empty = off)")
    @app_commands.describe(channel="Where the audit lines go; leave empty to stop them")
    async def audit(interaction: discord.Interaction, channel: AuditPlace | None = None) -> None:
        assert interaction.guild_id is not None
        if channel is not None:
            # Prove the bot can post there before relying on it (which may take more than 3 s).
            await interaction.response.defer(ephemeral=True, thinking=True)
            target = bot.get_partial_messageable(channel.id, guild_id=interaction.guild_id)
            try:
                await target.send(
                    f"📋 Image generation audit: one line per finished /imagine job will be posted here "
                    f"(set by {interaction.user.mention}).",
                    allowed_mentions=render.NO_PINGS,
                )
            except discord.HTTPException as exc:
                log.info("guild %s: cannot post in audit channel (%s)", interaction.guild_id, exc.status)
                await reply_privately(
                    interaction,
                    f"I can't post in <#{channel.id}> (Discord said {exc.status}). Give me the **View "
                    "Channel** and **Send Messages** permissions there and try again. Nothing was changed.",
                )
                return
        channel_id = channel.id if channel is not None else None
        await cog.change(
            interaction,
            lambda s: s.replace(audit_channel_id=channel_id),
            lambda _, new: (
                (
                    f"Every finished job will be logged in <#{channel_id}>."
                    if channel_id
                    else "Audit lines are off."
                )
                + "\n"
                + cog.line(new, "audit_channel_id")
            ),
        )

    @group.command(name="usage", description="Images made in this server, top members, failures, and a CSV")
    @app_commands.describe(period="Today or this month (UTC)")
    async def usage_command(
        interaction: discord.Interaction, period: Literal["today", "month"] = "today"
    ) -> None:
        await _send_usage(cog, interaction, period)

    # ---------------------------------------------------------------- subgroups

    group.add_command(_channel_group(cog))
    group.add_command(_role_group(cog))
    group.add_command(_model_group(cog, catalog))
    if catalog.all_resolutions():
        group.add_command(_resolution_group(cog, catalog))
    group.add_command(_blocklist_group(cog))
    return group


async def _change_numbers(
    cog: AdminCog, interaction: discord.Interaction, changes: dict[str, int | None], keys: tuple[str, ...]
) -> None:
    """Set numeric settings; with no option given, show them."""
    assert interaction.guild_id is not None
    if not changes:
        settings = await cog.bot.guild_settings.get(interaction.guild_id)
        lines = [cog.line(settings, key) for key in keys]
        await reply_privately(interaction, "Nothing given, nothing changed. Now:\n" + "\n".join(lines))
        return

    def answer(old: GuildSettings, new: GuildSettings) -> str:
        before = usage.setting_lines(old, cog.bot.catalog)
        after = usage.setting_lines(new, cog.bot.catalog)
        lines = [
            after[k] + (f" (was: {_value_of(before[k])})" if before[k] != after[k] else "") for k in keys
        ]
        note = ""
        if new.role_quotas and new.daily_member_quota is None and "daily_member_quota" in keys:
            note = "\nNote: members without a quota role have no daily limit."
        return "Updated. Now:\n" + "\n".join(lines) + note

    await cog.change(interaction, lambda s: s.replace(**changes), answer)


def _value_of(line: str) -> str:
    """The value part of a `**Label:** value` line."""
    return line.split(":** ", 1)[-1]


async def _send_usage(cog: AdminCog, interaction: discord.Interaction, period_name: str) -> None:
    """The usage report and its CSV (deferred: the query and the file may take a moment)."""
    assert interaction.guild_id is not None
    guild_id = interaction.guild_id
    await interaction.response.defer(ephemeral=True, thinking=True)
    now = time.time()
    period = usage.period_of(period_name, now)
    settings = await cog.bot.guild_settings.get(guild_id)
    # The server's counters, by the keys /imagine charges (a requester stands in for the server).
    who = policy.Requester(user_id=0, guild_id=guild_id, channel_id=0)
    plan = policy.quota_plan(settings, cog.bot.operator, who, 1, now)
    keys = {lim.rule: lim.key for lim in plan.image_limits}
    counters = await cog.bot.ledger.values([keys["server_daily"], keys["server_monthly"]])
    jobs = await cog.bot.jobs.in_guild(guild_id, since=period.start, until=period.end, limit=MAX_CSV_ROWS + 1)
    truncated = len(jobs) > MAX_CSV_ROWS
    jobs = jobs[:MAX_CSV_ROWS]
    summary = usage.summarize(jobs)
    data = usage.jobs_csv(jobs)
    while len(data) > interaction.filesize_limit and len(jobs) > 1:
        jobs, truncated = jobs[: len(jobs) // 2], True
        data = usage.jobs_csv(jobs)
    text = usage.usage_text(
        period,
        summary,
        today=counters[keys["server_daily"]],
        month=counters[keys["server_monthly"]],
        settings=settings,
        truncated=truncated,
    )
    file = discord.File(io.BytesIO(data), filename=usage.csv_filename(guild_id, period))
    await reply_privately(interaction, text, file=file)


# -------------------------------------------------------------------- /imagine-admin channel …


def _channel_group(cog: AdminCog) -> AdminGroup:
    channel_group = AdminGroup(cog, name="channel", description="Where /imagine may be used")
    lines = ("allowed_channels", "denied_channels")

    def answer(what: str) -> Callable[[GuildSettings, GuildSettings], str]:
        return lambda _, new: what + "\n" + "\n".join(cog.line(new, k) for k in lines)

    @channel_group.command(name="allow", description="Allow /imagine in a channel (then only listed ones)")
    @app_commands.describe(channel="A channel (its threads follow it)")
    async def allow(interaction: discord.Interaction, channel: Place) -> None:
        cid = channel.id

        def change(s: GuildSettings) -> GuildSettings:
            return s.replace(
                allowed_channels=_with(s.allowed_channels, cid),
                denied_channels=_without(s.denied_channels, cid),
            )

        await cog.change(interaction, change, answer(f"/imagine is allowed in <#{cid}>."))

    @channel_group.command(name="deny", description="Forbid /imagine in a channel")
    @app_commands.describe(channel="A channel (its threads follow it)")
    async def deny(interaction: discord.Interaction, channel: Place) -> None:
        cid = channel.id

        def change(s: GuildSettings) -> GuildSettings:
            if s.allowed_channels == (cid,):
                raise ChangeRefusedError(
                    f"<#{cid}> is the only allowed channel: without it every channel would be allowed. "
                    "Allow another channel first, or use `/imagine-admin disable` to turn generation off."
                )
            return s.replace(
                allowed_channels=_without(s.allowed_channels, cid),
                denied_channels=_with(s.denied_channels, cid),
            )

        await cog.change(interaction, change, answer(f"/imagine is denied in <#{cid}>."))

    @channel_group.command(
        name="clear", description="Take a channel off both lists (empty: clear both lists)"
    )
    @app_commands.describe(channel="The channel to take off the lists; leave empty to allow every channel")
    async def clear(interaction: discord.Interaction, channel: Place | None = None) -> None:
        if channel is None:
            await cog.change(
                interaction,
                lambda s: s.replace(allowed_channels=(), denied_channels=()),
                answer("Both channel lists are empty: /imagine works in every channel."),
            )
            return
        cid = channel.id
        await cog.change(
            interaction,
            lambda s: s.replace(
                allowed_channels=_without(s.allowed_channels, cid),
                denied_channels=_without(s.denied_channels, cid),
            ),
            answer(f"<#{cid}> is on neither list now."),
        )

    return channel_group


# -------------------------------------------------------------------- /imagine-admin role …


def _role_group(cog: AdminCog) -> AdminGroup:
    role_group = AdminGroup(cog, name="role", description="Which roles may generate, administer, or get more")

    @role_group.command(name="allow", description="Let a role generate (then only listed roles may)")
    @app_commands.describe(role="The role")
    async def allow(interaction: discord.Interaction, role: discord.Role) -> None:
        await cog.change(
            interaction,
            lambda s: s.replace(allowed_roles=_with(s.allowed_roles, role.id)),
            lambda _, new: (
                f"Members with {role.mention} may generate images.\n" + cog.line(new, "allowed_roles")
            ),
        )

    @role_group.command(
        name="disallow", description="Take a role off the allowed roles (none left: everyone)"
    )
    @app_commands.describe(role="The role")
    async def disallow(interaction: discord.Interaction, role: discord.Role) -> None:
        def answer(old: GuildSettings, new: GuildSettings) -> str:
            if role.id not in old.allowed_roles:
                what = f"{role.mention} was not an allowed role."
            elif not new.allowed_roles:
                what = f"{role.mention} was the last allowed role: every member may generate images now."
            else:
                what = f"{role.mention} is no longer an allowed role."
            return what + "\n" + cog.line(new, "allowed_roles")

        await cog.change(
            interaction, lambda s: s.replace(allowed_roles=_without(s.allowed_roles, role.id)), answer
        )

    @role_group.command(name="admin", description="Let a role use /imagine-admin (needs Manage Server)")
    @app_commands.describe(role="The role")
    async def admin(interaction: discord.Interaction, role: discord.Role) -> None:
        if not _may_change_admins(cog, interaction):
            await reply_privately(interaction, NOT_MANAGER)
            return
        await cog.change(
            interaction,
            lambda s: s.replace(admin_roles=_with(s.admin_roles, role.id)),
            lambda _, new: (
                f"Members with {role.mention} may use /imagine-admin. Discord still hides the command from "
                "members without Manage Server unless you allow the role in Server Settings → Integrations.\n"
                + cog.line(new, "admin_roles")
            ),
        )

    @role_group.command(
        name="unadmin", description="Stop a role from using /imagine-admin (needs Manage Server)"
    )
    @app_commands.describe(role="The role")
    async def unadmin(interaction: discord.Interaction, role: discord.Role) -> None:
        if not _may_change_admins(cog, interaction):
            await reply_privately(interaction, NOT_MANAGER)
            return
        await cog.change(
            interaction,
            lambda s: s.replace(admin_roles=_without(s.admin_roles, role.id)),
            lambda _, new: f"{role.mention} is not an admin role.\n" + cog.line(new, "admin_roles"),
        )

    @role_group.command(name="quota", description="Daily images for members with a role (0 = remove)")
    @app_commands.describe(role="The role (e.g. server boosters)", images="Images per UTC day; 0 removes it")
    async def quota(
        interaction: discord.Interaction, role: discord.Role, images: app_commands.Range[int, 0, 100_000]
    ) -> None:
        def change(s: GuildSettings) -> GuildSettings:
            others = tuple((r, q) for r, q in s.role_quotas if r != role.id)
            return s.replace(role_quotas=(*others, (role.id, images)) if images else others)

        def answer(_: GuildSettings, new: GuildSettings) -> str:
            what = (
                f"Members with {role.mention} may generate {images} images a day (the best of their roles "
                "counts)."
                if images
                else f"{role.mention} has no quota of its own."
            )
            note = (
                "\nNote: members without a quota role have no daily limit."
                if new.role_quotas and new.daily_member_quota is None
                else ""
            )
            return f"{what}\n{cog.line(new, 'role_quotas')}\n{cog.line(new, 'daily_member_quota')}{note}"

        await cog.change(interaction, change, answer)

    return role_group


def _may_change_admins(cog: AdminCog, interaction: discord.Interaction) -> bool:
    return interaction.user.id in cog.bot.operator.owner_ids or _manages_server(interaction)


# -------------------------------------------------------------------- /imagine-admin model / resolution …


def _model_group(cog: AdminCog, catalog: Catalog) -> AdminGroup:
    model_group = AdminGroup(cog, name="model", description="Which models members may use")
    choices = [app_commands.Choice(name=m.display_name, value=m.id) for m in catalog]

    def name(model_id: str) -> str:
        return usage.model_names([model_id], catalog)[0]

    def answer(what: str) -> Callable[[GuildSettings, GuildSettings], str]:
        return lambda _, new: what + "\n" + cog.line(new, "allowed_models")

    @model_group.command(name="allow", description="Allow a model")
    @app_commands.describe(model="The model")
    @app_commands.choices(model=choices)
    async def allow(interaction: discord.Interaction, model: str) -> None:
        def change(s: GuildSettings) -> GuildSettings:
            wanted = set(_model_set(s, catalog)) | {model}
            kept = tuple(i for i in catalog.ids if i in wanted)
            return s.replace(allowed_models=() if kept == catalog.ids else kept)

        await cog.change(interaction, change, answer(f"{name(model)} is allowed."))

    @model_group.command(name="disallow", description="Disallow a model")
    @app_commands.describe(model="The model")
    @app_commands.choices(model=choices)
    async def disallow(interaction: discord.Interaction, model: str) -> None:
        def change(s: GuildSettings) -> GuildSettings:
            kept = tuple(i for i in _model_set(s, catalog) if i != model)
            if not kept:
                raise ChangeRefusedError(
                    f"{name(model)} is the only allowed model. Allow another one first, or turn image "
                    "generation off with `/imagine-admin disable`."
                )
            return s.replace(allowed_models=kept)

        await cog.change(interaction, change, answer(f"{name(model)} is not allowed any more."))

    @model_group.command(name="all", description="Allow every model")
    async def allow_all(interaction: discord.Interaction) -> None:
        await cog.change(
            interaction, lambda s: s.replace(allowed_models=()), answer("Every model is allowed.")
        )

    return model_group


def _resolution_group(cog: AdminCog, catalog: Catalog) -> AdminGroup:
    group = AdminGroup(cog, name="resolution", description="Which output resolutions members may use")
    offered = catalog.all_resolutions()
    choices = [app_commands.Choice(name=r, value=r) for r in offered]

    def answer(what: str) -> Callable[[GuildSettings, GuildSettings], str]:
        return lambda _, new: what + "\n" + cog.line(new, "allowed_resolutions")

    @group.command(name="allow", description="Allow a resolution")
    @app_commands.describe(resolution="The resolution")
    @app_commands.choices(resolution=choices)
    async def allow(interaction: discord.Interaction, resolution: str) -> None:
        def change(s: GuildSettings) -> GuildSettings:
            wanted = set(_resolution_set(s, catalog)) | {resolution}
            kept = tuple(r for r in offered if r in wanted)
            return s.replace(allowed_resolutions=() if kept == offered else kept)

        await cog.change(interaction, change, answer(f"Resolution `{resolution}` is allowed."))

    @group.command(name="disallow", description="Disallow a resolution")
    @app_commands.describe(resolution="The resolution")
    @app_commands.choices(resolution=choices)
    async def disallow(interaction: discord.Interaction, resolution: str) -> None:
        def change(s: GuildSettings) -> GuildSettings:
            kept = tuple(r for r in _resolution_set(s, catalog) if r != resolution)
            if not kept:
                raise ChangeRefusedError(
                    f"`{resolution}` is the only allowed resolution. Allow another one first."
                )
            return s.replace(allowed_resolutions=kept)

        await cog.change(interaction, change, answer(f"Resolution `{resolution}` is not allowed any more."))

    @group.command(name="all", description="Allow every resolution")
    async def allow_all(interaction: discord.Interaction) -> None:
        await cog.change(
            interaction, lambda s: s.replace(allowed_resolutions=()), answer("Every resolution is allowed.")
        )

    return group


# -------------------------------------------------------------------- /imagine-admin blocklist …


def _blocklist_group(cog: AdminCog) -> AdminGroup:
    group = AdminGroup(cog, name="blocklist", description="Words and patterns prompts may not contain")

    @group.command(
        name="add", description="Refuse prompts containing a word or matching a regular expression"
    )
    @app_commands.describe(
        kind="word: whole words, look-alikes included (h4te = hate); regex: a Python regular expression",
        pattern="The word, phrase or regular expression",
    )
    async def add(
        interaction: discord.Interaction,
        kind: Literal["word", "regex"],
        pattern: app_commands.Range[str, 1, 200],
    ) -> None:
        try:
            entry = validate_entry(kind, pattern)
            await _compile_off_loop(
                cog, interaction, lambda s: ((*s.blocklist, entry), s.blocklist_exceptions)
            )
        except BlocklistError as exc:
            await reply_privately(interaction, f"Not added: {exc}")
            return

        def change(s: GuildSettings) -> GuildSettings:
            if entry in s.blocklist:
                raise ChangeRefusedError(f"`{describe(entry)}` is already on the blocklist.")
            try:
                Blocklist((*s.blocklist, entry))
            except BlocklistError as exc:
                raise ChangeRefusedError(f"Not added: {exc}") from None
            return s.replace(blocklist=(*s.blocklist, entry))

        await cog.change(
            interaction,
            change,
            lambda _, new: (
                f"Added `{describe(entry)}`: prompts matching it are refused.\n" + cog.line(new, "blocklist")
            ),
        )

    @group.command(name="remove", description="Take an entry off the blocklist")
    @app_commands.describe(pattern="The word or regular expression, exactly as listed")
    async def remove(interaction: discord.Interaction, pattern: str) -> None:
        def change(s: GuildSettings) -> GuildSettings:
            found = _find_entry(s, pattern)
            if found is None:
                raise ChangeRefusedError(
                    "That is not on the blocklist. See `/imagine-admin blocklist list` for the entries."
                )
            return s.replace(blocklist=tuple(e for e in s.blocklist if e != found))

        def answer(old: GuildSettings, new: GuildSettings) -> str:
            gone = next(e for e in old.blocklist if e not in new.blocklist)
            return f"Removed `{describe(gone)}`.\n" + cog.line(new, "blocklist")

        await cog.change(interaction, change, answer)

    @remove.autocomplete("pattern")
    async def remove_choices(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        # Autocomplete skips interaction checks: only admins may see the entries.
        if interaction.guild_id is None or not await cog.is_admin(interaction):
            return []
        settings = await cog.bot.guild_settings.get(interaction.guild_id)
        typed = current.casefold()
        return [
            app_commands.Choice(name=usage.clip(describe(e), 100), value=e.pattern[:100])
            for e in settings.blocklist
            if typed in e.pattern.casefold()
        ][:25]

    @group.command(name="except", description="Never treat a phrase as a match (an everyday word, say)")
    @app_commands.describe(phrase="Text that is never refused, e.g. a word of your language: j'ai hâte")
    async def except_phrase(
        interaction: discord.Interaction, phrase: app_commands.Range[str, 1, 200]
    ) -> None:
        try:
            phrase = validate_exception(phrase)
            await _compile_off_loop(
                cog, interaction, lambda s: (s.blocklist, (*s.blocklist_exceptions, phrase))
            )
        except BlocklistError as exc:
            await reply_privately(interaction, f"Not added: {exc}")
            return

        def change(s: GuildSettings) -> GuildSettings:
            if any(p.casefold() == phrase.casefold() for p in s.blocklist_exceptions):
                raise ChangeRefusedError(f"`{phrase}` is already an exception.")
            try:
                Blocklist(s.blocklist, (*s.blocklist_exceptions, phrase))
            except BlocklistError as exc:
                raise ChangeRefusedError(f"Not added: {exc}") from None
            return s.replace(blocklist_exceptions=(*s.blocklist_exceptions, phrase))

        await cog.change(
            interaction,
            change,
            lambda _, new: (
                f"Added the exception `{phrase}`: it is never treated as a blocklist match "
                f"(it still has to be written as whole words). Exceptions: {len(new.blocklist_exceptions)}."
            ),
        )

    @group.command(name="unexcept", description="Take a phrase off the blocklist exceptions")
    @app_commands.describe(phrase="The exception, as listed")
    async def unexcept_phrase(interaction: discord.Interaction, phrase: str) -> None:
        wanted = " ".join(phrase.split()).casefold()

        def change(s: GuildSettings) -> GuildSettings:
            kept = tuple(p for p in s.blocklist_exceptions if p.casefold() != wanted)
            if kept == s.blocklist_exceptions:
                raise ChangeRefusedError(
                    "That is not an exception. See `/imagine-admin blocklist list` for the exceptions."
                )
            return s.replace(blocklist_exceptions=kept)

        def answer(old: GuildSettings, new: GuildSettings) -> str:
            gone = next(p for p in old.blocklist_exceptions if p not in new.blocklist_exceptions)
            return f"Removed the exception `{gone}`. Exceptions: {len(new.blocklist_exceptions)}."

        await cog.change(interaction, change, answer)

    @unexcept_phrase.autocomplete("phrase")
    async def unexcept_choices(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        # Autocomplete skips interaction checks: only admins may see the exceptions.
        if interaction.guild_id is None or not await cog.is_admin(interaction):
            return []
        settings = await cog.bot.guild_settings.get(interaction.guild_id)
        typed = current.casefold()
        return [
            app_commands.Choice(name=usage.clip(p, 100), value=p[:100])
            for p in settings.blocklist_exceptions
            if typed in p.casefold()
        ][:25]

    @group.command(name="list", description="Show the blocklist and its exceptions")
    async def list_entries(interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        settings = await cog.bot.guild_settings.get(interaction.guild_id)
        if not settings.blocklist and not settings.blocklist_exceptions:
            await reply_privately(
                interaction, "The blocklist is empty. Add entries with `/imagine-admin blocklist add`."
            )
            return
        entries = [describe(e) for e in settings.blocklist]
        exceptions = [f"except: {p}" for p in settings.blocklist_exceptions]
        text = f"**Prompt blocklist** ({len(entries)}):\n" + "\n".join(f"• `{e}`" for e in entries)
        if exceptions:
            text += f"\n**Exceptions** ({len(exceptions)}):\n" + "\n".join(
                f"• `{p}`" for p in settings.blocklist_exceptions
            )
        if len(text) <= usage.MESSAGE_LIMIT:
            await reply_privately(interaction, text)
            return
        listing = io.BytesIO("\n".join(entries + exceptions).encode())
        await reply_privately(
            interaction,
            f"**Prompt blocklist**: {len(entries)} entries, attached.",
            file=discord.File(listing, filename="blocklist.txt"),
        )

    return group


async def _compile_off_loop(
    cog: AdminCog,
    interaction: discord.Interaction,
    lists: Callable[[GuildSettings], tuple[tuple[BlockEntry, ...], tuple[str, ...]]],
) -> None:
    """Build the blocklist a change would leave in a worker thread, raising `BlocklistError` if refused.

    Compiling a full list takes up to a few hundred ms; once done here, the check inside the
    settings transaction reuses the compiled patterns.
    """
    assert interaction.guild_id is not None
    entries, exceptions = lists(await cog.bot.guild_settings.get(interaction.guild_id))
    await asyncio.to_thread(Blocklist, entries, exceptions)


def _find_entry(settings: GuildSettings, pattern: str) -> BlockEntry | None:
    """The entry an admin means: its pattern (a word without surrounding spaces) or its `describe`
    form; else, as autocomplete cuts values to 100 characters, the only entry starting with it."""
    for entry in settings.blocklist:
        if pattern in (entry.pattern, describe(entry)) or (
            entry.kind == "word" and pattern.strip() == entry.pattern
        ):
            return entry
    if len(pattern) == 100:
        starts = [e for e in settings.blocklist if e.pattern.startswith(pattern)]
        if len(starts) == 1:
            return starts[0]
    return None


async def setup(bot: "ImagineBot") -> None:
    await bot.add_cog(AdminCog(bot))
