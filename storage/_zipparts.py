"""The pieces of a ZIP being written (`storage._zipjob`).

Members on their way to the zip thread, the method that stores them, the byte budget between the two sides, and
the small helpers around store reads.
"""

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from stream_zip import NO_COMPRESSION_32, NO_COMPRESSION_64, Method

from storage.errors import ObjectNotFoundError, StorageUnavailableError
from storage.file import FileStore
from storage.ziptypes import ZipEntry

if TYPE_CHECKING:
    import zlib

    from storage._zipjob import ZipJob

MIB = 1024 * 1024
OUT_CHUNK_BYTES = MIB  # what `dest.put` receives: big enough for one write or one thread hop per MiB
# Into a file store the zip thread writes itself: a write per 128 KiB costs nothing, and 1 MiB pieces held while
# they fill and write came to 3 MB of a 10,000-member archive's peak.
FILE_CHUNK_BYTES = 128 * 1024
OUT_QUEUE_CHUNKS = 4
PASS_BYTES = 256 * 1024  # output pieces this big are passed on without joining
INBOX_BYTES = 8 * MIB  # members read and waiting for the zip thread
FILE_MODE = 0o100644  # a regular file, rw-r--r--
MAX_32 = 0xFFFFFFFF
MAX_32_MEMBERS = 0xFFFF
HEADER_SLACK = 0x20000  # more than a local header with the longest name can take
MANIFEST_LEVEL = 6


class StoredMethod(Method):
    """STORED with the size and CRC in the local header; ZIP64 only when this member needs it."""

    def __init__(self, job: "ZipJob", *, size: int, crc_32: int | None, force_64: bool) -> None:
        self._job = job
        self._size = size
        self._crc_32 = crc_32
        self._force_64 = force_64

    def _get(
        self, offset: int, default_get_compressobj: Callable[[], "zlib._Compress"]
    ) -> tuple[object, object, Callable[[], "zlib._Compress"], int, int]:
        # Called by stream-zip (in the zip thread) with the member's offset, just before writing it.
        wide = self._force_64 or offset + self._size + HEADER_SLACK > MAX_32
        if wide:
            self._job.used_zip64 = True
        base = NO_COMPRESSION_64 if wide else NO_COMPRESSION_32
        # Without a CRC stream-zip buffers the member's chunks (already in memory) to compute it.
        method = base if self._crc_32 is None else base(self._size, self._crc_32)
        return method._get(offset, default_get_compressobj)  # delegating, as stream-zip's methods do


@dataclass(slots=True)
class Member:
    """A member ready for the zip thread; `chunks` None means its chunks follow in the inbox, then None."""

    name: str
    method: Method
    chunks: tuple[bytes, ...] | None
    nbytes: int
    source: Callable[[], Iterable[bytes]] | None = None  # yields the chunks instead (a streamed manifest)


@dataclass(slots=True)
class Read:
    """A member read ahead: its chunks (small members) or its size and CRC (members read twice)."""

    chunks: tuple[bytes, ...] | None
    size: int
    crc_32: int | None


class Aborted(Exception):  # noqa: N818 - internal signal, never escapes
    """Raised in the zip thread when the event-loop side gave up."""


END: Final = object()  # no more members
ABORT: Final = object()  # the event-loop side gave up
Item = Member | bytes | None | object


class Budget:
    """Bytes waiting for the zip thread; a producer waits while they exceed the limit (loop side only)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._changed = asyncio.Condition()

    async def take(self, nbytes: int) -> None:
        """Wait until `nbytes` more fit (or nothing is waiting), then count them."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._used == 0 or self._used + nbytes <= self._limit)
            self._used += nbytes

    async def give(self, nbytes: int) -> None:
        """Count `nbytes` as handed to the zip thread."""
        async with self._changed:
            self._used -= nbytes
            self._changed.notify_all()


def coalesced(chunks: Iterable[bytes], chunk_bytes: int) -> Generator[bytes, None, None]:
    """Join stream-zip's small pieces into chunks of about `chunk_bytes`; pass big ones through (zip thread side).

    stream-zip cuts its output at every member's header, so small members would otherwise cost one thread hop
    and one store write each. A piece of `PASS_BYTES` or more (a member's data, in practice) is not copied
    again: joining it would cost as much as the rest of the zipping.
    """
    pending: list[bytes] = []
    pending_bytes = 0
    for chunk in chunks:
        if len(chunk) >= min(PASS_BYTES, chunk_bytes):
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


async def read_small_file(store: FileStore, key: str, limit: int, executor: ThreadPoolExecutor) -> bytes | None:
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


def measure(source: Callable[[], Iterable[bytes]]) -> int:
    """Return how many bytes a streamed manifest yields."""
    return sum(len(chunk) for chunk in source())


def item_size(item: Item) -> int:
    """Return the bytes an inbox item holds against the budget."""
    if isinstance(item, Member):
        return item.nbytes
    if isinstance(item, bytes):
        return len(item)
    return 0


async def each_entry(entries: Iterable[ZipEntry] | AsyncIterable[ZipEntry]) -> AsyncIterator[ZipEntry]:
    """Iterate over entries given as a plain or an async iterable."""
    if isinstance(entries, AsyncIterable):
        async for entry in entries:
            yield entry
    else:
        for entry in entries:
            yield entry


async def close_reader(reader: AsyncIterator[bytes]) -> None:
    """Close a store's reader now (it holds a file or an HTTP response), not when it is collected."""
    aclose = getattr(reader, "aclose", None)
    if aclose is not None:
        await aclose()
