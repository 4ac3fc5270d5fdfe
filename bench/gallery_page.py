"""How fast the gallery's first page comes at 10,000 items, how big its HTML is, and its first screen in Chromium.

A group of `--jobs` batches of `--items` items each (default 10 × 1,000; 5% failed, 1% blocked) is written into a
ledger file through the ledger's own bookkeeping (`tests.fakes.gallery.add_job`), then the gallery is served on
127.0.0.1 and its pages are fetched `--repeat` times with aiohttp: the first page, the last page, a search and the
"failed" filter. Times are the median milliseconds of a whole request (ledger queries, Jinja2, HTTP); `query_ms` is
the first page's two ledger queries alone.

With Chromium at /usr/bin/chromium (the browser tests' own), the first page is also opened in it as a user would:
`first_screen_s` is the time from navigation until every thumbnail in the first screen has loaded, and
`first_screen_bytes` what the browser transferred for it (HTML, CSS, JS, thumbnails). The made items have real
images and the thumbnails the worker writes beside them (`--no-thumbs`: none, so the gallery makes them on first
view). The last line holds the figures as key=value pairs.
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
from storage.keys import thumb_key
from storage.memory import MemoryStore
from storage.thumbnails import make_thumbnail
from tests.e2e.conftest import CHROMIUM, VISIBLE_IMAGES_LOADED, chromium
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


async def write_thumbnails(store: MemoryStore) -> None:
    """Write the thumbnail the worker writes beside each made image."""
    async for info in store.list("outputs/"):
        if info.key.endswith(".png"):
            small = await asyncio.to_thread(make_thumbnail, await store.get_bytes(info.key))
            await store.put(thumb_key(info.key), small, content_type="image/webp")


async def first_screen(url: str) -> dict[str, str]:
    """Open `url` in headless Chromium; return its first screen's time and bytes (nothing without Chromium)."""
    if not CHROMIUM.exists():
        return {}
    sizes: list[int] = []

    async def on_response(response: object) -> None:
        sizes.append(len(await response.body()))  # type: ignore[attr-defined]

    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("response", on_response)
        start = time.perf_counter()
        await page.goto(url)
        await page.wait_for_function(VISIBLE_IMAGES_LOADED, timeout=30_000)
        seconds = time.perf_counter() - start
        await page.wait_for_load_state("networkidle")
    return {"first_screen_s": f"{seconds:.2f}", "first_screen_bytes": str(sum(sizes))}


async def main(jobs: int, items: int, repeat: int, *, thumbs: bool = True) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = await Ledger.open(Path(tmp) / "peel.sqlite3")
        clock = FakeClock()
        group = await ledger.ensure_group(name="bench", now=clock.now(), guild_id=1, channel_id=2, thread_id=3)
        store = MemoryStore()
        for _ in range(jobs):
            await add_job(
                ledger,
                group,
                [f"a watercolour fox number {i} in snow" for i in range(items)],
                outcomes=[outcome(i) for i in range(items)],
                now=clock.now(),
                store=store,
            )
        if thumbs:
            await write_thumbnails(store)
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
                screen = await first_screen(base)
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
        + "".join(f" {k}={v}" for k, v in screen.items())
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--no-thumbs", action="store_true", help="no worker thumbnails: the gallery makes them")
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.items, args.repeat, thumbs=not args.no_thumbs))
