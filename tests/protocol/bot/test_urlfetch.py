"""Fetching a user's ZIP link: size cap, redirects, schemes and private addresses, against a real local server."""

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.urlfetch import FetchError, fetch_to_file, is_public_address, parse_networks

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
    with pytest.raises(FetchError, match="localhost resolves to a private or local address"):
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
    with pytest.raises(FetchError, match="download failed"):
        await fetch_to_file("http://127.0.0.1:9/x.zip", tmp_path / "in.zip", allowed_networks=LOOPBACK, timeout_s=5)


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
    ],
)
def test_address_is_public_only_when_globally_routable(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public
