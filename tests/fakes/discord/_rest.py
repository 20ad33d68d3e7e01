"""Private to the fake Discord: the REST route handlers."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .records import (
    _TRUE,
    EPHEMERAL,
    LOADING,
    USE_EXTERNAL_APPS,
    FakeMessage,
    InteractionRecord,
    RecordedRequest,
)


class RestRoutes:
    """The REST endpoints the bot calls: users, applications, commands, channels, messages,
    interaction callbacks and webhooks (followups and @original).

    A part of :class:`FakeDiscord`; its state lives there."""

    async def _get_me(self, req: RecordedRequest) -> tuple[int, Any]:
        return 200, self.bot_user

    async def _leave_guild(self, req: RecordedRequest) -> tuple[int, Any]:
        """The bot leaves a server: recorded in ``left_guilds``."""
        self.left_guilds.append(int(req.params["guild_id"]))
        return 204, None

    async def _create_dm(self, req: RecordedRequest) -> tuple[int, Any]:
        """``POST /users/@me/channels``: the bot's DM channel with ``recipient_id`` (the same one each
        time). Opening it always works; sending to a member whose DMs are closed does not (50007)."""
        recipient = str((req.json or {}).get("recipient_id", ""))
        if not recipient.isdigit():
            return 400, {"message": "Invalid Form Body", "code": 50035}
        channel_id = self.dm_channels.setdefault(int(recipient), self.snowflake())
        channel = self.channels.setdefault(
            channel_id,
            {
                "id": str(channel_id),
                "type": 1,
                "recipients": [self.user_payload(int(recipient))],
                "last_message_id": None,
                "flags": 0,
            },
        )
        return 200, channel

    def _forced_ephemeral(self, record: InteractionRecord) -> bool:
        """Discord makes every response ephemeral for an app the member installed themselves, used in
        a server that did not install it, where the member lacks Use External Apps."""
        payload = record.payload
        guild_id = payload.get("guild_id")
        owners = payload.get("authorizing_integration_owners") or {}
        if not guild_id or owners.get("0") == guild_id:
            return False
        permissions = int((payload.get("member") or {}).get("permissions") or 0)
        return not permissions & USE_EXTERNAL_APPS

    async def _get_application(self, req: RecordedRequest) -> tuple[int, Any]:
        return 200, {
            "id": str(self.application_id),
            "name": self.bot_user["username"],
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": {"id": str(self.owner_id), "username": "owner", "discriminator": "0", "avatar": None},
            "verify_key": "0" * 64,
            "flags": 0,
            "team": None,
            "summary": "",
            "bot": self.bot_user,
        }

    async def _get_gateway(self, req: RecordedRequest) -> tuple[int, Any]:
        return 200, {"url": self.gateway_url}

    async def _get_gateway_bot(self, req: RecordedRequest) -> tuple[int, Any]:
        return 200, {
            "url": self.gateway_url,
            "shards": self.shard_count,
            "session_start_limit": {
                "total": 1000,
                "remaining": 999,
                "reset_after": 14_400_000,
                "max_concurrency": 1,
            },
        }

    def _scope(self, req: RecordedRequest) -> str | int:
        guild = req.params.get("guild_id")
        return int(guild) if guild else "global"

    def _find_command(self, scope: str | int, name: str) -> dict[str, Any] | None:
        return next(
            (c for c in self.commands.get(scope, []) if c["name"] == name and c.get("type", 1) == 1), None
        )

    def _stored_command(self, scope: str | int, body: Mapping[str, Any]) -> dict[str, Any]:
        kind = body.get("type") or 1
        key = (body["name"], kind) if scope == "global" else (f"{scope}:{body['name']}", kind)
        command_id = self._command_ids.setdefault(key, int(body.get("id") or self.snowflake()))
        stored = {
            "id": str(command_id),
            "application_id": str(self.application_id),
            "version": str(self.snowflake()),
            "type": kind,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            **{k: v for k, v in body.items() if k not in ("id", "type")},
        }
        if scope != "global":
            stored["guild_id"] = str(scope)
        return stored

    def _wrong_app(self, req: RecordedRequest) -> bool:
        return req.params.get("application_id") != str(self.application_id)

    async def _get_commands(self, req: RecordedRequest) -> tuple[int, Any]:
        if self._wrong_app(req):
            return 403, {"message": "Missing Access", "code": 50001}
        return 200, self.commands.get(self._scope(req), [])

    async def _put_commands(self, req: RecordedRequest) -> tuple[int, Any]:
        if self._wrong_app(req):
            return 403, {"message": "Missing Access", "code": 50001}
        scope = self._scope(req)
        body = req.json or []
        self.command_syncs.append((scope, copy.deepcopy(body)))
        self.commands[scope] = [self._stored_command(scope, c) for c in body]
        return 200, self.commands[scope]

    async def _post_command(self, req: RecordedRequest) -> tuple[int, Any]:
        if self._wrong_app(req):
            return 403, {"message": "Missing Access", "code": 50001}
        scope = self._scope(req)
        stored = self._stored_command(scope, req.json)
        commands = [c for c in self.commands.get(scope, []) if c["id"] != stored["id"]]
        self.commands[scope] = [*commands, stored]
        return 201, stored

    async def _delete_command(self, req: RecordedRequest) -> tuple[int, Any]:
        scope = self._scope(req)
        before = self.commands.get(scope, [])
        self.commands[scope] = [c for c in before if c["id"] != req.params["command_id"]]
        if len(before) == len(self.commands[scope]):
            return 404, {"message": "Unknown application command", "code": 10063}
        return 204, None

    async def _get_channel(self, req: RecordedRequest) -> tuple[int, Any]:
        channel_id = req.params["channel_id"]
        if not channel_id.isdigit():
            return 404, {"message": "Unknown Channel", "code": 10003}
        return 200, self.channel(int(channel_id))

    async def _typing(self, req: RecordedRequest) -> tuple[int, Any]:
        return 204, None

    def _channel_message(self, req: RecordedRequest) -> FakeMessage | None:
        message_id = req.params["message_id"]
        msg = self.messages.get(int(message_id)) if message_id.isdigit() else None
        if msg is None or msg.deleted or msg.ephemeral or str(msg.channel_id) != req.params["channel_id"]:
            return None  # ephemeral messages do not exist for channel endpoints
        return msg

    async def _create_channel_message(self, req: RecordedRequest) -> tuple[int, Any]:
        body = req.json or {}
        channel_id = int(req.params["channel_id"])
        channel = self.channel(channel_id)
        if channel.get("type") == 1 and any(int(r["id"]) in self.closed_dms for r in channel["recipients"]):
            return 403, {"message": "Cannot send messages to this user", "code": 50007}
        guild_id = int(channel["guild_id"]) if channel.get("guild_id") else None
        reference = body.get("message_reference")
        msg = FakeMessage(
            id=self.snowflake(),
            channel_id=channel_id,
            guild_id=guild_id,
            author=self.bot_user,
            type=19 if reference else 0,
            message_reference={k: str(v) if k.endswith("_id") else v for k, v in reference.items()}
            if reference
            else None,
            created_at=req.at,
            tts=bool(body.get("tts")),
        )
        self._write(msg, req, body, edit=False)
        msg.flags &= ~(EPHEMERAL | LOADING)  # not settable on channel messages
        return 200, self._store(msg).to_payload()

    async def _get_channel_message(self, req: RecordedRequest) -> tuple[int, Any]:
        msg = self._channel_message(req)
        if msg is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        return 200, msg.to_payload()

    async def _edit_channel_message(self, req: RecordedRequest) -> tuple[int, Any]:
        msg = self._channel_message(req)
        if msg is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        if msg.author.get("id") != str(self.bot_user_id):
            return 403, {"message": "Cannot edit a message authored by another user", "code": 50005}
        self._write(msg, req, req.json or {}, edit=True)
        return 200, msg.to_payload()

    async def _delete_channel_message(self, req: RecordedRequest) -> tuple[int, Any]:
        msg = self._channel_message(req)
        if msg is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        msg.deleted = True
        return 204, None

    async def _add_reaction(self, req: RecordedRequest) -> tuple[int, Any]:
        msg = self._channel_message(req)
        if msg is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        msg.reactions.append(req.params["emoji_name"])
        return 204, None

    async def _callback(self, req: RecordedRequest) -> tuple[int, Any]:
        interaction_id = req.params["interaction_id"]
        record = self._interactions_by_id.get(int(interaction_id)) if interaction_id.isdigit() else None
        if record is None or record.token != req.params["interaction_token"]:
            return 404, {"message": "Unknown interaction", "code": 10062}
        if record.callback_type is not None:
            self._violation(f"second callback for interaction {record.id} (already acknowledged)", req)
            return 400, {"message": "Interaction has already been acknowledged.", "code": 40060}
        late = req.at - record.created_at
        if self.interaction_deadline is not None and late > self.interaction_deadline:
            self._violation(
                f"callback for interaction {record.id} after {late:.2f}s (Discord allows 3 s)", req
            )
            return 404, {"message": "Unknown interaction", "code": 10062}
        body = req.json or {}
        kind = body.get("type")
        data = body.get("data") or {}
        if kind in (4, 5) and self._forced_ephemeral(record):
            data = {**data, "flags": int(data.get("flags") or 0) | EPHEMERAL}
            body = {**body, "data": data}
        record.callback, record.callback_type, record.callback_at = body, kind, req.at
        message: FakeMessage | None = None
        if kind == 4:
            message = self._interaction_message(record, req, data, followup=False)
        elif kind == 5:
            placeholder = {"content": "", "flags": (int(data.get("flags") or 0) & EPHEMERAL) | LOADING}
            message = self._interaction_message(record, req, placeholder, followup=False)
        elif kind == 7:
            message_id = int((record.payload.get("message") or {}).get("id", 0))
            message = self.messages.get(message_id)
            if message is not None:
                self._write(message, req, data, edit=True)
        elif kind == 6:
            message_id = int((record.payload.get("message") or {}).get("id", 0))
            record.original_message_id = message_id if message_id in self.messages else None
        if message is not None:
            record.original_message_id = message.id
        if req.query.get("with_response") not in _TRUE:
            return 204, None
        resource: dict[str, Any] = {"type": kind}
        if message is not None:
            resource["message"] = message.to_payload()
        return 200, {
            "interaction": {
                "id": str(record.id),
                "type": record.type,
                "activity_instance_id": None,
                "response_message_id": str(message.id) if message else None,
                "response_message_loading": bool(message and message.loading),
                "response_message_ephemeral": bool(message and message.ephemeral),
            },
            "resource": resource,
        }

    def _webhook_record(self, req: RecordedRequest) -> InteractionRecord | None:
        """The interaction behind a webhook token, if it is still valid."""
        record = self.interactions.get(req.params["webhook_token"])
        if record is None or req.params["webhook_id"] != str(self.application_id) or record.expired:
            return None
        if req.at - record.created_at > self.token_ttl:
            return None
        return record

    def _webhook_target(self, req: RecordedRequest, record: InteractionRecord) -> FakeMessage | None:
        message_id = req.params.get("message_id")
        if message_id is None:
            msg = record.original
        else:
            msg = self.messages.get(int(message_id)) if message_id.isdigit() else None
            if msg is not None and msg.id != record.original_message_id and msg.id not in record.followup_ids:
                msg = None
        return None if msg is None or msg.deleted else msg

    async def _followup(self, req: RecordedRequest) -> tuple[int, Any]:
        record = self._webhook_record(req)
        if record is None:
            return 401, {"message": "Invalid Webhook Token", "code": 50027}
        if not record.acknowledged:
            return 404, {"message": "Unknown Webhook", "code": 10015}
        body = req.json or {}
        if self._forced_ephemeral(record):
            body = {**body, "flags": int(body.get("flags") or 0) | EPHEMERAL}
        original = record.original
        if original is not None and original.loading:
            # The first followup after a deferred ("thinking") response replaces the placeholder.
            self._write(original, req, {k: v for k, v in body.items() if k != "flags"}, edit=True)
            msg = original
        else:
            msg = self._interaction_message(record, req, body, followup=True)
            record.followup_ids.append(msg.id)
        if req.query.get("wait") not in _TRUE:
            return 204, None
        return 200, msg.to_payload()

    async def _get_webhook_message(self, req: RecordedRequest) -> tuple[int, Any]:
        record = self._webhook_record(req)
        if record is None:
            return 401, {"message": "Invalid Webhook Token", "code": 50027}
        msg = self._webhook_target(req, record)
        if msg is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        return 200, msg.to_payload()

    async def _edit_webhook_message(self, req: RecordedRequest) -> tuple[int, Any]:
        record = self._webhook_record(req)
        if record is None:
            return 401, {"message": "Invalid Webhook Token", "code": 50027}
        msg = self._webhook_target(req, record)
        if msg is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        self._write(msg, req, req.json or {}, edit=True)
        return 200, msg.to_payload()

    async def _delete_webhook_message(self, req: RecordedRequest) -> tuple[int, Any]:
        record = self._webhook_record(req)
        if record is None:
            return 401, {"message": "Invalid Webhook Token", "code": 50027}
        msg = self._webhook_target(req, record)
        if msg is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        msg.deleted = True
        return 204, None
