"""Errors raised by the storage package.

StorageError
├── InvalidKeyError          a key that could escape the store or is not well formed (permanent)
├── ObjectNotFoundError      no object under that key (permanent)
├── StoreConfigError         a store URL or setting that cannot work (permanent)
└── StorageUnavailableError  the backend failed or timed out (transient: retry)
"""


class StorageError(Exception):
    """Base of every error the storage package raises."""


class InvalidKeyError(StorageError, ValueError):
    """A key was refused: absolute, `..`, backslash, control character, or otherwise malformed."""


class ObjectNotFoundError(StorageError, KeyError):
    """No object exists under the key."""

    def __str__(self) -> str:
        return f"no object at key {self.args[0]!r}" if self.args else "object not found"


class StoreConfigError(StorageError, ValueError):
    """A store URL or setting is unusable."""


class StorageUnavailableError(StorageError):
    """The backend failed or timed out; the operation may succeed if retried."""
