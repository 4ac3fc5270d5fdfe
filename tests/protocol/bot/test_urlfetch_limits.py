"""Download limits against a real local server: slots per user and in all, the disk budget, slow servers, streaming."""

import asyncio
import hashlib
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.core.fetchquota import DownloadLimits, DownloadQuota
from bot.urlfetch import (
    Downloads,
    FetchError,
    FetchOptions,
    FetchRefusedError,
    UrlPolicy,
    fetch_to_file,
    parse_networks,
)

LOOPBACK = UrlPolicy(parse_networks(["127.0.0.0/8"]))
PART = b"z" * 6000
BIG_CHUNK = bytes(range(256)) * 256  # 64 KiB
BIG_CHUNKS = 256  # 16 MiB in all: under a loaded CPU, buffers in flight reached 4.6 MB


class Held:
    """A server whose /held responses send their first part, then wait until `go` is set."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.started = 0
        self.arrivals: asyncio.Queue[None] = asyncio.Queue()

    async def held(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        if "length" in request.query:
            resp.content_length = 2 * len(PART)
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        self.started += 1
        self.arrivals.put_nowait(None)
        await resp.write(PART)
        await self.go.wait()
        await resp.write(PART)
        await resp.write_eof()
        return resp


async def _trickle(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for _ in range(500):
        await resp.write(b"x")
        await asyncio.sleep(0.01)
    await resp.write_eof()
    return resp


async def _silent(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(b"x")
    await asyncio.sleep(5)
    return resp


async def _big(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for _ in range(BIG_CHUNKS):
        await resp.write(BIG_CHUNK)
    await resp.write_eof()
    return resp


@pytest.fixture
async def held() -> AsyncIterator[tuple[TestServer, Held]]:
    state = Held()
    app = web.Application()
    app.router.add_get("/held", state.held)
    app.router.add_get("/trickle", _trickle)
    app.router.add_get("/silent", _silent)
    app.router.add_get("/big.zip", _big)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield srv, state
    state.go.set()
    await srv.close()


def _downloads(tmp_path: Path, *, per_user: int = 1, total: int = 4, disk_bytes: int = 10**9) -> Downloads:
    quota = DownloadQuota(DownloadLimits(per_user=per_user, total=total, disk_bytes=disk_bytes))
    return Downloads(tmp_path / "tmp", quota, FetchOptions(max_bytes=10**8))


async def _fetch_and_hold(
    downloads: Downloads, url: str, user_id: int, release: asyncio.Event, fetched: asyncio.Event | None = None
) -> int:
    async with downloads.fetch(url, user_id=user_id, policy=LOOPBACK) as got:
        if fetched is not None:
            fetched.set()
        await release.wait()
        return got.size


def _bytes_under(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _files_under(root: Path) -> list[Path]:
    return list(root.iterdir())


async def _arrived(state: Held, n: int) -> None:
    for _ in range(n):
        await state.arrivals.get()


async def test_parallel_downloads_by_one_user_beyond_the_limit_are_refused(
    held: tuple[TestServer, Held], tmp_path: Path
) -> None:
    srv, state = held
    downloads = _downloads(tmp_path, per_user=2)
    url = str(srv.make_url("/held"))
    release = asyncio.Event()
    running = [asyncio.create_task(_fetch_and_hold(downloads, url, 1, release)) for _ in range(2)]
    await _arrived(state, 2)
    refusals = []
    for _ in range(5):
        with pytest.raises(FetchRefusedError) as info:
            async with downloads.fetch(url, user_id=1, policy=LOOPBACK):
                pass
        refusals.append(info.value.user_message)
    assert refusals == ["You already have 2 downloads running; wait for one to finish."] * 5
    assert state.started == 2  # the refused ones never reached the server
    state.go.set()
    release.set()
    assert await asyncio.gather(*running) == [2 * len(PART)] * 2
    async with downloads.fetch(url, user_id=1, policy=LOOPBACK) as got:  # slots are back
        assert got.size == 2 * len(PART)
    assert not await asyncio.to_thread(_files_under, tmp_path / "tmp")  # every download's directory is gone


async def test_downloads_beyond_the_total_are_refused_whoever_asks(
    held: tuple[TestServer, Held], tmp_path: Path
) -> None:
    srv, state = held
    downloads = _downloads(tmp_path, total=3)
    url = str(srv.make_url("/held"))
    release = asyncio.Event()
    running = [asyncio.create_task(_fetch_and_hold(downloads, url, user, release)) for user in (1, 2, 3)]
    await _arrived(state, 3)
    with pytest.raises(FetchRefusedError, match="busy with other downloads"):
        async with downloads.fetch(url, user_id=4, policy=LOOPBACK):
            pass
    state.go.set()
    release.set()
    await asyncio.gather(*running)


@pytest.mark.parametrize("query", ["length=1", "chunked=1"], ids=["declared-length", "chunked"])
async def test_disk_budget_bounds_the_bytes_all_downloads_hold(
    held: tuple[TestServer, Held], tmp_path: Path, query: str
) -> None:
    srv, state = held
    budget = 3 * len(PART)  # room for one whole body (2 parts) and half of another
    downloads = _downloads(tmp_path, total=4, disk_bytes=budget)
    url = str(srv.make_url(f"/held?{query}"))
    release = asyncio.Event()
    fetched = asyncio.Event()
    state.go.set()
    first = asyncio.create_task(_fetch_and_hold(downloads, url, 1, release, fetched))
    await fetched.wait()  # the first holds its whole body on disk until released
    assert downloads.quota.held_bytes == 2 * len(PART)
    with pytest.raises(FetchError, match="download space is full"):
        async with downloads.fetch(url, user_id=2, policy=LOOPBACK):
            pass
    assert await asyncio.to_thread(_bytes_under, tmp_path / "tmp") <= budget
    release.set()
    assert await first == 2 * len(PART)
    assert downloads.quota.held_bytes == 0
    assert downloads.quota.running == 0


async def test_slow_server_loses_its_slot_when_under_the_minimum_speed(
    held: tuple[TestServer, Held], tmp_path: Path
) -> None:
    srv, _ = held
    with pytest.raises(FetchError, match="too slowly"):
        await fetch_to_file(
            str(srv.make_url("/trickle")),
            tmp_path / "in.zip",
            policy=LOOPBACK,
            min_bytes_per_s=10_000,
            slow_grace_s=0.1,
        )
    assert not await asyncio.to_thread((tmp_path / "in.zip").exists)


async def test_silent_server_times_out_when_idle(held: tuple[TestServer, Held], tmp_path: Path) -> None:
    srv, _ = held
    with pytest.raises(FetchError, match="timed out"):
        await fetch_to_file(str(srv.make_url("/silent")), tmp_path / "in.zip", policy=LOOPBACK, idle_timeout_s=0.2)


async def test_large_download_is_streamed_to_disk_a_chunk_at_a_time(
    held: tuple[TestServer, Held], tmp_path: Path
) -> None:
    srv, _ = held
    downloads = _downloads(tmp_path)
    tracemalloc.start()
    try:
        async with downloads.fetch(str(srv.make_url("/big.zip")), user_id=1, policy=LOOPBACK) as got:
            _, peak = tracemalloc.get_traced_memory()
            data = await asyncio.to_thread(got.path.read_bytes)
    finally:
        tracemalloc.stop()
    assert got.size == BIG_CHUNKS * len(BIG_CHUNK)
    assert hashlib.sha256(data).digest() == hashlib.sha256(BIG_CHUNK * BIG_CHUNKS).digest()
    assert peak < got.size // 2  # a few chunks in flight, never the whole body
