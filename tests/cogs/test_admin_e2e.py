"""/imagine-admin and /imagine-quota end to end: the real bot, driven through the fake Discord
gateway, with the fake ToAPIs behind it.

Every setting is changed with its command, read back with `show` and from a fresh settings
store (as after a restart), and enforced on /imagine — the refusal text is checked, and the
fake ToAPIs must not have received the refused request.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import discord
import pytest
import sqlalchemy as sa
from discord import app_commands

from bot import policy
from bot.blocklist import BlockEntry
from bot.guild_settings import GuildSettings, GuildSettingsStore
from bot.jobs.records import JobRecord, JobState, JobStore, NewJob
from bot.quota import day_key, next_day, next_month
from bot.schema import jobs_table
from bot.store import Store
from bot.usage import CSV_COLUMNS, period_of
from cogs.admin import GUILD_ONLY, NOT_ADMIN, NOT_MANAGER
from tests.fakes.discord import DEFAULT_MEMBER_PERMISSIONS, FakeAttachment, FakeDiscord, InteractionRecord
from tests.fakes.toapis import TaskPlan, make_image
from tests.rig import RunningBot, eventually

pytestmark = pytest.mark.asyncio

GUILD = 1_111_111_111_111_111_111
MANAGE_GUILD = 1 << 5
ADMINISTRATOR = 1 << 3
MEMBER = DEFAULT_MEMBER_PERMISSIONS
MANAGER = DEFAULT_MEMBER_PERMISSIONS | MANAGE_GUILD
STALLED = TaskPlan(steps=[("queued", 0), ("in_progress", 50)], never_finish=True)
WHEN = r"<t:\d+:R>"

# The documented command layout (README, "Moderation").
ADMIN_COMMANDS = {
    "show",
    "watermark",
    "spoiler",
    "speed allow",
    "speed disallow",
    "speed all",
    "reset",
    "enable",
    "disable",
    "ban",
    "unban",
    "limits",
    "quota",
    "audit",
    "usage",
    "forget",
    "channel allow",
    "channel deny",
    "channel clear",
    "role allow",
    "role disallow",
    "role admin",
    "role unadmin",
    "role quota",
    "model allow",
    "model disallow",
    "model all",
    "resolution allow",
    "resolution disallow",
    "resolution all",
    "blocklist add",
    "blocklist remove",
    "blocklist list",
    "blocklist except",
    "blocklist unexcept",
}


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    """Like the rig's, but the server is announced (GUILD_CREATE), as Discord does for a bot with
    the guilds intent: the bot then knows the server's roles, and members' roles resolve."""
    original_base = discord.http.Route.BASE
    fake = FakeDiscord(guild_ids=[GUILD])
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
        discord.http.Route.BASE = original_base
    fake.assert_clean()


# --------------------------------------------------------------------------- option values


@dataclass(frozen=True)
class Channel:
    id: int


@dataclass(frozen=True)
class Role:
    id: int


@dataclass(frozen=True)
class User:
    id: int


def role_payload(role_id: int, name: str = "role") -> dict[str, Any]:
    return {
        "id": str(role_id),
        "name": name,
        "color": 0,
        "hoist": False,
        "position": 1,
        "permissions": "0",
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def encode(fake: FakeDiscord, options: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Options as Discord sends them (typed), with the `resolved` objects channel/role/user options need."""
    listed: list[dict[str, Any]] = []
    resolved: dict[str, dict[str, Any]] = {}
    for name, value in options.items():
        if value is None:
            continue
        if isinstance(value, Channel):
            listed.append({"name": name, "type": 7, "value": str(value.id)})
            resolved.setdefault("channels", {})[str(value.id)] = {
                "id": str(value.id),
                "type": 0,
                "name": f"channel-{value.id}",
                "permissions": str(MANAGER),
            }
        elif isinstance(value, Role):
            listed.append({"name": name, "type": 8, "value": str(value.id)})
            resolved.setdefault("roles", {})[str(value.id)] = role_payload(value.id)
        elif isinstance(value, User):
            listed.append({"name": name, "type": 6, "value": str(value.id)})
            resolved.setdefault("users", {})[str(value.id)] = fake.user_payload(value.id)
            resolved.setdefault("members", {})[str(value.id)] = {
                "roles": [],
                "joined_at": "2026-01-01T00:00:00+00:00",
                "nick": None,
                "pending": False,
                "flags": 0,
                "permissions": str(MEMBER),
            }
        else:
            kind = 5 if isinstance(value, bool) else 4 if isinstance(value, int) else 3
            listed.append({"name": name, "type": kind, "value": value})
    return listed, resolved


# --------------------------------------------------------------------------- the server


@dataclass
class Server:
    """The bot in one server, and what members and admins do there."""

    rig: RunningBot

    @property
    def fake(self) -> FakeDiscord:
        return self.rig.discord

    def new_member(self) -> int:
        return self.fake.snowflake()

    def new_channel(self) -> int:
        channel_id = self.fake.snowflake()
        self.fake.channel(channel_id, guild_id=GUILD)
        return channel_id

    async def new_role(self, name: str = "role") -> int:
        """A role created in the server (Discord tells the bot with GUILD_ROLE_CREATE)."""
        role_id = self.fake.snowflake()
        await self.fake.dispatch(
            "GUILD_ROLE_CREATE", {"guild_id": str(GUILD), "role": role_payload(role_id, name)}, guild_id=GUILD
        )
        await eventually(lambda: self.rig.bot.get_guild(GUILD).get_role(role_id), what="role cached")
        return role_id

    async def send(
        self,
        command: str,
        options: dict[str, Any] | None = None,
        *,
        permissions: int = MEMBER,
        user_id: int | None = None,
        roles: tuple[int, ...] = (),
        channel_id: int | None = None,
    ) -> InteractionRecord:
        listed, resolved = encode(self.fake, options or {})
        payload = self.fake.slash_command(
            command,
            listed,
            permissions=permissions,
            user_id=user_id,
            channel_id=channel_id,
            resolved=resolved or None,
        )
        payload["member"]["roles"] = [str(r) for r in roles]
        return await self.fake.send_interaction(payload)

    async def admin(self, command: str, options: dict[str, Any] | None = None, **who: Any) -> str:
        """Run `/imagine-admin COMMAND` (as a member with Manage Server unless told otherwise)."""
        who.setdefault("permissions", MANAGER)
        return await private_answer(self.fake, await self.send(f"imagine-admin {command}", options, **who))

    async def show(self) -> str:
        return await self.admin("show")

    async def quota(self, **who: Any) -> str:
        return await private_answer(self.fake, await self.send("imagine-quota", **who))

    async def imagine(
        self,
        prompt: str = "a red fox in the snow",
        *,
        user_id: int | None = None,
        roles: tuple[int, ...] = (),
        channel_id: int | None = None,
        **options: Any,
    ) -> InteractionRecord:
        payload = self.fake.slash_command(
            "imagine", {"prompt": prompt, **options}, user_id=user_id, channel_id=channel_id
        )
        payload["member"]["roles"] = [str(r) for r in roles]
        return await self.fake.send_interaction(payload)

    async def accepted(self, record: InteractionRecord) -> None:
        """/imagine answered with its public placeholder (the job was accepted and charged)."""
        await self.fake.wait_for(lambda _: record.acknowledged)
        assert (record.callback_type, record.ephemeral) == (4, False), record.callback

    async def refused(self, record: InteractionRecord) -> str:
        """/imagine answered privately with a refusal, and nothing reached the image service."""
        text = await private_answer(self.fake, record)
        assert self.rig.toapis.submit_attempts == 0, "a refused request reached ToAPIs"
        assert await find_job(self.rig, record) is None, "a refused request left a job record"
        return text

    async def refused_after(self, submissions: int, record: InteractionRecord) -> str:
        """Like `refused`, once `submissions` earlier requests were rightly sent to the image service."""
        text = await private_answer(self.fake, record)
        assert self.rig.toapis.submit_attempts == submissions, "a refused request reached ToAPIs"
        assert await find_job(self.rig, record) is None, "a refused request left a job record"
        return text

    async def submitted(self, count: int) -> None:
        await eventually(lambda: self.rig.toapis.submit_attempts >= count, within=10, what="submission")
        assert self.rig.toapis.submit_attempts == count

    async def stored(self) -> GuildSettings:
        """The settings as a fresh process would read them from the database."""
        store = Store.open(self.rig.bot.settings.sqlalchemy_url)
        try:
            return await GuildSettingsStore(store).get(GUILD)
        finally:
            await store.close()

    async def used(self, *keys: str) -> list[int]:
        values = await self.rig.bot.ledger.values(keys)
        return [values[k] for k in keys]


async def private_answer(fake: FakeDiscord, record: InteractionRecord) -> str:
    """The text of the bot's answer, which must be visible only to the member and ping no one."""
    await fake.wait_for(lambda _: record.acknowledged)
    if record.callback_type == 5:  # deferred: the followup replaces the "thinking" placeholder
        message = await fake.wait_for(
            lambda _: record.original if record.original and not record.original.loading else None
        )
        assert (message.ephemeral, message.pings) == (True, set())
        return message.content
    assert (record.callback_type, record.ephemeral) == (4, True), record.callback
    assert record.callback["data"]["allowed_mentions"] == {"parse": []}
    return record.callback["data"]["content"]


async def find_job(rig: RunningBot, record: InteractionRecord) -> JobRecord | None:
    assert rig.bot.store is not None
    async with rig.bot.store.engine.connect() as conn:
        query = sa.select(jobs_table.c.id).where(jobs_table.c.interaction_id == record.id)
        job_id = (await conn.execute(query)).scalar_one_or_none()
    return None if job_id is None else await rig.bot.jobs.get(job_id)


async def final_job(rig: RunningBot, record: InteractionRecord, within: float = 20.0) -> JobRecord:
    """The job once its record is final (quota settled)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        job = await find_job(rig, record)
        if job is not None and job.is_final:
            return job
        await asyncio.sleep(0.02)
    raise AssertionError("the job did not finish")


def let_tasks_finish(rig: RunningBot) -> None:
    for task in rig.toapis.tasks.values():
        task.plan = replace(task.plan, never_finish=False)


@pytest.fixture
async def server(start_bot) -> Server:
    rig = await start_bot()
    await eventually(lambda: rig.bot.get_guild(GUILD), what="the server is known to the bot")
    return Server(rig)


def leaves(group: app_commands.Group) -> Iterator[app_commands.Command]:
    for command in group.commands:
        if isinstance(command, app_commands.Group):
            yield from leaves(command)
        else:
            yield command


def today_key() -> str:
    return day_key(time.time())


# --------------------------------------------------------------------------- who may use it


async def test_every_admin_subcommand_refuses_a_member_without_manage_server_in_code(server: Server):
    registered = next(c for c in server.fake.commands["global"] if c["name"] == "imagine-admin")
    group = server.rig.bot.tree.get_command("imagine-admin")
    assert isinstance(group, app_commands.Group)
    names = {c.qualified_name.removeprefix("imagine-admin ") for c in leaves(group)}
    assert (names, registered["default_member_permissions"], registered.get("contexts")) == (
        ADMIN_COMMANDS,
        MANAGE_GUILD,
        [0],
    )

    # Discord's default hides the command, but a server can override that: the bot refuses anyway.
    answers = {name: await server.admin(name, permissions=MEMBER) for name in sorted(names)}
    assert set(answers.values()) == {str(NOT_ADMIN)}
    assert await server.stored() == GuildSettings()
    assert [m for m in server.fake.messages.values() if not m.ephemeral] == []


# What Discord shows for the one option of each add/remove pair: (name, type, description, choices).
USER_OPTION, CHANNEL_OPTION, ROLE_OPTION, STRING_OPTION = 6, 7, 8, 3
MODEL_CHOICES = ["Seedream 4.0", "Seedream 4.5", "Seedream 5.0", "Seedream 5.0 Pro"]
RESOLUTION_CHOICES = ["1K", "2K", "3K", "4K"]
SPEED_CHOICES = ["standard", "fast"]
CHANNEL_ABOUT = "A channel (its threads follow it)"
PAIR_OPTIONS = {
    "ban": ("member", USER_OPTION, "Who may no longer use /imagine here", None),
    "unban": ("member", USER_OPTION, "Who may use /imagine here again", None),
    "channel allow": ("channel", CHANNEL_OPTION, CHANNEL_ABOUT, None),
    "channel deny": ("channel", CHANNEL_OPTION, CHANNEL_ABOUT, None),
    "role allow": ("role", ROLE_OPTION, "The role", None),
    "role disallow": ("role", ROLE_OPTION, "The role", None),
    "role admin": ("role", ROLE_OPTION, "The role", None),
    "role unadmin": ("role", ROLE_OPTION, "The role", None),
    "model allow": ("model", STRING_OPTION, "The model", MODEL_CHOICES),
    "model disallow": ("model", STRING_OPTION, "The model", MODEL_CHOICES),
    "resolution allow": ("resolution", STRING_OPTION, "The resolution", RESOLUTION_CHOICES),
    "resolution disallow": ("resolution", STRING_OPTION, "The resolution", RESOLUTION_CHOICES),
    "speed allow": ("speed", STRING_OPTION, "The speed", SPEED_CHOICES),
    "speed disallow": ("speed", STRING_OPTION, "The speed", SPEED_CHOICES),
}


def registered_subcommand(definition: dict[str, Any], path: str) -> dict[str, Any]:
    for name in path.split():
        definition = next(o for o in definition["options"] if o["name"] == name)
    return definition


async def test_every_add_remove_pair_registers_its_option_as_members_see_it(server: Server):
    registered = next(c for c in server.fake.commands["global"] if c["name"] == "imagine-admin")
    seen = {}
    for path in PAIR_OPTIONS:
        [option] = registered_subcommand(registered, path)["options"]
        choices = [c["name"] for c in option["choices"]] if "choices" in option else None
        seen[path] = (option["name"], option["type"], option["description"], choices)
    assert seen == PAIR_OPTIONS


async def test_admin_roles_owners_and_administrators_pass_and_only_managers_change_admin_roles(start_bot):
    owner = 4242
    rig = await start_bot(owner_ids=frozenset({owner}))
    await eventually(lambda: rig.bot.get_guild(GUILD))
    server = Server(rig)
    mods, other = await server.new_role("mods"), await server.new_role("other")
    moderator = server.new_member()

    assert await server.admin("show", user_id=moderator, roles=(mods,), permissions=MEMBER) == str(NOT_ADMIN)
    assert "**Admin roles:** <@&" in await server.admin("role admin", {"role": Role(mods)})

    assert "**Generation:** on" in await server.admin(
        "show", user_id=moderator, roles=(mods,), permissions=MEMBER
    )
    assert "**Generation:** off" in await server.admin(
        "disable", user_id=moderator, roles=(mods,), permissions=MEMBER
    )
    # A delegated admin cannot hand out (or take away) admin.
    for command in ("role admin", "role unadmin"):
        answer = await server.admin(
            command, {"role": Role(other)}, user_id=moderator, roles=(mods,), permissions=MEMBER
        )
        assert answer == str(NOT_MANAGER)
    assert (await server.stored()).admin_roles == (mods,)
    # Another role does not pass.
    assert await server.admin("show", user_id=moderator, roles=(other,), permissions=MEMBER) == str(NOT_ADMIN)

    assert "**Generation:** on" in await server.admin("enable", user_id=owner, permissions=MEMBER)
    assert "**Admin roles:** none" in await server.admin(
        "role unadmin", {"role": Role(mods)}, user_id=owner, permissions=MEMBER
    )
    assert "Image generation settings" in await server.admin("show", permissions=MEMBER | ADMINISTRATOR)
    assert await server.admin("show", user_id=moderator, roles=(mods,), permissions=MEMBER) == str(NOT_ADMIN)


async def test_admin_commands_are_refused_outside_a_server(server: Server):
    payload = server.fake.slash_command("imagine-admin show", [], permissions=MANAGER, dm=True)
    record = await server.fake.send_interaction(payload)
    assert await private_answer(server.fake, record) == str(GUILD_ONLY)


# --------------------------------------------------------------------------- each setting


async def test_disable_and_enable(server: Server):
    answer = await server.admin("disable")
    assert "/imagine now refuses every member" in answer and "**Generation:** off" in answer
    assert "**Generation:** off" in await server.show()
    assert (await server.stored()).enabled is False

    text = await server.refused(await server.imagine())
    assert text == "Image generation is turned off in this server. A server admin can turn it back on."

    assert "**Generation:** on" in await server.admin("enable")
    assert (await server.stored()).enabled is True
    await server.accepted(await server.imagine())
    await server.submitted(1)


async def test_channel_allow_deny_and_clear(server: Server):
    art, memes = server.new_channel(), server.new_channel()
    general = server.fake.channel_id

    answer = await server.admin("channel allow", {"channel": Channel(art)})
    assert f"**Allowed channels:** <#{art}>" in answer
    assert f"**Allowed channels:** <#{art}>" in await server.show()
    assert (await server.stored()).allowed_channels == (art,)

    text = await server.refused(await server.imagine(channel_id=general))
    assert text == f"Image generation is not allowed in this channel. It is allowed in <#{art}>."

    # Denying the only allowed channel would open every other one: refused, nothing changes.
    answer = await server.admin("channel deny", {"channel": Channel(art)})
    assert "the only allowed channel" in answer
    assert (await server.stored()).allowed_channels == (art,)

    assert f"**Allowed channels:** <#{art}>, <#{memes}>" in await server.admin(
        "channel allow", {"channel": Channel(memes)}
    )
    answer = await server.admin("channel deny", {"channel": Channel(memes)})
    assert f"**Denied channels:** <#{memes}>" in answer and f"**Allowed channels:** <#{art}>" in answer
    assert ((await server.stored()).allowed_channels, (await server.stored()).denied_channels) == (
        (art,),
        (memes,),
    )
    text = await server.refused(await server.imagine(channel_id=memes))
    assert text == f"Image generation is not allowed in this channel. It is allowed in <#{art}>."

    await server.accepted(await server.imagine(channel_id=art))
    await server.submitted(1)

    answer = await server.admin("channel clear")
    assert "**Allowed channels:** all channels" in answer and "**Denied channels:** none" in answer
    await server.accepted(await server.imagine(channel_id=general))
    await server.submitted(2)

    await server.admin("channel deny", {"channel": Channel(general)})
    text = await private_answer(server.fake, await server.imagine(channel_id=general))
    assert text == "Image generation is not allowed in this channel. Try another channel."
    await server.admin("channel clear", {"channel": Channel(general)})
    assert (await server.stored()).denied_channels == ()


async def test_allowed_roles(server: Server):
    artists = await server.new_role("artists")
    answer = await server.admin("role allow", {"role": Role(artists)})
    assert f"**Allowed roles:** <@&{artists}>" in answer
    assert f"**Allowed roles:** <@&{artists}>" in await server.show()
    assert (await server.stored()).allowed_roles == (artists,)

    text = await server.refused(await server.imagine())
    assert text == f"Image generation here is for members with one of these roles: <@&{artists}>."
    await server.accepted(await server.imagine(roles=(artists,)))
    await server.submitted(1)

    answer = await server.admin("role disallow", {"role": Role(artists)})
    assert "every member may generate images now" in answer and "**Allowed roles:** everyone" in answer
    assert (await server.stored()).allowed_roles == ()


async def test_ban_and_unban(server: Server):
    troll = server.new_member()
    answer = await server.admin("ban", {"member": User(troll)})
    assert f"<@{troll}> can no longer generate images" in answer
    assert f"**Banned members:** <@{troll}>" in await server.show()
    assert (await server.stored()).banned_users == (troll,)

    text = await server.refused(await server.imagine(user_id=troll))
    assert text == "You are not allowed to generate images in this server."
    assert "not allowed to generate images in this server" in await server.quota(user_id=troll)
    await server.accepted(await server.imagine())  # someone else
    await server.submitted(1)

    assert "can generate images again" in await server.admin("unban", {"member": User(troll)})
    assert (await server.stored()).banned_users == ()
    await server.accepted(await server.imagine(user_id=troll))
    await server.submitted(2)


async def test_model_restrictions(server: Server):
    answer = await server.admin("model disallow", {"model": "doubao-seedream-4-0"})
    assert "Seedream 4.0 is not allowed any more" in answer
    assert "**Models:** Seedream 4.5, Seedream 5.0, Seedream 5.0 Pro" in answer
    assert "**Models:** Seedream 4.5, Seedream 5.0, Seedream 5.0 Pro" in await server.show()
    assert (await server.stored()).allowed_models == (
        "doubao-seedream-4-5",
        "doubao-seedream-5-0",
        "doubao-seedream-5-0-pro",
    )

    text = await server.refused(await server.imagine(model="doubao-seedream-4-0"))
    assert text == (
        "This server does not allow Seedream 4.0. Allowed models: "
        "`doubao-seedream-4-5`, `doubao-seedream-5-0`, `doubao-seedream-5-0-pro`."
    )
    await server.accepted(await server.imagine(model="doubao-seedream-4-5"))
    await server.submitted(1)

    await server.admin("model disallow", {"model": "doubao-seedream-5-0"})
    await server.admin("model disallow", {"model": "doubao-seedream-5-0-pro"})
    answer = await server.admin("model disallow", {"model": "doubao-seedream-4-5"})
    assert "the only allowed model" in answer
    assert (await server.stored()).allowed_models == ("doubao-seedream-4-5",)
    # Allowing every model one by one is the same as "all".
    await server.admin("model allow", {"model": "doubao-seedream-4-0"})
    await server.admin("model allow", {"model": "doubao-seedream-5-0-pro"})
    assert "**Models:** all" in await server.admin("model allow", {"model": "doubao-seedream-5-0"})
    await server.admin("model disallow", {"model": "doubao-seedream-4-0"})
    assert "**Models:** all" in await server.admin("model all")
    assert (await server.stored()).allowed_models == ()


async def test_resolution_restrictions(server: Server):
    answer = await server.admin("resolution disallow", {"resolution": "3K"})
    assert "**Resolutions:** 1K, 2K, 4K" in answer
    assert "**Resolutions:** 1K, 2K, 4K" in await server.show()
    assert (await server.stored()).allowed_resolutions == ("1K", "2K", "4K")

    text = await server.refused(await server.imagine(resolution="3K"))
    assert text == "This server does not allow resolution `3K`. Allowed: `1K`, `2K`, `4K`."
    await server.accepted(await server.imagine(resolution="2K"))
    await server.submitted(1)

    for resolution in ("1K", "4K"):
        await server.admin("resolution disallow", {"resolution": resolution})
    assert "the only allowed resolution" in await server.admin("resolution disallow", {"resolution": "2K"})
    assert "**Resolutions:** all" in await server.admin("resolution all")
    assert (await server.stored()).allowed_resolutions == ()


async def test_speed_restrictions(server: Server):
    answer = await server.admin("speed disallow", {"speed": "fast"})
    assert (answer, (await server.stored()).allowed_speeds) == (
        "Speed `fast` is not allowed any more.\n**Speeds:** standard",
        ("standard",),
    )
    text = await server.refused(await server.imagine(model="doubao-seedream-4-0", speed="fast"))
    assert text == "This server does not allow speed `fast`. Allowed: `standard`."
    await server.accepted(await server.imagine(model="doubao-seedream-4-0", speed="standard"))
    await server.submitted(1)

    assert "the only allowed speed" in await server.admin("speed disallow", {"speed": "standard"})
    assert "**Speeds:** all" in await server.admin("speed all")
    await server.accepted(await server.imagine(model="doubao-seedream-4-0", speed="fast"))
    await server.submitted(2)


def watermarks_sent(server: Server) -> list[bool]:
    return [body["metadata"]["watermark"] for body in server.rig.toapis.submissions]


async def test_a_server_chooses_the_watermark_and_default_follows_the_operator(server: Server):
    await server.accepted(await server.imagine(model="doubao-seedream-4-0"))
    await server.submitted(1)
    answers = []
    for count, setting in enumerate(("on", "off", "default"), start=2):
        answers.append(await server.admin("watermark", {"setting": setting}))
        await server.accepted(await server.imagine(model="doubao-seedream-4-0"))
        await server.submitted(count)
    assert (answers, watermarks_sent(server), (await server.stored()).watermark) == (
        [
            "New images will carry the image service's watermark.\n**Watermark:** on",
            "New images will be made without a watermark.\n**Watermark:** off",
            "New images follow the bot's default.\n**Watermark:** the bot's default (off)",
        ],
        [False, True, False, False],
        None,
    )


async def test_a_server_can_turn_off_the_operators_watermark(start_bot):
    rig = await start_bot(watermark=True)
    await eventually(lambda: rig.bot.get_guild(GUILD), what="the server is known to the bot")
    server = Server(rig)
    shown = await server.show()
    await server.accepted(await server.imagine(model="doubao-seedream-5-0"))
    await server.submitted(1)
    await server.admin("watermark", {"setting": "off"})
    await server.accepted(await server.imagine(model="doubao-seedream-5-0"))
    await server.submitted(2)
    assert ("**Watermark:** the bot's default (on)" in shown, watermarks_sent(server)) == (
        True,
        [True, False],
    )


async def test_max_n(server: Server):
    answer = await server.admin("limits", {"max_n": 2})
    assert "**Images per request (n):** 2 (was: no limit)" in answer
    assert "**Images per request (n):** 2" in await server.show()
    assert (await server.stored()).max_n == 2

    text = await server.refused(await server.imagine(n=3))
    assert text == "This server allows at most 2 images per request; you asked for 3. Lower `n`."
    await server.accepted(await server.imagine(n=2))
    await server.submitted(1)

    assert "**Images per request (n):** no limit (was: 2)" in await server.admin("limits", {"max_n": 0})
    assert (await server.stored()).max_n is None


async def test_max_references(server: Server):
    answer = await server.admin("limits", {"max_references": 1})
    assert "**Reference images per request:** 1 (was: no limit)" in answer
    assert (await server.stored()).max_references == 1
    images = [
        server.fake.make_attachment(f"ref-{i}.png", make_image(64 + i, 64, "PNG", seed=i)) for i in (1, 2)
    ]

    text = await server.refused(await server.imagine(image1=images[0], image2=images[1]))
    assert text == "This server allows at most 1 reference image; you gave 2."
    record = await server.imagine(image1=images[0])
    await server.accepted(record)
    assert (await final_job(server.rig, record)).state is JobState.DONE
    assert server.rig.toapis.submit_attempts == 1


async def test_cooldown(server: Server):
    answer = await server.admin("limits", {"cooldown_seconds": 600})
    assert "**Cooldown:** 600 s between a member's requests" in answer
    assert "**Cooldown:** 600 s" in await server.show()
    assert (await server.stored()).cooldown_seconds == 600

    before = time.time()
    await server.accepted(await server.imagine())
    text = await private_answer(server.fake, await server.imagine())
    match = re.fullmatch(r"Slow down — you can generate again <t:(\d+):R>\.", text)
    assert match, text
    assert before + 599 <= int(match[1]) <= time.time() + 600
    assert "Cooldown: 600 s between requests — you can generate again <t:" in await server.quota()
    # Another member is not held up.
    await server.accepted(await server.imagine(user_id=server.new_member()))
    await server.submitted(2)


async def test_concurrent_jobs_per_member(server: Server):
    answer = await server.admin("limits", {"concurrent_member": 1})
    assert "per member 1 · per server no limit" in answer
    assert (await server.stored()).max_concurrent_member == 1
    server.rig.toapis.plan = STALLED

    first = await server.imagine()
    await server.accepted(first)
    await server.submitted(1)
    text = await private_answer(server.fake, await server.imagine())
    assert text == "You already have 1 job running — wait for one to finish and try again."
    assert server.rig.toapis.submit_attempts == 1
    assert "Running jobs: 1 of your 1." in await server.quota()
    other = await server.imagine(user_id=server.new_member())
    await server.accepted(other)
    await server.submitted(2)

    server.rig.toapis.plan = TaskPlan()
    let_tasks_finish(server.rig)
    await final_job(server.rig, first)
    again = await server.imagine()
    await server.accepted(again)
    for record in (other, again):
        assert (await final_job(server.rig, record)).state is JobState.DONE


async def test_concurrent_jobs_per_server(server: Server):
    answer = await server.admin("limits", {"concurrent_server": 1})
    assert "per member no limit · per server 1" in answer
    assert (await server.stored()).max_concurrent_server == 1
    server.rig.toapis.plan = STALLED

    first = await server.imagine()
    await server.accepted(first)
    await server.submitted(1)
    text = await private_answer(server.fake, await server.imagine(user_id=server.new_member()))
    assert text == "This server already has 1 job running — try again in a minute."
    assert server.rig.toapis.submit_attempts == 1

    server.rig.toapis.plan = TaskPlan()
    let_tasks_finish(server.rig)
    await final_job(server.rig, first)
    again = await server.imagine(user_id=server.new_member())
    await server.accepted(again)
    assert (await final_job(server.rig, again)).state is JobState.DONE


async def test_daily_member_quota_with_a_role_override(server: Server):
    boosters = await server.new_role("boosters")
    answer = await server.admin("quota", {"member_daily": 2})
    assert "**Daily images per member:** 2 (was: no limit)" in answer
    answer = await server.admin("role quota", {"role": Role(boosters), "images": 5})
    assert f"**Daily images by role:** <@&{boosters}>: 5" in answer
    show = await server.show()
    assert "**Daily images per member:** 2" in show and f"<@&{boosters}>: 5" in show
    stored = await server.stored()
    assert (stored.daily_member_quota, stored.role_quotas) == (2, ((boosters, 5),))

    member, booster = server.new_member(), server.new_member()
    text = await server.refused(await server.imagine(user_id=member, n=3))
    assert re.fullmatch(
        rf"You have 2 of your 2 daily images left and you asked for 3\. Ask for 2 or fewer — the limit "
        rf"resets {WHEN}\.",
        text,
    ), text
    await server.accepted(await server.imagine(user_id=member, n=2))
    text = await private_answer(server.fake, await server.imagine(user_id=member))
    assert text == f"Daily limit of 2 images reached — resets <t:{int(next_day(time.time()))}:R>."

    await server.accepted(await server.imagine(user_id=booster, roles=(boosters,), n=5))
    text = await private_answer(server.fake, await server.imagine(user_id=booster, roles=(boosters,)))
    assert text.startswith("Daily limit of 5 images reached")
    await server.submitted(2)
    assert await server.used(f"m:{GUILD}:{member}:{today_key()}", f"m:{GUILD}:{booster}:{today_key()}") == [
        2,
        5,
    ]

    assert "no quota of its own" in await server.admin("role quota", {"role": Role(boosters), "images": 0})
    assert (await server.stored()).role_quotas == ()


async def test_server_daily_quota(server: Server):
    answer = await server.admin("quota", {"server_daily": 3})
    assert "**Server images:** per day 3 · per month no limit" in answer
    assert (await server.stored()).daily_server_quota == 3
    alice, bob = server.new_member(), server.new_member()

    await server.accepted(await server.imagine(user_id=alice, n=2))
    text = await private_answer(server.fake, await server.imagine(user_id=bob, n=2))
    assert re.fullmatch(
        rf"This server has 1 of its 3 daily images left and you asked for 2\. Ask for 1 or fewer — the "
        rf"limit resets {WHEN}\.",
        text,
    ), text
    await server.accepted(await server.imagine(user_id=bob, n=1))
    text = await private_answer(server.fake, await server.imagine(user_id=server.new_member()))
    assert (
        text
        == f"This server's daily limit of 3 images is reached — resets <t:{int(next_day(time.time()))}:R>."
    )
    await server.submitted(2)


async def test_server_monthly_quota(server: Server):
    answer = await server.admin("quota", {"server_monthly": 2})
    assert "**Server images:** per day no limit · per month 2" in answer
    assert "per month 2" in await server.show()
    assert (await server.stored()).monthly_server_quota == 2

    await server.accepted(await server.imagine(n=2))
    text = await private_answer(server.fake, await server.imagine(user_id=server.new_member()))
    assert text == (
        f"This server's monthly limit of 2 images is reached — resets <t:{int(next_month(time.time()))}:R>."
    )
    await server.submitted(1)
    assert "**Server images:** per day no limit · per month no limit" in await server.admin(
        "quota", {"server_monthly": 0}
    )


BLOCKED = "Your prompt contains a word or phrase this server does not allow. Change the prompt and try again."


async def test_blocklist_words_and_regular_expressions(server: Server):
    answer = await server.admin("blocklist add", {"kind": "word", "pattern": "hate"})
    assert "Added `word: hate`" in answer and "**Prompt blocklist:** 1 entry: `word: hate`" in answer
    answer = await server.admin("blocklist add", {"kind": "regex", "pattern": r"c[a@]t\s*girls?"})
    assert "Added `regex: /c[a@]t\\s*girls?/`" in answer
    assert "**Prompt blocklist:** 2 entries" in await server.show()
    assert (await server.stored()).blocklist == (
        BlockEntry("word", "hate"),
        BlockEntry("regex", r"c[a@]t\s*girls?"),
    )

    for prompt in ("I h4te mondays", "HATE", "a hâte poster", "two CAT  GIRLS", "c@tgirl art"):
        assert await server.refused(await server.imagine(prompt)) == BLOCKED, prompt
    await server.accepted(await server.imagine("a whatever cat on a chair"))  # "whatever" is not "hate"
    await server.submitted(1)

    listing = await server.admin("blocklist list")
    assert listing == "**Prompt blocklist** (2):\n• `word: hate`\n• `regex: /c[a@]t\\s*girls?/`"
    assert "Removed `word: hate`" in await server.admin("blocklist remove", {"pattern": "hate"})
    assert (await server.stored()).blocklist == (BlockEntry("regex", r"c[a@]t\s*girls?"),)
    assert "not on the blocklist" in await server.admin("blocklist remove", {"pattern": "hate"})


async def test_an_invalid_regular_expression_is_refused_when_added_with_the_reason(server: Server):
    answer = await server.admin("blocklist add", {"kind": "regex", "pattern": "(unclosed"})
    assert answer == "Not added: `(unclosed` can't be used as a regular expression: missing ): (unclosed."
    answer = await server.admin("blocklist add", {"kind": "regex", "pattern": r"(a+)(a+)\1b"})
    assert answer == (
        "Not added: `(a+)(a+)\\1b` can't be used as a regular expression: back-references like `\\1` "
        "aren't supported."
    )
    answer = await server.admin("blocklist add", {"kind": "regex", "pattern": "x*"})
    assert "can match without matching any text" in answer
    assert (await server.stored()).blocklist == ()
    assert "**Prompt blocklist:** empty" in await server.show()


async def test_a_regex_that_froze_the_bot_is_accepted_and_checked_at_once(server: Server):
    # `(a|aa)+$` kept the old matcher busy for seconds on a 30-character prompt, for every server.
    answer = await server.admin("blocklist add", {"kind": "regex", "pattern": "(a|aa)+$"})
    assert answer.startswith("Added `regex: /(a|aa)+$/`")
    await server.accepted(await server.imagine("a" * 40 + "!"))
    await server.submitted(1)  # the accepted job is sent in the background: wait for it, then count
    assert await server.refused_after(1, await server.imagine("a red fox, aaaa")) == BLOCKED


async def imagine_in_locale(server: Server, prompt: str, locale: str) -> InteractionRecord:
    """/imagine in a server whose language is `locale` (Discord sends it as `guild_locale`)."""
    payload = server.fake.slash_command("imagine", {"prompt": prompt})
    payload["guild_locale"] = payload["guild"]["locale"] = locale
    return await server.fake.send_interaction(payload)


async def test_a_servers_language_keeps_its_everyday_words(server: Server):
    for word in ("hate", "gore"):
        await server.admin("blocklist add", {"kind": "word", "pattern": word})
    await server.accepted(await imagine_in_locale(server, "un chat, en toute hâte", "fr"))
    await server.accepted(await imagine_in_locale(server, "fotoğrafa göre bir kedi", "tr"))
    await server.submitted(2)
    for prompt, locale in [("un chat, en toute hâte", "en-US"), ("a cat, ʜᴀᴛᴇ", "fr"), ("gøre", "tr")]:
        record = await imagine_in_locale(server, prompt, locale)
        assert await private_answer(server.fake, record) == BLOCKED, (prompt, locale)
        assert await find_job(server.rig, record) is None
    assert server.rig.toapis.submit_attempts == 2


async def test_blocklist_exceptions_are_added_listed_enforced_and_removed(server: Server):
    await server.admin("blocklist add", {"kind": "word", "pattern": "hate"})
    answer = await server.admin("blocklist except", {"phrase": "  j'ai   hâte "})
    assert answer.startswith("Added the exception `j'ai hâte`: it is never treated as a blocklist match")
    assert (await server.stored()).blocklist_exceptions == ("j'ai hâte",)
    assert "already an exception" in await server.admin("blocklist except", {"phrase": "J'AI HÂTE"})
    assert await server.admin("blocklist list") == (
        "**Prompt blocklist** (1):\n• `word: hate`\n**Exceptions** (1):\n• `j'ai hâte`"
    )

    await server.accepted(await server.imagine("j'ai hâte de voir un chat"))
    await server.submitted(1)
    assert await server.refused_after(1, await server.imagine("j'ai hâte, I hate cats")) == BLOCKED

    answer = await server.admin("blocklist unexcept", {"phrase": "j'ai hâte"})
    assert answer.startswith("Removed the exception `j'ai hâte`")
    assert (await server.stored()).blocklist_exceptions == ()
    assert "not an exception" in await server.admin("blocklist unexcept", {"phrase": "j'ai hâte"})
    assert await server.refused_after(1, await server.imagine("j'ai hâte de voir un chat")) == BLOCKED


async def test_an_exception_without_a_word_is_refused(server: Server):
    answer = await server.admin("blocklist except", {"phrase": "!!!"})
    assert answer == "Not added: `!!!` has no letters or digits; an exception must contain a word."
    assert (await server.stored()).blocklist_exceptions == ()


async def test_blocklist_entries_autocomplete_for_admins_only(server: Server):
    await server.admin("blocklist add", {"kind": "word", "pattern": "hate"})
    await server.admin("blocklist add", {"kind": "regex", "pattern": "bad+"})

    async def suggestions(permissions: int) -> list[dict[str, Any]]:
        payload = server.fake.slash_command(
            "imagine-admin blocklist remove",
            [{"name": "pattern", "type": 3, "value": "", "focused": True}],
            permissions=permissions,
        )
        payload["type"] = 4
        record = await server.fake.send_interaction(payload)
        await server.fake.wait_for(lambda _: record.acknowledged)
        assert record.callback_type == 8
        return record.callback["data"]["choices"]

    assert await suggestions(MANAGER) == [
        {"name": "word: hate", "value": "hate"},
        {"name": "regex: /bad+/", "value": "bad+"},
    ]
    assert await suggestions(MEMBER) == []


# --------------------------------------------------------------------------- show and reset


async def test_show_lists_every_setting_in_one_message_and_reset_restores_the_defaults(server: Server):
    channel, denied, audit = server.new_channel(), server.new_channel(), server.new_channel()
    allowed, admins, boosters = await server.new_role(), await server.new_role(), await server.new_role()
    troll = server.new_member()
    changes: list[tuple[str, dict[str, Any]]] = [
        ("disable", {}),
        ("channel allow", {"channel": Channel(channel)}),
        ("channel deny", {"channel": Channel(denied)}),
        ("role allow", {"role": Role(allowed)}),
        ("role admin", {"role": Role(admins)}),
        ("role quota", {"role": Role(boosters), "images": 50}),
        ("ban", {"member": User(troll)}),
        ("model disallow", {"model": "doubao-seedream-4-0"}),
        ("resolution disallow", {"resolution": "2K"}),
        ("speed disallow", {"speed": "fast"}),
        ("watermark", {"setting": "on"}),
        ("spoiler", {"setting": "on"}),
        (
            "limits",
            {
                "max_n": 4,
                "max_references": 2,
                "cooldown_seconds": 30,
                "concurrent_member": 2,
                "concurrent_server": 5,
            },
        ),
        ("quota", {"member_daily": 10, "server_daily": 100, "server_monthly": 1000}),
        ("blocklist add", {"kind": "word", "pattern": "hate"}),
        ("audit", {"channel": Channel(audit)}),
    ]
    for command, options in changes:
        answer = await server.admin(command, options)
        assert "Updated" in answer or "\n**" in answer, (command, answer)

    record = await server.send("imagine-admin show", permissions=MANAGER)
    text = await private_answer(server.fake, record)
    assert record.followups == []
    assert text.splitlines() == [
        "**Image generation settings for this server**",
        "**Generation:** off",
        f"**Allowed channels:** <#{channel}>",
        f"**Denied channels:** <#{denied}>",
        f"**Allowed roles:** <@&{allowed}>",
        f"**Admin roles:** <@&{admins}>",
        f"**Banned members:** <@{troll}>",
        "**Models:** Seedream 4.5, Seedream 5.0, Seedream 5.0 Pro",
        "**Resolutions:** 1K, 3K, 4K",
        "**Speeds:** standard",
        "**Watermark:** on",
        "**Every result a spoiler:** on",
        "**Images per request (n):** 4",
        "**Reference images per request:** 2",
        "**Cooldown:** 30 s between a member's requests",
        "**Running jobs:** per member 2 · per server 5",
        "**Daily images per member:** 10",
        f"**Daily images by role:** <@&{boosters}>: 50",
        "**Server images:** per day 100 · per month 1000",
        "**Prompt blocklist:** 1 entry: `word: hate`",
        f"**Audit channel:** <#{audit}>",
        "**Waiting in line:** none of this server's requests right now.",
    ]
    expected = GuildSettings(
        enabled=False,
        allowed_channels=(channel,),
        denied_channels=(denied,),
        allowed_roles=(allowed,),
        admin_roles=(admins,),
        banned_users=(troll,),
        allowed_models=("doubao-seedream-4-5", "doubao-seedream-5-0", "doubao-seedream-5-0-pro"),
        allowed_resolutions=("1K", "3K", "4K"),
        allowed_speeds=("standard",),
        watermark=True,
        spoiler=True,
        max_n=4,
        max_references=2,
        cooldown_seconds=30,
        max_concurrent_member=2,
        max_concurrent_server=5,
        daily_member_quota=10,
        role_quotas=((boosters, 50),),
        daily_server_quota=100,
        monthly_server_quota=1000,
        blocklist=(BlockEntry("word", "hate"),),
        audit_channel_id=audit,
    )
    assert await server.stored() == expected

    answer = await server.admin("reset")
    assert answer.startswith("Every setting is back to its default.")
    assert await server.stored() == GuildSettings()
    defaults = await server.show()
    assert "**Generation:** on" in defaults and "**Allowed channels:** all channels" in defaults
    assert "**Prompt blocklist:** empty" in defaults and "**Audit channel:** off" in defaults
    await server.accepted(await server.imagine())


async def test_reset_by_a_role_admin_keeps_the_admin_roles_and_says_why(server: Server):
    mods, helpers = await server.new_role("mods"), await server.new_role("helpers")
    for role in (mods, helpers):
        await server.admin("role admin", {"role": Role(role)})
    await server.admin("disable")
    await server.admin("quota", {"member_daily": 5})
    moderator, helper = server.new_member(), server.new_member()

    answer = await server.admin("reset", user_id=moderator, roles=(mods,), permissions=MEMBER)
    assert answer.splitlines()[:1] == [
        "Every setting is back to its default, except the admin roles: they were kept, because only "
        "members with the **Manage Server** permission can change the admin roles."
    ]
    assert f"**Admin roles:** <@&{mods}>, <@&{helpers}>" in answer
    assert await server.stored() == GuildSettings(admin_roles=(mods, helpers))
    # Both role-admins still administer the server after the reset.
    for member, role in ((moderator, mods), (helper, helpers)):
        shown = await server.admin("show", user_id=member, roles=(role,), permissions=MEMBER)
        assert "**Generation:** on" in shown


async def test_reset_by_a_member_with_manage_server_or_an_owner_drops_the_admin_roles_too(start_bot):
    owner = 4242
    rig = await start_bot(owner_ids=frozenset({owner}))
    await eventually(lambda: rig.bot.get_guild(GUILD))
    server = Server(rig)
    mods = await server.new_role("mods")
    moderator = server.new_member()
    members: list[dict[str, Any]] = [{"permissions": MANAGER}, {"user_id": owner, "permissions": MEMBER}]
    for who in members:
        await server.admin("role admin", {"role": Role(mods)})
        await server.admin("disable")

        answer = await server.admin("reset", **who)
        assert (answer.splitlines()[0], "**Admin roles:** none" in answer) == (
            "Every setting is back to its default.",
            True,
        )
        assert await server.stored() == GuildSettings()
        refused = await server.admin("show", user_id=moderator, roles=(mods,), permissions=MEMBER)
        assert refused == str(NOT_ADMIN)


async def test_limits_without_options_change_nothing(server: Server):
    answer = await server.admin("limits")
    assert answer.startswith("Nothing given, nothing changed.")
    assert "**Images per request (n):** no limit" in answer
    assert await server.stored() == GuildSettings()


# --------------------------------------------------------------------------- quotas count images


async def test_quotas_count_images_reserved_then_settled_to_what_was_delivered(server: Server):
    await server.admin("quota", {"member_daily": 10, "server_daily": 20})
    member = server.fake.user_id
    keys = (f"m:{GUILD}:{member}:{today_key()}", f"g:{GUILD}:{today_key()}")

    # n=3 reserves 3 as soon as the job is accepted; delivered in full, it stays 3.
    server.rig.toapis.plan = STALLED
    record = await server.imagine(n=3)
    await server.accepted(record)
    assert await server.used(*keys) == [3, 3]
    assert "• You: 7 of 10 images left today in this server" in await server.quota()
    server.rig.toapis.plan = TaskPlan()
    let_tasks_finish(server.rig)
    assert (await final_job(server.rig, record)).state is JobState.DONE
    assert await server.used(*keys) == [3, 3]

    # A failed job gives everything back.
    server.rig.toapis.plan = TaskPlan(outcome="failed")
    record = await server.imagine(n=3)
    await server.accepted(record)
    assert (await final_job(server.rig, record)).state is JobState.FAILED
    assert await server.used(*keys) == [3, 3]
    assert "**Images left for you: 7**" in await server.quota()

    # A partial job keeps what was delivered: 2 of 4.
    server.rig.toapis.plan = TaskPlan(image_count=2)
    record = await server.imagine(n=4)
    await server.accepted(record)
    job = await final_job(server.rig, record)
    assert (job.state, len(job.delivered["images"])) == (JobState.DONE, 2)
    assert await server.used(*keys) == [5, 5]
    text = await server.quota()
    assert "• You: 5 of 10 images left today in this server" in text
    assert "• This server: 15 of 20 images left today" in text


# --------------------------------------------------------------------------- audit


async def test_the_audit_channel_gets_one_line_per_finished_job_without_pings(server: Server):
    audit = server.new_channel()
    answer = await server.admin("audit", {"channel": Channel(audit)})
    assert f"**Audit channel:** <#{audit}>" in answer
    assert (await server.stored()).audit_channel_id == audit
    hello = await server.fake.wait_for_message(lambda m: m.channel_id == audit)
    assert hello.content.startswith("📋 Image generation audit") and hello.pings == set()

    member = server.new_member()
    record = await server.imagine("@everyone look at <@&1> this fox", user_id=member, n=2)
    await server.accepted(record)
    job = await final_job(server.rig, record)
    line = await server.fake.wait_for_message(lambda m: m.channel_id == audit and m.content.startswith("✅"))
    link = f"https://discord.com/channels/{GUILD}/{server.fake.channel_id}/{job.message_id}"
    assert line.content == (
        f"✅ 2/2 images · <@{member}> in <#{server.fake.channel_id}> · Seedream 5.0 · "
        f"“@everyone look at <@&1> this fox” · [message]({link})"
    )
    assert (line.pings, line.allowed_mentions) == (set(), {"parse": []})

    server.rig.toapis.plan = TaskPlan(outcome="failed")
    record = await server.imagine("a failing fox", user_id=member)
    await final_job(server.rig, record)
    failed = await server.fake.wait_for_message(
        lambda m: m.channel_id == audit and m.content.startswith("❌")
    )
    assert f"<@{member}>" in failed.content and "“a failing fox”" in failed.content
    assert failed.pings == set()
    audit_lines = [m for m in server.fake.messages.values() if m.channel_id == audit]
    assert len(audit_lines) == 3  # the greeting and one line per job

    assert "Audit lines are off." in await server.admin("audit")
    assert (await server.stored()).audit_channel_id is None
    server.rig.toapis.plan = TaskPlan()
    await final_job(server.rig, await server.imagine())
    assert len([m for m in server.fake.messages.values() if m.channel_id == audit]) == 3


async def test_an_audit_channel_the_bot_cannot_post_in_is_refused(server: Server):
    audit = server.new_channel()
    server.fake.inject("POST", rf"/channels/{audit}/messages", 403)
    answer = await server.admin("audit", {"channel": Channel(audit)})
    assert answer.startswith(f"I can't post in <#{audit}>") and "Nothing was changed." in answer
    assert (await server.stored()).audit_channel_id is None


# --------------------------------------------------------------------------- usage


async def test_usage_for_today_and_the_month_with_a_csv_of_the_jobs(server: Server):
    alice, bob = server.new_member(), server.new_member()
    done = await server.imagine("two foxes", user_id=alice, n=2)
    await final_job(server.rig, done)
    server.rig.toapis.plan = TaskPlan(outcome="failed", failure_message="The prompt was rejected")
    failed = await server.imagine("a rejected fox", user_id=alice)
    reason = (await final_job(server.rig, failed)).error
    assert reason is not None and "The prompt was rejected" in reason
    server.rig.toapis.plan = TaskPlan(image_count=1)
    partial = await server.imagine("one of three", user_id=bob, n=3)
    await final_job(server.rig, partial)

    # An older job of this month, stored as the bot stores jobs (with its quota charged that day).
    now = time.time()
    month, today = period_of("month", now), period_of("today", now)
    then = month.start + 60
    carol = server.new_member()
    assert server.rig.bot.store is not None
    older_store = JobStore(server.rig.bot.store, clock=lambda: then)
    who = policy.Requester(user_id=carol, guild_id=GUILD, channel_id=server.fake.channel_id)
    plan = policy.quota_plan(GuildSettings(), server.rig.bot.operator, who, 4, then)
    older = await older_store.create(
        NewJob(
            guild_id=GUILD,
            channel_id=server.fake.channel_id,
            user_id=carol,
            application_id=server.fake.application_id,
            upload_limit=10 * 1024 * 1024,
            prompt="=HYPERLINK(evil)",
            model="doubao-seedream-4-5",
            ratio="1:1",
            resolution="2K",
            n=4,
        ),
        quota=plan,
    )
    older = await older_store.finish(
        older.id, JobState.DONE, delivered_images=4, delivered={"images": [{}, {}, {}, {}]}
    )
    older_is_today = then >= today.start  # only on the 1st of a month

    record = await server.send("imagine-admin usage", {"period": "today"}, permissions=MANAGER)
    text = await private_answer(server.fake, record)
    jobs_today = 4 if older_is_today else 3
    today_images = 3 + (4 if older_is_today else 0)
    assert f"**Today:** {today_images} images" in text
    assert "**This month:** 7 images" in text
    assert f"**Jobs today:** {jobs_today} — " in text
    assert text.index(f"<@{alice}> — 2 images (2 jobs)") < text.index(f"<@{bob}> — 1 image (1 job)")
    assert f"**Failures:** 1\n• {reason} ×1" in text
    rows = read_csv(record)
    todays = [(await find_job(server.rig, r)).id for r in (done, failed, partial)]
    assert [int(r["job_id"]) for r in rows] == ([older.id] if older_is_today else []) + todays

    record = await server.send("imagine-admin usage", {"period": "month"}, permissions=MANAGER)
    text = await private_answer(server.fake, record)
    assert text.startswith(f"**Image usage this month** ({month.label}, UTC)")
    assert "**Jobs this month:** 4 — 3 done, 1 failed, 0 running · 7 images of 10 asked for" in text
    assert text.index(f"<@{carol}> — 4 images") < text.index(f"<@{alice}> — 2 images")
    rows = read_csv(record)
    by_user = {int(r["user_id"]): r for r in rows if r["state"] == "done"}
    assert [(r["state"], r["n"], r["images"]) for r in rows] == [
        ("done", "4", "4"),
        ("done", "2", "2"),
        ("failed", "1", "0"),
        ("done", "3", "1"),
    ]
    assert (rows[2]["error"], rows[2]["prompt"]) == (reason, "a rejected fox")
    assert by_user[carol]["prompt"] == "'=HYPERLINK(evil)"  # never a spreadsheet formula
    assert by_user[alice]["message_url"].startswith(f"https://discord.com/channels/{GUILD}/")
    assert rows[0]["created_utc"].startswith(month.label)


def read_csv(record: InteractionRecord) -> list[dict[str, str]]:
    message = record.original
    assert message is not None and len(message.attachments) == 1
    attachment: FakeAttachment = message.attachments[0]
    assert attachment.filename.startswith(f"imagine-usage-{GUILD}-") and attachment.filename.endswith(".csv")
    reader = csv.DictReader(io.StringIO(attachment.data.decode("utf-8-sig")))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    return list(reader)


# --------------------------------------------------------------------------- /imagine-quota


async def test_imagine_quota_without_any_quota(server: Server):
    text = await server.quota()
    assert text == "**No image quota applies to you.**\n• You: no daily limit of your own in this server"


async def test_imagine_quota_shows_every_limit_and_when_it_resets(start_bot):
    rig = await start_bot(global_daily_image_cap=20)
    await eventually(lambda: rig.bot.get_guild(GUILD))
    server = Server(rig)
    await server.admin("quota", {"member_daily": 10, "server_daily": 50, "server_monthly": 500})
    await server.admin("limits", {"cooldown_seconds": 60, "concurrent_member": 2})
    record = await server.imagine(n=3)
    await server.accepted(record)
    await final_job(rig, record)

    text = await server.quota()
    day, month = int(next_day(time.time())), int(next_month(time.time()))
    lines = text.splitlines()
    assert lines[:5] == [
        "**Images left for you: 7**",
        f"• You: 17 of 20 images left today across every server (the bot's own limit) — resets <t:{day}:R>",
        f"• You: 7 of 10 images left today in this server — resets <t:{day}:R>",
        f"• This server: 47 of 50 images left today — resets <t:{day}:R>",
        f"• This server: 497 of 500 images left this month — resets <t:{month}:R>",
    ]
    assert lines[5] == "Running jobs: 0 of your 2."
    assert re.fullmatch(r"Cooldown: 60 s between requests — you can generate again <t:\d+:R>\.", lines[6])

    # Exhausted: when the member can generate again.
    await server.admin("quota", {"member_daily": 3})
    text = await server.quota()
    assert text.startswith(f"**Images left for you: 0**\nYou can generate again <t:{day}:R>.")


async def test_imagine_quota_for_an_owner_and_in_direct_messages(start_bot):
    owner = 777
    rig = await start_bot(owner_ids=frozenset({owner}), global_daily_image_cap=5, allow_dms=True)
    await eventually(lambda: rig.bot.get_guild(GUILD))
    server = Server(rig)
    await server.admin("quota", {"member_daily": 1})
    text = await server.quota(user_id=owner)
    assert text.startswith("You are one of the bot's owners: no limit, quota or cooldown applies to you.")
    assert "**No image quota applies to you.**" in text

    payload = server.fake.slash_command("imagine-quota", {}, dm=True)
    text = await private_answer(server.fake, await server.fake.send_interaction(payload))
    assert text.splitlines()[:2] == [
        "**Images left for you: 5**",
        f"• You: 5 of 5 images left today across every server (the bot's own limit) — resets "
        f"<t:{int(next_day(time.time()))}:R>",
    ]
