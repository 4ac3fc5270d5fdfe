"""An in-memory store for unit tests and throwaway runs (`memory://`)."""

import asyncio
import mimetypes
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from storage.base import DEFAULT_CHUNK_BYTES, Body, ObjectInfo
from storage.errors import ObjectNotFoundError, StoreConfigError
from storage.keys import validate_key, validate_prefix
from storage.links import LinkSigner


def guess_content_type(key: str) -> str:
    """Guess a content type from a key's extension."""
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class MemoryStore:
    """Objects kept in a dict; `put` of a stream completes before the object becomes visible."""

    def __init__(self, url: str = "memory://", *, signer: LinkSigner | None = None) -> None:
        self._url = url
        self._signer = signer
        self._objects: dict[str, tuple[bytes, ObjectInfo]] = {}

    @property
    def url(self) -> str:
        """The URL this store was opened from."""
        return self._url

    async def put(self, key: str, body: Body, *, content_type: str | None = None) -> ObjectInfo:
        """Store `body` under `key` atomically."""
        validate_key(key)
        if isinstance(body, bytes | bytearray | memoryview):
            data = bytes(body)
        else:
            data = b"".join([chunk async for chunk in body])
        info = ObjectInfo(
            key=key,
            size=len(data),
            content_type=content_type or guess_content_type(key),
            modified_at=datetime.now(UTC),
        )
        self._objects[key] = (data, info)
        return info

    def _get(self, key: str) -> tuple[bytes, ObjectInfo]:
        validate_key(key)
        try:
            return self._objects[key]
        except KeyError:
            raise ObjectNotFoundError(key) from None

    async def read(self, key: str, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> AsyncIterator[bytes]:
        """Yield the object's bytes in chunks."""
        data, _ = self._get(key)
        for start in range(0, len(data), chunk_bytes):
            yield data[start : start + chunk_bytes]
            await asyncio.sleep(0)

    async def read_range(self, key: str, start: int, end: int) -> bytes:
        """Return bytes `start` to `end` (exclusive)."""
        data, _ = self._get(key)
        return data[start:end]

    async def get_bytes(self, key: str) -> bytes:
        """Return the whole object."""
        return self._get(key)[0]

    async def head(self, key: str) -> ObjectInfo | None:
        """Return the object's info or None."""
        validate_key(key)
        entry = self._objects.get(key)
        return entry[1] if entry else None

    async def exists(self, key: str) -> bool:
        """Tell whether the key exists."""
        return await self.head(key) is not None

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Yield objects under `prefix` in key order."""
        validate_prefix(prefix)
        for key in sorted(k for k in self._objects if k.startswith(prefix)):
            entry = self._objects.get(key)
            if entry is not None:
                yield entry[1]

    async def delete(self, key: str) -> None:
        """Delete the key if present."""
        validate_key(key)
        self._objects.pop(key, None)

    async def url_for(self, key: str, *, expires_s: int, filename: str | None = None) -> str:
        """Return a signed link served by the bot's web server."""
        if self._signer is None:
            raise StoreConfigError("this memory store has no link signer, so it cannot make links")
        self._get(key)
        return self._signer.sign(key, expires_s=expires_s, filename=filename)

    async def close(self) -> None:
        """Nothing to release."""
