"""What `--check` verifies of the webhook settings, and what it tells the operator to enter.

The settings parser already refused what it can see alone (not HTTPS, a malformed secret, no
HTTP_PORT). Here the rest: ToAPIs calls only public addresses, so the callback host must
resolve to public ones (not private, loopback or link-local); the HTTP port must be free to
listen on. Discord-free; the caller prints the lines.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bot.toapis import is_public_address

__all__ = ["WebhookSetupReport", "check_http_port", "check_webhook_setup"]

Resolve = Callable[[str], Awaitable[list[str]]]


@dataclass
class WebhookSetupReport:
    """Problems (each a line saying what to change) and the lines to show the operator."""

    problems: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


async def _resolve(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def check_http_port(host: str, port: int) -> str | None:
    """None when `host:port` can be listened on now, else why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"HTTP_HOST {host!r} is not an address of this machine ({exc.strerror or exc})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return (
                f"HTTP_PORT {port} cannot be listened on at {host} ({exc.strerror or exc}): is another "
                "program (or another copy of the bot) using it?"
            )
    return None


async def check_webhook_setup(
    callback_url: str,
    secrets: int,
    http_host: str,
    http_port: int,
    *,
    resolve: Resolve = _resolve,
) -> WebhookSetupReport:
    """Check the callback host and the port; say what to enter in the ToAPIs console."""
    report = WebhookSetupReport()
    parts = urlsplit(callback_url)
    host = parts.hostname or ""
    try:
        addresses = [host] if _is_ip(host) else await resolve(host)
    except OSError as exc:
        addresses = []
        report.problems.append(
            f"TOAPIS_CALLBACK_URL: the host {host} does not resolve ({exc.strerror or exc}); "
            "ToAPIs must be able to reach it from the internet"
        )
    private = sorted({a for a in addresses if not is_public_address(ipaddress.ip_address(a.split("%")[0]))})
    if private:
        report.problems.append(
            f"TOAPIS_CALLBACK_URL: the host {host} is not a public address ({', '.join(private)}); "
            "ToAPIs refuses private, loopback and link-local addresses — use your public HTTPS address"
        )
    bind_problem = await asyncio.to_thread(check_http_port, http_host, http_port)
    if bind_problem is not None:
        report.problems.append(bind_problem)
    path = parts.path or "/"
    target = f"http://{http_host}:{http_port}{path}"
    rotation = " (the first of the two: the current one)" if secrets > 1 else ""
    report.lines = [
        "Webhooks: in the ToAPIs console, for this API key, enter",
        f"  callback URL:   {callback_url}",
        f"  signing secret: the one in TOAPIS_WEBHOOK_SECRETS{rotation}",
        f"  and have your reverse proxy forward POST {parts.scheme}://{parts.netloc}{path} to {target}",
        "  (path unchanged, body untouched). The console's test event shows in the bot's log.",
    ]
    return report


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True
