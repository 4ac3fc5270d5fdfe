"""Copy objects between any two stores by streaming, in bounded memory (a group export to a bucket uses it).

Two S3 stores on the same endpoint with the same credentials copy server-side (no bytes pass through us).
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from storage.base import DEFAULT_CHUNK_BYTES, ObjectInfo, Store
from storage.errors import ObjectNotFoundError
from storage.keys import validate_key, validate_prefix

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyProgress:
    """How far a copy has got: objects finished and bytes moved so far, and the key last worked on."""

    objects_done: int
    bytes_done: int
    key: str


ProgressCallback = Callable[[CopyProgress], object]
"""Called after every chunk and every finished object; it must be quick and must not block."""


class _Counter:
    def __init__(self, progress: ProgressCallback | None) -> None:
        self.objects_done = 0
        self.bytes_done = 0
        self._progress = progress

    def add(self, key: str, *, nbytes: int = 0, objects: int = 0) -> None:
        self.bytes_done += nbytes
        self.objects_done += objects
        if self._progress is not None:
            self._progress(CopyProgress(objects_done=self.objects_done, bytes_done=self.bytes_done, key=key))

    def snapshot(self, key: str) -> CopyProgress:
        return CopyProgress(objects_done=self.objects_done, bytes_done=self.bytes_done, key=key)


async def copy_object(
    src: Store,
    src_key: str,
    dst: Store,
    dst_key: str,
    *,
    progress: ProgressCallback | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> ObjectInfo:
    """Copy one object, keeping its content type; the destination appears only once it is whole.

    Raises:
        ObjectNotFoundError: `src` has no object under `src_key`.
        InvalidKeyError: either key is malformed.
    """
    return await _copy_one(src, src_key, dst, dst_key, _Counter(progress), chunk_bytes)


async def _copy_one(
    src: Store, src_key: str, dst: Store, dst_key: str, counter: _Counter, chunk_bytes: int
) -> ObjectInfo:
    validate_key(src_key)
    validate_key(dst_key)
    info = await src.head(src_key)
    if info is None:
        raise ObjectNotFoundError(src_key)
    server_side = await _server_side_copy(src, src_key, dst, dst_key, info)
    if server_side is not None:
        counter.add(src_key, nbytes=server_side.size, objects=1)
        return server_side

    async def counted() -> AsyncIterator[bytes]:
        async for chunk in src.read(src_key, chunk_bytes=chunk_bytes):
            yield chunk
            counter.add(src_key, nbytes=len(chunk))

    written = await dst.put(dst_key, counted(), content_type=info.content_type)
    counter.add(src_key, objects=1)
    return written


async def _server_side_copy(src: Store, src_key: str, dst: Store, dst_key: str, info: ObjectInfo) -> ObjectInfo | None:
    """Copy inside S3 when both stores can reach each other's buckets with one client; else return None."""
    from storage.s3 import S3Store  # imported lazily: only S3 users pay for boto3

    if isinstance(src, S3Store) and isinstance(dst, S3Store) and dst.can_copy_from(src):
        return await dst.copy_from(src, src_key, dst_key, content_type=info.content_type, size=info.size)
    return None


async def copy_prefix(
    src: Store,
    prefix: str,
    dst: Store,
    dst_prefix: str = "",
    *,
    progress: ProgressCallback | None = None,
    concurrency: int = 4,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> CopyProgress:
    """Copy every object whose key starts with `prefix` to `dst`, replacing `prefix` by `dst_prefix`.

    At most `concurrency` objects are in flight, so memory stays bounded whatever the count. On the first
    failure the other copies are cancelled and the error is raised; objects already copied stay.

    Returns:
        The totals: objects copied and bytes moved.

    Raises:
        ValueError: source and destination are the same store and the prefixes overlap.
    """
    validate_prefix(prefix)
    validate_prefix(dst_prefix)
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if src is dst and (dst_prefix.startswith(prefix) or prefix.startswith(dst_prefix)):
        raise ValueError(f"copying {prefix!r} onto {dst_prefix!r} in the same store would read its own output")
    counter = _Counter(progress)
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=concurrency)

    async def worker() -> None:
        while (key := await queue.get()) is not None:
            await _copy_one(src, key, dst, dst_prefix + key.removeprefix(prefix), counter, chunk_bytes)

    async with asyncio.TaskGroup() as group:
        workers = [group.create_task(worker()) for _ in range(concurrency)]
        # If a worker fails, the task group cancels this loop too, so a full queue cannot hang it.
        async for info in src.list(prefix):
            await queue.put(info.key)
        for _ in workers:
            await queue.put(None)
    log.info("copied %d objects (%d bytes) from %s to %s", counter.objects_done, counter.bytes_done, prefix, dst_prefix)
    return counter.snapshot(prefix)
