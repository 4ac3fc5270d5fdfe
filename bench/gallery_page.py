"""How fast the gallery's first page comes at 10,000 items, and how big its HTML is.

A group of `--jobs` batches of `--items` items each (default 10 × 1,000; 5% failed, 1% blocked) is written into a
ledger file through the ledger's own bookkeeping (`tests.fakes.gallery.add_job`), then the gallery is served on
127.0.0.1 and its pages are fetched `--repeat` times with aiohttp: the first page, the last page, a search and the
"failed" filter. Times are the median milliseconds of a whole request (ledger queries, Jinja2, HTTP); `query_ms` is
the first page's two ledger queries alone. The last line holds the figures as key=value pairs.
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import aiohttp
from aiohttp.test_utils import TestServer

# `make bench` runs `python bench/<name>.py`, which puts bench/ rather than the repository on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.app.embedded import Backends
from bot.app.gallery import GalleryService
from bot.app.runtime import Runtime
from bot.core.gallery import PAGE_SIZE, GalleryFilter
from bot.ledger import Ledger
from bot.settings import BotSettings
from bot.web import StableLinks, make_app
from storage import LinkSigner
from storage.memory import MemoryStore
from tests.fakes.clock import FakeClock
from tests.fakes.gallery import OK, add_job

if TYPE_CHECKING:
    from bot.dispatch import Dispatcher
    from bot.runpod.client import RunpodHttpGateway

SECRET = b"bench"


def outcome(index: int) -> str | None:
    if index % 100 == 7:
        return "SAFETY"
    if index % 20 == 3:
        return "UPSTREAM"
    return OK


async def timed(session: aiohttp.ClientSession, url: str, repeat: int) -> tuple[float, int]:
    """Return the median milliseconds of GETting `url` and the size of its body."""
    times, size = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        async with session.get(url) as resp:
            body = await resp.read()
            assert resp.status == 200, resp.status
        times.append((time.perf_counter() - start) * 1000)
        size = len(body)
    return statistics.median(times), size


async def main(jobs: int, items: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = await Ledger.open(Path(tmp) / "peel.sqlite3")
        clock = FakeClock()
        group = await ledger.ensure_group(name="bench", now=clock.now(), guild_id=1, channel_id=2, thread_id=3)
        for _ in range(jobs):
            await add_job(
                ledger,
                group,
                [f"a watercolour fox number {i} in snow" for i in range(items)],
                outcomes=[outcome(i) for i in range(items)],
                now=clock.now(),
            )
        store = MemoryStore()
        async with aiohttp.ClientSession() as http:
            settings = BotSettings(_env_file=None, data_dir=Path(tmp), storage_url="memory://")  # type: ignore[call-arg]
            runtime = Runtime(
                settings=settings,
                backends=Backends(
                    gateway=cast("RunpodHttpGateway", None), store=store, http=http, store_url="memory://"
                ),
                ledger=ledger,
                dispatcher=cast("Dispatcher", None),
                signer=LinkSigner(SECRET, "http://127.0.0.1:9"),
                stable_links=StableLinks(SECRET, "http://127.0.0.1:9"),
            )
            link = await GalleryService(runtime).link(group, issued_by=1)
            server = TestServer(
                make_app(store, LinkSigner(SECRET, "x"), gallery=runtime.gallery_mount), host="127.0.0.1"
            )
            await server.start_server()
            try:
                base = str(server.make_url(urlsplit(link.url).path))
                total = jobs * items
                last = -(-total // PAGE_SIZE)
                first_ms, first_bytes = await timed(http, base, repeat)
                last_ms, _ = await timed(http, f"{base}?page={last}", repeat)
                search_ms, _ = await timed(http, f"{base}?q=number+4242", repeat)
                failed_ms, _ = await timed(http, f"{base}?filter=failed", repeat)
                query_times = []
                for _ in range(repeat):
                    start = time.perf_counter()
                    await ledger.gallery_counts(group.id)
                    await ledger.gallery_entries(group.id, which=GalleryFilter.ALL, limit=PAGE_SIZE)
                    query_times.append((time.perf_counter() - start) * 1000)
            finally:
                await server.close()
        await ledger.close()
    print(
        f"items={total} first_page_ms={first_ms:.1f} first_page_html_bytes={first_bytes} last_page_ms={last_ms:.1f}"
        f" search_ms={search_ms:.1f} failed_filter_ms={failed_ms:.1f} query_ms={statistics.median(query_times):.1f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.items, args.repeat))
