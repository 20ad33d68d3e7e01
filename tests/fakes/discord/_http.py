"""Private to the fake Discord: how one REST request is routed, checked, answered and recorded."""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from tests.fakes import discord_spec

from .rate_limits import RateLimitPolicy
from .records import JSON_TYPE, FakeMessage, Injection, InteractionRecord, RecordedRequest, UploadedFile

log = logging.getLogger(__name__)


_Handler = Callable[[RecordedRequest], Awaitable[tuple[int, Any]]]


class RequestHandling:
    """The REST plumbing: routing, authentication, body parsing, injected faults, rate limits and
    validation of every request against the spec, then recording it.

    A part of :class:`FakeDiscord`; its state lives there."""

    def _build_routes(self) -> None:
        """Route table: (method, template, handler, needs bot token). Literal paths first."""
        table: list[tuple[str, str, _Handler, bool]] = [
            ("GET", "/users/@me", self._get_me, True),
            ("DELETE", "/users/@me/guilds/{guild_id}", self._leave_guild, True),
            ("POST", "/users/@me/channels", self._create_dm, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
            ("GET", "/applications/{application_id}/commands", self._get_commands, True),
            ("PUT", "/applications/{application_id}/commands", self._put_commands, True),
            ("POST", "/applications/{application_id}/commands", self._post_command, True),
            ("DELETE", "/applications/{application_id}/commands/{command_id}", self._delete_command, True),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self._get_commands, True),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands, True),
            ("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self._post_command, True),
            (
                "DELETE",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self._delete_command,
                True,
            ),
            ("GET", "/channels/{channel_id}", self._get_channel, True),
            ("POST", "/channels/{channel_id}/typing", self._typing, True),
            ("POST", "/channels/{channel_id}/messages", self._create_channel_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_channel_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_channel_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_channel_message, True),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me",
                self._add_reaction,
                True,
            ),
            ("POST", "/interactions/{interaction_id}/{interaction_token}/callback", self._callback, False),
            ("POST", "/webhooks/{webhook_id}/{webhook_token}", self._followup, False),
            (
                "GET",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                self._get_webhook_message,
                False,
            ),
            (
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                self._edit_webhook_message,
                False,
            ),
            (
                "DELETE",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                self._delete_webhook_message,
                False,
            ),
            (
                "GET",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self._get_webhook_message,
                False,
            ),
            (
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self._edit_webhook_message,
                False,
            ),
            (
                "DELETE",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self._delete_webhook_message,
                False,
            ),
        ]
        for method, template, handler, needs_bot in table:
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
            self._routes.append((method, template, re.compile(f"^{regex}$"), handler, needs_bot))
        # Most literal templates first, so ".../@original" wins over ".../{message_id}".
        self._routes.sort(key=lambda r: -sum(1 for p in r[1].split("/") if p and not p.startswith("{")))

    def _match(self, method: str, path: str) -> tuple[str, _Handler, bool, dict[str, str]] | None:
        for route_method, template, regex, handler, needs_bot in self._routes:
            if route_method != method:
                continue
            match = regex.match(path)
            if match:
                return template, handler, needs_bot, match.groupdict()
        return None

    def _auth_kind(self, request: web.Request) -> str:
        header = request.headers.get("Authorization")
        if header is None:
            return "none"
        return "bot" if header == f"Bot {self.token}" else "invalid"

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, list[UploadedFile], list[str], str | None]:
        """``(json, files, file part names, parse error)`` for JSON or multipart bodies."""
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            payload: Any = None
            files: list[UploadedFile] = []
            fields: list[str] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                name = part.name or ""
                if name == "payload_json":
                    try:
                        payload = json.loads(await part.text())
                    except ValueError:
                        return None, files, fields, "payload_json is not valid JSON"
                else:
                    data = bytes(await part.read(decode=False))
                    files.append(UploadedFile(part.filename or name, data, part.headers.get("Content-Type")))
                    fields.append(name)
            return payload, files, fields, None
        raw = await request.read()
        if not raw:
            return None, [], [], None
        try:
            return json.loads(raw), [], [], None
        except ValueError:
            return None, [], [], "The request body contains invalid JSON."

    def _response(
        self, request: RecordedRequest, status: int, body: Any, headers: Mapping[str, str]
    ) -> web.Response:
        request.status = status
        request.response = body
        # discord.py treats a 429 without "Via" as a Cloudflare ban; Discord always sends it.
        base = {"Via": "1.1 google", **headers}
        if status == 204 or body is None:
            return web.Response(status=status, headers=base)
        base["Content-Type"] = JSON_TYPE  # exactly this: discord.py does not decode "; charset=..."
        return web.Response(status=status, body=json.dumps(body).encode(), headers=base)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        path = "/" + request.match_info["tail"]
        method = request.method.upper()
        matched = self._match(method, path)
        payload, files, fields, parse_error = await self._read_body(request)
        req = RecordedRequest(
            method=method,
            path=path,
            route=matched[0] if matched else None,
            query=dict(request.query),
            json=payload,
            files=files,
            file_fields=fields,
            at=at,
            auth=self._auth_kind(request),
            headers=dict(request.headers),
            params=matched[3] if matched else {},
        )
        self.requests.append(req)
        try:
            status, body, headers = await self._answer(req, matched, parse_error)
        except Exception as exc:  # a bug in the fake must not look like a Discord outage
            log.exception("fake discord handler failed")
            self._violation(f"fake discord crashed on {method} {path}: {exc!r}", req)
            status, body, headers = 500, {"message": f"fake crashed: {exc!r}", "code": 0}, {}
        if req.fault is not None:
            await self._changed()
            if req.fault == "hang":
                await self._closing.wait()
            # Closing the transport: the client sees the connection end without an answer.
            if request.transport is not None:
                request.transport.close()
            return web.Response()
        response = self._response(req, status, body, headers)
        await self._changed()
        return response

    async def _answer(
        self,
        req: RecordedRequest,
        matched: tuple[str, _Handler, bool, dict[str, str]] | None,
        parse_error: str | None,
    ) -> tuple[int, Any, dict[str, str]]:
        """Decide the answer: unknown route, injected/rate-limited, auth, invalid body, handler."""
        if matched is None:
            known = discord_spec.match_operation(req.method, req.path)
            note = " (in Discord's spec, not implemented by the fake)" if known else ""
            self._violation(f"unknown route {req.method} {req.path}{note}", req)
            return 404, {"message": "404: Not Found", "code": 0}, {}
        _, handler, needs_bot, _ = matched

        violations = self._validate(req) if parse_error is None else []
        for violation in violations:
            self._violation(violation, req)

        decided, headers = self._pre_route(req)
        if decided is not None:
            return decided

        if needs_bot and req.auth != "bot":
            return 401, {"message": "401: Unauthorized", "code": 0}, headers
        if parse_error is not None:
            self._violation(f"{req.method} {req.path}: {parse_error}", req)
            return 400, {"code": 50109, "message": "The request body contains invalid JSON."}, headers
        if violations:
            if any(getattr(v, "status", 400) == 413 for v in violations):
                return 413, discord_spec.too_large_body(), headers
            return 400, discord_spec.form_error_body(violations), headers
        hidden = self._hidden_channel(req)
        if hidden is not None:
            return (*hidden, headers)
        status, body = await handler(req)
        return status, body, headers

    def _hidden_channel(self, req: RecordedRequest) -> tuple[int, Any] | None:
        """Discord's answer to a channel endpoint for a channel the bot cannot see, else None."""
        channel_id = req.params.get("channel_id", "")
        code = self.hidden_channels.get(int(channel_id)) if channel_id.isdigit() else None
        if code is None:
            return None
        if code == 50001:
            return 403, {"message": "Missing Access", "code": 50001}
        return 404, {"message": "Unknown Channel", "code": 10003}

    def _pre_route(
        self, req: RecordedRequest
    ) -> tuple[tuple[int, Any, dict[str, str]] | None, dict[str, str]]:
        """The single place that may answer before routing: injected faults, then rate limits.

        Returns ``(answer or None, rate-limit headers for a normal answer)``.
        """
        for injection in self.injections:
            if injection.matches(req.method, req.path):
                injection.hits.append(req)
                req.injected = True
                req.fault = injection.fault
                return self._injected_answer(req, injection), {}
        body, headers = self.rate_limits.decide(req)
        if body is not None:
            return (429, body, headers), headers
        return None, headers

    def _injected_answer(self, req: RecordedRequest, injection: Injection) -> tuple[int, Any, dict[str, str]]:
        status = injection.status
        body = (
            copy.deepcopy(injection.body) if injection.body is not None else self._default_error(req, status)
        )
        headers: dict[str, str] = {}
        if status == 429:
            retry_after = float((body or {}).get("retry_after", 0.1))
            is_global = bool((body or {}).get("global", False))
            headers = {
                "Retry-After": str(max(1, math.ceil(retry_after))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                "X-RateLimit-Bucket": RateLimitPolicy.bucket(req),
                "X-RateLimit-Scope": "global" if is_global else "user",
            }
            if is_global:
                headers["X-RateLimit-Global"] = "true"
        headers.update(injection.headers)
        return status, body, headers

    @staticmethod
    def _default_error(req: RecordedRequest, status: int) -> dict[str, Any]:
        """What Discord answers for ``status`` on this route."""
        route = req.route or ""
        token_route = route.startswith(("/webhooks/", "/interactions/"))
        if status == 401 and token_route:
            return {"message": "Invalid Webhook Token", "code": 50027}
        if status == 401:
            return {"message": "401: Unauthorized", "code": 0}
        if status == 403:
            return {"message": "Missing Permissions", "code": 50013}
        if status == 404:
            if route.startswith("/interactions/"):
                return {"message": "Unknown interaction", "code": 10062}
            if "{message_id}" in route or "@original" in route:
                return {"message": "Unknown Message", "code": 10008}
            if route.startswith("/channels/"):
                return {"message": "Unknown Channel", "code": 10003}
            return {"message": "404: Not Found", "code": 0}
        if status == 429:
            return {"message": "You are being rate limited.", "retry_after": 0.1, "global": False}
        if status >= 500:
            return {"message": f"{status}: Internal Server Error", "code": 0}
        return {"message": f"{status}: Bad Request", "code": 0}

    def _validate(self, req: RecordedRequest) -> list[discord_spec.Violation]:
        """Run the spec + extra checks with the context only the server knows."""
        if req.method in ("GET", "DELETE") and req.json is None and not req.files:
            return []
        limit = self.upload_limit
        token = req.params.get("webhook_token") or req.params.get("interaction_token")
        record = self.interactions.get(token) if token else None
        if record is not None:
            # Discord applies the limit it told the bot in the interaction.
            limit = record.attachment_size_limit
        flags = None
        if req.method == "PATCH":
            target = self._target_message(req, record)
            flags = target.flags if target is not None else None
        return discord_spec.validate_request(
            req.method,
            req.path,
            req.json,
            file_fields=req.file_fields,
            file_sizes=[len(f.data) for f in req.files],
            upload_limit=limit,
            message_flags=flags,
            template=req.route,
        )

    def _target_message(self, req: RecordedRequest, record: InteractionRecord | None) -> FakeMessage | None:
        message_id = req.params.get("message_id")
        if message_id is None:
            if record is not None and req.route and req.route.endswith("@original"):
                return record.original
            return None
        return self.messages.get(int(message_id)) if message_id.isdigit() else None

    async def _handle_cdn(self, request: web.Request) -> web.Response:
        self.cdn_requests.append(request.path)
        attachment_id = request.match_info["attachment_id"]
        attachment = self.attachments.get(int(attachment_id)) if attachment_id.isdigit() else None
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=attachment.data, headers={"Content-Type": attachment.content_type or ""})
