"""The `Store` port every backend implements, and the small value types it trades in."""

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

DEFAULT_CHUNK_BYTES = 1024 * 1024

Body = bytes | AsyncIterable[bytes]


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectInfo:
    """What a store knows about one object."""

    key: str
    size: int
    content_type: str
    modified_at: datetime | None = None


@runtime_checkable
class Store(Protocol):
    """An object store addressed by validated keys (see `storage.keys`).

    Writes are atomic: a reader sees the whole old object, the whole new one, or none. No method holds a large
    object in memory: `put` consumes an async byte stream and `read` yields chunks.
    """

    @property
    def url(self) -> str:
        """The URL this store was opened from, without credentials."""
        ...

    async def put(self, key: str, body: Body, *, content_type: str | None = None) -> ObjectInfo:
        """Write `body` (bytes or an async iterable of bytes) under `key`, replacing any object there."""
        ...

    def read(self, key: str, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> AsyncIterator[bytes]:
        """Stream the object's bytes; raises ObjectNotFoundError when the first chunk is asked for."""
        ...

    async def read_range(self, key: str, start: int, end: int) -> bytes:
        """Return bytes `start` to `end` (exclusive) of the object; for small ranges."""
        ...

    async def get_bytes(self, key: str) -> bytes:
        """Return the whole object; for small objects only."""
        ...

    async def head(self, key: str) -> ObjectInfo | None:
        """Return the object's info, or None when there is none."""
        ...

    async def exists(self, key: str) -> bool:
        """Tell whether an object exists under `key`."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Yield the objects whose key starts with `prefix`, in key order."""
        ...

    async def delete(self, key: str) -> None:
        """Delete the object; deleting a missing key is not an error."""
        ...

    async def url_for(self, key: str, *, expires_s: int, filename: str | None = None) -> str:
        """Return a URL that serves the object until it expires (signed link or presigned URL)."""
        ...

    async def close(self) -> None:
        """Release the store's resources."""
        ...
