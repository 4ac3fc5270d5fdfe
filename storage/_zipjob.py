"""One ZIP being written by `storage.zipwriter.write_zip`.

A producer task reads the members on the event loop, and one thread of its own runs stream-zip over them; the
output goes to a byte stream or straight into a file store.
"""

import asyncio
import logging
import zlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from datetime import datetime
from typing import NoReturn

from stream_zip import ZIP_64, ZIP_AUTO, MemberFile, Method, ZipError, stream_zip

from storage._zipparts import (
    ABORT,
    END,
    FILE_CHUNK_BYTES,
    FILE_MODE,
    INBOX_BYTES,
    MANIFEST_LEVEL,
    MAX_32_MEMBERS,
    OUT_CHUNK_BYTES,
    OUT_QUEUE_CHUNKS,
    Aborted,
    Budget,
    Item,
    Member,
    Read,
    StoredMethod,
    close_reader,
    coalesced,
    each_entry,
    item_size,
    measure,
    read_small_file,
)
from storage.base import DEFAULT_CHUNK_BYTES, Store
from storage.errors import ObjectNotFoundError, StorageError
from storage.file import FileStore
from storage.keys import validate_key
from storage.ziptypes import (
    MANIFEST_CSV_NAME,
    MANIFEST_JSON_NAME,
    ManifestBody,
    ZipEntry,
    ZipProgress,
    ZipProgressCallback,
)
from usertext.names import ArchiveNames

log = logging.getLogger("storage.zipwriter")  # the name operators filter on, as before the job had its module


class ZipJob:
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
        self._inbox: asyncio.Queue[Item] = asyncio.Queue()  # bounded by `_budget`, so `put_nowait` is safe
        self._budget = Budget(INBOX_BYTES)
        self._out: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(OUT_QUEUE_CHUNKS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: deque[Item] = deque()  # zip thread only
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

    def _zipped(self, chunk_bytes: int = OUT_CHUNK_BYTES) -> Generator[bytes, None, None]:
        """The archive as chunks (zip thread side): small pieces joined into about `chunk_bytes`, big ones as is."""
        return coalesced(
            stream_zip(
                self._members(),
                chunk_size=chunk_bytes,
                get_compressobj=lambda: zlib.compressobj(level=MANIFEST_LEVEL, wbits=-zlib.MAX_WBITS),
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
            except (Aborted, ZipError) as exc:
                await self._raise_for(producer, exc)
            await producer
            return size
        finally:
            await asyncio.shield(self._stop_writer(producer, writer, executor))

    def _write_into(self, dest: FileStore, key: str) -> int:
        size = 0
        with dest.writing(key) as handle:
            for chunk in self._zipped(FILE_CHUNK_BYTES):
                handle.write(chunk)
                size += len(chunk)
        return size

    async def _stop_writer(
        self, producer: "asyncio.Task[None]", writer: "asyncio.Future[int]", executor: ThreadPoolExecutor
    ) -> None:
        producer.cancel()
        self._inbox.put_nowait(ABORT)  # wakes the zip thread if it waits for a member; it removes its file
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
        self._inbox.put_nowait(ABORT)  # wakes the zip thread if it waits for a member
        await asyncio.wait({producer, stepper})
        # The executor has one thread, so this runs after any step still in flight has returned.
        await self._loop.run_in_executor(executor, zipped.close)
        await self._shutdown(executor)

    async def _produce(self) -> None:
        reads: deque[tuple[ZipEntry, str, asyncio.Task[Read]]] = deque()
        try:
            async for entry in each_entry(self._entries):
                validate_key(entry.key)
                name = self._names.add(entry.name)
                reads.append((entry, name, asyncio.create_task(self._read(entry.key))))
                if len(reads) > self._read_ahead:
                    await self._submit(*reads.popleft())
            while reads:
                await self._submit(*reads.popleft())
            for name, data in self._manifests:
                if isinstance(data, bytes):
                    member = Member(name=name, method=self._deflated(len(data)), chunks=(data,), nbytes=len(data))
                    await self._enqueue(member)
                else:
                    size = await asyncio.to_thread(measure, data)
                    member = Member(name=name, method=self._deflated(size), chunks=None, nbytes=0, source=data)
                    self._inbox.put_nowait(member)
            self._inbox.put_nowait(END)
        except BaseException:
            for _, _, task in reads:
                task.cancel()
            await asyncio.gather(*(task for _, _, task in reads), return_exceptions=True)
            self._inbox.put_nowait(ABORT)
            raise

    def _deflated(self, size: int) -> Method:
        return ZIP_64 if self._force_zip64 else ZIP_AUTO(size, level=MANIFEST_LEVEL)

    async def _read(self, key: str) -> Read:
        """Read a member into memory, or, past `buffer_bytes`, only its size and CRC."""
        if isinstance(self._source, FileStore):
            assert self._file_reader is not None
            data = await read_small_file(self._source, key, self._buffer_bytes, self._file_reader)
            if data is not None:
                return Read(chunks=(data,), size=len(data), crc_32=None)
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
            await close_reader(reader)
        if crc_32 is not None:
            return Read(chunks=None, size=size, crc_32=crc_32)
        return Read(chunks=tuple(chunks), size=size, crc_32=None)

    async def _submit(self, entry: ZipEntry, name: str, task: "asyncio.Task[Read]") -> None:
        try:
            read = await task
        except ObjectNotFoundError:
            if not self._missing_ok:
                raise
            log.warning("zip member %s has no source object; left out", entry.key, extra={"action": "zip"})
            self.missing.append(entry.key)
            return
        method = StoredMethod(
            self,
            size=read.size,
            crc_32=read.crc_32,
            force_64=self._force_zip64 or self.entries_done >= MAX_32_MEMBERS,
        )
        if read.chunks is not None:
            await self._enqueue(Member(name=name, method=method, chunks=read.chunks, nbytes=read.size))
        else:
            await self._enqueue(Member(name=name, method=method, chunks=None, nbytes=0))
            reader = self._source.read(entry.key, chunk_bytes=DEFAULT_CHUNK_BYTES)
            try:
                async for chunk in reader:
                    await self._enqueue(chunk)
            finally:
                await close_reader(reader)
            self._inbox.put_nowait(None)
        self.entries_done += 1
        self.bytes_done += read.size
        self.renamed += int(name != entry.name)
        if self._progress is not None:
            self._progress(ZipProgress(entries_done=self.entries_done, bytes_done=self.bytes_done, key=entry.key))

    async def _enqueue(self, item: Member | bytes) -> None:
        await self._budget.take(item_size(item))
        self._inbox.put_nowait(item)

    async def _next_batch(self) -> list[Item]:
        """Hand the zip thread every item waiting (at least one), so it crosses threads once per batch."""
        items = [await self._inbox.get()]
        while not self._inbox.empty():
            items.append(self._inbox.get_nowait())
        await self._budget.give(sum(item_size(item) for item in items))
        return items

    # -- zip-thread side --------------------------------------------------------------------------------------

    def _take(self) -> Item:
        if not self._pending:
            assert self._loop is not None
            future = asyncio.run_coroutine_threadsafe(self._next_batch(), self._loop)
            while True:
                try:
                    self._pending.extend(future.result(timeout=1.0))
                    break
                except FutureTimeoutError:
                    if self._loop.is_closed():
                        raise Aborted from None
        item = self._pending.popleft()
        if item is ABORT:
            raise Aborted
        return item

    def _members(self) -> Iterator[MemberFile]:
        while (item := self._take()) is not END:
            assert isinstance(item, Member)
            if item.chunks is not None:
                chunks: Iterable[bytes] = item.chunks
            elif item.source is not None:
                chunks = item.source()
            else:
                chunks = self._streamed_chunks()
            yield item.name, self._modified_at, FILE_MODE, item.method, chunks

    def _streamed_chunks(self) -> Iterator[bytes]:
        while (item := self._take()) is not None:
            assert isinstance(item, bytes)
            yield item
