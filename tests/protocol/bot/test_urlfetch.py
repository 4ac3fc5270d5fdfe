"""Fetching a user's ZIP link: size cap, redirects, schemes and private addresses, against a real local server."""

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.net.urlfetch import FetchError, fetch_to_file, is_public_address, literal_address, parse_networks

LOOPBACK = parse_networks(["127.0.0.0/8"])
BODY = b"PK\x03\x04" + b"x" * 5000


async def _body(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/zip")


async def _chunked(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for _ in range(10):
        await resp.write(b"y" * 1000)
    await resp.write_eof()
    return resp


async def _redirect(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    raise web.HTTPFound("/file.zip" if n == 0 else f"/redirect/{n - 1}")


async def _to_ftp(request: web.Request) -> web.Response:
    raise web.HTTPFound("ftp://127.0.0.1/x.zip")


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_get("/file.zip", _body)
    app.router.add_get("/chunked.zip", _chunked)
    app.router.add_get("/redirect/{n}", _redirect)
    app.router.add_get("/ftp", _to_ftp)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


def url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


async def test_file_is_downloaded_when_loopback_is_allowed(server: TestServer, tmp_path: Path) -> None:
    got = await fetch_to_file(url(server, "/file.zip"), tmp_path / "in.zip", allowed_networks=LOOPBACK)
    assert got.size == len(BODY)
    assert await asyncio.to_thread((tmp_path / "in.zip").read_bytes) == BODY
    assert got.content_type == "application/zip"


async def test_loopback_is_refused_when_not_allowed(server: TestServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="private or local address"):
        await fetch_to_file(url(server, "/file.zip"), tmp_path / "in.zip")
    assert not await asyncio.to_thread((tmp_path / "in.zip").exists)


async def test_name_resolving_to_loopback_is_refused_when_not_allowed(server: TestServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="private or local address"):
        await fetch_to_file(f"http://localhost:{server.port}/file.zip", tmp_path / "in.zip")


async def test_redirects_are_followed_when_within_the_limit(server: TestServer, tmp_path: Path) -> None:
    got = await fetch_to_file(url(server, "/redirect/3"), tmp_path / "in.zip", allowed_networks=LOOPBACK)
    assert got.final_url.endswith("/file.zip")


async def test_redirects_are_refused_when_too_many(server: TestServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="redirects more than 2 times"):
        await fetch_to_file(url(server, "/redirect/5"), tmp_path / "in.zip", allowed_networks=LOOPBACK, max_redirects=2)


async def test_redirect_to_another_scheme_is_refused(server: TestServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="only http:// and https://"):
        await fetch_to_file(url(server, "/ftp"), tmp_path / "in.zip", allowed_networks=LOOPBACK)


@pytest.mark.parametrize("path", ["/file.zip", "/chunked.zip"])
async def test_download_is_refused_when_over_the_size_cap(server: TestServer, tmp_path: Path, path: str) -> None:
    with pytest.raises(FetchError, match="limit"):
        await fetch_to_file(url(server, path), tmp_path / "in.zip", allowed_networks=LOOPBACK, max_bytes=4000)
    assert not await asyncio.to_thread((tmp_path / "in.zip").exists)


async def test_http_error_is_reported_with_its_status(server: TestServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        await fetch_to_file(url(server, "/missing.zip"), tmp_path / "in.zip", allowed_networks=LOOPBACK)


@pytest.mark.parametrize(
    "bad", ["file:///etc/passwd", "ftp://example.com/x.zip", "http:///nohost", "http://u:p@1.2.3.4/x"]
)
async def test_odd_urls_are_refused_before_any_connection(bad: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError):
        await fetch_to_file(bad, tmp_path / "in.zip")


async def test_connection_refused_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FetchError) as caught:
        await fetch_to_file("http://127.0.0.1:9/x.zip", tmp_path / "in.zip", allowed_networks=LOOPBACK, timeout_s=5)
    # the user's words, not aiohttp's class name or message
    assert caught.value.user_message.startswith("the download failed (the server could not be reached)")
    assert "Client" not in caught.value.user_message and "Errno" not in caught.value.user_message


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("127.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::7f00:1", False),
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::808:808", True),
        ("2002:7f00:1::1", False),
        ("2002:808:808::1", True),
        ("fec0::1", False),
        ("2606:4700::1111", True),
    ],
)
def test_address_is_public_only_when_globally_routable(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


# ---- every notation of a private address, directly and through a redirect ---------------------------------------
#
# The target is a loopback server that counts requests: a refused URL must never reach it. The redirector runs on
# 127.0.0.2 and is the only address allowed (Linux routes all of 127/8 to loopback), so a redirect from an allowed
# server to each notation is checked too.

REDIRECTOR_ONLY = parse_networks(["127.0.0.2/32"])

# (id, URL with {port} for the target's port). Forms that do not reach the target on this host (other networks,
# IPv6 the target does not listen on) still must be refused by the policy, not fail to connect.
PRIVATE_FORMS = [
    ("dotted", "http://127.0.0.1:{port}/"),
    ("fullwidth-digits", "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{port}/"),
    ("ideographic-full-stops", "http://127\u30020\u30020\u30021:{port}/"),
    ("fullwidth-full-stops", "http://127\uff0e0\uff0e0\uff0e1:{port}/"),
    ("halfwidth-full-stops", "http://127\uff610\uff610\uff611:{port}/"),
    ("decimal", "http://2130706433:{port}/"),
    ("octal", "http://0177.0.0.1:{port}/"),
    ("octal-whole", "http://017700000001:{port}/"),
    ("hex-short", "http://0x7f.1:{port}/"),
    ("hex-whole", "http://0x7f000001:{port}/"),
    ("short", "http://127.1:{port}/"),
    ("zero-padded", "http://127.000.000.001:{port}/"),
    ("trailing-dot", "http://127.0.0.1.:{port}/"),
    ("other-loopback", "http://127.0.0.3:{port}/"),
    ("localhost", "http://localhost:{port}/"),
    ("localhost-upper", "http://LOCALHOST:{port}/"),
    ("zero-address", "http://0.0.0.0:{port}/"),
    ("zero", "http://0:{port}/"),
    ("percent-encoded", "http://%31%32%37.0.0.1:{port}/"),
    ("ipv6-loopback", "http://[::1]:{port}/"),
    ("ipv6-unspecified", "http://[::]:{port}/"),
    ("ipv4-mapped-dotted", "http://[::ffff:127.0.0.1]:{port}/"),
    ("ipv4-mapped-hex", "http://[::ffff:7f00:1]:{port}/"),
    ("ipv4-mapped-long", "http://[0:0:0:0:0:ffff:127.0.0.1]:{port}/"),
    ("ipv4-compatible", "http://[::127.0.0.1]:{port}/"),
    ("ipv4-translated", "http://[::ffff:0:127.0.0.1]:{port}/"),
    ("nat64", "http://[64:ff9b::127.0.0.1]:{port}/"),
    ("nat64-local", "http://[64:ff9b:1::7f00:1]:{port}/"),
    ("6to4", "http://[2002:7f00:1::1]:{port}/"),
    ("teredo", "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{port}/"),
    ("ipv6-link-local-zone", "http://[fe80::1%25lo]:{port}/"),
    ("ipv6-unique-local", "http://[fd00::1]:{port}/"),
    ("ipv6-site-local", "http://[fec0::1]:{port}/"),
    ("metadata", "http://169.254.169.254:{port}/latest/meta-data/"),
    ("metadata-decimal", "http://2852039166:{port}/"),
    ("metadata-mapped", "http://[::ffff:169.254.169.254]:{port}/"),
    ("private-10", "http://10.0.0.1:{port}/"),
    ("private-172", "http://172.16.0.1:{port}/"),
    ("private-192", "http://192.168.1.1:{port}/"),
    ("shared-100-64", "http://100.64.0.1:{port}/"),
    ("multicast", "http://224.0.0.1:{port}/"),
    ("broadcast", "http://255.255.255.255:{port}/"),
]


def _is_refusal(error: FetchError) -> bool:
    """A refusal by the policy, not a failed connection: it reads the same whether anything listens there."""
    return "private or local address" in error.user_message or "not valid" in error.user_message


class Counter:
    def __init__(self) -> None:
        self.requests = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(body=BODY, content_type="application/zip")


@pytest.fixture
async def target() -> AsyncIterator[tuple[TestServer, Counter]]:
    counter = Counter()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", counter.handle)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield srv, counter
    await srv.close()


@pytest.fixture
async def redirector() -> AsyncIterator[TestServer]:
    async def redirect(request: web.Request) -> web.Response:
        # The Location header as given (UTF-8 on the wire), not re-normalised by yarl as HTTPFound would.
        return web.Response(status=302, headers={"Location": request.query["to"]})

    app = web.Application()
    app.router.add_get("/go", redirect)
    srv = TestServer(app, host="127.0.0.2")
    await srv.start_server()
    yield srv
    await srv.close()


@pytest.mark.parametrize("form", [f[1] for f in PRIVATE_FORMS], ids=[f[0] for f in PRIVATE_FORMS])
async def test_private_address_is_refused_and_never_contacted_in_any_notation(
    form: str, target: tuple[TestServer, Counter], tmp_path: Path
) -> None:
    srv, counter = target
    with pytest.raises(FetchError) as info:
        await fetch_to_file(form.format(port=srv.port), tmp_path / "in.zip", allowed_networks=REDIRECTOR_ONLY)
    assert _is_refusal(info.value)
    assert counter.requests == 0


@pytest.mark.parametrize("form", [f[1] for f in PRIVATE_FORMS], ids=[f[0] for f in PRIVATE_FORMS])
async def test_redirect_to_a_private_address_is_refused_and_never_contacted_in_any_notation(
    form: str, target: tuple[TestServer, Counter], redirector: TestServer, tmp_path: Path
) -> None:
    srv, counter = target
    start = redirector.make_url("/go").with_query(to=form.format(port=srv.port))
    with pytest.raises(FetchError) as info:
        await fetch_to_file(str(start), tmp_path / "in.zip", allowed_networks=REDIRECTOR_ONLY)
    assert _is_refusal(info.value)
    assert counter.requests == 0


async def test_allowed_redirector_reaches_an_allowed_target(
    target: tuple[TestServer, Counter], redirector: TestServer, tmp_path: Path
) -> None:
    srv, counter = target
    start = redirector.make_url("/go").with_query(to=str(srv.make_url("/file.zip")))
    got = await fetch_to_file(str(start), tmp_path / "in.zip", allowed_networks=parse_networks(["127.0.0.0/8"]))
    assert got.size == len(BODY)
    assert counter.requests == 1


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("fe80::1%25lo", "fe80::1"),
        ("example.com", None),
        ("deadbeef", None),
        ("1.2.3.4.5", None),
    ],
)
def test_literal_address_reads_what_getaddrinfo_would(host: str, address: str | None) -> None:
    got = literal_address(host)
    assert (str(got).split("%")[0] if got else None) == address
