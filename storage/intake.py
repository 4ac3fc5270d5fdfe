"""Safe intake of user uploads: ZIPs and single images become validated, content-addressed images in a store.

Every accepted image lands under `inputs/{sha256}.{ext}` (ext by the real format: png, jpg or webp); the same
image twice is stored once. Every ZIP entry gets a line in the report: accepted, or skipped with a reason code
and a human message. OS clutter (`__MACOSX/`, `.DS_Store`, `Thumbs.db`, `desktop.ini`, dot-files) is skipped
silently and only counted. A ZIP that cannot be processed safely at all (not a ZIP, too many entries, too much
data, too large an upload) is refused as a whole with `IntakeRefusedError`, before anything is extracted.

Entry names are only ever used as labels in the report: nothing is written to disk under a name taken from the
upload. Text files a batch reads are handed back in the report instead (`TextFile`): the prompt table at the ZIP's
root (`prompts.csv`, `prompts.jsonl`, at most `max_table_bytes`) and `.txt` captions (at most `max_caption_bytes`
each, `max_text_bytes_total` in all), strict UTF-8; storage does not parse them. The only disk file intake makes
is the anonymous spool of a streamed ZIP (`tempfile.TemporaryFile`, unlinked at once on POSIX). All blocking work
(zipfile, hashing, Pillow) runs in worker threads, one entry at a time. A ZIP's accepted images are written to the
store behind the checks, so the next entry is checked while the last ones are fsynced (`_BackgroundWrites`: at most
4 writes and 32 MiB at once, or one bigger image). Memory stays bounded by one image of at most `max_image_bytes`
plus its decode, those writes and the texts.

IntakeError (a StorageError)
└── IntakeRefusedError   the whole upload was refused; `reason` is a RefusalReason (permanent)
"""

import asyncio
import io
import logging
import zipfile
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from pathlib import Path
from typing import IO, ParamSpec, TypeAlias, TypeVar

from storage import zipread
from storage.base import Body, Store
from storage.imageformat import ImageFormat
from storage.intakereport import (
    INPUTS_PREFIX,
    AcceptedImage,
    IntakeError,
    IntakeLimits,
    IntakeRefusedError,
    IntakeReport,
    IntakeSettings,
    MiB,
    RefusalReason,
    ReportBuilder,
    SkippedEntry,
    SkipReason,
    TextFile,
    content_key,
)
from storage.zipread import is_clutter, unsafe_path_reason

__all__ = [
    "INPUTS_PREFIX",
    "AcceptedImage",
    "ImageFormat",
    "IntakeError",
    "IntakeLimits",
    "IntakeRefusedError",
    "IntakeReport",
    "IntakeSettings",
    "RefusalReason",
    "SkipReason",
    "SkippedEntry",
    "UploadIntake",
    "content_key",
    "is_clutter",
    "unsafe_path_reason",
]

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")


class _BackgroundWrites:
    """Store writes that run behind a ZIP's checks: at most `max_writes` and `max_bytes` at once (one always fits).

    A write that fails makes the next `start` or `finish` raise its error; `abort` cancels what still runs.
    """

    def __init__(self, *, max_writes: int = 4, max_bytes: int = 32 * MiB) -> None:
        self._max_writes = max_writes
        self._max_bytes = max_bytes
        self._running: dict[asyncio.Task[object], int] = {}  # task -> bytes it holds

    async def start(self, size: int, write: Callable[[], Awaitable[object]]) -> None:
        """Start `write` (which holds `size` bytes) once there is room for it."""
        while self._running and (
            len(self._running) >= self._max_writes or sum(self._running.values()) + size > self._max_bytes
        ):
            await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            self._reap()
        self._running[asyncio.ensure_future(write())] = size

    async def finish(self) -> None:
        """Wait for every write; raise the first failure."""
        while self._running:
            await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            self._reap()

    async def abort(self) -> None:
        """Cancel the writes still running and wait for them (stores discard a cancelled write)."""
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        self._running.clear()

    def _reap(self) -> None:
        for task in [t for t in self._running if t.done()]:
            del self._running[task]
            task.result()  # raises the write's error


# ---------------------------------------------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------------------------------------------


async def _in_thread(func: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run blocking `func` in a worker thread; on cancellation, wait for the thread before re-raising.

    A cancelled `asyncio.to_thread` returns at once while its thread keeps running, so the caller's `finally` would
    close the archive or spool under a thread still reading it (or leak a file the thread just opened). Each call
    here is short (one entry, one chunk), so cancellation is delayed by at most one of them.
    """
    task = asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is None:
            result = task.result()
            if isinstance(result, io.IOBase | zipfile.ZipFile):  # opened by the call: close it or it leaks
                await asyncio.to_thread(result.close)
        raise


# An entry of a ZIP on its way into the report: its check running, or what `_screen` made of it without reading it.
_Pending: TypeAlias = asyncio.Task[zipread.CheckedImage | TextFile] | tuple[SkipReason | None, str]


class UploadIntake:
    """Validate user uploads and store the good images in `store` under content-addressed keys.

    Args:
        store: where accepted images go (`inputs/{sha256}.{ext}`).
        limits: what an upload may contain.
        spool_dir: where a streamed ZIP is spooled (an anonymous temporary file); the system default if None.
        max_parallel_checks: how many images are read and decoded at once across all concurrent uploads through
            this intake; each may hold `max_image_bytes` plus its decoded pixels (up to ~4 bytes per pixel).
    """

    def __init__(
        self,
        store: Store,
        *,
        limits: IntakeLimits | None = None,
        spool_dir: Path | None = None,
        max_parallel_checks: int = 1,
    ) -> None:
        self._store = store
        self._limits = limits or IntakeLimits()
        self._spool_dir = spool_dir
        self._checks = asyncio.Semaphore(max_parallel_checks)
        self._parallel_checks = max_parallel_checks

    @property
    def limits(self) -> IntakeLimits:
        """The limits this intake enforces."""
        return self._limits

    async def zip_file(self, path: Path) -> IntakeReport:
        """Take in the images of the ZIP at `path` (the file is only read).

        Raises:
            IntakeRefusedError: the ZIP as a whole is malformed or over a limit; nothing was stored.
        """
        try:
            fp = await _in_thread(path.open, "rb")
        except OSError as exc:
            raise IntakeRefusedError(RefusalReason.NOT_A_ZIP, "the upload cannot be opened") from exc
        try:
            return await self._from_zip(fp, label=path.name)
        finally:
            await _in_thread(fp.close)

    async def zip_stream(self, stream: AsyncIterable[bytes], *, label: str = "upload.zip") -> IntakeReport:
        """Spool a streamed ZIP to an anonymous temporary file (at most `max_upload_bytes`) and take it in.

        Raises:
            IntakeRefusedError: the upload is too large, or the ZIP is malformed or over a limit.
        """
        spool = await _in_thread(zipread.make_spool, self._spool_dir)
        try:
            written = 0
            async for chunk in stream:
                written += len(chunk)
                if written > self._limits.max_upload_bytes:
                    raise IntakeRefusedError(
                        RefusalReason.UPLOAD_TOO_LARGE,
                        f"the upload is over the limit of {self._limits.max_upload_bytes:,} bytes",
                    )
                await _in_thread(spool.write, chunk)
            await _in_thread(spool.flush)
            return await self._from_zip(spool, label=label)
        finally:
            await _in_thread(spool.close)

    async def image(self, body: Body, *, name: str = "image") -> AcceptedImage | SkippedEntry:
        """Take in one image given as bytes or an async byte stream (read into memory up to `max_image_bytes`)."""
        return await self._take_image(ReportBuilder(), name, body)

    async def images(self, items: Iterable[tuple[str, Body]]) -> IntakeReport:
        """Take in several loose images as (name, body); the same image twice is stored once, as in a ZIP."""
        report = ReportBuilder()
        for name, body in items:
            await self._take_image(report, name, body)
        return report.build()

    async def _take_image(self, report: ReportBuilder, name: str, body: Body) -> AcceptedImage | SkippedEntry:
        if isinstance(body, bytes | bytearray | memoryview):
            data = bytes(body)
        else:
            buffer = bytearray()
            async for chunk in body:
                buffer += chunk
                if len(buffer) > self._limits.max_image_bytes:
                    return report.skip(
                        name,
                        SkipReason.TOO_LARGE,
                        f"image is over the limit of {self._limits.max_image_bytes:,} bytes",
                    )
            data = bytes(buffer)
        try:
            async with self._checks:
                checked = await _in_thread(zipread.check_bytes, data, self._limits)
        except zipread.EntrySkippedError as exc:
            return report.skip(name, exc.reason, exc.logged(name))
        return await self._store_image(report, name, checked)

    async def _from_zip(self, fp: IO[bytes], *, label: str) -> IntakeReport:
        """Take in a ZIP's entries in order, checking up to `max_parallel_checks` images at once.

        Pillow decodes without the GIL, so on a multi-core machine the checks of the next entries run while the
        current one is recorded; the report (and so a batch's item order) still follows the ZIP's order.
        """
        archive = await _in_thread(zipread.open_zip, fp, self._limits)
        writes = _BackgroundWrites()
        window: deque[tuple[zipfile.ZipInfo, _Pending]] = deque()
        try:
            report = ReportBuilder()
            checking = text_bytes = 0
            for info in archive.infolist():
                pending: _Pending | None = self._screen(info)
                if pending is None:
                    pending, text_bytes = self._text_budget(info, text_bytes)
                if pending is None:
                    pending = asyncio.ensure_future(self._check_entry(archive, info))
                    checking += 1
                window.append((info, pending))
                while checking >= self._parallel_checks:
                    checking -= await self._record_entry(*window.popleft(), report, writes)
            while window:
                await self._record_entry(*window.popleft(), report, writes)
            await writes.finish()
        except BaseException:
            checks = [pending for _, pending in window if isinstance(pending, asyncio.Task)]
            for check in checks:
                check.cancel()
            await asyncio.gather(*checks, return_exceptions=True)
            await writes.abort()
            raise
        finally:
            await _in_thread(archive.close)
        result = report.build()
        log.info(
            "intake of %s: %d accepted (%d distinct), %d skipped, %d clutter",
            label,
            len(result.accepted),
            len(result.keys),
            len(result.skipped),
            result.clutter_count,
        )
        return result

    def _screen(self, info: zipfile.ZipInfo) -> tuple[SkipReason | None, str] | None:
        """Return what an entry is without reading it, or None when its content must be checked.

        `(reason, message)` is an entry to skip; `(None, "directory")` and `(None, "clutter")` are only counted.
        """
        name = info.filename
        unsafe = zipread.unsafe_path_reason(name)
        if unsafe is not None:
            return SkipReason.UNSAFE_PATH, f"unsafe entry name: {unsafe}"
        if info.is_dir():
            return None, "directory"
        if zipread.is_clutter(name):
            return None, "clutter"
        try:
            zipread.check_record(info, self._limits)
        except zipread.EntrySkippedError as exc:
            return exc.reason, str(exc)
        return None

    def _text_budget(self, info: zipfile.ZipInfo, used: int) -> tuple[tuple[SkipReason, str] | None, int]:
        """Return whether a text entry (the prompt table, a caption) is skipped for its size, and the bytes now used.

        Texts are handed back in memory, so each is capped and all of a ZIP's together: 10,000 captions stay bounded.
        """
        limit = zipread.text_limit(info.filename, self._limits)
        if limit is None:
            return None, used
        if info.file_size > limit:
            return (SkipReason.TOO_LARGE, f"text file is {info.file_size:,} bytes, over the limit of {limit:,}"), used
        if used + info.file_size > self._limits.max_text_bytes_total:
            total = self._limits.max_text_bytes_total
            return (SkipReason.TOO_LARGE, f"the ZIP's text files are over {total:,} bytes in all"), used
        return None, used + info.file_size

    async def _check_entry(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> zipread.CheckedImage | TextFile:
        async with self._checks:
            if zipread.text_limit(info.filename, self._limits) is not None:
                return await _in_thread(zipread.load_text, archive, info, self._limits)
            return await _in_thread(zipread.load_entry, archive, info, self._limits)

    async def _record_entry(
        self, info: zipfile.ZipInfo, pending: _Pending, report: ReportBuilder, writes: _BackgroundWrites
    ) -> int:
        """Record one entry in the report, in ZIP order; return 1 if it had a check running, else 0."""
        name = info.filename
        if not isinstance(pending, asyncio.Task):  # screened without reading it
            reason, text = pending
            if reason is not None:
                report.skip(name, reason, text)
            elif text == "directory":
                report.directory_count += 1
            else:
                report.clutter_count += 1
            return 0
        try:
            checked = await pending
        except zipread.EntrySkippedError as exc:
            report.skip(name, exc.reason, exc.logged(name))
            return 1
        if isinstance(checked, TextFile):
            report.texts.append(checked)
            return 1
        await self._store_image(report, name, checked, writes)
        return 1

    async def _store_image(
        self, report: ReportBuilder, name: str, checked: zipread.CheckedImage, writes: _BackgroundWrites | None = None
    ) -> AcceptedImage:
        """Report the image as accepted and store it (behind the checks when `writes` is given)."""
        key = content_key(checked.sha256, checked.format)
        duplicate_of = report.first_name_by_sha.get(checked.sha256)
        report.first_name_by_sha.setdefault(checked.sha256, name)
        already_stored = False
        if duplicate_of is None:
            already_stored = await self._store.exists(key)
            if not already_stored:
                data, content_type = checked.data, checked.format.content_type

                async def write() -> object:
                    return await self._store.put(key, data, content_type=content_type)

                if writes is None:
                    await write()
                else:
                    await writes.start(len(data), write)
        accepted = AcceptedImage(
            name=name,
            format=checked.format,
            width=checked.width,
            height=checked.height,
            size_bytes=len(checked.data),
            sha256=checked.sha256,
            duplicate_of=duplicate_of,
            already_stored=already_stored,
        )
        report.accepted.append(accepted)
        return accepted
