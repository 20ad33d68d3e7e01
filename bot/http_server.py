"""The bot's small HTTP server: health, metrics and the ToAPIs webhook route — nothing else.

Optional (`HTTP_PORT`), on the bot's own event loop. It serves exactly three routes:

- `GET /healthz`: 200 and a small JSON when the gateway is connected and the database
  answers; 503 with the reason otherwise (container health checks, uptime monitors).
- `GET /metrics`: the Prometheus text exposition of `bot.telemetry.Telemetry`.
- `POST <path of TOAPIS_CALLBACK_URL>`: signed webhook deliveries (`bot.webhooks.inbox`).

Anything else is 404; a body over `MAX_BODY_BYTES` is refused with 413 before it is read
whole. No answer carries a secret: bodies are fixed words and counts. Discord-free: the app
hands it callables for the gateway and the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from bot.telemetry import CONTENT_TYPE, Telemetry
from bot.webhooks.inbox import WebhookInbox

__all__ = ["MAX_BODY_BYTES", "HealthChecks", "HttpServer", "HttpServerError"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
DATABASE_TIMEOUT = 2.0  # a health check must answer even when the database hangs


class HttpServerError(Exception):
    """The server could not listen where it was told to; the message names the settings."""


@dataclass(frozen=True)
class HealthChecks:
    """What `/healthz` asks: is the Discord gateway connected, does the database answer."""

    gateway_connected: Callable[[], bool]
    database_answers: Callable[[], Awaitable[bool]]


class HttpServer:
    """An `aiohttp.web` server for health, metrics and (when configured) webhooks."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        health: HealthChecks,
        telemetry: Telemetry,
        inbox: WebhookInbox | None = None,
        webhook_path: str | None = None,
    ) -> None:
        if (inbox is None) != (webhook_path is None):
            raise ValueError("a webhook route needs both its inbox and its path")
        self._host = host
        self._port = port
        self._health = health
        self._telemetry = telemetry
        self._inbox = inbox
        self._webhook_path = webhook_path
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one asked for, or the one picked for port 0)."""
        if self._bound_port is None:
            raise RuntimeError("the HTTP server is not started")
        return self._bound_port

    async def start(self) -> None:
        """Listen; raises HttpServerError when the address cannot be bound (taken, not allowed)."""
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._guard])
        app.router.add_get("/healthz", self._healthz, allow_head=False)
        app.router.add_get("/metrics", self._metrics, allow_head=False)
        if self._webhook_path is not None:
            app.router.add_post(self._webhook_path, self._webhook)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise HttpServerError(
                f"HTTP_PORT {self._port} cannot be listened on at HTTP_HOST {self._host} "
                f"({exc.strerror or exc}): is another program using it?"
            ) from None
        self._runner = runner
        self._bound_port = runner.addresses[0][1]
        routes = ", ".join(["/healthz", "/metrics", *([self._webhook_path] if self._webhook_path else [])])
        log.info("HTTP server listening on %s:%d (%s)", self._host, self._bound_port, routes)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Refuse oversized bodies before reading them; no traceback or detail in any answer."""
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _json({"error": "the body is larger than 1 MB"}, 413)
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _json({"error": "the body is larger than 1 MB"}, 413)
        except web.HTTPException as exc:
            if exc.status in (404, 405):  # a known path with another method is not a route either
                return _json({"error": "not found"}, 404)
            raise
        except Exception:
            log.exception("HTTP %s %s failed", request.method, request.path)
            return _json({"error": "internal error"}, 500)

    async def _healthz(self, _request: web.Request) -> web.Response:
        gateway = self._health.gateway_connected()
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT):
                database = await self._health.database_answers()
        except Exception:
            database = False
        reasons = []
        if not gateway:
            reasons.append("the Discord gateway is not connected")
        if not database:
            reasons.append("the database does not answer")
        body = {
            "status": "ok" if not reasons else "unavailable",
            "gateway": "connected" if gateway else "disconnected",
            "database": "ok" if database else "unavailable",
        }
        if reasons:
            body["reason"] = "; ".join(reasons)
        return _json(body, 200 if not reasons else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        await self._telemetry.refresh()
        response = web.Response(body=self._telemetry.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def _webhook(self, request: web.Request) -> web.Response:
        assert self._inbox is not None
        body = await request.read()  # bounded by client_max_size: 413 past it
        reply = await self._inbox.receive(request.headers, body, request.headers.get("Content-Type", ""))
        return _json(reply.body, reply.status)


def _json(body: Mapping[str, object], status: int) -> web.Response:
    response = web.json_response(dict(body), status=status)
    response.headers["Cache-Control"] = "no-store"
    return response
