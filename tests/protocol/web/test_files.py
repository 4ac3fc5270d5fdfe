"""The link server's `/files/{key}` route: signatures, expiry, types, downloads, ranges and validators."""

import logging
import os
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientSession
from yarl import URL

from bot.web import LinkServer, make_app
from storage.links import LinkSigner
from storage.memory import MemoryStore
from tests.protocol.web.conftest import SECRET, Served

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40  # 10,248 bytes


def with_query(link: str, **changes: str | None) -> str:
    split = urlsplit(link)
    query = {name: values[0] for name, values in parse_qs(split.query).items()}
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = value
    encoded = "&".join(f"{name}={value}" for name, value in query.items())
    return split._replace(query=encoded).geturl()


async def test_get_serves_object_when_link_is_signed(served: Served, http: ClientSession) -> None:
    await served.store.put("outputs/j_1/00000.png", PNG)
    link = served.signer.sign("outputs/j_1/00000.png", expires_s=600)
    async with http.get(link) as resp:
        body = await resp.read()
        assert resp.status == 200
        assert body == PNG
        assert resp.headers["Content-Type"] == "image/png"
        assert resp.headers["Content-Length"] == str(len(PNG))
        assert resp.headers["Accept-Ranges"] == "bytes"
        assert resp.headers["Cache-Control"] == "private"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["ETag"].startswith('"')
        assert "Last-Modified" in resp.headers
        assert "Content-Disposition" not in resp.headers


@pytest.mark.parametrize(
    ("key", "content_type"),
    [
        ("a/b.jpeg", "image/jpeg"),
        ("a/b.jpg", "image/jpeg"),
        ("a/b.webp", "image/webp"),
        ("zips/j/all.zip", "application/zip"),
        ("zips/j/manifest.csv", "text/csv; charset=utf-8"),
        ("zips/j/manifest.json", "application/json"),
        ("a/noext", "application/octet-stream"),
    ],
)
async def test_get_sends_content_type_when_key_has_extension(
    served: Served, http: ClientSession, key: str, content_type: str
) -> None:
    await served.store.put(key, b"data")
    async with http.get(served.signer.sign(key, expires_s=60)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == content_type


async def test_get_streams_whole_object_when_it_spans_many_chunks(served: Served, http: ClientSession) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)
    await served.store.put("zips/j/big.zip", big)
    async with http.get(served.signer.sign("zips/j/big.zip", expires_s=60)) as resp:
        assert resp.status == 200
        assert await resp.read() == big


@pytest.mark.parametrize(
    "changes",
    [
        {"sig": "0" * 64},
        {"sig": "abc"},
        {"exp": str(int(time.time()) + 999_999)},
        {"exp": "soon"},
        {"dl": "other.png"},
    ],
    ids=["sig-zeros", "sig-short", "exp-extended", "exp-garbage", "dl-added"],
)
async def test_get_refuses_with_403_when_link_is_tampered(
    served: Served, http: ClientSession, changes: dict[str, str]
) -> None:
    await served.store.put("outputs/j/00000.png", PNG)
    link = with_query(served.signer.sign("outputs/j/00000.png", expires_s=600), **changes)
    async with http.get(link) as resp:
        assert resp.status == 403
        assert resp.content_type == "text/plain"
        assert "not valid" in await resp.text()


async def test_get_refuses_with_403_when_key_is_swapped(served: Served, http: ClientSession) -> None:
    await served.store.put("outputs/j/00000.png", PNG)
    await served.store.put("outputs/j/00001.png", b"other image")
    link = served.signer.sign("outputs/j/00000.png", expires_s=600)
    async with http.get(link.replace("00000.png", "00001.png")) as resp:
        assert resp.status == 403
        assert b"other image" not in await resp.read()


async def test_get_refuses_with_403_when_link_has_expired(served: Served, http: ClientSession) -> None:
    await served.store.put("outputs/j/00000.png", PNG)
    link = served.signer.sign("outputs/j/00000.png", expires_s=60, now=time.time() - 3600)
    async with http.get(link) as resp:
        assert resp.status == 403
        assert "expired" in await resp.text()


@pytest.mark.parametrize("drop", [("exp",), ("sig",), ("exp", "sig")])
async def test_get_refuses_with_403_when_signature_params_are_missing(
    served: Served, http: ClientSession, drop: tuple[str, ...]
) -> None:
    await served.store.put("outputs/j/00000.png", PNG)
    link = with_query(served.signer.sign("outputs/j/00000.png", expires_s=600), **dict.fromkeys(drop))
    async with http.get(link) as resp:
        assert resp.status == 403
        assert await resp.read() != PNG


async def test_get_answers_404_when_signed_object_is_missing(served: Served, http: ClientSession) -> None:
    async with http.get(served.signer.sign("outputs/j/gone.png", expires_s=60)) as resp:
        assert resp.status == 404
        assert "does not exist" in await resp.text()


async def test_get_uses_clock_when_checking_expiry(tmp_path, http: ClientSession) -> None:
    store = MemoryStore()
    await store.put("a.png", PNG)
    now = [1_000_000.0]
    async with LinkServer(make_app(store, LinkSigner(SECRET, "x"), clock=lambda: now[0])) as server:
        link = LinkSigner(SECRET, server.base_url).sign("a.png", expires_s=60, now=now[0])
        async with http.get(link) as resp:
            assert resp.status == 200
        now[0] += 61
        async with http.get(link) as resp:
            assert resp.status == 403


async def test_get_serves_memory_store_when_object_has_stored_type(http: ClientSession) -> None:
    store = MemoryStore()
    await store.put("inputs/abc", b"GIF89a...", content_type="image/gif")
    async with LinkServer(make_app(store, LinkSigner(SECRET, "x"))) as server:
        link = LinkSigner(SECRET, server.base_url).sign("inputs/abc", expires_s=60)
        async with http.get(link) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "image/gif"
            assert await resp.read() == b"GIF89a..."


@pytest.mark.parametrize(
    ("filename", "disposition"),
    [
        ("results.zip", 'attachment; filename="results.zip"'),
        ('my "best" run.zip', "attachment; filename=\"my _best_ run.zip\"; filename*=UTF-8''my%20%22best%22%20run.zip"),
        ("café ☕.png", "attachment; filename=\"caf_ _.png\"; filename*=UTF-8''caf%C3%A9%20%E2%98%95.png"),
        ("../../etc/passwd", 'attachment; filename=".._.._etc_passwd"'),
    ],
)
async def test_get_sends_attachment_disposition_when_dl_is_signed(
    served: Served, http: ClientSession, filename: str, disposition: str
) -> None:
    await served.store.put("zips/j/all.zip", b"PK\x05\x06" + bytes(18))
    async with http.get(served.signer.sign("zips/j/all.zip", expires_s=60, filename=filename)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Disposition"] == disposition
        assert resp.headers["Content-Type"] == "application/zip"


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=-500", len(PNG) - 500, len(PNG) - 1),
        ("bytes=100-", 100, len(PNG) - 1),
        ("bytes=10000-99999999", 10000, len(PNG) - 1),
        ("bytes=-99999999", 0, len(PNG) - 1),
    ],
    ids=["first", "middle", "suffix", "open", "clipped", "suffix-longer-than-object"],
)
async def test_get_answers_206_with_slice_when_range_is_satisfiable(
    served: Served, http: ClientSession, range_header: str, start: int, end: int
) -> None:
    await served.store.put("outputs/j/00000.png", PNG)
    link = served.signer.sign("outputs/j/00000.png", expires_s=60)
    async with http.get(link, headers={"Range": range_header}) as resp:
        assert resp.status == 206
        assert await resp.read() == PNG[start : end + 1]
        assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{len(PNG)}"
        assert resp.headers["Content-Length"] == str(end - start + 1)
        assert resp.headers["Content-Type"] == "image/png"


async def test_get_streams_range_when_it_spans_many_chunks(served: Served, http: ClientSession) -> None:
    big = os.urandom(2 * 1024 * 1024)
    await served.store.put("zips/j/big.zip", big)
    link = served.signer.sign("zips/j/big.zip", expires_s=60)
    async with http.get(link, headers={"Range": "bytes=100000-1500000"}) as resp:
        assert resp.status == 206
        assert await resp.read() == big[100000:1500001]


@pytest.mark.parametrize("range_header", ["bytes=20000-", "bytes=10248-10300", "bytes=-0"])
async def test_get_answers_416_when_range_is_unsatisfiable(
    served: Served, http: ClientSession, range_header: str
) -> None:
    await served.store.put("outputs/j/00000.png", PNG)
    link = served.signer.sign("outputs/j/00000.png", expires_s=60)
    async with http.get(link, headers={"Range": range_header}) as resp:
        assert resp.status == 416
        assert resp.headers["Content-Range"] == f"bytes */{len(PNG)}"
        assert PNG[:8] not in await resp.read()


@pytest.mark.parametrize("range_header", ["bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=abc", "bytes=-"])
async def test_get_sends_whole_object_when_range_is_unsupported_or_malformed(
    served: Served, http: ClientSession, range_header: str
) -> None:
    await served.store.put("outputs/j/00000.png", PNG)
    link = served.signer.sign("outputs/j/00000.png", expires_s=60)
    async with http.get(link, headers={"Range": range_header}) as resp:
        assert resp.status == 200
        assert await resp.read() == PNG


@pytest.mark.parametrize(
    ("range_header", "status"),
    [
        ("bytes=" + "9" * 5000 + "-", 416),
        ("bytes=0-" + "9" * 5000, 206),
        ("bytes=-" + "9" * 5000, 206),
        ("bytes=" + "0" * 5000 + "5-9", 206),
    ],
    ids=["huge-first", "huge-last", "huge-suffix", "zero-padded"],
)
async def test_get_never_answers_500_when_range_has_thousands_of_digits(
    served: Served, http: ClientSession, range_header: str, status: int
) -> None:
    await served.store.put("outputs/j/00000.png", PNG)
    link = served.signer.sign("outputs/j/00000.png", expires_s=60)
    async with http.get(link, headers={"Range": range_header}) as resp:
        assert resp.status == status
        body = await resp.read()
    if status == 206:
        assert body in (PNG, PNG[5:10])


async def test_head_sends_headers_without_body_when_link_is_signed(served: Served, http: ClientSession) -> None:
    await served.store.put("outputs/j/00000.png", PNG)
    link = served.signer.sign("outputs/j/00000.png", expires_s=60, filename="cat.png")
    async with http.head(link) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(PNG))
        assert resp.headers["Content-Type"] == "image/png"
        assert resp.headers["Content-Disposition"] == 'attachment; filename="cat.png"'
        assert await resp.read() == b""
    async with http.head(link, headers={"Range": "bytes=-10"}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Length"] == "10"
        assert resp.headers["Content-Range"] == f"bytes {len(PNG) - 10}-{len(PNG) - 1}/{len(PNG)}"


async def test_head_refuses_with_403_when_signature_is_bad(served: Served, http: ClientSession) -> None:
    await served.store.put("outputs/j/00000.png", PNG)
    link = with_query(served.signer.sign("outputs/j/00000.png", expires_s=60), sig="f" * 64)
    async with http.head(link) as resp:
        assert resp.status == 403


async def test_get_answers_304_when_etag_matches(served: Served, http: ClientSession) -> None:
    await served.store.put("outputs/j/00000.png", PNG)
    link = served.signer.sign("outputs/j/00000.png", expires_s=60)
    async with http.get(link) as resp:
        etag = resp.headers["ETag"]
        last_modified = resp.headers["Last-Modified"]
    async with http.get(link, headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304
        assert await resp.read() == b""
    async with http.get(link, headers={"If-Modified-Since": last_modified}) as resp:
        assert resp.status == 304
    async with http.get(link, headers={"If-None-Match": '"other"'}) as resp:
        assert resp.status == 200


async def test_get_ignores_range_when_if_range_names_an_old_version(served: Served, http: ClientSession) -> None:
    await served.store.put("outputs/j/00000.png", PNG)
    link = served.signer.sign("outputs/j/00000.png", expires_s=60)
    async with http.get(link) as resp:
        etag = resp.headers["ETag"]
    async with http.get(link, headers={"Range": "bytes=0-9", "If-Range": etag}) as resp:
        assert resp.status == 206
    async with http.get(link, headers={"Range": "bytes=0-9", "If-Range": '"stale-version"'}) as resp:
        assert resp.status == 200
        assert await resp.read() == PNG


async def test_access_log_leaves_out_signature_when_serving(
    served: Served, http: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    await served.store.put("outputs/j/00000.png", PNG)
    link = served.signer.sign("outputs/j/00000.png", expires_s=60)
    sig = parse_qs(urlsplit(link).query)["sig"][0]
    with caplog.at_level(logging.DEBUG):
        async with http.get(link) as resp:
            assert resp.status == 200
        async with http.get(with_query(link, sig="0" * 64)) as resp:
            assert resp.status == 403
    assert "/files/outputs/j/00000.png" in caplog.text
    assert sig not in caplog.text
    assert "sig=" not in caplog.text


async def test_access_log_escapes_path_when_it_holds_a_newline(
    served: Served, http: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "/files/a%0d%0aGET%20/files/forged%20200%200%200.000s%1b[31m"
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        async with http.get(URL(served.base_url + forged, encoded=True)) as resp:
            assert resp.status == 404  # no route matches a key with a newline
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 1
    assert "\n" not in lines[0]
    assert "\r" not in lines[0]
    assert "\x1b" not in lines[0]
    assert lines[0].startswith("GET /files/a%0D%0AGET%20/files/forged%20200%200%200.000s%1B%5B31m 404 ")


async def test_healthz_answers_ok_when_running(served: Served, http: ClientSession) -> None:
    async with http.get(f"{served.base_url}/healthz") as resp:
        assert resp.status == 200
        assert await resp.text() == "ok\n"


async def test_link_server_refuses_base_url_when_not_started() -> None:
    server = LinkServer(make_app(MemoryStore(), LinkSigner(SECRET, "x")))
    with pytest.raises(RuntimeError):
        _ = server.base_url
    await server.close()  # closing a server that never started is harmless


async def test_access_log_keeps_requests_and_failing_probes_but_not_passing_ones(
    http: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    async with LinkServer(make_app(MemoryStore(), LinkSigner(SECRET, "x"))) as server:
        with caplog.at_level(logging.INFO, logger="aiohttp.access"):
            async with http.get(f"{server.base_url}/healthz") as resp:
                assert resp.status == 200
            async with http.get(f"{server.base_url}/files/nothing") as resp:
                assert resp.status == 403
    logged = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access" and r.levelno >= logging.INFO]
    assert [line.split()[:3] for line in logged] == [["GET", "/files/nothing", "403"]]
