"""Copying between any two stores: bytes and content types survive, memory stays bounded, failures stay invisible."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import ObjectNotFoundError, open_store
from storage.base import DEFAULT_CHUNK_BYTES
from storage.copy import CopyProgress, copy_object, copy_prefix
from storage.memory import MemoryStore
from storage.s3 import S3Store
from tests.fakes.s3 import MotoS3
from tests.protocol.storage.conftest import StoreCase, drop_case, make_case

MIB = 1024 * 1024
PAIRS = [("memory", "file"), ("file", "s3"), ("s3", "memory"), ("s3", "s3"), ("file", "file")]


@pytest.fixture(params=PAIRS, ids=["->".join(pair) for pair in PAIRS])
def pair_kinds(request: pytest.FixtureRequest) -> tuple[str, str, MotoS3 | None]:
    src, dst = request.param
    moto = request.getfixturevalue("moto_s3") if "s3" in (src, dst) else None  # sync fixture: moto's start blocks
    return src, dst, moto


@pytest.fixture
async def pair(
    pair_kinds: tuple[str, str, MotoS3 | None], tmp_path: Path
) -> AsyncIterator[tuple[StoreCase, StoreCase]]:
    src_kind, dst_kind, moto = pair_kinds
    src = await make_case(src_kind, tmp_path, "src", moto=moto, prefix="from")
    dst = await make_case(dst_kind, tmp_path, "dst", moto=moto, prefix="to")
    yield src, dst
    await drop_case(src)
    await drop_case(dst)


async def test_copy_object_keeps_bytes_and_type_when_stores_differ(pair: tuple[StoreCase, StoreCase]) -> None:
    src, dst = pair[0].store, pair[1].store
    data = bytes(range(256)) * (40 * 1024 + 3)  # ~10 MiB: a multipart upload into S3
    await src.put("outputs/j/00000.png", data)
    seen: list[CopyProgress] = []
    info = await copy_object(src, "outputs/j/00000.png", dst, "export/cat.png", progress=seen.append)
    assert info.key == "export/cat.png"
    assert info.size == len(data)
    assert await dst.get_bytes("export/cat.png") == data
    head = await dst.head("export/cat.png")
    assert head is not None
    assert head.content_type == "image/png"
    assert seen[-1].objects_done == 1
    assert seen[-1].bytes_done == len(data)
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)


async def test_copy_prefix_copies_every_object_when_prefix_matches(pair: tuple[StoreCase, StoreCase]) -> None:
    src, dst = pair[0].store, pair[1].store
    for index in range(7):
        await src.put(f"outputs/j/{index:05d}.png", b"p" * (index + 1))
    await src.put("outputs/other/00000.png", b"not me")
    seen: list[CopyProgress] = []
    total = await copy_prefix(src, "outputs/j/", dst, "group/g1/", progress=seen.append, concurrency=3)
    assert (total.objects_done, total.bytes_done) == (7, sum(range(1, 8)))
    assert [info.key async for info in dst.list()] == [f"group/g1/{index:05d}.png" for index in range(7)]
    assert await dst.get_bytes("group/g1/00006.png") == b"p" * 7
    assert max(p.objects_done for p in seen) == 7


async def test_copy_object_raises_not_found_when_source_is_missing(pair: tuple[StoreCase, StoreCase]) -> None:
    src, dst = pair[0].store, pair[1].store
    with pytest.raises(ObjectNotFoundError):
        await copy_object(src, "missing.png", dst, "x.png")
    assert [info async for info in dst.list()] == []


class BrokenReadStore(MemoryStore):
    """A memory store whose reads of `broken` keys fail after the first chunk."""

    def __init__(self, broken: set[str]) -> None:
        super().__init__()
        self.broken = broken

    async def read(self, key: str, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> AsyncIterator[bytes]:
        async for chunk in super().read(key, chunk_bytes=chunk_bytes):
            yield chunk
            if key in self.broken:
                raise OSError("disk went away")


async def test_copy_prefix_leaves_no_partial_object_when_a_source_read_fails(tmp_path: Path) -> None:
    src = BrokenReadStore({"in/003.png"})
    for index in range(6):
        await src.put(f"in/{index:03d}.png", bytes(3 * MIB))
    dst = open_store(f"file://{tmp_path / 'dst'}")
    with pytest.raises(ExceptionGroup) as caught:
        await copy_prefix(src, "in/", dst, "out/", concurrency=2, chunk_bytes=MIB)
    assert caught.group_contains(OSError, match="disk went away")
    assert not await dst.exists("out/003.png")
    async for info in dst.list():
        assert info.size == 3 * MIB  # whatever got copied is whole


async def test_copy_prefix_refuses_when_same_store_prefixes_overlap() -> None:
    store = MemoryStore()
    with pytest.raises(ValueError, match="same store"):
        await copy_prefix(store, "a/", store, "a/b/")
    with pytest.raises(ValueError, match="concurrency"):
        await copy_prefix(store, "a/", MemoryStore(), "b/", concurrency=0)


async def test_s3_copy_stays_server_side_when_both_stores_share_a_client(
    moto_s3: MotoS3, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = moto_s3.make_store(s3_bucket, "a"), moto_s3.make_store(s3_bucket, "b")
    await src.put("big.zip", b"z" * (9 * MIB))

    def no_streaming(*args: object, **kwargs: object) -> AsyncIterator[bytes]:
        raise AssertionError("bytes were streamed through the client")

    monkeypatch.setattr(src, "read", no_streaming)
    info = await copy_object(src, "big.zip", dst, "copy.zip")
    assert info.size == 9 * MIB
    assert await dst.read_range("copy.zip", 9 * MIB - 2, 9 * MIB) == b"zz"
    head = await dst.head("copy.zip")
    assert head is not None
    assert head.content_type == "application/zip"
    await src.close()
    await dst.close()


def test_can_copy_from_is_false_when_credentials_differ() -> None:
    a = S3Store(bucket="x", endpoint_url="http://127.0.0.1:1", access_key_id="A", secret_access_key="S")
    b = S3Store(bucket="y", endpoint_url="http://127.0.0.1:1", access_key_id="A", secret_access_key="S")
    c = S3Store(bucket="y", endpoint_url="http://127.0.0.1:1", access_key_id="B", secret_access_key="S")
    assert a.can_copy_from(b)
    assert not a.can_copy_from(c)
