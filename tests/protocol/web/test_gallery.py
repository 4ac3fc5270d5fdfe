"""The gallery pages over HTTP on 127.0.0.1: the real SQLite ledger (in memory), the memory store, real Jinja2.

Each test builds its group's jobs through the ledger's own bookkeeping (`tests.fakes.gallery.add_job`), issues a
link through `GalleryService` as the Discord side will, and reads the pages as a browser would.
"""

import asyncio
import csv
import io
import re
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from bot.app.embedded import Backends
from bot.app.gallery import GalleryError, GalleryService
from bot.app.runtime import Runtime
from bot.core.gallery import PAGE_SIZE
from bot.core.models import Group, JobId
from bot.ledger import Ledger
from bot.settings import BotSettings
from bot.web import StableLinks, make_app
from storage import (
    LinkSigner,
    s3,  # noqa: F401  # copy_object imports it lazily; importing reads files, which blocks a loop
)
from storage.keys import THUMB_MAX_PX, thumb_key
from storage.memory import MemoryStore
from tests.fakes.clock import FakeClock
from tests.fakes.gallery import OK, add_job, png

if TYPE_CHECKING:
    from bot.dispatch import Dispatcher
    from bot.runpod.client import RunpodHttpGateway

SECRET = b"gallery-test-secret"
XSS_PROMPT = "<script>alert('p')</script> a red fox"
XSS_NAME = '"><img src=x onerror=alert(1)>.png'


@dataclass
class Site:
    """A gallery served on 127.0.0.1, its service, ledger and store, and a group to fill."""

    client: TestClient[aiohttp.web.Request, aiohttp.web.Application]
    service: GalleryService
    runtime: Runtime
    ledger: Ledger
    store: MemoryStore
    clock: FakeClock
    group: Group
    other: Group

    async def path(self, group: Group | None = None, **kwargs: object) -> str:
        link = await self.service.link(group or self.group, issued_by=1, **kwargs)  # type: ignore[arg-type]
        parts = urlsplit(link.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    async def get(self, path: str) -> tuple[int, str, aiohttp.ClientResponse]:
        resp = await self.client.get(path, allow_redirects=False)
        body = await resp.read()
        return resp.status, body.decode("utf-8", "replace"), resp


@pytest.fixture
async def site(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[Site]:
    settings = BotSettings(  # type: ignore[call-arg]  # pydantic-settings' init kwarg
        _env_file=None,
        data_dir=tmp_path / "data",
        storage_url="memory://",
        export_destinations={"archive": f"file://{tmp_path / 'exported'}"},
    )
    ledger = await Ledger.open(":memory:")
    store = MemoryStore()
    backends = Backends(
        gateway=cast("RunpodHttpGateway", None), store=store, http=http, store_url="memory://"
    )  # the gallery never calls RunPod
    runtime = Runtime(
        settings=settings,
        backends=backends,
        ledger=ledger,
        dispatcher=cast("Dispatcher", None),  # nor the dispatcher
        signer=LinkSigner(SECRET, "http://127.0.0.1:9"),
        stable_links=StableLinks(SECRET, "http://127.0.0.1:9"),
    )
    service = GalleryService(runtime)
    app = make_app(store, LinkSigner(SECRET, "http://unused"), gallery=runtime.gallery_mount)
    clock = FakeClock()
    group = await ledger.ensure_group(name="fox studies", now=clock.now(), guild_id=7, channel_id=70, thread_id=71)
    group = await ledger.rename_group(group.id, "fox studies") or group
    other = await ledger.ensure_group(name="secret group B", now=clock.now(), guild_id=7, channel_id=70, thread_id=72)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        try:
            yield Site(client, service, runtime, ledger, store, clock, group, other)
        finally:
            await ledger.close()


def cells(html: str) -> list[tuple[str, int]]:
    """Return the (job, index) of every grid cell of a page, in order."""
    return [(m[0], int(m[1])) for m in re.findall(r'data-job="([^"]+)" data-index="(\d+)"', html)]


async def test_grid_shows_every_item_newest_job_first_with_reasons_and_lazy_thumbnails(site: Site) -> None:
    older = await add_job(site.ledger, site.group, ["old fox"], now=site.clock.now(), store=site.store)
    newer = await add_job(
        site.ledger,
        site.group,
        ["fox one", "fox two", "fox three"],
        outcomes=[OK, "UPSTREAM", "SAFETY"],
        now=site.clock.now(),
        store=site.store,
    )
    status, html, _ = await site.get(await site.path())
    assert status == 200
    assert cells(html) == [(newer, 0), (newer, 1), (newer, 2), (older, 0)]
    assert 'loading="lazy"' in html and 'alt="fox one"' in html
    assert "The image service failed; try again later." in html  # UPSTREAM's message
    assert "Blocked by Gemini&#39;s safety filters." in html
    assert "operator detail" not in html and "10.0.0.7" not in html  # never the error_message


async def test_filters_show_exactly_their_items_and_count_each(site: Site) -> None:
    job = await add_job(
        site.ledger,
        site.group,
        ["a", "b", "c", "d", "e"],
        outcomes=[OK, "UPSTREAM", "SAFETY", OK, "RATE_LIMITED"],
        now=site.clock.now(),
        store=site.store,
    )
    image = await site.ledger.image_at(job, 3)
    assert image is not None
    await site.ledger.set_favourite(image.id, is_favourite=True)
    base = await site.path()
    expected = {"made": [0, 3], "failed": [1, 4], "blocked": [2], "favourites": [3]}
    for which, indices in expected.items():
        status, html, _ = await site.get(f"{base}?filter={which}")
        assert status == 200
        assert [i for _, i in cells(html)] == indices, which
    _, html, _ = await site.get(base)
    assert 'Made <span class="count">(2)</span>' in html and 'Failed <span class="count">(2)</span>' in html
    assert 'Blocked <span class="count">(1)</span>' in html and 'Favourites <span class="count">(1)</span>' in html


async def test_search_finds_a_word_of_a_prompt_and_takes_wildcards_literally(site: Site) -> None:
    job = await add_job(
        site.ledger, site.group, ["a red fox", "a blue whale", "100% owl", "snake_case"], now=site.clock.now()
    )
    base = await site.path()
    _, html, _ = await site.get(f"{base}?q=whale")
    assert cells(html) == [(job, 1)]
    _, html, _ = await site.get(f"{base}?q=%25")  # `%` is a LIKE wildcard: literal here
    assert cells(html) == [(job, 2)]
    _, html, _ = await site.get(f"{base}?q=e_c")  # so is `_`
    assert cells(html) == [(job, 3)]


async def test_pages_hold_page_size_cells_and_the_job_filter_keeps_one_batch(site: Site) -> None:
    other_job = await add_job(site.ledger, site.group, ["grid"], now=site.clock.now())
    big = await add_job(site.ledger, site.group, [f"p{i}" for i in range(PAGE_SIZE + 5)], now=site.clock.now())
    base = await site.path()
    _, first, _ = await site.get(base)
    _, second, _ = await site.get(f"{base}?page=2")
    assert [i for _, i in cells(first)] == list(range(PAGE_SIZE))
    assert cells(second) == [(big, PAGE_SIZE + i) for i in range(5)] + [(other_job, 0)]
    assert 'id="page-older"' in first and 'id="page-newer"' in second
    _, batch, _ = await site.get(await site.path(job_id=JobId(other_job)))
    assert cells(batch) == [(other_job, 0)]


async def test_item_view_shows_its_facts_and_hostile_text_is_escaped(site: Site) -> None:
    job = await add_job(
        site.ledger, site.group, [XSS_PROMPT], sources=[XSS_NAME], now=site.clock.now(), store=site.store
    )
    base = await site.path()
    _, grid, _ = await site.get(base)
    status, item, _ = await site.get(f"{base}/item/{job}/0")
    assert status == 200
    for html in (grid, item):
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#39;p&#39;)&lt;/script&gt;" in html
        assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;.png" in html
    assert "gemini-2.5-flash-image" in item and "1:1" in item and ">fast<" in item
    assert f'src="{base}/image/{job}/0"' in item


async def test_every_gallery_response_has_strict_headers(site: Site) -> None:
    job = await add_job(site.ledger, site.group, ["fox"], now=site.clock.now(), store=site.store)
    base = await site.path()
    for path in (base, f"{base}/item/{job}/0", f"{base}/thumb/{job}/0", "/g/AAAAAAAAAAAAAAAAAAAAAA"):
        _, _, resp = await site.get(path)
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "base-uri 'none'" in csp and "form-action 'self'" in csp and "unsafe-inline" not in csp
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    _, _, page = await site.get(base)
    assert page.headers["Cache-Control"] == "private, no-store"
    _, html, _ = await site.get(base)
    assert "<style" not in html and "<script>" not in html and " style=" not in html and "onclick" not in html
    status, js, _ = await site.get("/assets/gallery/gallery.js")
    assert status == 200 and "shiftKey" in js


async def test_unknown_tampered_and_revoked_links_show_nothing_of_the_group(site: Site) -> None:
    await add_job(site.ledger, site.group, ["private fox"], now=site.clock.now(), store=site.store)
    base = await site.path()
    token = base.rsplit("/", 1)[1]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for path in (f"/g/{tampered}", "/g/AAAAAAAAAAAAAAAAAAAAAA", "/g/short", f"/g/{token}x"):
        status, html, _ = await site.get(path)
        assert status == 404, path
        assert "fox" not in html and "private" not in html
    owner = site.group.owner_id or 1
    group = site.group if site.group.owner_id else await site.ledger.get_group(site.group.id)
    assert group is not None
    with pytest.raises(GalleryError):
        await site.service.revoke(group, by=owner + 1, is_admin=False)
    fresh = await site.service.revoke(group, by=owner + 1, is_admin=True)
    status, html, _ = await site.get(base)
    assert status == 403
    assert "This gallery link was revoked; ask its owner for a new one" in html and "fox" not in html
    status, _, _ = await site.get(f"{base}/thumb/x/0")
    assert status == 403
    status, html, _ = await site.get(urlsplit(fresh.url).path)
    assert status == 200 and "private fox" in html
    assert await site.path() == urlsplit(fresh.url).path  # `link` now shows the new one


async def test_a_link_to_one_group_reaches_nothing_of_another(site: Site) -> None:
    theirs = await add_job(site.ledger, site.other, ["group B's fox"], now=site.clock.now(), store=site.store)
    await add_job(site.ledger, site.group, ["mine"], now=site.clock.now(), store=site.store)
    base = await site.path()
    _, html, _ = await site.get(base)
    assert "group B" not in html and theirs not in html
    for route in ("item", "thumb", "image"):
        status, html, _ = await site.get(f"{base}/{route}/{theirs}/0")
        assert status == 404, route
        assert "group B" not in html
    resp = await site.client.post(f"{base}/zip", data={"item": f"{theirs}:0"}, allow_redirects=False)
    assert resp.status == 400
    assert await site.path() != await site.path(site.other)


async def test_a_missing_thumbnail_is_made_once_and_stored(site: Site) -> None:
    job = await add_job(site.ledger, site.group, ["fox"], now=site.clock.now(), store=site.store)
    item = await site.ledger.get_item(job, 0)
    assert item is not None
    key = thumb_key(item.output_key)
    assert not await site.store.exists(key)
    base = await site.path()
    resp = await site.client.get(f"{base}/thumb/{job}/0")
    body = await resp.read()
    assert resp.status == 200 and resp.content_type == "image/webp"
    assert await site.store.get_bytes(key) == body
    stored = await site.store.head(key)
    with Image.open(io.BytesIO(body)) as image:
        assert image.format == "WEBP" and max(image.size) <= THUMB_MAX_PX
    again = await site.client.get(f"{base}/thumb/{job}/0")
    assert await again.read() == body
    assert await site.store.head(key) == stored  # not written again


async def test_a_full_image_redirects_to_a_fresh_store_link(site: Site) -> None:
    job = await add_job(site.ledger, site.group, ["fox"], now=site.clock.now(), store=site.store)
    base = await site.path()
    status, _, resp = await site.get(f"{base}/image/{job}/0")
    assert status == 302
    location = resp.headers["Location"]
    assert location.startswith("../../../../files/outputs/")
    followed = await site.client.get(f"{base}/image/{job}/0")
    assert followed.status == 200 and (await followed.read()).startswith(b"\x89PNG")


async def test_selecting_ten_downloads_a_zip_of_exactly_those_with_a_manifest_of_ten(site: Site) -> None:
    job = await add_job(
        site.ledger, site.group, [f"fox {i}" for i in range(25)], now=site.clock.now(), store=site.store
    )
    base = await site.path()
    chosen = [3, 4, 5, 6, 7, 8, 9, 10, 11, 20]
    data = aiohttp.FormData([("item", f"{job}:{i}") for i in chosen])
    resp = await site.client.post(f"{base}/zip", data=data, allow_redirects=False)
    assert resp.status == 303
    archive = await site.client.get(f"{base}/{resp.headers['Location']}")
    assert archive.status == 200
    with zipfile.ZipFile(io.BytesIO(await archive.read())) as zf:
        images = [n for n in zf.namelist() if n.endswith(".png")]
        rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
    assert len(images) == 10 and len(rows) == 10
    assert sorted(r["prompt"] for r in rows) == sorted(f"fox {i}" for i in chosen)


async def test_download_all_matching_takes_every_made_item_of_the_search(site: Site) -> None:
    await add_job(site.ledger, site.group, ["red fox", "red owl", "blue fox"], now=site.clock.now(), store=site.store)
    base = await site.path()
    resp = await site.client.post(f"{base}/zip", data={"all": "1", "q": "red", "filter": "made"}, allow_redirects=False)
    archive = await site.client.get(f"{base}/{resp.headers['Location']}")
    with zipfile.ZipFile(io.BytesIO(await archive.read())) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
    assert sorted(r["prompt"] for r in rows) == ["red fox", "red owl"]


async def test_a_post_from_another_site_is_refused(site: Site) -> None:
    job = await add_job(site.ledger, site.group, ["fox"], now=site.clock.now(), store=site.store)
    base = await site.path()
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        resp = await site.client.post(f"{base}/zip", data={"item": f"{job}:0"}, headers=headers, allow_redirects=False)
        assert resp.status == 403, headers
    ok = await site.client.post(
        f"{base}/zip", data={"item": f"{job}:0"}, headers={"Sec-Fetch-Site": "same-origin"}, allow_redirects=False
    )
    assert ok.status == 303


async def test_export_is_refused_without_can_export_and_copies_the_selection_with_it(
    site: Site, tmp_path: Path
) -> None:
    job = await add_job(site.ledger, site.group, ["fox a", "fox b", "fox c"], now=site.clock.now(), store=site.store)
    base = await site.path()
    form = {"item": f"{job}:1", "destination": "archive"}
    refused = await site.client.post(f"{base}/export", data=form)
    assert refused.status == 403
    _, html, _ = await site.get(base)
    assert 'id="export-selected"' not in html
    group = await site.ledger.get_group(site.group.id)
    assert group is not None
    allowed = await site.service.revoke(group, by=0, is_admin=True, can_export=True)
    base = urlsplit(allowed.url).path
    _, html, _ = await site.get(base)
    assert 'id="export-selected"' in html
    done = await site.client.post(f"{base}/export", data=form)
    assert done.status == 200 and "Exported 1 images" in await done.text()
    exported = await asyncio.to_thread(lambda: [p.name for p in (tmp_path / "exported").rglob("*") if p.is_file()])
    assert sorted(exported)[-2:] == ["manifest.csv", "manifest.json"] and len(exported) == 3


async def test_links_are_refused_where_users_cannot_reach_the_web_server(site: Site) -> None:
    site.runtime.stable_links = None  # a deployment whose web server users cannot reach
    assert not site.service.available()
    with pytest.raises(GalleryError):
        await site.service.link(site.group, issued_by=1)


async def test_the_same_link_is_shown_again_and_a_job_link_narrows_it(site: Site) -> None:
    first = await site.service.link(site.group, issued_by=1)
    again = await site.service.link(site.group, issued_by=2, can_export=True)
    assert again == first
    job = await add_job(site.ledger, site.group, ["fox"], now=site.clock.now())
    narrowed = await site.service.link(site.group, issued_by=1, job_id=job)
    assert narrowed.url == f"{first.url}?job={job}"
    record = await site.ledger.gallery_link(site.group.id)
    assert record is not None and not record.can_export  # what it was issued with
    assert urlsplit(first.url).path.rsplit("/", 1)[1] not in repr(record)  # the token is not stored


async def test_a_failed_item_shows_its_reason_and_references_show_as_thumbnails(site: Site) -> None:
    ref = "refs/u_1/ref.png"
    await site.store.put(ref, png(), content_type="image/png")
    job = await add_job(
        site.ledger, site.group, ["fox", "owl"], outcomes=[OK, "NO_IMAGE"], refs=[ref], now=site.clock.now()
    )
    base = await site.path()
    status, html, _ = await site.get(f"{base}/item/{job}/1")
    assert status == 200 and "Gemini answered without an image." in html and "operator detail" not in html
    assert f'src="{base}/ref/{job}/1/0"' in html
    resp = await site.client.get(f"{base}/ref/{job}/1/0")
    assert resp.status == 200 and resp.content_type == "image/webp"
    status, _, _ = await site.get(f"{base}/ref/{job}/1/1")
    assert status == 404
    status, _, _ = await site.get(f"{base}/thumb/{job}/1")  # a failed item has no image
    assert status == 404


async def test_a_thumbnail_of_bytes_that_are_no_image_is_a_404_not_an_error(site: Site) -> None:
    job = await add_job(site.ledger, site.group, ["fox"], now=site.clock.now(), store=site.store)
    item = await site.ledger.get_item(job, 0)
    assert item is not None
    await site.store.put(item.output_key, b"not a png", content_type="image/png")
    resp = await site.client.get(f"{await site.path()}/thumb/{job}/0")
    assert resp.status == 404
    assert not await site.store.exists(thumb_key(item.output_key))
