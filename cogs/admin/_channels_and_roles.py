"""Where /imagine may run and who may use it: `ban`/`unban`, `/imagine-admin channel …` and
`/imagine-admin role …` (allowed roles, admin roles, role quotas).
"""

# No `from __future__ import annotations`: discord.py reads the parameter annotations of the
# commands below at definition time.
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.guild_settings import GuildSettings
from bot.i18n import Readable, Text, _, _n, join
from cogs.admin._group import (
    NO_QUOTA_ROLE_NOTE,
    NOT_MANAGER,
    AdminGroup,
    Answer,
    ChangeRefusedError,
    may_change_admins,
)
from cogs.admin._pairs import PairCommand, PairOption, add_pair, with_value, without_value

if TYPE_CHECKING:
    from cogs.admin._cog import AdminCog

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


# -------------------------------------------------------------------- /imagine-admin ban / unban


def add_ban_pair(group: AdminGroup, cog: "AdminCog") -> None:
    """`ban` and `unban`: the members who may not use /imagine in this server."""
    add_pair(
        group,
        cog,
        PairOption("member", discord.User),
        ("banned_users",),
        PairCommand(
            "ban",
            "Stop a member from generating images in this server",
            "Who may no longer use /imagine here",
            lambda s, member: s.replace(banned_users=with_value(s.banned_users, member.id)),
            lambda member, old, _new: (
                _("{member} was already banned.", member=member.mention)
                if member.id in old.banned_users
                else _("{member} can no longer generate images in this server.", member=member.mention)
            ),
        ),
        PairCommand(
            "unban",
            "Let a banned member generate images again",
            "Who may use /imagine here again",
            lambda s, member: s.replace(banned_users=without_value(s.banned_users, member.id)),
            lambda member, old, _new: (
                _("{member} can generate images again.", member=member.mention)
                if member.id in old.banned_users
                else _("{member} was not banned.", member=member.mention)
            ),
        ),
    )


# -------------------------------------------------------------------- /imagine-admin channel …

_CHANNEL_LINES = ("allowed_channels", "denied_channels")


def _deny_channel(s: GuildSettings, channel_id: int) -> GuildSettings:
    if s.allowed_channels == (channel_id,):
        raise ChangeRefusedError(
            _(
                "{channel} is the only allowed channel: without it every channel would be allowed. "
                "Allow another channel first, or use `/imagine-admin disable` to turn generation off.",
                channel=f"<#{channel_id}>",
            )
        )
    return s.replace(
        allowed_channels=without_value(s.allowed_channels, channel_id),
        denied_channels=with_value(s.denied_channels, channel_id),
    )


def channel_group(cog: "AdminCog") -> AdminGroup:
    """`/imagine-admin channel allow|deny|clear`: the allowed and denied channels."""
    group = AdminGroup(cog, name="channel", description="Where /imagine may be used")
    add_pair(
        group,
        cog,
        PairOption("channel", Place),
        _CHANNEL_LINES,
        PairCommand(
            "allow",
            "Allow /imagine in a channel (then only listed ones)",
            "A channel (its threads follow it)",
            lambda s, channel: s.replace(
                allowed_channels=with_value(s.allowed_channels, channel.id),
                denied_channels=without_value(s.denied_channels, channel.id),
            ),
            lambda channel, _old, _new: _("/imagine is allowed in {channel}.", channel=f"<#{channel.id}>"),
        ),
        PairCommand(
            "deny",
            "Forbid /imagine in a channel",
            "A channel (its threads follow it)",
            lambda s, channel: _deny_channel(s, channel.id),
            lambda channel, _old, _new: _("/imagine is denied in {channel}.", channel=f"<#{channel.id}>"),
        ),
    )

    def answer(what: Text) -> Answer:
        return lambda _old, new: join([what, *(cog.line(new, key) for key in _CHANNEL_LINES)])

    @group.command(name="clear", description="Take a channel off both lists (empty: clear both lists)")
    @app_commands.describe(channel="The channel to take off the lists; leave empty to allow every channel")
    async def clear(interaction: discord.Interaction, channel: Place | None = None) -> None:
        if channel is None:
            await cog.change(
                interaction,
                lambda s: s.replace(allowed_channels=(), denied_channels=()),
                answer(_("Both channel lists are empty: /imagine works in every channel.")),
            )
            return
        cid = channel.id
        await cog.change(
            interaction,
            lambda s: s.replace(
                allowed_channels=without_value(s.allowed_channels, cid),
                denied_channels=without_value(s.denied_channels, cid),
            ),
            answer(_("{channel} is on neither list now.", channel=f"<#{cid}>")),
        )

    return group


# -------------------------------------------------------------------- /imagine-admin role …


def _role_disallowed(role: discord.Role, old: GuildSettings, new: GuildSettings) -> Text:
    if role.id not in old.allowed_roles:
        return _("{role} was not an allowed role.", role=role.mention)
    if not new.allowed_roles:
        return _("{role} was the last allowed role: every member may generate images now.", role=role.mention)
    return _("{role} is no longer an allowed role.", role=role.mention)


def _admin_roles_refusal(cog: "AdminCog", interaction: discord.Interaction) -> Readable | None:
    return None if may_change_admins(cog, interaction) else NOT_MANAGER


def role_group(cog: "AdminCog") -> AdminGroup:
    """`/imagine-admin role …`: allowed roles, admin roles (Manage Server only) and role quotas."""
    group = AdminGroup(cog, name="role", description="Which roles may generate, administer, or get more")
    role = PairOption("role", discord.Role)
    add_pair(
        group,
        cog,
        role,
        ("allowed_roles",),
        PairCommand(
            "allow",
            "Let a role generate (then only listed roles may)",
            "The role",
            lambda s, r: s.replace(allowed_roles=with_value(s.allowed_roles, r.id)),
            lambda r, _old, _new: _("Members with {role} may generate images.", role=r.mention),
        ),
        PairCommand(
            "disallow",
            "Take a role off the allowed roles (none left: everyone)",
            "The role",
            lambda s, r: s.replace(allowed_roles=without_value(s.allowed_roles, r.id)),
            _role_disallowed,
        ),
    )
    add_pair(
        group,
        cog,
        role,
        ("admin_roles",),
        PairCommand(
            "admin",
            "Let a role use /imagine-admin (needs Manage Server)",
            "The role",
            lambda s, r: s.replace(admin_roles=with_value(s.admin_roles, r.id)),
            lambda r, _old, _new: _(
                "Members with {role} may use /imagine-admin. Discord still hides the command from "
                "members without Manage Server unless you allow the role in Server Settings → Integrations.",
                role=r.mention,
            ),
        ),
        PairCommand(
            "unadmin",
            "Stop a role from using /imagine-admin (needs Manage Server)",
            "The role",
            lambda s, r: s.replace(admin_roles=without_value(s.admin_roles, r.id)),
            lambda r, _old, _new: _("{role} is not an admin role.", role=r.mention),
        ),
        refusal=_admin_roles_refusal,
    )

    @group.command(name="quota", description="Daily images for members with a role (0 = remove)")
    @app_commands.describe(role="The role (e.g. server boosters)", images="Images per UTC day; 0 removes it")
    async def quota(
        interaction: discord.Interaction, role: discord.Role, images: app_commands.Range[int, 0, 100_000]
    ) -> None:
        def change(s: GuildSettings) -> GuildSettings:
            others = tuple((r, q) for r, q in s.role_quotas if r != role.id)
            return s.replace(role_quotas=(*others, (role.id, images)) if images else others)

        def answer(_old: GuildSettings, new: GuildSettings) -> Readable:
            what = (
                _n(
                    "Members with {role} may generate {count} image a day (the best of their roles counts).",
                    "Members with {role} may generate {count} images a day (the best of their roles counts).",
                    images,
                    role=role.mention,
                )
                if images
                else _("{role} has no quota of its own.", role=role.mention)
            )
            note = NO_QUOTA_ROLE_NOTE if new.role_quotas and new.daily_member_quota is None else ""
            return join([what, cog.line(new, "role_quotas"), cog.line(new, "daily_member_quota"), note])

        await cog.change(interaction, change, answer)

    return group
