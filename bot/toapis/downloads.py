"""Downloads from third-party file hosts, and the address guard every hop goes through.

Result images come from the provider's file host and references from Discord, so a download
follows an address the bot did not choose. Only HTTPS to public internet addresses is fetched,
except from the trusted hosts (the image service's own host and the hosts the operator
configured); the check runs on every redirect hop and again on the addresses a name resolves to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable
from typing import Any, Final

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from bot.toapis._http import USER_AGENT, Answer, read_capped
from bot.toapis.errors import DownloadRefusedError, DownloadTooLargeError

__all__ = ["FileFetcher", "is_public_address"]

log = logging.getLogger(__name__)

_MAX_ERROR_BODY: Final = 64 * 1024
# Redirects a download may follow; each hop is checked like the first address.
_MAX_REDIRECTS: Final = 5
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: IPAddress) -> bool:
    """True for an address on the public internet: not private, loopback, link-local, CGNAT,
    multicast, reserved or unspecified, also when wrapped in an IPv6 address."""
    if isinstance(address, ipaddress.IPv6Address) and (inner := _embedded_ipv4(address)) is not None:
        return is_public_address(inner)
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _host_key(host: str | None) -> str:
    return (host or "").rstrip(".").lower()


class _PublicAddressResolver(AbstractResolver):
    """Resolves names like aiohttp does, then keeps only public addresses.

    The check runs when the connection is made, on the addresses it will use, so a name that
    resolves to a private address (or changes to one after a first check) is never reached.
    """

    def __init__(self, trusted_hosts: frozenset[str]) -> None:
        self._inner = aiohttp.DefaultResolver()
        self._trusted = trusted_hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[Any]:
        found = await self._inner.resolve(host, port, family)
        if _host_key(host) in self._trusted:
            return found
        public = [entry for entry in found if is_public_address(ipaddress.ip_address(entry["host"]))]
        if not public:
            log.warning("refused a download from %s: it resolves to no public address", host)
            raise DownloadRefusedError("The image address leads to a private network, so it was not fetched.")
        return public

    async def close(self) -> None:
        await self._inner.close()


class FileFetcher:
    """Fetches one file at a time over its own session, bounded in size and time.

    The session is separate from the API's so that every connection it opens goes through
    the public-address check. No Authorization header is ever sent: the hosts are third parties.
    """

    def __init__(self, trusted_hosts: Iterable[str], *, max_bytes: int, timeout: float) -> None:
        """`trusted_hosts` are URLs or host names that may serve over plain HTTP and from a
        private address; `max_bytes` caps every file and `timeout` the whole chain of redirects."""
        self._trusted_hosts = frozenset(
            _host_key(URL(entry).host if "://" in entry else entry) for entry in trusted_hosts
        )
        self._max_download_bytes = max_bytes
        self._download_timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the session, if one was opened; the next fetch opens a new one."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def fetch(self, url: str, max_bytes: int | None = None) -> Answer:
        """Follow `url` through redirects and read the final answer (`max_bytes` lowers the cap).

        Raises :class:`DownloadRefusedError` for an address the guard refuses and
        :class:`DownloadTooLargeError` for a file over the cap; transport errors pass through.
        """
        session = self._get_session()
        headers = {"User-Agent": USER_AGENT}
        current = URL(url)
        # One time limit for the whole chain of redirects, as before they were followed by hand.
        async with asyncio.timeout(self._download_timeout):
            for _ in range(_MAX_REDIRECTS + 1):
                self._check_address(current)
                async with session.get(current, headers=headers, allow_redirects=False) as response:
                    location = response.headers.get("Location")
                    if response.status in _REDIRECT_STATUSES and location:
                        current = current.join(URL(location))
                        continue
                    return await self._read_file(response, max_bytes)
        log.warning("refused a download: more than %d redirects", _MAX_REDIRECTS)
        raise DownloadRefusedError("The image address redirects too many times, so it was not fetched.")

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=_PublicAddressResolver(self._trusted_hosts))
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _check_address(self, url: URL) -> None:
        """Refuse what the resolver cannot see: a scheme other than HTTPS, an address written as an IP."""
        if _host_key(url.host) in self._trusted_hosts and url.scheme in ("http", "https"):
            return
        if url.scheme != "https":
            log.warning("refused a download from %s: %s is not HTTPS", url.host, url.scheme)
            raise DownloadRefusedError("The image address is not HTTPS, so it was not fetched.")
        try:
            literal = ipaddress.ip_address(_host_key(url.host).strip("[]"))
        except ValueError:
            return  # a name: the resolver checks the addresses it stands for
        if not is_public_address(literal):
            log.warning("refused a download from %s: not a public address", url.host)
            raise DownloadRefusedError("The image address leads to a private network, so it was not fetched.")

    async def _read_file(self, response: aiohttp.ClientResponse, max_bytes: int | None) -> Answer:
        """The body of a final answer, within the byte limit (an error's body only briefly)."""
        if not 200 <= response.status < 300:
            error_body = await read_capped(response, _MAX_ERROR_BODY) or b""
            return Answer(response.status, response.reason or "", response.headers, error_body)
        limit = min(self._max_download_bytes, max_bytes or self._max_download_bytes)
        if response.content_length is not None and response.content_length > limit:
            log.warning("refusing a %d byte download (limit %d)", response.content_length, limit)
            raise DownloadTooLargeError(limit=limit, status=response.status)
        body = await read_capped(response, limit)
        if body is None:
            log.warning("a download exceeded %d bytes while streaming", limit)
            raise DownloadTooLargeError(limit=limit, status=response.status)
        return Answer(response.status, response.reason or "", response.headers, body)
