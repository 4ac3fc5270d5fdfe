"""Fetch a URL Peel was given (a user's ZIP link for `/batch`, an attachment) to a local file, safely.

One policy, `UrlPolicy`, decides every address Peel may fetch from, at three points:

1. the URL as aiohttp will use it: parsed by yarl (aiohttp's URL type), so the host is the IDNA/NFKC-normalised
   one the connector connects to (fullwidth digits and ideographic full stops spell `127.0.0.1` there); every
   legacy IPv4 notation `getaddrinfo` accepts (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`, a trailing dot) is
   read as the address it means; a host that is neither a DNS name nor an address (`%31…`) is refused;
2. the names a resolver returns (a name resolving to a private address is refused);
3. the socket itself: aiohttp calls no resolver for an address literal, so the connector's `socket_factory`
   checks the address each connection is really made to, on every redirect hop.

A refused address is never contacted, and the refusal reads the same whatever runs there. Private, loopback,
link-local, reserved and IPv6 forms that embed one (v4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) are refused
unless the operator allows their network. Only http(s), a bounded number of redirects, the body streamed to disk
with a size cap, an idle timeout and a minimum average speed (a slow-loris server does not hold a download slot),
and an optional byte reservation (`reserve`) so the caller's disk budget bounds what is on disk.
"""

import asyncio
import contextlib
import ipaddress
import logging
import re
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from bot.core.fetchquota import DownloadQuota, DownloadRefusedError

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MAX_REDIRECTS = 5
_CHUNK = 1024 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DISK_FULL = "Peel's download space is full right now; try again in a few minutes"
REFUSED_ADDRESS = "that link points to a private or local address; Peel only fetches from the public internet"

# IPv6 ranges that are "global" to `ipaddress` yet reach (or are translated to) an IPv4 address or a local site.
_REFUSED_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # IPv4-compatible (deprecated, RFC 4291 2.5.5.1); also :: and ::1
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT, RFC 2765)
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215)
        "2001::/32",  # Teredo: the client address is inside
        "fec0::/10",  # site-local (deprecated, still routed on some networks)
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix (RFC 6052): the low 32 bits are IPv4
_LEGACY_V4 = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)  # what inet_aton might read as an address
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


class FetchError(Exception):
    """The URL could not be fetched; `user_message` says why in words a user can act on."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class FetchRefusedError(FetchError):
    """The download was not started: the user or Peel already runs as many downloads as allowed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedFile:
    """A downloaded body on disk."""

    path: Path
    size: int
    final_url: str
    content_type: str | None


def is_public_address(address: IPAddress) -> bool:
    """Tell whether an address is on the public internet (not private, loopback, link-local, reserved, …).

    An IPv6 address that carries an IPv4 one (v4-mapped, 6to4, NAT64) is judged by the IPv4 address.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
        if address.scope_id or any(address in net for net in _REFUSED_V6):
            return False
    return address.is_global and not address.is_multicast


def literal_address(host: str) -> IPAddress | None:
    """Return the address a URL host names as `getaddrinfo` would read it, or None for a DNS name.

    Besides dotted-quad and IPv6 (zone id and trailing dot ignored), this reads the legacy IPv4 forms that
    `inet_aton` accepts: `2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`.
    """
    bare = host.split("%", 1)[0].removesuffix(".")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if not _LEGACY_V4.fullmatch(bare):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDR strings (`127.0.0.0/8`, `10.1.2.3`) into networks."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """Which URLs Peel may fetch: http(s) to public addresses, plus the networks the operator allows."""

    allowed_networks: tuple[IPNetwork, ...] = ()

    def allows(self, address: IPAddress) -> bool:
        """Tell whether connecting to `address` is allowed."""
        return is_public_address(address) or any(address in net for net in self.allowed_networks)

    def allows_host(self, host: str) -> bool:
        """Tell whether connecting to the address literal `host` (as a socket or resolver reports it) is allowed."""
        address = literal_address(host)
        return address is not None and self.allows(address)

    def check_url(self, url: str | URL) -> URL:
        """Return `url` parsed the way aiohttp will use it, or refuse it.

        Raises:
            FetchError: not http(s), no host or an invalid one, credentials in the link, or an address literal
                that is not allowed.
        """
        try:
            parsed = url if isinstance(url, URL) else URL(url)
            host = parsed.raw_host  # IDNA-encoded and NFKC-normalised: what the connector connects to
        except (ValueError, TypeError, UnicodeError) as exc:
            raise FetchError("that is not a valid link") from exc
        if parsed.scheme not in ("http", "https"):
            raise FetchError(f"only http:// and https:// links can be fetched, not {parsed.scheme or 'this'}:")
        if not host:
            raise FetchError("the link has no host name")
        if parsed.user is not None or parsed.password is not None:
            raise FetchError("links with a user name or password in them are not fetched")
        address = literal_address(host)
        if address is None:
            if not _HOSTNAME.fullmatch(host.removesuffix(".").lower()):
                raise FetchError("the link's host name is not valid")
        elif not self.allows(address):
            raise FetchError(REFUSED_ADDRESS)
        return parsed


class _AddressRefusedError(OSError):
    """The connector was about to open a socket to an address the policy refuses."""


@dataclass(slots=True)
class _Guard:
    """One fetch's policy at the resolver and at the socket; `refused` tells that it stopped a connection."""

    policy: UrlPolicy
    refused: bool = field(default=False)

    def socket_for(self, addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if not self.policy.allows_host(str(sockaddr[0])):
            self.refused = True
            raise _AddressRefusedError("address refused by the fetch policy")
        return socket.socket(family=family, type=type_, proto=proto)


class _GuardedResolver(AbstractResolver):
    """Resolve as usual, then refuse a name if any address it resolves to is not allowed."""

    def __init__(self, guard: _Guard) -> None:
        self._inner = DefaultResolver()
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not all(self._guard.policy.allows_host(r["host"]) for r in results):
            self._guard.refused = True
            raise FetchError(REFUSED_ADDRESS)
        return results

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Limits:
    max_bytes: int
    max_redirects: int
    min_bytes_per_s: float
    slow_grace_s: float
    reserve: Callable[[int], bool] | None


async def fetch_to_file(
    url: str,
    dest: Path,
    *,
    policy: UrlPolicy | None = None,
    allowed_networks: Iterable[IPNetwork] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    timeout_s: float = 1200.0,
    idle_timeout_s: float = 30.0,
    min_bytes_per_s: float = 0.0,
    slow_grace_s: float = 15.0,
    reserve: Callable[[int], bool] | None = None,
) -> FetchedFile:
    """Download `url` into `dest`, refusing what this module's docstring says; a partial file is removed.

    Args:
        url: the link.
        dest: where the body goes.
        policy: which addresses may be fetched (default: public ones plus `allowed_networks`).
        allowed_networks: networks allowed besides public ones, when no `policy` is given.
        max_bytes: the largest body accepted.
        max_redirects: redirects followed, each checked again.
        timeout_s: the whole download's time limit.
        idle_timeout_s: the longest wait for the next bytes.
        min_bytes_per_s: the slowest average speed accepted once `slow_grace_s` has passed (0: any).
        slow_grace_s: how long a download may be slower than `min_bytes_per_s` at first.
        reserve: called with each further number of bytes about to be held on disk (the declared length at once
            when the server sends one); False refuses the download (the caller's disk budget is full).

    Raises:
        FetchError: with a message for the user (bad scheme, private address, too large, HTTP error, …).
    """
    guard = _Guard(policy or UrlPolicy(tuple(allowed_networks)))
    limits = _Limits(
        max_bytes=max_bytes,
        max_redirects=max_redirects,
        min_bytes_per_s=min_bytes_per_s,
        slow_grace_s=slow_grace_s,
        reserve=reserve,
    )
    connector = aiohttp.TCPConnector(
        resolver=_GuardedResolver(guard), use_dns_cache=False, socket_factory=guard.socket_for
    )
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=15, sock_read=idle_timeout_s)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as http:
            return await _follow(http, guard.policy, url, dest, limits)
    except FetchError:
        await asyncio.to_thread(dest.unlink, missing_ok=True)
        raise
    except (aiohttp.ClientError, TimeoutError) as exc:
        await asyncio.to_thread(dest.unlink, missing_ok=True)
        if guard.refused:
            raise FetchError(REFUSED_ADDRESS) from exc
        if isinstance(exc.__cause__, FetchError):
            raise exc.__cause__ from exc
        log.info("fetch failed: %r", exc, extra={"action": "fetch"})  # the library's words are the operator's
        raise FetchError(f"the download failed ({_failure(exc)}); check that the link works and try again") from exc
    except BaseException:
        await asyncio.to_thread(dest.unlink, missing_ok=True)
        raise


async def _follow(http: aiohttp.ClientSession, policy: UrlPolicy, url: str, dest: Path, limits: _Limits) -> FetchedFile:
    current = policy.check_url(url)
    for _ in range(limits.max_redirects + 1):
        async with http.get(current, allow_redirects=False) as resp:
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.headers.get("Location")
                if not location:
                    raise FetchError(f"the server answered {resp.status} without saying where to go")
                try:
                    target = current.join(URL(location))
                except (ValueError, TypeError, UnicodeError) as exc:
                    raise FetchError("the server redirected to an invalid link") from exc
                current = policy.check_url(target)
                continue
            if resp.status != 200:
                raise FetchError(f"the server answered HTTP {resp.status} for that link")
            declared = resp.content_length
            if declared is not None and declared > limits.max_bytes:
                raise FetchError(f"the file is {_mib(declared)}, over the {_mib(limits.max_bytes)} limit")
            size = await _stream(resp, dest, limits, declared=declared)
            log.info("fetched %d bytes", size, extra={"action": "fetch"})
            return FetchedFile(path=dest, size=size, final_url=str(current), content_type=resp.content_type or None)
    raise FetchError(f"the link redirects more than {limits.max_redirects} times")


async def _stream(resp: aiohttp.ClientResponse, dest: Path, limits: _Limits, *, declared: int | None) -> int:
    reserved = 0

    def hold(size: int) -> None:
        nonlocal reserved
        if limits.reserve is not None and size > reserved:
            if not limits.reserve(size - reserved):
                raise FetchError(DISK_FULL)
            reserved = size

    if declared is not None:
        hold(declared)
    loop = asyncio.get_running_loop()
    started = loop.time()
    fh: Any = await open_for_writing(dest)
    size = 0
    try:
        async for chunk in resp.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > limits.max_bytes:
                raise FetchError(f"the file is over the {_mib(limits.max_bytes)} limit")
            hold(size)
            await asyncio.to_thread(fh.write, chunk)
            elapsed = loop.time() - started
            if limits.min_bytes_per_s and elapsed > limits.slow_grace_s and size < limits.min_bytes_per_s * elapsed:
                raise FetchError(
                    f"the server sends too slowly (under {_mib(int(limits.min_bytes_per_s))} a second); "
                    "try a faster host"
                )
    finally:
        await asyncio.to_thread(fh.close)
    return size


async def open_for_writing(path: Path) -> Any:
    """Open `path` for writing in a thread; if cancelled meanwhile, close what the thread still opens.

    A cancelled `to_thread` leaves its thread running: the file it opens would otherwise be dropped unclosed.
    """
    opening = asyncio.ensure_future(asyncio.to_thread(path.open, "wb"))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        await asyncio.wait({opening})
        if not opening.cancelled() and opening.exception() is None:
            await asyncio.shield(asyncio.to_thread(opening.result().close))
        raise


def _failure(exc: BaseException) -> str:
    """Say in a user's words how a download failed, never in the HTTP library's."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "the host name could not be found"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "the server could not be reached"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return "the server broke off the transfer"
    return "the connection failed"


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.0f} MiB" if n >= 1024**2 else f"{n:,} bytes"


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchOptions:
    """How big and how slow one download may be (see `fetch_to_file`)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    timeout_s: float = 1200.0
    idle_timeout_s: float = 30.0
    min_bytes_per_s: float = 0.0
    slow_grace_s: float = 15.0


class Downloads:
    """Users' downloads under one quota, each in its own temporary directory, gone with its slot when done."""

    def __init__(self, tmp_root: Path, quota: DownloadQuota, options: FetchOptions) -> None:
        self._tmp_root = tmp_root
        self.quota = quota
        self.options = options

    @contextlib.asynccontextmanager
    async def fetch(
        self, url: str, *, user_id: int, policy: UrlPolicy, name: str = "download"
    ) -> AsyncIterator[FetchedFile]:
        """Download `url` for `user_id` and yield the file; it is deleted and the slot freed on exit.

        Raises:
            FetchRefusedError: the user already runs their share of downloads, or Peel runs as many as it may.
            FetchError: the download itself was refused or failed.
        """
        try:
            slot = self.quota.acquire(user_id)
        except DownloadRefusedError as exc:
            raise FetchRefusedError(exc.user_message) from exc
        with slot:
            await asyncio.to_thread(self._tmp_root.mkdir, parents=True, exist_ok=True)
            tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, dir=self._tmp_root, prefix="fetch-"))
            try:
                o = self.options
                yield await fetch_to_file(
                    url,
                    tmp / name,
                    policy=policy,
                    max_bytes=o.max_bytes,
                    max_redirects=o.max_redirects,
                    timeout_s=o.timeout_s,
                    idle_timeout_s=o.idle_timeout_s,
                    min_bytes_per_s=o.min_bytes_per_s,
                    slow_grace_s=o.slow_grace_s,
                    reserve=slot.reserve,
                )
            finally:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
