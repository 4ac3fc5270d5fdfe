"""What `storage.zipwriter.write_zip` takes and returns: members, manifests, progress and the summary."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

MANIFEST_CSV_NAME: Final = "manifest.csv"
MANIFEST_JSON_NAME: Final = "manifest.json"


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
