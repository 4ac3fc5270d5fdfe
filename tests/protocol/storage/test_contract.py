"""The contract every store honours, run against each backend (see `conftest.case`)."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp
import pytest

from storage import InvalidKeyError, ObjectInfo, ObjectNotFoundError, Store, StoreConfigError
from tests.protocol.storage.conftest import BASE_URL, StoreCase

MIB = 1024 * 1024


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        await asyncio.sleep(0)
        yield chunk


async def failing_stream(total_bytes: int, chunk_bytes: int = MIB) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total_bytes:
        yield b"x" * chunk_bytes
        sent += chunk_bytes
    raise RuntimeError("the source broke mid-stream")


def pattern(size: int) -> bytes:
    """Bytes whose content depends on the position, so a misplaced chunk shows."""
    block = bytes(range(256)) * 4096  # 1 MiB
    return (block * (size // len(block) + 1))[:size]


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


async def keys_of(store: Store, prefix: str = "") -> list[str]:
    return [info.key async for info in store.list(prefix)]


async def files_under(root: Path) -> list[str]:
    """Every file below `root`, temporary ones included (walked in a thread: it blocks)."""

    def walk() -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())

    return await asyncio.to_thread(walk)


async def test_get_bytes_returns_what_was_put_when_body_is_bytes(store: Store) -> None:
    info = await store.put("a/b.png", b"\x89PNG-data")
    assert info.key == "a/b.png"
    assert info.size == 9
    assert info.content_type == "image/png"
    assert await store.get_bytes("a/b.png") == b"\x89PNG-data"


async def test_read_streams_chunks_when_body_is_an_async_stream(store: Store) -> None:
    data = pattern(3 * MIB + 17)
    pieces = [data[i : i + 300_000] for i in range(0, len(data), 300_000)]
    info = await store.put("outputs/job/00000.png", stream(*pieces))
    assert info.size == len(data)
    chunks = await collect(store.read("outputs/job/00000.png", chunk_bytes=MIB))
    assert all(len(chunk) <= MIB for chunk in chunks)
    assert len(chunks) >= 4
    assert b"".join(chunks) == data


async def test_put_stream_keeps_every_byte_when_larger_than_a_multipart_part(store: Store) -> None:
    data = pattern(17 * MIB + 5)  # three 8 MiB parts on S3, the last one short
    await store.put("zips/g/big.zip", stream(*[data[i : i + MIB] for i in range(0, len(data), MIB)]))
    head = await store.head("zips/g/big.zip")
    assert head is not None
    assert head.size == len(data)
    assert head.content_type == "application/zip"
    assert b"".join(await collect(store.read("zips/g/big.zip", chunk_bytes=4 * MIB))) == data


async def test_put_stores_empty_object_when_stream_is_empty(store: Store) -> None:
    await store.put("empty.bin", stream())
    assert await store.get_bytes("empty.bin") == b""
    head = await store.head("empty.bin")
    assert head is not None
    assert head.size == 0


async def test_put_replaces_object_when_key_exists(store: Store) -> None:
    await store.put("k.txt", b"old")
    await store.put("k.txt", b"new and longer")
    assert await store.get_bytes("k.txt") == b"new and longer"
    assert await keys_of(store) == ["k.txt"]


async def test_failed_stream_leaves_no_object_when_source_raises(case: StoreCase) -> None:
    store = case.store
    with pytest.raises(RuntimeError, match="mid-stream"):
        await store.put("outputs/j/00001.png", failing_stream(9 * MIB))
    assert not await store.exists("outputs/j/00001.png")
    assert await keys_of(store) == []
    if case.root is not None:
        assert await files_under(case.root) == []


async def test_failed_stream_keeps_old_object_when_replacing(case: StoreCase) -> None:
    store = case.store
    await store.put("keep.png", b"old")
    with pytest.raises(RuntimeError):
        await store.put("keep.png", failing_stream(2 * MIB))
    assert await store.get_bytes("keep.png") == b"old"
    if case.root is not None:
        assert await files_under(case.root) == ["keep.png"]


async def test_cancelled_put_leaves_no_object_when_cancelled_mid_stream(case: StoreCase) -> None:
    store = case.store
    started = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            started.set()
            yield b"y" * MIB
            await asyncio.sleep(0)

    task = asyncio.create_task(store.put("c/cancelled.png", endless()))
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await keys_of(store) == []
    if case.root is not None:
        assert await files_under(case.root) == []


async def test_concurrent_puts_leave_one_whole_object_when_racing_on_a_key(case: StoreCase) -> None:
    store = case.store
    bodies = [bytes([n]) * (2 * MIB + n) for n in range(4)]
    await asyncio.gather(
        *(store.put("race.png", stream(*[b[i : i + MIB] for i in range(0, len(b), MIB)])) for b in bodies)
    )
    assert await store.get_bytes("race.png") in bodies
    assert await keys_of(store) == ["race.png"]
    if case.root is not None:
        assert await files_under(case.root) == ["race.png"]


async def test_read_closes_cleanly_when_consumer_stops_early(store: Store) -> None:
    await store.put("early.bin", pattern(3 * MIB))
    chunks = store.read("early.bin", chunk_bytes=MIB)
    assert len(await anext(chunks)) == MIB
    await chunks.aclose()  # type: ignore[attr-defined]  # the Protocol types read() as a plain AsyncIterator
    await store.put("early.bin", b"replaced")  # the store still works after an abandoned read
    assert await store.get_bytes("early.bin") == b"replaced"


async def test_read_raises_not_found_when_key_is_missing(store: Store) -> None:
    with pytest.raises(ObjectNotFoundError):
        await collect(store.read("nope/missing.png"))
    with pytest.raises(ObjectNotFoundError):
        await store.get_bytes("nope/missing.png")
    with pytest.raises(ObjectNotFoundError):
        await store.read_range("nope/missing.png", 0, 10)


async def test_head_and_exists_report_object_when_present(store: Store) -> None:
    assert await store.head("h/x.jpg") is None
    assert not await store.exists("h/x.jpg")
    await store.put("h/x.jpg", b"12345")
    info = await store.head("h/x.jpg")
    assert info is not None
    assert (info.key, info.size, info.content_type) == ("h/x.jpg", 5, "image/jpeg")
    assert info.modified_at is not None
    assert info.modified_at.tzinfo is not None
    assert await store.exists("h/x.jpg")
    assert not await store.exists("h")  # a "directory" is not an object


async def test_read_range_returns_slice_when_range_is_inside_object(store: Store) -> None:
    await store.put("r.bin", b"0123456789")
    assert await store.read_range("r.bin", 2, 5) == b"234"
    assert await store.read_range("r.bin", 8, 20) == b"89"
    assert await store.read_range("r.bin", 4, 4) == b""


async def test_list_yields_keys_in_order_when_filtered_by_prefix(store: Store) -> None:
    keys = ["b/2.png", "a/1.png", "a-c.png", "a/0/z.png", "a/10.png", "ab.png", "c.png"]
    for key in keys:
        await store.put(key, key.encode())
    assert await keys_of(store) == sorted(keys)
    assert await keys_of(store, "a/") == ["a/0/z.png", "a/1.png", "a/10.png"]
    assert await keys_of(store, "a") == ["a-c.png", "a/0/z.png", "a/1.png", "a/10.png", "ab.png"]
    assert await keys_of(store, "a/1") == ["a/1.png", "a/10.png"]
    assert await keys_of(store, "zzz/") == []
    infos: list[ObjectInfo] = [info async for info in store.list("b/")]
    assert [(i.key, i.size, i.content_type) for i in infos] == [("b/2.png", 7, "image/png")]


async def test_delete_removes_object_when_present_and_ignores_missing(store: Store) -> None:
    await store.put("d/1.png", b"1")
    await store.put("d/2.png", b"2")
    await store.delete("d/1.png")
    await store.delete("d/1.png")
    await store.delete("d/never.png")
    assert not await store.exists("d/1.png")
    assert await keys_of(store, "d/") == ["d/2.png"]


async def test_url_for_gives_working_link_when_object_exists(case: StoreCase) -> None:
    store = case.store
    await store.put("outputs/j/00000.png", b"image-bytes")
    url = await store.url_for("outputs/j/00000.png", expires_s=600, filename="cat 1.png")
    assert await fetch_link(case, url, "outputs/j/00000.png") == b"image-bytes"


async def fetch_link(case: StoreCase, url: str, key: str) -> bytes:
    """Follow a link the way its consumer would: GET a presigned URL (S3), verify the signature (file, memory)."""
    if case.kind == "s3":
        assert case.moto is not None
        assert url.startswith(case.moto.endpoint_url)
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            assert response.headers["Content-Disposition"] == 'attachment; filename="cat 1.png"'
            return await response.read()
    parts = urlsplit(url)
    assert url.startswith(f"{BASE_URL}/files/")
    assert unquote(parts.path).removeprefix("/files/") == key
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert case.signer.verify(key, exp=query["exp"], sig=query["sig"], filename=query.get("dl"))
    assert not case.signer.verify(key, exp=query["exp"], sig=query["sig"], filename="other.png")
    return await case.store.get_bytes(key)


async def test_url_for_raises_not_found_when_object_is_missing(store: Store) -> None:
    with pytest.raises(ObjectNotFoundError):
        await store.url_for("missing.png", expires_s=60)


INVALID_KEYS = [
    "",
    "../etc/passwd",
    "a/../../b",
    "a/./b",
    "/abs/path",
    "a\\b",
    "..\\x",
    "a//b",
    "a/",
    "a/b\x00c",
    "a\nb",
    "caf\u00e9.png",
    "a b.png",
]


@pytest.mark.parametrize("key", INVALID_KEYS)
async def test_every_operation_refuses_key_when_key_is_invalid(store: Store, key: str) -> None:
    with pytest.raises(InvalidKeyError):
        await store.put(key, b"x")
    with pytest.raises(InvalidKeyError):
        await store.put(key, stream(b"x"))
    with pytest.raises(InvalidKeyError):
        await collect(store.read(key))
    with pytest.raises(InvalidKeyError):
        await store.read_range(key, 0, 1)
    with pytest.raises(InvalidKeyError):
        await store.get_bytes(key)
    with pytest.raises(InvalidKeyError):
        await store.head(key)
    with pytest.raises(InvalidKeyError):
        await store.exists(key)
    with pytest.raises(InvalidKeyError):
        await store.delete(key)
    with pytest.raises(InvalidKeyError):
        await store.url_for(key, expires_s=60)
    assert await keys_of(store) == []


@pytest.mark.parametrize("prefix", ["../", "/abs", "a\\", "a//"])
async def test_list_refuses_prefix_when_prefix_is_invalid(store: Store, prefix: str) -> None:
    with pytest.raises(InvalidKeyError):
        await keys_of(store, prefix)


async def test_url_for_raises_config_error_when_store_has_no_signer(case: StoreCase, tmp_path: Path) -> None:
    if case.kind == "s3":
        pytest.skip("S3 presigns its own URLs")
    from storage import open_store

    url = "memory://" if case.kind == "memory" else f"file://{tmp_path / 'unsigned'}"
    unsigned = open_store(url)
    await unsigned.put("x.png", b"x")
    with pytest.raises(StoreConfigError):
        await unsigned.url_for("x.png", expires_s=60)
