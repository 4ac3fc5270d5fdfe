"""`/l/{token}`: a stable link redirects to a fresh store URL while the object exists, and to nothing otherwise."""

import time
from urllib.parse import parse_qs, urlsplit

from aiohttp import ClientSession

from bot.web import LinkServer, StableLinks, make_app
from bot.web.app import REDIRECT_EXPIRES_S, ZIP_GONE
from storage.links import LinkSigner
from tests.fakes.s3 import MotoS3
from tests.protocol.web.conftest import SECRET, SECRET_FILE_TEXT, Served

KEY = "outputs/j_1/00000.png"


async def test_stable_link_redirects_to_a_fresh_signed_link_that_serves_the_object(
    served: Served, http: ClientSession
) -> None:
    await served.store.put(KEY, b"full image bytes")
    url = StableLinks(SECRET, served.base_url).url(KEY, filename="j_1-1.png")
    async with http.get(url, allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Cache-Control"] == "no-store"
        location = resp.headers["Location"]
    assert location.startswith("../files/outputs/j_1/00000.png?")  # relative: the address the link was opened at
    exp = int(parse_qs(urlsplit(location).query)["exp"][0])
    async with http.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == b"full image bytes"
        assert resp.headers["Content-Disposition"] == 'attachment; filename="j_1-1.png"'
        assert str(resp.url).startswith(f"{served.base_url}/files/{KEY}?")
    assert time.time() < exp <= time.time() + REDIRECT_EXPIRES_S + 1  # short-lived, unlike the stable link


async def test_stable_link_answers_head_like_get(served: Served, http: ClientSession) -> None:
    await served.store.put(KEY, b"abc")
    async with http.head(StableLinks(SECRET, served.base_url).url(KEY), allow_redirects=False) as resp:
        assert resp.status == 302


async def test_forged_stable_link_is_404_with_no_detail(served: Served, http: ClientSession) -> None:
    await served.store.put(KEY, b"secret image")
    forged = StableLinks(b"not-the-secret", served.base_url).url(KEY)
    async with http.get(forged, allow_redirects=False) as resp:
        assert resp.status == 404
        assert "Location" not in resp.headers
        assert await resp.text() == "Not found.\n"
    async with http.get(f"{served.base_url}/l/garbage", allow_redirects=False) as resp:
        assert resp.status == 404
        assert await resp.text() == "Not found.\n"


async def test_signed_token_naming_a_key_outside_the_store_is_404(served: Served, http: ClientSession) -> None:
    # Even a token made with the secret (leaked, or a bug minting one) cannot name a path out of the store.
    url = StableLinks(SECRET, served.base_url).url("../secret.txt")
    async with http.get(url) as resp:
        assert resp.status == 404
        assert SECRET_FILE_TEXT not in await resp.text()


async def test_stable_link_to_a_deleted_object_is_410(served: Served, http: ClientSession) -> None:
    await served.store.put(KEY, b"soon gone")
    url = StableLinks(SECRET, served.base_url).url(KEY)
    async with http.get(url, allow_redirects=False) as resp:
        assert resp.status == 302
    await served.store.delete(KEY)
    async with http.get(url, allow_redirects=False) as resp:
        assert resp.status == 410
        assert "Location" not in resp.headers


async def test_stable_link_to_a_deleted_zip_is_410_saying_how_to_get_a_fresh_one(
    served: Served, http: ClientSession
) -> None:
    key = "zips/j_1/batch-3of3-20261205.zip"
    await served.store.put(key, b"PK zip bytes")
    url = StableLinks(SECRET, served.base_url).url(key, filename="peel-j_1.zip")
    async with http.get(url) as resp:
        assert resp.status == 200 and await resp.read() == b"PK zip bytes"
    await served.store.delete(key)  # as the bucket's lifecycle rule does
    async with http.get(url, allow_redirects=False) as resp:
        assert resp.status == 410
        assert "Location" not in resp.headers
        text = await resp.text()
    assert text == ZIP_GONE + "\n"
    assert "New link" in text and "/group download" in text


async def test_stable_link_redirects_to_a_presigned_url_when_the_store_is_s3(
    moto_s3: MotoS3, s3_bucket: str, http: ClientSession
) -> None:
    store = moto_s3.make_store(s3_bucket, "peel")
    app = make_app(store, LinkSigner(SECRET, "http://unused"), serve_files=False)
    try:
        async with LinkServer(app, host="127.0.0.1", port=0) as server:
            await store.put(KEY, b"s3 image bytes", content_type="image/png")
            url = StableLinks(SECRET, server.base_url).url(KEY, filename="fox.png")
            async with http.get(url, allow_redirects=False) as resp:
                assert resp.status == 302
                location = resp.headers["Location"]
            assert location.startswith(moto_s3.endpoint_url) and "X-Amz-Signature=" in location
            assert parse_qs(urlsplit(location).query)["X-Amz-Expires"] == [str(REDIRECT_EXPIRES_S)]
            async with http.get(url) as resp:
                assert resp.status == 200
                assert await resp.read() == b"s3 image bytes"
            await store.delete(KEY)
            async with http.get(url, allow_redirects=False) as resp:
                assert resp.status == 410
    finally:
        await store.close()
