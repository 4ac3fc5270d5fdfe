"""Batch and group downloads: a ZIP of a job's (or a thread's) images plus both manifests, behind a link.

The dispatcher (or the group cog) turns its ledger rows into `bot.core.manifest.ManifestRow`s; `build_zip` names
the members, renders the manifests, streams the archive into `zips/{id}/{name}.zip` with the streaming ZIP writer
and returns a link that downloads it (signed for file stores, presigned for S3).
"""

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bot.core.manifest import (
    ItemStatus,
    ManifestHeader,
    ManifestRow,
    OutputNamer,
    iter_csv,
    iter_json,
)
from bot.net.urlfetch import open_for_writing
from bot.web.links import link_for
from storage.base import Store
from storage.errors import InvalidKeyError, ObjectNotFoundError
from storage.file import FileStore
from storage.keys import validate_key
from storage.links import LinkSigner
from storage.zipwriter import MANIFEST_CSV_NAME, MANIFEST_JSON_NAME, ZipEntry, ZipSummary, write_zip

log = logging.getLogger(__name__)

DEFAULT_LINK_EXPIRES_S = 7 * 24 * 3600
_COPY_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ZipDownload:
    """A written archive and the link to it."""

    key: str  # the archive's key in the destination store
    url: str  # a secret until it expires: never log it
    filename: str  # the name browsers save it under
    size: int  # bytes
    images: int  # image members
    not_included: int  # rows without an image (failed, cancelled or skipped)
    rows: tuple[ManifestRow, ...]  # the rows as the manifests report them, member names filled in


MISSING_CODE = "MISSING"
MISSING_REASON = "the image is no longer in the store"
_EXISTS_CONCURRENCY = 16


async def _write(
    source: Store, dest: Store, key: str, header: ManifestHeader, rows: Sequence[ManifestRow]
) -> ZipSummary:
    return await write_zip(
        source,
        (ZipEntry(key=row.output_key, name=row.output_name) for row in rows if row.output_key and row.output_name),
        dest,
        key,
        # Rendered piece by piece as they are written (twice: once to measure), never whole in memory.
        manifest_csv=lambda: (piece.encode() for piece in iter_csv(rows)),
        manifest_json=lambda: (piece.encode() for piece in iter_json(header, rows)),
        modified_at=header.created_at,
    )


async def _mark_missing(source: Store, rows: Sequence[ManifestRow]) -> list[ManifestRow]:
    """Return the rows with every `ok` row whose image is not in `source` turned into a MISSING error."""
    slots = asyncio.Semaphore(_EXISTS_CONCURRENCY)

    async def check(row: ManifestRow) -> ManifestRow:
        if not row.has_file or row.output_key is None:
            return row
        async with slots:
            if await source.exists(row.output_key):
                return row
        return replace(
            row, status=ItemStatus.ERROR, output_name=None, error_code=MISSING_CODE, error_reason=MISSING_REASON
        )

    # In slices: a task per row at once would be 10,000 tasks for a batch whose store lost an image.
    checked: list[ManifestRow] = []
    step = 8 * _EXISTS_CONCURRENCY
    for start in range(0, len(rows), step):
        checked += await asyncio.gather(*(check(row) for row in rows[start : start + step]))
    return checked


async def _named(rows: Iterable[ManifestRow] | AsyncIterable[ManifestRow]) -> list[ManifestRow]:
    """Return the rows with their member names, taking each as it comes: a streamed row is never held twice."""
    namer = OutputNamer(reserved=(MANIFEST_CSV_NAME, MANIFEST_JSON_NAME))
    if isinstance(rows, AsyncIterable):
        return [namer(row) async for row in rows]
    return [namer(row) for row in rows]


def zip_key(owner_id: str, name: str) -> str:
    """Return the key of a download archive: `zips/{job or group id}/{name}.zip`.

    Raises:
        InvalidKeyError: the id or name is empty, has a `/`, or would make a malformed key.
    """
    if not owner_id or not name or "/" in owner_id or "/" in name:
        raise InvalidKeyError(f"unusable archive id or name: {owner_id!r}, {name!r}")
    return validate_key(f"zips/{owner_id}/{name}.zip")


async def build_zip(
    source: Store,
    dest: Store,
    *,
    header: ManifestHeader,
    rows: Iterable[ManifestRow] | AsyncIterable[ManifestRow],
    name: str = "results",
    filename: str | None = None,
    expires_s: int = DEFAULT_LINK_EXPIRES_S,
    signer: LinkSigner | None = None,
) -> ZipDownload:
    """Write a ZIP of the rows' images and both manifests, and return a link to it.

    Args:
        source: the store holding the images (`ManifestRow.output_key`).
        dest: the store the archive goes to (usually the same store).
        header: the manifest summary; its `job_id` (a job or group id) names the archive's folder.
        rows: one per item, in the order they appear in the manifests and the archive; read once, so a
            generator (rows streamed from the ledger) is never held alongside the named copy.
        name: the archive's name in the store, without `.zip`.
        filename: the name the link downloads as (default `{name}.zip`).
        expires_s: how long the link works (S3 caps it at a week).
        signer: signs the link for file and memory stores opened without one.

    Raises:
        InvalidKeyError: the job id or name would make a malformed key.
        ObjectNotFoundError: never for a missing image: its row is reported as a MISSING error instead.
        StorageError: a store failed.
    """
    key = zip_key(header.job_id, name)
    named = await _named(rows)
    try:
        summary = await _write(source, dest, key, header, named)
    except ObjectNotFoundError as exc:
        # An image the ledger calls made is gone from the store (deleted, or a lost write). The user still gets
        # every other image: that row becomes an error in the manifests, and the archive is written again.
        log.warning("zip %s: an output is missing (%s); rows without a stored image marked", key, exc)
        named = await _mark_missing(source, named)
        summary = await _write(source, dest, key, header, named)
    images = sum(1 for row in named if row.output_key and row.output_name)
    if summary.renamed:
        # Names are chosen here so that the manifests can name each member; a rename means they disagree.
        log.warning("zip %s: %d member(s) renamed by the writer; the manifest names differ", key, summary.renamed)
    download_name = filename or f"{name}.zip"
    url = await link_for(dest, key, expires_s=expires_s, filename=download_name, signer=signer)
    log.info(
        "download %s ready: %d images, %d without, %d bytes",
        key,
        images,
        len(named) - images,
        summary.size,
        extra={"action": "zip", "key": key},
    )
    return ZipDownload(
        key=key,
        url=url,
        filename=download_name,
        size=summary.size,
        images=images,
        not_included=len(named) - images,
        rows=tuple(named),
    )


async def copy_out(store: Store, key: str, dest: Path) -> None:
    """Copy a stored object to a local file (written next to it, then renamed into place).

    From a file store the kernel copies the file (`shutil.copyfile`): streamed through 1 MiB reads instead, the
    copy of a 10,000-image ZIP left about 4 MB more of the bot's memory in malloc's arenas.
    """
    await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
    temp = dest.with_name(f".{dest.name}.part")
    try:
        if isinstance(store, FileStore):
            source = await store.local_path(key)
            await asyncio.to_thread(shutil.copyfile, source, temp)
        else:
            handle = await open_for_writing(temp)
            try:
                async for chunk in store.read(key, chunk_bytes=_COPY_CHUNK_BYTES):
                    await asyncio.to_thread(handle.write, chunk)
            finally:
                await asyncio.to_thread(handle.close)
        await asyncio.to_thread(os.replace, temp, dest)
    finally:
        await asyncio.to_thread(temp.unlink, missing_ok=True)  # only left when the copy failed
