"""Fetch a user's URL (a ZIP for `/batch`) to a local file, safely.

Only http(s); a bounded number of redirects, each checked again; the body streamed to disk with a size cap; and
private, loopback, link-local and other non-public addresses refused unless the operator allows them. The check is
made on the addresses the connection really uses (a resolver that refuses them), so a DNS name that resolves to a
private address, or a redirect to one, is refused just the same.
"""

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 5 * 1024**3
DEFAULT_MAX_REDIRECTS = 5
_CHUNK = 1024 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchError(Exception):
    """The URL could not be fetched; `user_message` says why in words a user can act on."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedFile:
    """A downloaded body on disk."""

    path: Path
    size: int
    final_url: str
    content_type: str | None


def is_public_address(address: IPAddress) -> bool:
    """Tell whether an address is on the public internet (not private, loopback, link-local, reserved, …)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


class _GuardedResolver(AbstractResolver):
    """Resolve as usual, then refuse every address that is neither public nor explicitly allowed."""

    def __init__(self, allowed: Iterable[IPNetwork]) -> None:
        self._inner = DefaultResolver()
        self._allowed = tuple(allowed)

    def is_allowed(self, host: str) -> bool:
        """Tell whether connecting to the address `host` is allowed."""
        address = ipaddress.ip_address(host.split("%", 1)[0])
        return is_public_address(address) or any(address in net for net in self._allowed)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        refused = [r["host"] for r in results if not self.is_allowed(r["host"])]
        if refused:
            raise FetchError(f"{host} resolves to a private or local address ({refused[0]}); Peel does not fetch those")
        return results

    async def close(self) -> None:
        await self._inner.close()


def _check_url(url: str, resolver: _GuardedResolver) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"only http:// and https:// links can be fetched, not {parts.scheme or 'this'}:")
    if not parts.hostname:
        raise FetchError("the link has no host name")
    if parts.username or parts.password:
        raise FetchError("links with a user name or password in them are not fetched")
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:
        return  # a name: the resolver checks the addresses it resolves to
    if not resolver.is_allowed(parts.hostname):  # aiohttp connects to an address literal without resolving it
        raise FetchError(f"{parts.hostname} is a private or local address; Peel does not fetch those")


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDR strings (`127.0.0.0/8`, `10.1.2.3`) into networks."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


async def fetch_to_file(
    url: str,
    dest: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    allowed_networks: Iterable[IPNetwork] = (),
    timeout_s: float = 600.0,
) -> FetchedFile:
    """Download `url` into `dest`, refusing what this module's docstring says; a partial file is removed.

    Raises:
        FetchError: with a message for the user (bad scheme, private address, too large, HTTP error, …).
    """
    resolver = _GuardedResolver(allowed_networks)
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=15, sock_read=60)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as http:
            return await _follow(http, resolver, url, dest, max_bytes=max_bytes, max_redirects=max_redirects)
    except FetchError:
        await asyncio.to_thread(dest.unlink, missing_ok=True)
        raise
    except (aiohttp.ClientError, TimeoutError) as exc:
        await asyncio.to_thread(dest.unlink, missing_ok=True)
        cause = exc.__cause__ if isinstance(exc.__cause__, FetchError) else None
        if cause is not None:
            raise cause from exc
        reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        raise FetchError(f"the download failed ({reason}); check that the link works and try again") from exc
    except BaseException:
        await asyncio.to_thread(dest.unlink, missing_ok=True)
        raise


async def _follow(
    http: aiohttp.ClientSession, resolver: _GuardedResolver, url: str, dest: Path, *, max_bytes: int, max_redirects: int
) -> FetchedFile:
    current = url
    for _ in range(max_redirects + 1):
        _check_url(current, resolver)
        async with http.get(current, allow_redirects=False) as resp:
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.headers.get("Location")
                if not location:
                    raise FetchError(f"the server answered {resp.status} without saying where to go")
                current = urljoin(current, location)
                continue
            if resp.status != 200:
                raise FetchError(f"the server answered HTTP {resp.status} for that link")
            declared = resp.content_length
            if declared is not None and declared > max_bytes:
                raise FetchError(f"the file is {_mib(declared)}, over the {_mib(max_bytes)} limit")
            size = await _stream(resp, dest, max_bytes=max_bytes)
            log.info("fetched %d bytes", size, extra={"action": "fetch"})
            return FetchedFile(path=dest, size=size, final_url=current, content_type=resp.content_type or None)
    raise FetchError(f"the link redirects more than {max_redirects} times")


async def _stream(resp: aiohttp.ClientResponse, dest: Path, *, max_bytes: int) -> int:
    fh: Any = await asyncio.to_thread(dest.open, "wb")
    size = 0
    try:
        async for chunk in resp.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(f"the file is over the {_mib(max_bytes)} limit")
            await asyncio.to_thread(fh.write, chunk)
    finally:
        await asyncio.to_thread(fh.close)
    return size


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.0f} MiB" if n >= 1024**2 else f"{n:,} bytes"
