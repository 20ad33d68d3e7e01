"""Private to the fake Discord: member and option payloads shared by the interaction builders."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .records import USE_EXTERNAL_APPS, FakeAttachment, _iso


class InteractionPayloads:
    """Building blocks of the interactions and members the fake sends (member objects, option trees).

    A part of :class:`FakeDiscord`; its state lives there."""

    def _member_payload(self, user: dict[str, Any], permissions: int) -> dict[str, Any]:
        return {
            "user": user,
            "roles": [],
            "joined_at": _iso(time.time() * 1000 - 86_400_000),
            "premium_since": None,
            "nick": None,
            "avatar": None,
            "banner": None,
            "pending": False,
            "flags": 0,
            "permissions": str(permissions),
            "communication_disabled_until": None,
            "deaf": False,
            "mute": False,
        }

    def _interaction_base(
        self,
        interaction_type: int,
        data: dict[str, Any],
        *,
        guild_id: int | None,
        channel_id: int | None,
        user_id: int | None,
        username: str,
        permissions: int,
        app_permissions: int,
        attachment_size_limit: int | None,
        locale: str,
        dm: bool,
        install: str = "guild",
        private_channel: bool = False,
        external_apps: bool = True,
    ) -> dict[str, Any]:
        """``install="user"``: the member's own install of the app, used where the bot may not be: in
        a server (context 0, ``authorizing_integration_owners`` naming only the user, the channel
        hidden from the bot), in the bot's DM (context 1) or, with ``private_channel``, in a group DM
        (context 2, never visible to the bot). ``external_apps=False``: the member lacks Use External
        Apps there, so Discord makes the app's responses ephemeral."""
        user = self.user_payload(user_id, username)
        if channel_id is not None and channel_id in self.hidden_channels and not dm:
            # Only the member's own install can be used in a channel the bot cannot see.
            install = "user"
            private_channel = "guild_id" not in self.channels.get(channel_id, {})
        payload: dict[str, Any] = {
            "id": str(self.snowflake()),
            "application_id": str(self.application_id),
            "type": interaction_type,
            "token": f"itok.{secrets.token_urlsafe(24)}",
            "version": 1,
            "attachment_size_limit": attachment_size_limit or self.upload_limit,
            "app_permissions": str(app_permissions),
            "data": data,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
        }
        if private_channel:
            group_id = channel_id or self.snowflake()
            other = self.user_payload(self.snowflake(), "friend")
            payload.update(
                channel={
                    "id": str(group_id),
                    "type": 3,
                    "recipients": [user, other],
                    "name": None,
                    "icon": None,
                    "owner_id": user["id"],
                    "flags": 0,
                },
                channel_id=str(group_id),
                user=user,
                authorizing_integration_owners={"1": user["id"]},
                context=2,
            )
            self.hidden_channels[group_id] = 10003  # Unknown Channel: the bot is not in the group
            return payload
        if dm:
            dm_channel_id = channel_id or self.snowflake()
            payload.update(
                channel={"id": str(dm_channel_id), "type": 1, "recipients": [user], "flags": 0},
                channel_id=str(dm_channel_id),
                user=user,
                authorizing_integration_owners=(
                    {"1": user["id"]} if install == "user" else {"0": str(self.owner_id), "1": user["id"]}
                ),
                context=1,
            )
            self.dm_channels.setdefault(int(user["id"]), dm_channel_id)
            self.channels.setdefault(
                dm_channel_id,
                {
                    "id": str(dm_channel_id),
                    "type": 1,
                    "recipients": [user],
                    "last_message_id": None,
                    "flags": 0,
                },
            )
            return payload
        guild_id = guild_id or self.guild_id
        if install == "user" and external_apps:
            permissions |= USE_EXTERNAL_APPS
        channel = dict(self.channel(channel_id, guild_id=guild_id))
        channel["permissions"] = str(permissions)
        payload.update(
            channel=channel,
            channel_id=channel["id"],
            guild_id=str(guild_id),
            guild={"id": str(guild_id), "locale": self.guild_locale(guild_id), "features": []},
            guild_locale=self.guild_locale(guild_id),
            member=self._member_payload(user, permissions),
            authorizing_integration_owners={"1": user["id"]} if install == "user" else {"0": str(guild_id)},
            context=0,
        )
        if install == "user":
            self.hidden_channels[int(channel["id"])] = 50001  # Missing Access: the bot is not a member
        return payload

    @staticmethod
    def _option_payloads(
        options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    ) -> list[dict[str, Any]]:
        if options is None:
            return []
        if not isinstance(options, Mapping):
            return [dict(o) for o in options]  # explicit [{name, type, value}] form
        out = []
        for name, value in options.items():
            if value is None:
                continue  # an optional option the user left out
            if isinstance(value, FakeAttachment):
                out.append({"name": name, "type": 11, "value": str(value.id)})
                continue
            # bool before int: bool is an int subclass.
            if isinstance(value, bool):
                kind = 5
            elif isinstance(value, int):
                kind = 4
            elif isinstance(value, float):
                kind = 10
            else:
                kind = 3
            out.append({"name": name, "type": kind, "value": value})
        return out

    def _find_message_command(self, scope: str | int, name: str) -> dict[str, Any] | None:
        return next(
            (c for c in self.commands.get(scope, []) if c["name"] == name and c.get("type", 1) == 3), None
        )
