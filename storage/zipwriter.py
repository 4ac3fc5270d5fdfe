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

import logging
from collections.abc import AsyncIterable, Iterable
from datetime import UTC, datetime

from storage._zipjob import ZipJob
from storage._zipparts import MIB
from storage.base import Store
from storage.file import FileStore
from storage.keys import validate_key
from storage.ziptypes import (
    MANIFEST_CSV_NAME,
    MANIFEST_JSON_NAME,
    ManifestBody,
    ZipEntry,
    ZipProgress,
    ZipProgressCallback,
    ZipSummary,
)

__all__ = [
    "MANIFEST_CSV_NAME",
    "MANIFEST_JSON_NAME",
    "ManifestBody",
    "ZipEntry",
    "ZipProgress",
    "ZipProgressCallback",
    "ZipSummary",
    "write_zip",
]

log = logging.getLogger(__name__)


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
    buffer_bytes: int = 8 * MIB,
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
    job = ZipJob(
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
