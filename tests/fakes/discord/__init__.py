"""A fake Discord (REST under ``/api/v10`` + gateway websocket) that the REAL discord.py talks to.

The test rig starts :class:`FakeDiscord` on 127.0.0.1, points discord.py at it
(``discord.http.Route.BASE = fake.api_base``; an ``AutoShardedBot`` finds the gateway
through ``GET /gateway/bot``) and then pushes interactions over the gateway and asserts on
what the bot sent back::

    async with FakeDiscord() as fake, fake.run_client(bot):
        record = await fake.send_interaction(fake.slash_command("imagine", {"prompt": "a cat"}))
        message = await fake.wait_for(lambda f: record.original)
        fake.assert_clean()

Every request body is checked against Discord's OpenAPI description plus the limits it
does not encode (:mod:`tests.fakes.discord_spec`); a request Discord would refuse is
answered the way Discord answers it (400 ``Invalid Form Body`` / 413) and listed in
:attr:`FakeDiscord.violations`.

The package's front is :class:`FakeDiscord` (``server.py``: what tests call) with the
records it keeps (``records.py``) and the rate-limit hook (``rate_limits.py``); the gateway
(``_gateway.py``), REST request handling (``_http.py``), the REST routes (``_rest.py``), the
message store (``_messages.py``) and shared payload pieces (``_payloads.py``) are its
internals — parts of :class:`FakeDiscord` that tests do not call.

User installs are modelled: interactions in context 0/1/2 whose
``authorizing_integration_owners`` name only the user (``slash_command(install="user")``),
channels the bot cannot see answering 403 Missing Access / 404 Unknown Channel, responses made
ephemeral where the member lacks Use External Apps, the bot's DMs (``POST /users/@me/channels``)
and members whose DMs are closed (``closed_dms``: 50007).

Not modelled: guild/role/member management, threads, reactions beyond a record,
MESSAGE_CREATE echoes of the bot's own messages over the gateway, ETF encoding, zstd-stream
without the ``zstandard`` module, real rate limits
(the :class:`RateLimitPolicy` hook is where they go)."""

from tests.fakes.discord._gateway import GatewaySession
from tests.fakes.discord.rate_limits import RateLimitPolicy
from tests.fakes.discord.records import (
    ADD_REACTIONS,
    ATTACH_FILES,
    DEFAULT_APP_PERMISSIONS,
    DEFAULT_MEMBER_PERMISSIONS,
    EMBED_LINKS,
    MANAGE_MESSAGES,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    USE_APPLICATION_COMMANDS,
    USE_EXTERNAL_APPS,
    USE_EXTERNAL_EMOJIS,
    VIEW_CHANNEL,
    FakeAttachment,
    FakeMessage,
    Injection,
    InteractionRecord,
    RecordedRequest,
    UploadedFile,
)
from tests.fakes.discord.server import FakeDiscord

__all__ = [
    "ADD_REACTIONS",
    "ATTACH_FILES",
    "DEFAULT_APP_PERMISSIONS",
    "DEFAULT_MEMBER_PERMISSIONS",
    "EMBED_LINKS",
    "MANAGE_MESSAGES",
    "READ_MESSAGE_HISTORY",
    "SEND_MESSAGES",
    "SEND_MESSAGES_IN_THREADS",
    "USE_APPLICATION_COMMANDS",
    "USE_EXTERNAL_APPS",
    "USE_EXTERNAL_EMOJIS",
    "VIEW_CHANNEL",
    "FakeAttachment",
    "FakeDiscord",
    "FakeMessage",
    "GatewaySession",
    "Injection",
    "InteractionRecord",
    "RateLimitPolicy",
    "RecordedRequest",
    "UploadedFile",
]
