"""`link_for` hands out a URL that downloads the object, whatever the store."""

from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientSession

from bot.web import link_for
from bot.web.links import MAX_PRESIGNED_EXPIRES_S, is_presigning
from storage.errors import ObjectNotFoundError, StoreConfigError
from storage.file import FileStore
from storage.memory import MemoryStore
from tests.fakes.s3 import MotoS3
from tests.protocol.web.conftest import Served


async def test_link_for_returns_presigned_url_when_store_is_s3(
    moto_s3: MotoS3, s3_bucket: str, http: ClientSession
) -> None:
    store = moto_s3.make_store(s3_bucket, "peel")
    try:
        await store.put("zips/j_1/results.zip", b"PK zip bytes", content_type="application/zip")
        assert is_presigning(store)
        url = await link_for(store, "zips/j_1/results.zip", expires_s=600, filename="results.zip")
        assert url.startswith(moto_s3.endpoint_url)
        assert "X-Amz-Signature=" in url
        async with http.get(url) as resp:
            assert resp.status == 200
            assert await resp.read() == b"PK zip bytes"
            assert resp.headers["Content-Disposition"] == 'attachment; filename="results.zip"'
    finally:
        await store.close()


async def test_link_for_caps_expiry_at_a_week_when_store_is_s3(moto_s3: MotoS3, s3_bucket: str) -> None:
    store = moto_s3.make_store(s3_bucket)
    try:
        await store.put("a.png", b"x")
        url = await link_for(store, "a.png", expires_s=30 * 24 * 3600)
        assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == [str(MAX_PRESIGNED_EXPIRES_S)]
    finally:
        await store.close()


async def test_link_for_returns_served_link_when_store_is_file(served: Served, http: ClientSession) -> None:
    store = FileStore(served.root, signer=served.signer)
    await store.put("outputs/j/00003.png", b"png bytes")
    assert not is_presigning(store)
    url = await link_for(store, "outputs/j/00003.png", expires_s=60, filename="cat.png")
    assert url.startswith(served.base_url + "/files/outputs/j/00003.png?")
    async with http.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == b"png bytes"
        assert resp.headers["Content-Disposition"] == 'attachment; filename="cat.png"'


async def test_link_for_signs_with_given_signer_when_store_has_none(served: Served, http: ClientSession) -> None:
    await served.store.put("outputs/j/00004.png", b"more bytes")
    url = await link_for(served.store, "outputs/j/00004.png", expires_s=60, signer=served.signer)
    async with http.get(url) as resp:
        assert await resp.read() == b"more bytes"
    with pytest.raises(StoreConfigError):
        await link_for(served.store, "outputs/j/00004.png", expires_s=60)


async def test_link_for_raises_when_object_is_missing(served: Served) -> None:
    with pytest.raises(ObjectNotFoundError):
        await link_for(served.store, "outputs/j/none.png", expires_s=60, signer=served.signer)
    with pytest.raises(ObjectNotFoundError):
        await link_for(MemoryStore(signer=served.signer), "outputs/j/none.png", expires_s=60)


async def test_link_for_raises_when_expiry_is_not_positive(served: Served) -> None:
    with pytest.raises(ValueError, match="positive"):
        await link_for(served.store, "outputs/j/00000.png", expires_s=0, signer=served.signer)
