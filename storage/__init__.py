"""Object storage shared by the bot and the worker: `open_store(url)` → memory, file or S3 store; `write_zip`."""

from typing import TYPE_CHECKING, Any

from storage.base import Body, ObjectInfo, Store
from storage.errors import (
    InvalidKeyError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
    StoreConfigError,
)
from storage.keys import validate_key
from storage.links import LinkSigner
from storage.open import open_store
from usertext.names import ArchiveNames, sanitize_name

if TYPE_CHECKING:
    from storage.zipwriter import ZipEntry, ZipProgress, ZipSummary, write_zip

# The ZIP writer is imported on first use: stream-zip pulls in pycryptodome, which would add ~0.2 s to every
# process that imports `storage` (the worker never writes ZIPs).
_LAZY = frozenset({"ZipEntry", "ZipProgress", "ZipSummary", "write_zip"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from storage import zipwriter

        return getattr(zipwriter, name)
    raise AttributeError(f"module 'storage' has no attribute {name!r}")


__all__ = [
    "ArchiveNames",
    "Body",
    "InvalidKeyError",
    "LinkSigner",
    "ObjectInfo",
    "ObjectNotFoundError",
    "StorageError",
    "StorageUnavailableError",
    "Store",
    "StoreConfigError",
    "ZipEntry",
    "ZipProgress",
    "ZipSummary",
    "open_store",
    "sanitize_name",
    "validate_key",
    "write_zip",
]
