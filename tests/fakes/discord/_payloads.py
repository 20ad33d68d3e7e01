"""Private to the fake Discord: member and option payloads shared by the interaction builders."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .records import FakeAttachment, _iso


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
    ) -> dict[str, Any]:
        user = self.user_payload(user_id, username)
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
        if dm:
            dm_channel_id = channel_id or self.snowflake()
            payload.update(
                channel={"id": str(dm_channel_id), "type": 1, "recipients": [user], "flags": 0},
                channel_id=str(dm_channel_id),
                user=user,
                authorizing_integration_owners={"0": str(self.owner_id), "1": user["id"]},
                context=1,
            )
            return payload
        guild_id = guild_id or self.guild_id
        channel = dict(self.channel(channel_id, guild_id=guild_id))
        channel["permissions"] = str(permissions)
        payload.update(
            channel=channel,
            channel_id=channel["id"],
            guild_id=str(guild_id),
            guild={"id": str(guild_id), "locale": self.guild_locale(guild_id), "features": []},
            guild_locale=self.guild_locale(guild_id),
            member=self._member_payload(user, permissions),
            authorizing_integration_owners={"0": str(guild_id)},
            context=0,
        )
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
