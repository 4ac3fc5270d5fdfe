"""The streaming ZIP writer against every store: what Python's zipfile reads back is what was stored."""

import asyncio
import io
import json
import os
import re
import threading
import tracemalloc
import zipfile
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage import ObjectNotFoundError, StorageError, Store
from storage.base import DEFAULT_CHUNK_BYTES, Body, ObjectInfo
from storage.memory import MemoryStore
from storage.zipwriter import ZipEntry, ZipProgress, write_zip
from tests.fakes.s3 import MotoS3
from tests.protocol.storage.conftest import drop_case, make_case

KIB = 1024
MIB = 1024 * KIB
ZIP64_END = b"PK\x06\x06"  # the ZIP64 end of central directory record


async def open_zip(store: Store, key: str) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(await store.get_bytes(key)))


def zip_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("peel-zip")]


async def put_members(store: Store, sizes: list[int], prefix: str = "outputs/j") -> dict[str, bytes]:
    data = {f"{prefix}/{index:05d}.png": os.urandom(size) for index, size in enumerate(sizes)}
    for key, body in data.items():
        await store.put(key, body)
    return data


async def test_zip_holds_every_member_stored_with_matching_crc_when_written(store: Store) -> None:
    # 0 bytes, small, one just past buffer_bytes (read twice), one of several read chunks.
    data = await put_members(store, [0, 1000, 64 * KIB + 1, 3 * DEFAULT_CHUNK_BYTES // 2, 5])
    entries = [ZipEntry(key=key, name=f"img-{index}.png") for index, key in enumerate(data)]
    csv, manifest = b"index,status\n0,ok\n", json.dumps({"items": 5}).encode()
    seen: list[ZipProgress] = []
    summary = await write_zip(
        store,
        entries,
        store,
        "zips/j/all.zip",
        manifest_csv=csv,
        manifest_json=manifest,
        progress=seen.append,
        buffer_bytes=64 * KIB,
    )
    archive = await open_zip(store, "zips/j/all.zip")
    assert archive.testzip() is None
    infos = archive.infolist()
    assert [i.filename for i in infos] == [f"img-{n}.png" for n in range(5)] + ["manifest.csv", "manifest.json"]
    for entry, info in zip(entries, infos, strict=False):
        assert info.compress_type == zipfile.ZIP_STORED
        assert zlib.crc32(data[entry.key]) == info.CRC
        assert archive.read(info) == data[entry.key]
    assert archive.getinfo("manifest.csv").compress_type == zipfile.ZIP_DEFLATED
    assert archive.read("manifest.csv") == csv
    assert archive.read("manifest.json") == manifest
    assert (summary.entries, summary.data_bytes, summary.missing, summary.zip64) == (
        5,
        sum(map(len, data.values())),
        (),
        False,
    )
    head = await store.head("zips/j/all.zip")
    assert head is not None
    assert head.size == summary.size
    assert head.content_type == "application/zip"
    assert [p.entries_done for p in seen] == [1, 2, 3, 4, 5]
    assert seen[-1].bytes_done == summary.data_bytes
    assert zip_threads() == []


async def test_zip_sanitizes_and_numbers_names_when_unsafe_or_duplicate(store: Store) -> None:
    data = await put_members(store, [10] * 6)
    asked = ["../../evil.png", "/etc/cat.png", "dir\\win.png", "cat.png", "CAT.png", "manifest.csv"]
    entries = [ZipEntry(key=key, name=name) for key, name in zip(data, asked, strict=True)]
    summary = await write_zip(store, entries, store, "out.zip", manifest_csv=b"x\n")
    archive = await open_zip(store, "out.zip")
    names = archive.namelist()
    assert names == [
        "evil.png",
        "etc/cat.png",
        "dir/win.png",
        "cat.png",
        "CAT (2).png",
        "manifest (2).csv",
        "manifest.csv",
    ]
    assert archive.read("CAT (2).png") == data[entries[4].key]
    assert summary.renamed == 5


async def test_zip_raises_not_found_and_writes_nothing_when_a_source_is_missing(store: Store) -> None:
    data = await put_members(store, [100, 100])
    entries = [ZipEntry(key=key, name=key) for key in data]
    entries.insert(1, ZipEntry(key="outputs/j/gone.png", name="gone.png"))
    with pytest.raises(ObjectNotFoundError, match=re.escape("outputs/j/gone.png")):
        await write_zip(store, entries, store, "zips/x.zip")
    assert not await store.exists("zips/x.zip")
    assert zip_threads() == []


async def test_zip_leaves_out_and_reports_missing_sources_when_missing_ok(store: Store) -> None:
    data = await put_members(store, [100, 200])
    keys = list(data)
    entries = [
        ZipEntry(key=keys[0], name="a.png"),
        ZipEntry(key="nope/1.png", name="b.png"),
        ZipEntry(key=keys[1], name="b.png"),
        ZipEntry(key="nope/2.png", name="c.png"),
    ]
    summary = await write_zip(store, entries, store, "z.zip", missing_ok=True)
    archive = await open_zip(store, "z.zip")
    # Names are given before reading, so the missing b.png still took its name.
    assert archive.namelist() == ["a.png", "b (2).png"]
    assert archive.read("b (2).png") == data[keys[1]]
    assert summary.missing == ("nope/1.png", "nope/2.png")
    assert summary.entries == 2


async def test_zip_is_a_valid_empty_archive_when_there_are_no_entries(store: Store) -> None:
    summary = await write_zip(store, [], store, "empty.zip")
    archive = await open_zip(store, "empty.zip")
    assert archive.namelist() == []
    assert summary.size == 22  # just the end of central directory record
    await write_zip(store, [], store, "only-manifest.zip", manifest_json=b"[]")
    assert (await open_zip(store, "only-manifest.zip")).read("manifest.json") == b"[]"


async def test_zip_writes_zip64_records_when_forced(store: Store) -> None:
    data = await put_members(store, [300, 70 * KIB, 0])

    async def entries() -> AsyncIterator[ZipEntry]:
        for index, key in enumerate(data):
            yield ZipEntry(key=key, name=f"{index}.png")

    summary = await write_zip(
        store, entries(), store, "z64.zip", zip64=True, manifest_csv=b"a\n", buffer_bytes=64 * KIB
    )
    raw = await store.get_bytes("z64.zip")
    assert ZIP64_END in raw
    assert summary.zip64
    archive = zipfile.ZipFile(io.BytesIO(raw))
    assert archive.testzip() is None
    assert [archive.read(f"{i}.png") for i in range(3)] == list(data.values())


async def test_zip_switches_to_zip64_when_members_exceed_65535() -> None:
    store = MemoryStore()
    count = 0xFFFF + 2
    for index in range(count):
        await store.put(f"t/{index}", index.to_bytes(3, "big"))
    entries = (ZipEntry(key=f"t/{index}", name=f"{index}.png") for index in range(count))
    summary = await write_zip(store, entries, store, "many.zip", manifest_csv=b"m\n")
    raw = await store.get_bytes("many.zip")
    assert summary.zip64
    assert ZIP64_END in raw
    archive = zipfile.ZipFile(io.BytesIO(raw))
    infos = archive.infolist()
    assert len(infos) == count + 1
    assert archive.read(infos[-2]) == (count - 1).to_bytes(3, "big")
    assert archive.read("manifest.csv") == b"m\n"
    # Only what needs it is ZIP64: the first members carry plain 32-bit headers (version needed 2.0).
    assert infos[0].extract_version == 20
    assert infos[count - 1].extract_version == 45


async def test_manifest_given_as_a_function_is_written_whole_when_it_yields_pieces(store: Store) -> None:
    calls = 0

    def pieces() -> Iterator[bytes]:
        nonlocal calls
        calls += 1
        for i in range(5000):
            yield f'{i},ok,"row {i}"\r\n'.encode()

    data = await put_members(store, [100])
    await write_zip(store, [ZipEntry(key=k, name="a.png") for k in data], store, "m.zip", manifest_csv=pieces)

    archive = await open_zip(store, "m.zip")
    assert archive.testzip() is None
    assert archive.read("manifest.csv") == b"".join(pieces())
    assert archive.getinfo("manifest.csv").compress_type == zipfile.ZIP_DEFLATED
    assert calls == 3  # measured, written, and read back here


class SinkStore(MemoryStore):
    """Keeps nothing: records the size of each chunk `put` receives, then drops it."""

    def __init__(self) -> None:
        super().__init__()
        self.chunk_sizes: list[int] = []

    async def put(self, key: str, body: Body, *, content_type: str | None = None) -> ObjectInfo:
        assert not isinstance(body, bytes | bytearray | memoryview)
        async for chunk in body:
            self.chunk_sizes.append(len(chunk))
        return ObjectInfo(key=key, size=sum(self.chunk_sizes), content_type=content_type or "")


async def zip_peak_bytes(count: int, size: int) -> tuple[int, SinkStore]:
    source = MemoryStore()
    for index in range(count):
        await source.put(f"in/{index:05d}.png", os.urandom(size))
    sink = SinkStore()
    tracemalloc.start()
    try:
        entries = (ZipEntry(key=f"in/{index:05d}.png", name=f"{index:05d}.png") for index in range(count))
        await write_zip(source, entries, sink, "out.zip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, sink


async def test_zip_memory_stays_bounded_when_member_count_grows() -> None:
    small_peak, _ = await zip_peak_bytes(200, 16 * KIB)
    large_peak, sink = await zip_peak_bytes(2000, 16 * KIB)  # 32 MiB of members
    assert large_peak < 16 * MIB  # half the members' bytes; about 4 MiB when measured
    # The central directory and the name set grow (~0.2 KiB a member); nothing else may.
    assert large_peak - small_peak < 3 * MIB
    assert max(sink.chunk_sizes) < 2 * MIB + 64 * KIB
    assert min(sink.chunk_sizes[:-1]) >= MIB  # coalesced, whatever the member size


class FlakySource(MemoryStore):
    """A memory store whose `broken` key fails mid-read, and whose `changing` key differs on every read."""

    def __init__(self) -> None:
        super().__init__()
        self.broken: set[str] = set()
        self.changing: set[str] = set()
        self.reads = 0

    async def read(self, key: str, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> AsyncIterator[bytes]:
        self.reads += 1
        async for chunk in super().read(key, chunk_bytes=chunk_bytes):
            if key in self.changing:
                yield bytes([self.reads % 256]) * len(chunk)
            else:
                yield chunk
            if key in self.broken:
                raise OSError("disk went away")


async def test_zip_fails_and_writes_nothing_when_a_source_read_fails(store: Store) -> None:
    source = FlakySource()
    await source.put("a.png", bytes(100))
    await source.put("b.png", bytes(100))
    source.broken.add("b.png")
    with pytest.raises(OSError, match="disk went away"):
        await write_zip(source, [ZipEntry(key=k, name=k) for k in ("a.png", "b.png")], store, "z.zip")
    assert not await store.exists("z.zip")
    assert zip_threads() == []


async def test_zip_raises_storage_error_when_a_large_source_changes_between_reads() -> None:
    source, dest = FlakySource(), MemoryStore()
    await source.put("big.png", bytes(100 * KIB))
    source.changing.add("big.png")
    with pytest.raises(StorageError, match="CRC32IntegrityError"):
        await write_zip(source, [ZipEntry(key="big.png", name="big.png")], dest, "z.zip", buffer_bytes=KIB)
    assert not await dest.exists("z.zip")


class StallingSource(MemoryStore):
    """A memory store whose reads of `stall` never finish."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = asyncio.Event()

    async def read(self, key: str, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> AsyncIterator[bytes]:
        if key == "stall":
            self.stalled.set()
            await asyncio.Event().wait()
        async for chunk in super().read(key, chunk_bytes=chunk_bytes):
            yield chunk


async def test_zip_stops_its_thread_and_writes_nothing_when_cancelled(tmp_path: Path) -> None:
    source = StallingSource()
    await source.put("a.png", os.urandom(3 * MIB))
    dest = (await make_case("file", tmp_path)).store
    entries = [ZipEntry(key="a.png", name="a.png"), ZipEntry(key="stall", name="s.png")]
    task = asyncio.create_task(write_zip(source, entries, dest, "z.zip", read_ahead=1))
    await source.stalled.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await dest.exists("z.zip")
    assert [info async for info in dest.list()] == []  # no temp file left either
    assert zip_threads() == []


async def test_zip_goes_from_file_store_to_s3_as_multipart_when_archive_is_large(
    tmp_path: Path, moto_s3: MotoS3
) -> None:
    src = await make_case("file", tmp_path, "src")
    dst = await make_case("s3", tmp_path, moto=moto_s3, prefix="exports")
    try:
        data = await put_members(src.store, [MIB + index for index in range(10)])  # > one 8 MiB part
        entries = [ZipEntry(key=key, name=Path(key).name) for key in data]
        summary = await write_zip(src.store, entries, dst.store, "zips/g/all.zip", manifest_csv=b"k\n")
        assert summary.size > 8 * MIB
        archive = await open_zip(dst.store, "zips/g/all.zip")
        assert archive.testzip() is None
        assert [archive.read(Path(key).name) for key in data] == list(data.values())
        assert dst.bucket is not None
        bucket = dst.bucket
        head = await asyncio.to_thread(
            lambda: moto_s3.client().head_object(Bucket=bucket, Key="exports/zips/g/all.zip")
        )
        assert head["ETag"].strip('"').endswith("-2")  # a multipart upload of two parts
    finally:
        await drop_case(src)
        await drop_case(dst)
