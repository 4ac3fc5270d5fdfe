"""Write a ZIP of stored objects into a store by streaming, in memory that does not grow with the member count.

`write_zip` reads each member from the source store and hands the archive to `dest.put` as an async byte stream
of chunks of about 1 MiB, so an S3 destination receives it as a multipart upload; into a file store the zip thread
writes it itself, into one temp file renamed into place. Either way a failed or cancelled export leaves no
partial archive.

The archive itself is made by stream-zip, which is a synchronous generator; it runs in one thread of its own, so
its CRC-32 and copying never block the event loop. Members are STORED (images are compressed already) with their
sizes and CRC in the local header, which every unzipper reads (stored members with a trailing data descriptor are
refused by some streaming readers). That needs the CRC before the member's bytes: a member of up to
`buffer_bytes` is read once into memory and the zip thread computes it; a larger one is read twice, once for its
CRC and once for its bytes (stream-zip checks the two reads agree). The manifests are deflated. ZIP64 records
are used only for members that need them (beyond 4 GiB, or past the 65,535th member), or for all with `zip64=True`.

Memory is bounded by `read_ahead` members being read, up to 8 MiB of members queued for the zip thread, four
output chunks, and the central directory stream-zip keeps (about 100 bytes a member) until the end.
"""

import asyncio
import logging
import os
import zlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, NoReturn

from stream_zip import NO_COMPRESSION_32, NO_COMPRESSION_64, ZIP_64, ZIP_AUTO, MemberFile, Method, ZipError, stream_zip

from storage.base import DEFAULT_CHUNK_BYTES, Store
from storage.errors import ObjectNotFoundError, StorageError, StorageUnavailableError
from storage.file import FileStore
from storage.keys import validate_key
from usertext.names import ArchiveNames

log = logging.getLogger(__name__)

MANIFEST_CSV_NAME: Final = "manifest.csv"
MANIFEST_JSON_NAME: Final = "manifest.json"

_MIB = 1024 * 1024
_OUT_CHUNK_BYTES = _MIB  # what `dest.put` receives: big enough for one write or one thread hop per MiB
# Into a file store the zip thread writes itself: a write per 128 KiB costs nothing, and 1 MiB pieces held while
# they fill and write came to 3 MB of a 10,000-member archive's peak.
_FILE_CHUNK_BYTES = 128 * 1024
_OUT_QUEUE_CHUNKS = 4
_PASS_BYTES = 256 * 1024  # output pieces this big are passed on without joining
_INBOX_BYTES = 8 * _MIB  # members read and waiting for the zip thread
_FILE_MODE = 0o100644  # a regular file, rw-r--r--
_MAX_32 = 0xFFFFFFFF
_MAX_32_MEMBERS = 0xFFFF
_HEADER_SLACK = 0x20000  # more than a local header with the longest name can take
_MANIFEST_LEVEL = 6


ManifestBody = bytes | Callable[[], Iterable[bytes]]
"""A manifest: its bytes, or a function that yields them afresh on each call (it is called twice: once to
measure it, once to write it), so that a big manifest never has to be in memory whole."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ZipEntry:
    """One member to write: the object under `key` in the source store, called `name` in the archive."""

    key: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ZipProgress:
    """How far a ZIP has got: members read into it, their bytes, and the source key last read."""

    entries_done: int
    bytes_done: int
    key: str


ZipProgressCallback = Callable[[ZipProgress], object]
"""Called on the event loop after every member is read; it must be quick and must not block."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ZipSummary:
    """What `write_zip` wrote."""

    key: str  # the archive's key in the destination store
    size: int  # the archive's size in bytes
    entries: int  # members written, manifests not counted
    data_bytes: int  # the members' bytes, uncompressed
    missing: tuple[str, ...]  # source keys that had no object and were left out (only with `missing_ok`)
    renamed: int  # members whose archive name differs from the name asked for (sanitized or made unique)
    zip64: bool  # whether any ZIP64 record was written


async def write_zip(
    source: Store,
    entries: Iterable[ZipEntry] | AsyncIterable[ZipEntry],
    dest: Store,
    dest_key: str,
    *,
    manifest_csv: ManifestBody | None = None,
    manifest_json: ManifestBody | None = None,
    missing_ok: bool = False,
    zip64: bool = False,
    progress: ZipProgressCallback | None = None,
    modified_at: datetime | None = None,
    read_ahead: int = 4,
    buffer_bytes: int = 8 * _MIB,
) -> ZipSummary:
    """Stream a ZIP of `entries` (read from `source`) into `dest` under `dest_key`.

    Member names are sanitized and made unique in entry order (see `usertext.names.ArchiveNames`; the names
    `manifest.csv` and `manifest.json` are always reserved, so a member called that becomes `manifest (2).csv`).
    Names are assigned before the member is read, so a missing member does not change the names of the others.

    Args:
        source: the store the members are read from.
        entries: the members, in archive order; an async iterable is consumed as the archive is written.
        dest: the store the archive is written to; it appears there only once it is whole.
        dest_key: the archive's key in `dest`.
        manifest_csv: written last as `manifest.csv` (deflated), if given: bytes, or a function yielding them.
        manifest_json: written last as `manifest.json` (deflated), if given: bytes, or a function yielding them.
        missing_ok: leave out a member whose source object does not exist and list it in the summary, instead
            of failing.
        zip64: write ZIP64 records for every member, not only where the format needs them.
        progress: called after every member is read.
        modified_at: the members' modification time (default: now).
        read_ahead: how many members are read concurrently (ahead of the one being written).
        buffer_bytes: members up to this size are read once into memory; larger ones are read twice.

    Returns:
        What was written.

    Raises:
        ObjectNotFoundError: a member's source object does not exist (unless `missing_ok`); no archive is written.
        StorageError: a store failed, or a source object changed while it was being read twice.
        InvalidKeyError: `dest_key` or a source key is malformed.
    """
    validate_key(dest_key)
    if read_ahead < 1:
        raise ValueError("read_ahead must be at least 1")
    job = _ZipJob(
        source=source,
        entries=entries,
        manifests=[
            (name, data)
            for name, data in ((MANIFEST_CSV_NAME, manifest_csv), (MANIFEST_JSON_NAME, manifest_json))
            if data is not None
        ],
        missing_ok=missing_ok,
        force_zip64=zip64,
        progress=progress,
        modified_at=modified_at or datetime.now(UTC),
        read_ahead=read_ahead,
        buffer_bytes=buffer_bytes,
    )
    if isinstance(dest, FileStore):
        size = await job.write_file(dest, dest_key)
    else:
        body = job.chunks()
        try:
            size = (await dest.put(dest_key, body, content_type="application/zip")).size
        finally:
            await body.aclose()  # stops the zip thread and the readers if `put` gave up early
    summary = ZipSummary(
        key=dest_key,
        size=size,
        entries=job.entries_done,
        data_bytes=job.bytes_done,
        missing=tuple(job.missing),
        renamed=job.renamed,
        zip64=job.used_zip64,
    )
    log.info(
        "wrote zip %s: %d members, %d bytes, %d missing",
        dest_key,
        summary.entries,
        summary.size,
        len(summary.missing),
        extra={"action": "zip", "key": dest_key},
    )
    return summary


class _Stored(Method):
    """STORED with the size and CRC in the local header; ZIP64 only when this member needs it."""

    def __init__(self, job: "_ZipJob", *, size: int, crc_32: int | None, force_64: bool) -> None:
        self._job = job
        self._size = size
        self._crc_32 = crc_32
        self._force_64 = force_64

    def _get(
        self, offset: int, default_get_compressobj: Callable[[], "zlib._Compress"]
    ) -> tuple[object, object, Callable[[], "zlib._Compress"], int, int]:
        # Called by stream-zip (in the zip thread) with the member's offset, just before writing it.
        wide = self._force_64 or offset + self._size + _HEADER_SLACK > _MAX_32
        if wide:
            self._job.used_zip64 = True
        base = NO_COMPRESSION_64 if wide else NO_COMPRESSION_32
        # Without a CRC stream-zip buffers the member's chunks (already in memory) to compute it.
        method = base if self._crc_32 is None else base(self._size, self._crc_32)
        return method._get(offset, default_get_compressobj)  # delegating, as stream-zip's methods do


@dataclass(slots=True)
class _Member:
    """A member ready for the zip thread; `chunks` None means its chunks follow in the inbox, then None."""

    name: str
    method: Method
    chunks: tuple[bytes, ...] | None
    nbytes: int
    source: Callable[[], Iterable[bytes]] | None = None  # yields the chunks instead (a streamed manifest)


@dataclass(slots=True)
class _Read:
    """A member read ahead: its chunks (small members) or its size and CRC (members read twice)."""

    chunks: tuple[bytes, ...] | None
    size: int
    crc_32: int | None


class _Aborted(Exception):  # noqa: N818 - internal signal, never escapes
    """Raised in the zip thread when the event-loop side gave up."""


_END: Final = object()  # no more members
_ABORT: Final = object()  # the event-loop side gave up
_Item = _Member | bytes | None | object


class _Budget:
    """Bytes waiting for the zip thread; a producer waits while they exceed the limit (loop side only)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._changed = asyncio.Condition()

    async def take(self, nbytes: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._used == 0 or self._used + nbytes <= self._limit)
            self._used += nbytes

    async def give(self, nbytes: int) -> None:
        async with self._changed:
            self._used -= nbytes
            self._changed.notify_all()


class _ZipJob:
    """One archive being written: a producer task reads members, the zip thread zips, `chunks` yields output."""

    def __init__(
        self,
        *,
        source: Store,
        entries: Iterable[ZipEntry] | AsyncIterable[ZipEntry],
        manifests: list[tuple[str, ManifestBody]],
        missing_ok: bool,
        force_zip64: bool,
        progress: ZipProgressCallback | None,
        modified_at: datetime,
        read_ahead: int,
        buffer_bytes: int,
    ) -> None:
        self._source = source
        self._entries = entries
        self._manifests = manifests
        self._missing_ok = missing_ok
        self._force_zip64 = force_zip64
        self._progress = progress
        self._modified_at = modified_at
        self._read_ahead = read_ahead
        self._buffer_bytes = buffer_bytes
        self._names = ArchiveNames([MANIFEST_CSV_NAME, MANIFEST_JSON_NAME])
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()  # bounded by `_budget`, so `put_nowait` is safe
        self._budget = _Budget(_INBOX_BYTES)
        self._out: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(_OUT_QUEUE_CHUNKS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: deque[_Item] = deque()  # zip thread only
        # A file store's members are read in one thread of their own: spread over the default executor's threads,
        # the reads and the zip thread passed the GIL back and forth about 30 times a member each.
        self._file_reader = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="peel-zip-read")
            if isinstance(source, FileStore)
            else None
        )
        self.entries_done = 0
        self.bytes_done = 0
        self.missing: list[str] = []
        self.renamed = 0
        self.used_zip64 = False

    # -- event-loop side --------------------------------------------------------------------------------------

    def _zipped(self, chunk_bytes: int = _OUT_CHUNK_BYTES) -> Generator[bytes, None, None]:
        """The archive as chunks (zip thread side): small pieces joined into about `chunk_bytes`, big ones as is."""
        return _coalesced(
            stream_zip(
                self._members(),
                chunk_size=chunk_bytes,
                get_compressobj=lambda: zlib.compressobj(level=_MANIFEST_LEVEL, wbits=-zlib.MAX_WBITS),
            ),
            chunk_bytes,
        )

    async def _raise_for(self, producer: "asyncio.Task[None]", error: BaseException) -> NoReturn:
        """Raise what stopped the zip thread: the reader's error if it had one, which is then the cause."""
        await asyncio.wait({producer})
        if not producer.cancelled() and producer.exception() is not None:
            await producer  # a missing key, a store failure
        if isinstance(error, ZipError):
            raise StorageError(f"could not write the zip: {type(error).__name__}") from error
        raise error

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """Yield the archive in chunks of about 1 MiB (or a member's size, where bigger)."""
        self._loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="peel-zip")
        zipped = self._zipped()
        producer = asyncio.create_task(self._produce())
        stepper = asyncio.create_task(self._step(executor, zipped))
        try:
            while (item := await self._out.get()) is not None:
                if isinstance(item, BaseException):
                    await self._raise_for(producer, item)
                yield item
            await producer
        finally:
            await asyncio.shield(self._stop(producer, stepper, executor, zipped))

    async def write_file(self, dest: FileStore, key: str) -> int:
        """Write the archive into `dest` from the zip thread itself and return its size.

        Handing each chunk to the event loop and on to a writing thread cost more than the zipping (three thread
        hops a MiB, and the GIL passed between four threads): this path runs at about the speed of `cat`.
        """
        self._loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="peel-zip")
        producer = asyncio.create_task(self._produce())
        writer = self._loop.run_in_executor(executor, self._write_into, dest, key)
        try:
            try:
                size = await asyncio.shield(writer)
            except (_Aborted, ZipError) as exc:
                await self._raise_for(producer, exc)
            await producer
            return size
        finally:
            await asyncio.shield(self._stop_writer(producer, writer, executor))

    def _write_into(self, dest: FileStore, key: str) -> int:
        size = 0
        with dest.writing(key) as handle:
            for chunk in self._zipped(_FILE_CHUNK_BYTES):
                handle.write(chunk)
                size += len(chunk)
        return size

    async def _stop_writer(
        self, producer: "asyncio.Task[None]", writer: "asyncio.Future[int]", executor: ThreadPoolExecutor
    ) -> None:
        producer.cancel()
        self._inbox.put_nowait(_ABORT)  # wakes the zip thread if it waits for a member; it removes its file
        await asyncio.gather(producer, writer, return_exceptions=True)
        await self._shutdown(executor)

    async def _shutdown(self, executor: ThreadPoolExecutor) -> None:
        """Wait for the zip thread, and the file reader's thread, to end (a cancelled read still finishes)."""
        await asyncio.to_thread(executor.shutdown, wait=True)
        if self._file_reader is not None:
            await asyncio.to_thread(self._file_reader.shutdown, wait=True)

    async def _step(self, executor: ThreadPoolExecutor, zipped: Generator[bytes, None, None]) -> None:
        assert self._loop is not None
        try:
            while (chunk := await self._loop.run_in_executor(executor, next, zipped, None)) is not None:
                await self._out.put(chunk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - not handled here: handed to `chunks`, which raises it
            await self._out.put(exc)
            return
        await self._out.put(None)

    async def _stop(
        self,
        producer: "asyncio.Task[None]",
        stepper: "asyncio.Task[None]",
        executor: ThreadPoolExecutor,
        zipped: Generator[bytes, None, None],
    ) -> None:
        assert self._loop is not None
        producer.cancel()
        stepper.cancel()
        self._inbox.put_nowait(_ABORT)  # wakes the zip thread if it waits for a member
        await asyncio.wait({producer, stepper})
        # The executor has one thread, so this runs after any step still in flight has returned.
        await self._loop.run_in_executor(executor, zipped.close)
        await self._shutdown(executor)

    async def _produce(self) -> None:
        reads: deque[tuple[ZipEntry, str, asyncio.Task[_Read]]] = deque()
        try:
            async for entry in _each(self._entries):
                validate_key(entry.key)
                name = self._names.add(entry.name)
                reads.append((entry, name, asyncio.create_task(self._read(entry.key))))
                if len(reads) > self._read_ahead:
                    await self._submit(*reads.popleft())
            while reads:
                await self._submit(*reads.popleft())
            for name, data in self._manifests:
                if isinstance(data, bytes):
                    member = _Member(name=name, method=self._deflated(len(data)), chunks=(data,), nbytes=len(data))
                    await self._enqueue(member)
                else:
                    size = await asyncio.to_thread(_measure, data)
                    member = _Member(name=name, method=self._deflated(size), chunks=None, nbytes=0, source=data)
                    self._inbox.put_nowait(member)
            self._inbox.put_nowait(_END)
        except BaseException:
            for _, _, task in reads:
                task.cancel()
            await asyncio.gather(*(task for _, _, task in reads), return_exceptions=True)
            self._inbox.put_nowait(_ABORT)
            raise

    def _deflated(self, size: int) -> Method:
        return ZIP_64 if self._force_zip64 else ZIP_AUTO(size, level=_MANIFEST_LEVEL)

    async def _read(self, key: str) -> _Read:
        """Read a member into memory, or, past `buffer_bytes`, only its size and CRC."""
        if isinstance(self._source, FileStore):
            assert self._file_reader is not None
            data = await _read_small_file(self._source, key, self._buffer_bytes, self._file_reader)
            if data is not None:
                return _Read(chunks=(data,), size=len(data), crc_32=None)
        chunks: list[bytes] = []
        size = 0
        crc_32: int | None = None
        reader = self._source.read(key, chunk_bytes=DEFAULT_CHUNK_BYTES)
        try:
            async for chunk in reader:
                size += len(chunk)
                if crc_32 is not None:
                    crc_32 = await asyncio.to_thread(zlib.crc32, chunk, crc_32)
                    continue
                chunks.append(chunk)
                if size > self._buffer_bytes:  # too big to hold: keep only its CRC, read it again later
                    crc_32 = 0
                    for held in chunks:
                        crc_32 = await asyncio.to_thread(zlib.crc32, held, crc_32)
                    chunks = []
        finally:
            await _close(reader)
        if crc_32 is not None:
            return _Read(chunks=None, size=size, crc_32=crc_32)
        return _Read(chunks=tuple(chunks), size=size, crc_32=None)

    async def _submit(self, entry: ZipEntry, name: str, task: "asyncio.Task[_Read]") -> None:
        try:
            read = await task
        except ObjectNotFoundError:
            if not self._missing_ok:
                raise
            log.warning("zip member %s has no source object; left out", entry.key, extra={"action": "zip"})
            self.missing.append(entry.key)
            return
        method = _Stored(
            self,
            size=read.size,
            crc_32=read.crc_32,
            force_64=self._force_zip64 or self.entries_done >= _MAX_32_MEMBERS,
        )
        if read.chunks is not None:
            await self._enqueue(_Member(name=name, method=method, chunks=read.chunks, nbytes=read.size))
        else:
            await self._enqueue(_Member(name=name, method=method, chunks=None, nbytes=0))
            reader = self._source.read(entry.key, chunk_bytes=DEFAULT_CHUNK_BYTES)
            try:
                async for chunk in reader:
                    await self._enqueue(chunk)
            finally:
                await _close(reader)
            self._inbox.put_nowait(None)
        self.entries_done += 1
        self.bytes_done += read.size
        self.renamed += int(name != entry.name)
        if self._progress is not None:
            self._progress(ZipProgress(entries_done=self.entries_done, bytes_done=self.bytes_done, key=entry.key))

    async def _enqueue(self, item: _Member | bytes) -> None:
        await self._budget.take(_size(item))
        self._inbox.put_nowait(item)

    async def _next_batch(self) -> list[_Item]:
        """Hand the zip thread every item waiting (at least one), so it crosses threads once per batch."""
        items = [await self._inbox.get()]
        while not self._inbox.empty():
            items.append(self._inbox.get_nowait())
        await self._budget.give(sum(_size(item) for item in items))
        return items

    # -- zip-thread side --------------------------------------------------------------------------------------

    def _take(self) -> _Item:
        if not self._pending:
            assert self._loop is not None
            future = asyncio.run_coroutine_threadsafe(self._next_batch(), self._loop)
            while True:
                try:
                    self._pending.extend(future.result(timeout=1.0))
                    break
                except FutureTimeoutError:
                    if self._loop.is_closed():
                        raise _Aborted from None
        item = self._pending.popleft()
        if item is _ABORT:
            raise _Aborted
        return item

    def _members(self) -> Iterator[MemberFile]:
        while (item := self._take()) is not _END:
            assert isinstance(item, _Member)
            if item.chunks is not None:
                chunks: Iterable[bytes] = item.chunks
            elif item.source is not None:
                chunks = item.source()
            else:
                chunks = self._streamed_chunks()
            yield item.name, self._modified_at, _FILE_MODE, item.method, chunks

    def _streamed_chunks(self) -> Iterator[bytes]:
        while (item := self._take()) is not None:
            assert isinstance(item, bytes)
            yield item


def _coalesced(chunks: Iterable[bytes], chunk_bytes: int) -> Generator[bytes, None, None]:
    """Join stream-zip's small pieces into chunks of about `chunk_bytes`; pass big ones through (zip thread side).

    stream-zip cuts its output at every member's header, so small members would otherwise cost one thread hop
    and one store write each. A piece of `_PASS_BYTES` or more (a member's data, in practice) is not copied
    again: joining it would cost as much as the rest of the zipping.
    """
    pending: list[bytes] = []
    pending_bytes = 0
    for chunk in chunks:
        if len(chunk) >= min(_PASS_BYTES, chunk_bytes):
            if pending:
                yield b"".join(pending)
                pending, pending_bytes = [], 0
            yield chunk
            continue
        pending.append(chunk)
        pending_bytes += len(chunk)
        if pending_bytes >= chunk_bytes:
            yield b"".join(pending)
            pending, pending_bytes = [], 0
    if pending:
        yield b"".join(pending)


async def _read_small_file(store: FileStore, key: str, limit: int, executor: ThreadPoolExecutor) -> bytes | None:
    """Read a file store's object of up to `limit` bytes in one thread hop; None when it is larger.

    `FileStore.read` costs four hops a member (open, read, end of file, close), and its `read(chunk_bytes)` of a
    smaller file is slow (see below), which made reading the bottleneck of a ZIP of 1 MB images. This reads the
    same file through the same key checks. A file that grows past `limit` between the size check and the read
    is still read whole: the limit bounds memory, it is not a correctness check.
    """

    def read() -> bytes | None:
        try:
            with open(store.fs_path(key), "rb") as handle:
                if os.fstat(handle.fileno()).st_size > limit:
                    return None
                # Not read(limit): a read larger than the file allocates that much, then copies the bytes into a
                # smaller object (ten times slower for 1 MB files); read() sizes its buffer by the file.
                return handle.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(key) from exc

    try:
        return await asyncio.get_running_loop().run_in_executor(executor, read)
    except OSError as exc:
        raise StorageUnavailableError(f"file store I/O failed: {exc.strerror or exc}") from exc


def _measure(source: Callable[[], Iterable[bytes]]) -> int:
    return sum(len(chunk) for chunk in source())


def _size(item: _Item) -> int:
    if isinstance(item, _Member):
        return item.nbytes
    if isinstance(item, bytes):
        return len(item)
    return 0


async def _each(entries: Iterable[ZipEntry] | AsyncIterable[ZipEntry]) -> AsyncIterator[ZipEntry]:
    if isinstance(entries, AsyncIterable):
        async for entry in entries:
            yield entry
    else:
        for entry in entries:
            yield entry


async def _close(reader: AsyncIterator[bytes]) -> None:
    """Close a store's reader now (it holds a file or an HTTP response), not when it is collected."""
    aclose = getattr(reader, "aclose", None)
    if aclose is not None:
        await aclose()
