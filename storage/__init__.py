"""Object storage shared by the bot and the worker: `open_store(url)` → memory, file or S3 store."""

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

__all__ = [
    "Body",
    "InvalidKeyError",
    "LinkSigner",
    "ObjectInfo",
    "ObjectNotFoundError",
    "StorageError",
    "StorageUnavailableError",
    "Store",
    "StoreConfigError",
    "open_store",
    "validate_key",
]
