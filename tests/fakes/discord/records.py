"""What the fake Discord records and serves: requests, messages, attachments, interactions, injected faults.

Public: tests and the benchmark read these; the permission bits are Discord's."""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .server import FakeDiscord


DISCORD_EPOCH_MS = 1420070400000


API_PREFIX = "/api/v10"


JSON_TYPE = "application/json"


EPHEMERAL = 1 << 6


LOADING = 1 << 7


# Permission bits (Discord's documented values).
VIEW_CHANNEL = 1 << 10


SEND_MESSAGES = 1 << 11


EMBED_LINKS = 1 << 14


ATTACH_FILES = 1 << 15


READ_MESSAGE_HISTORY = 1 << 16


ADD_REACTIONS = 1 << 6


USE_EXTERNAL_EMOJIS = 1 << 18


USE_APPLICATION_COMMANDS = 1 << 31


SEND_MESSAGES_IN_THREADS = 1 << 38


MANAGE_MESSAGES = 1 << 13  # not in the defaults: moderators only


# Lets apps a member installed to their own account answer publicly in a server that did not
# install them; without it Discord makes every response of such an app ephemeral.
USE_EXTERNAL_APPS = 1 << 50


DEFAULT_MEMBER_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
)


DEFAULT_APP_PERMISSIONS = DEFAULT_MEMBER_PERMISSIONS | SEND_MESSAGES_IN_THREADS


_MENTION_USER = re.compile(r"<@!?(\d+)>")


_MENTION_ROLE = re.compile(r"<@&(\d+)>")


_FILE_PART = re.compile(r"^files\[(\d+)\]$")


_TRUE = {"1", "true", "True"}


def _iso(ms_since_unix: float) -> str:
    return datetime.fromtimestamp(ms_since_unix / 1000, UTC).isoformat()


def _snowflake_time(snowflake: int) -> str:
    return _iso((snowflake >> 22) + DISCORD_EPOCH_MS)


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    """Width/height like Discord reports for images (None for anything else)."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return img.width, img.height
    except Exception:  # not an image, or Pillow missing: Discord omits the size too
        return None, None


class UploadedFile(NamedTuple):
    """One ``files[n]`` part of a multipart request."""

    filename: str
    data: bytes
    content_type: str | None


@dataclass
class RecordedRequest:
    """A request the fake received (REST only; CDN downloads go to ``cdn_requests``)."""

    method: str
    path: str  # below /api/v10, e.g. /webhooks/1/tok/messages/@original
    route: str | None  # template, e.g. /webhooks/{webhook_id}/{webhook_token}/messages/@original
    query: dict[str, str]
    json: Any  # JSON body, or the parsed payload_json part of a multipart body
    files: list[UploadedFile]
    file_fields: list[str]
    at: float  # time.monotonic() when received
    auth: str  # "bot" (valid bot token), "invalid" (wrong token) or "none"
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    response: Any = None
    violations: list[str] = field(default_factory=list)
    injected: bool = False
    fault: str | None = None  # "drop" or "hang": how an injection left it unanswered

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


@dataclass(eq=False)
class FakeAttachment:
    """An uploaded (or test-provided) file, served back at :attr:`url`."""

    id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    description: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        """Byte size, as Discord reports it."""
        return len(self.data)

    def to_payload(self) -> dict[str, Any]:
        """Discord's attachment object."""
        payload: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
            "width": self.width,
            "height": self.height,
        }
        if self.description is not None:
            payload["description"] = self.description
        return payload


@dataclass(eq=False)
class FakeMessage:
    """A message as the fake stores it (updated in place by edits)."""

    id: int
    channel_id: int
    guild_id: int | None
    author: dict[str, Any]
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None  # as sent on the latest write
    message_reference: dict[str, Any] | None = None
    flags: int = 0
    type: int = 0
    tts: bool = False
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_id: int | None = None
    interaction_token: str | None = None
    interaction_metadata: dict[str, Any] | None = None
    deleted: bool = False
    created_at: float = field(default_factory=time.monotonic)
    edited_timestamp: str | None = None
    edits: list[float] = field(default_factory=list)  # monotonic time of every edit
    history: list[dict[str, Any]] = field(default_factory=list)  # body of every write
    reactions: list[str] = field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        """Only the invoking user sees it (flag 64)."""
        return bool(self.flags & EPHEMERAL)

    @property
    def component_list(self) -> list[dict[str, Any]]:
        """Every interactive component (buttons, selects) of the message, row by row, in order."""
        return [c for row in self.components for c in (row.get("components") or [row])]

    @property
    def custom_ids(self) -> list[str]:
        """The ``custom_id`` of every interactive component (what a click sends back)."""
        return [c["custom_id"] for c in self.component_list if "custom_id" in c]

    @property
    def loading(self) -> bool:
        """Still the "thinking..." placeholder of a deferred interaction (flag 128)."""
        return bool(self.flags & LOADING)

    @property
    def pings(self) -> set[str]:
        """Who the content would notify given ``allowed_mentions`` (approximation of Discord).

        Items: ``"everyone"``, ``"user:<id>"``, ``"role:<id>"``, ``"replied_user"``.
        Without ``allowed_mentions`` Discord parses every mention in the content.
        """
        am = self.allowed_mentions
        parse = {"everyone", "users", "roles"} if am is None else set(am.get("parse") or [])
        users = set() if am is None else {str(u) for u in am.get("users") or []}
        roles = set() if am is None else {str(r) for r in am.get("roles") or []}
        out: set[str] = set()
        if ("@everyone" in self.content or "@here" in self.content) and "everyone" in parse:
            out.add("everyone")
        out.update(f"user:{u}" for u in _MENTION_USER.findall(self.content) if "users" in parse or u in users)
        out.update(f"role:{r}" for r in _MENTION_ROLE.findall(self.content) if "roles" in parse or r in roles)
        if self.message_reference and (am is None or am.get("replied_user")):
            out.add("replied_user")
        return out

    def to_payload(self) -> dict[str, Any]:
        """Discord's message object, complete enough for discord.py to parse."""
        payload: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": self.author,
            "content": self.content,
            "timestamp": _snowflake_time(self.id),
            "edited_timestamp": self.edited_timestamp,
            "tts": self.tts,
            "mention_everyone": "everyone" in self.pings,
            "mentions": [],
            "mention_roles": [],
            "attachments": [a.to_payload() for a in self.attachments],
            "embeds": self.embeds,
            "pinned": False,
            "type": self.type,
            "flags": self.flags,
            "components": self.components,
        }
        if self.guild_id is not None:
            payload["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            payload["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            payload["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            payload["interaction_metadata"] = self.interaction_metadata
        if self.message_reference is not None:
            payload["message_reference"] = {
                "type": 0,
                "channel_id": str(self.channel_id),
                **self.message_reference,
            }
        return payload


@dataclass(eq=False)
class InteractionRecord:
    """An interaction pushed to the bot, and everything the bot did with it."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    created_at: float
    attachment_size_limit: int
    callback: dict[str, Any] | None = None  # body of the (first) callback
    callback_type: int | None = None
    callback_at: float | None = None
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    expired: bool = False
    _fake: FakeDiscord | None = field(default=None, repr=False)

    @property
    def acknowledged(self) -> bool:
        """The bot sent a callback."""
        return self.callback_type is not None

    @property
    def ephemeral(self) -> bool:
        """The response (or deferred placeholder) is ephemeral."""
        data = (self.callback or {}).get("data") or {}
        return bool((data.get("flags") or 0) & EPHEMERAL)

    @property
    def original(self) -> FakeMessage | None:
        """The ``@original`` response message, once there is one."""
        if self._fake is None or self.original_message_id is None:
            return None
        return self._fake.messages.get(self.original_message_id)

    @property
    def followups(self) -> list[FakeMessage]:
        """Followup messages in the order they were created."""
        if self._fake is None:
            return []
        return [self._fake.messages[i] for i in self.followup_ids]


@dataclass(eq=False)
class Injection:
    """A canned answer for the next ``times`` requests matching ``method`` + ``pattern``."""

    method: str
    pattern: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str]
    times: int
    fault: str | None = None  # "drop": close the connection unanswered; "hang": never answer
    hits: list[RecordedRequest] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        """How many more requests it will answer."""
        return self.times - len(self.hits)

    def matches(self, method: str, path: str) -> bool:
        """Method (``*`` = any) and regex search on the path, with or without ``/api/v10``."""
        if self.remaining <= 0 or self.method not in ("*", method):
            return False
        return bool(self.pattern.search(path) or self.pattern.search(API_PREFIX + path))
