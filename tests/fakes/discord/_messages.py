"""Private to the fake Discord: the message store behind the REST routes."""

from __future__ import annotations

import copy
import mimetypes
import time
from collections.abc import Mapping
from typing import Any

from .records import (
    _FILE_PART,
    EPHEMERAL,
    LOADING,
    FakeAttachment,
    FakeMessage,
    InteractionRecord,
    RecordedRequest,
    UploadedFile,
    _iso,
)


class MessageStore:
    """Messages as Discord keeps them: attachments, writes and edits, and the messages of interactions.

    A part of :class:`FakeDiscord`; its state lives there."""

    def _new_attachment(
        self, channel_id: int, upload: UploadedFile, item: Mapping[str, Any]
    ) -> FakeAttachment:
        filename = item.get("filename") or upload.filename
        attachment = self.make_attachment(
            filename, upload.data, mimetypes.guess_type(filename)[0], channel_id=channel_id
        )
        attachment.description = item.get("description")
        return attachment

    def _build_attachments(
        self, channel_id: int, req: RecordedRequest, body: Mapping[str, Any], existing: list[FakeAttachment]
    ) -> list[FakeAttachment] | None:
        """New attachment list after a write, or None when the write leaves them alone."""
        uploads: dict[str, UploadedFile] = {}
        for name, upload in zip(req.file_fields, req.files, strict=False):
            match = _FILE_PART.match(name)
            if match:
                uploads[match.group(1)] = upload
        listed = body.get("attachments")
        if listed is None:
            if not uploads:
                return None
            # Files without an attachments list are added (Discord keeps old ones on edit).
            return existing + [self._new_attachment(channel_id, u, {}) for u in uploads.values()]
        kept = {str(a.id): a for a in existing}
        result: list[FakeAttachment] = []
        for item in listed:
            key = str(item.get("id"))
            if key in uploads:
                result.append(self._new_attachment(channel_id, uploads[key], item))
            elif key in kept:
                result.append(kept[key])
        return result

    def _write(self, msg: FakeMessage, req: RecordedRequest, body: Mapping[str, Any], *, edit: bool) -> None:
        """Apply a create/edit body to ``msg`` (PATCH semantics: absent keys unchanged)."""
        if "content" in body:
            msg.content = body["content"] or ""
        if "embeds" in body:
            msg.embeds = list(body["embeds"] or [])
        if "components" in body:
            msg.components = list(body["components"] or [])
        if body.get("flags") is not None:
            # Ephemeral/loading are fixed at creation; other bits (suppress embeds, V2) may change.
            fixed = msg.flags & (EPHEMERAL | LOADING)
            msg.flags = fixed | (int(body["flags"]) & ~(EPHEMERAL | LOADING)) if edit else int(body["flags"])
        msg.allowed_mentions = body.get("allowed_mentions")
        attachments = self._build_attachments(msg.channel_id, req, body, msg.attachments)
        if attachments is not None:
            msg.attachments = attachments
        history_entry = copy.deepcopy(dict(body))
        if req.files:
            history_entry["_files"] = [f.filename for f in req.files]
        msg.history.append(history_entry)
        if edit:
            msg.edits.append(req.at)
            msg.edited_timestamp = _iso(time.time() * 1000)
            msg.flags &= ~LOADING  # the "thinking..." placeholder is replaced by any edit

    def _store(self, msg: FakeMessage) -> FakeMessage:
        self.messages[msg.id] = msg
        return msg

    def _interaction_message(
        self, record: InteractionRecord, req: RecordedRequest, body: Mapping[str, Any], *, followup: bool
    ) -> FakeMessage:
        payload = record.payload
        channel_id = int(payload.get("channel_id") or payload["channel"]["id"])
        guild_id = int(payload["guild_id"]) if payload.get("guild_id") else None
        user = payload.get("member", {}).get("user") or payload.get("user")
        metadata: dict[str, Any] = {
            "id": str(record.id),
            "type": record.type,
            "user": user,
            "authorizing_integration_owners": payload.get("authorizing_integration_owners", {}),
        }
        data = payload.get("data") or {}
        if record.type == 2:
            metadata.update(name=data.get("name"), command_type=data.get("type", 1))
        if followup and record.original_message_id is not None:
            metadata["original_response_message_id"] = str(record.original_message_id)
        kind = {1: 20, 2: 23, 3: 23}.get(data.get("type", 1), 20) if record.type == 2 else 0
        msg = FakeMessage(
            id=self.snowflake(),
            channel_id=channel_id,
            guild_id=guild_id,
            author=self.bot_user,
            type=kind,
            webhook_id=self.application_id,
            application_id=self.application_id,
            interaction_id=record.id,
            interaction_token=record.token,
            interaction_metadata=metadata,
            created_at=req.at,
        )
        self._write(msg, req, body, edit=False)
        return self._store(msg)
