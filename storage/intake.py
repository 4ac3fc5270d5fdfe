"""Safe intake of user uploads: ZIPs and single images become validated, content-addressed images in a store.

Every accepted image lands under `inputs/{sha256}.{ext}` (ext by the real format: png, jpg or webp); the same
image twice is stored once. Every ZIP entry gets a line in the report: accepted, or skipped with a reason code
and a human message. OS clutter (`__MACOSX/`, `.DS_Store`, `Thumbs.db`, `desktop.ini`, dot-files) is skipped
silently and only counted. A ZIP that cannot be processed safely at all (not a ZIP, too many entries, too much
data, too large an upload) is refused as a whole with `IntakeRefusedError`, before anything is extracted.

Entry names are only ever used as labels in the report: nothing is written to disk under a name taken from the
upload. The only disk file intake makes is the anonymous spool of a streamed ZIP (`tempfile.TemporaryFile`,
unlinked at once on POSIX). All blocking work (zipfile, hashing, Pillow) runs in worker threads, one entry at a
time. A ZIP's accepted images are written to the store behind the checks, so the next entry is checked while the
last ones are fsynced (`_BackgroundWrites`: at most 4 writes and 32 MiB at once, or one bigger image). Memory stays
bounded by one image of at most `max_image_bytes` plus its decode, and those writes.

IntakeError (a StorageError)
└── IntakeRefusedError   the whole upload was refused; `reason` is a RefusalReason (permanent)
"""

import asyncio
import hashlib
import io
import logging
import re
import stat
import struct
import tempfile
import zipfile
import zlib
from collections import Counter, deque
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, ParamSpec, TypeAlias, TypeVar

from pydantic_settings import BaseSettings, SettingsConfigDict

from storage._imagecheck import ARCHIVE_SUFFIXES, ImageRejectedError, check_image
from storage.base import Body, Store
from storage.errors import StorageError
from storage.imageformat import ImageFormat
from usertext.names import suffix

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

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

INPUTS_PREFIX = "inputs/"
_P = ParamSpec("_P")
_T = TypeVar("_T")
_READ_CHUNK_BYTES = MiB


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeLimits:
    """Limits on what one upload may contain.

    Attributes:
        max_entries: entries in a ZIP's central directory; more refuses the whole ZIP.
        max_total_uncompressed_bytes: the sum of the entries' uncompressed sizes; more refuses the whole ZIP.
        max_image_bytes: the size of one image file; a bigger entry or image is skipped.
        max_pixels: width x height of one image (decompression bombs), checked from the header before decoding.
        max_compression_ratio: uncompressed / compressed size of a ZIP entry. PNG, JPEG and WebP are already
            compressed, so deflate gains little on them (about 1.0-1.2x); a ratio in the hundreds means a run of
            repeated bytes (deflate tops out near 1032:1), i.e. a zip bomb or a useless uncompressed image.
        ratio_check_min_bytes: entries smaller than this are not ratio-checked: they cannot hurt, and tiny files
            (a flat-colour icon, say) have noisy ratios.
        max_upload_bytes: the compressed size of a ZIP streamed in; more stops the spooling and refuses it.
        max_central_directory_bytes_per_entry: bounds the central directory's size (zipfile parses all of it
            into memory) to what `max_entries` entries with long names could need.
    """

    max_entries: int = 10_000
    max_total_uncompressed_bytes: int = 5 * GiB
    max_image_bytes: int = 50 * MiB
    max_pixels: int = 40_000_000
    max_compression_ratio: float = 100.0
    ratio_check_min_bytes: int = 1 * MiB
    max_upload_bytes: int = 6 * GiB
    max_central_directory_bytes_per_entry: int = 1 * KiB


_DEFAULT_LIMITS = IntakeLimits()


class IntakeSettings(BaseSettings):
    """Intake limits from the environment (`STORAGE_INTAKE_*`); only the composition root builds this."""

    model_config = SettingsConfigDict(env_prefix="STORAGE_INTAKE_", extra="ignore")

    max_entries: int = _DEFAULT_LIMITS.max_entries
    max_total_uncompressed_bytes: int = _DEFAULT_LIMITS.max_total_uncompressed_bytes
    max_image_bytes: int = _DEFAULT_LIMITS.max_image_bytes
    max_pixels: int = _DEFAULT_LIMITS.max_pixels
    max_compression_ratio: float = _DEFAULT_LIMITS.max_compression_ratio
    ratio_check_min_bytes: int = _DEFAULT_LIMITS.ratio_check_min_bytes
    max_upload_bytes: int = _DEFAULT_LIMITS.max_upload_bytes

    def limits(self) -> IntakeLimits:
        """Return these settings as an `IntakeLimits`."""
        return IntakeLimits(**self.model_dump())


class SkipReason(StrEnum):
    """Why one entry or image was not accepted (stored values are stable codes)."""

    UNSAFE_PATH = "unsafe_path"
    SYMLINK = "symlink"
    NOT_REGULAR_FILE = "not_regular_file"
    ENCRYPTED = "encrypted"
    UNSUPPORTED_COMPRESSION = "unsupported_compression"
    NESTED_ARCHIVE = "nested_archive"
    TOO_LARGE = "too_large"
    SUSPICIOUS_RATIO = "suspicious_ratio"
    CORRUPT_ENTRY = "corrupt_entry"
    NOT_AN_IMAGE = "not_an_image"
    CORRUPT_IMAGE = "corrupt_image"
    TOO_MANY_PIXELS = "too_many_pixels"


class RefusalReason(StrEnum):
    """Why a whole upload was refused."""

    NOT_A_ZIP = "not_a_zip"
    TOO_MANY_ENTRIES = "too_many_entries"
    TOO_MUCH_DATA = "too_much_data"
    UPLOAD_TOO_LARGE = "upload_too_large"


class IntakeError(StorageError):
    """Base of the intake errors."""


class IntakeRefusedError(IntakeError, ValueError):
    """The whole upload was refused; nothing from it was stored. `user_message` is safe to show the user."""

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.user_message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptedImage:
    """An image that passed every check and is in the store under `key`.

    `duplicate_of` names the earlier entry of the same upload with the same content (stored once);
    `already_stored` says the store held the key before this upload (nothing was written).
    """

    name: str
    format: ImageFormat
    width: int
    height: int
    size_bytes: int
    sha256: str
    duplicate_of: str | None = None
    already_stored: bool = False

    @property
    def key(self) -> str:
        """The image's content-addressed key in the store (`content_key`).

        Made when asked rather than kept: a 10,000-image upload's report would hold 1.2 MB of keys that repeat
        the digests beside them.
        """
        return content_key(self.sha256, self.format)


@dataclass(frozen=True, slots=True, kw_only=True)
class SkippedEntry:
    """An entry or image that was not accepted, with a stable reason code and a message for humans."""

    name: str
    reason: SkipReason
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeReport:
    """The outcome of one upload: one line per entry in upload order, plus silent counts."""

    accepted: tuple[AcceptedImage, ...]
    skipped: tuple[SkippedEntry, ...]
    clutter_count: int = 0
    directory_count: int = 0

    @property
    def keys(self) -> tuple[str, ...]:
        """The distinct stored keys, in upload order."""
        return tuple(dict.fromkeys(image.key for image in self.accepted))

    def skip_counts(self) -> dict[SkipReason, int]:
        """Count the skipped entries by reason, most frequent first (for a one-line summary to the user)."""
        return dict(Counter(entry.reason for entry in self.skipped).most_common())

    def reasons(self) -> dict[str, SkipReason]:
        """Map each skipped entry's name to its reason (the last one wins for repeated names)."""
        return {entry.name: entry.reason for entry in self.skipped}


@dataclass(slots=True)
class _ReportBuilder:
    accepted: list[AcceptedImage] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)
    clutter_count: int = 0
    directory_count: int = 0
    first_name_by_sha: dict[str, str] = field(default_factory=dict)

    def skip(self, name: str, reason: SkipReason, message: str) -> SkippedEntry:
        entry = SkippedEntry(name=name, reason=reason, message=message)
        self.skipped.append(entry)
        return entry

    def build(self) -> IntakeReport:
        return IntakeReport(
            accepted=tuple(self.accepted),
            skipped=tuple(self.skipped),
            clutter_count=self.clutter_count,
            directory_count=self.directory_count,
        )


class _EntrySkippedError(Exception):
    """An entry is skipped; its message is Peel's own words, the library's exception (if any) is its cause."""

    def __init__(self, reason: SkipReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def logged(self, name: str) -> str:
        """Log the library's own words for the operator (DEBUG) and return the message users read."""
        if self.__cause__ is not None:
            log.debug("entry %r skipped (%s): %r", name, self.reason.value, self.__cause__)
        return str(self)


@dataclass(frozen=True, slots=True)
class _Checked:
    data: bytes
    sha256: str
    format: ImageFormat
    width: int
    height: int


# ---------------------------------------------------------------------------------------------------------------
# Pure checks on names and central-directory records
# ---------------------------------------------------------------------------------------------------------------

_CLUTTER_NAMES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"})
_DRIVE = re.compile(r"^[A-Za-z]:")
_SUPPORTED_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
# General-purpose flag bits: 0 = encrypted, 6 = strong encryption, 13 = encrypted central directory.
_ENCRYPTION_FLAGS = 0x0001 | 0x0040 | 0x2000


def _parts(name: str) -> list[str]:
    return [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]


def unsafe_path_reason(name: str) -> str | None:
    """Return why an archive entry name could escape an extraction directory, or None when it is safe."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "name contains a control character"
    normalised = name.replace("\\", "/")
    if normalised.startswith("/"):
        return "absolute path"
    if _DRIVE.match(normalised):
        return "path with a drive letter"
    if ".." in normalised.split("/"):
        return "path climbs out of the archive with '..'"
    return None


def is_clutter(name: str) -> bool:
    """Tell whether a name is OS clutter to skip silently: `__MACOSX/`, `.DS_Store`, `Thumbs.db`, dot-files."""
    parts = _parts(name)
    if not parts:
        return False
    if any(part == "__MACOSX" or (part.startswith(".") and part != "..") for part in parts):
        return True
    return parts[-1].lower() in _CLUTTER_NAMES


def _has_archive_suffix(name: str) -> bool:
    parts = _parts(name)
    return bool(parts) and suffix(parts[-1]).lower() in ARCHIVE_SUFFIXES


def _check_record(info: zipfile.ZipInfo, limits: IntakeLimits) -> None:
    """Refuse an entry from its central-directory record alone (nothing read yet)."""
    # The high 16 bits of external_attr hold a Unix st_mode; many tools store permission bits only (type 0).
    mode = info.external_attr >> 16
    file_type = stat.S_IFMT(mode)
    if file_type == stat.S_IFLNK:
        raise _EntrySkippedError(SkipReason.SYMLINK, "entry is a symbolic link")
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _EntrySkippedError(SkipReason.NOT_REGULAR_FILE, f"entry is not a regular file (mode {mode:o})")
    if info.flag_bits & _ENCRYPTION_FLAGS:
        raise _EntrySkippedError(SkipReason.ENCRYPTED, "entry is encrypted")
    if info.compress_type not in _SUPPORTED_COMPRESSION:
        raise _EntrySkippedError(
            SkipReason.UNSUPPORTED_COMPRESSION, f"entry uses unsupported compression method {info.compress_type}"
        )
    if _has_archive_suffix(info.filename):
        raise _EntrySkippedError(SkipReason.NESTED_ARCHIVE, "entry is an archive inside the archive")
    if info.file_size > limits.max_image_bytes:
        raise _EntrySkippedError(
            SkipReason.TOO_LARGE,
            f"entry is {info.file_size:,} bytes uncompressed, over the limit of {limits.max_image_bytes:,}",
        )
    if info.file_size >= limits.ratio_check_min_bytes and info.file_size > limits.max_compression_ratio * max(
        info.compress_size, 1
    ):
        ratio = info.file_size / max(info.compress_size, 1)
        raise _EntrySkippedError(
            SkipReason.SUSPICIOUS_RATIO,
            f"entry compresses {ratio:,.0f}:1, over the limit of {limits.max_compression_ratio:,.0f}:1 (zip bomb?)",
        )


# ---------------------------------------------------------------------------------------------------------------
# Blocking helpers (run in worker threads)
# ---------------------------------------------------------------------------------------------------------------

_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


def _central_directory_summary(fp: IO[bytes]) -> tuple[int, int]:
    """Return (entry count, central directory size) from the end records, without parsing the directory."""
    fp.seek(0, 2)
    file_size = fp.tell()
    tail_start = max(0, file_size - (_EOCD.size + 0xFFFF))
    fp.seek(tail_start)
    tail = fp.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise IntakeRefusedError(RefusalReason.NOT_A_ZIP, "the file is not a ZIP archive (no end of central directory)")
    _, _, _, _, entries, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        locator_at = at - _ZIP64_LOCATOR.size
        if locator_at < 0 or tail[locator_at : locator_at + 4] != b"PK\x06\x07":
            raise IntakeRefusedError(RefusalReason.NOT_A_ZIP, "the ZIP64 end records are missing or damaged")
        _, _, zip64_offset, _ = _ZIP64_LOCATOR.unpack_from(tail, locator_at)
        fp.seek(zip64_offset)
        record = fp.read(_ZIP64_EOCD.size)
        if len(record) < _ZIP64_EOCD.size or record[:4] != b"PK\x06\x06":
            raise IntakeRefusedError(RefusalReason.NOT_A_ZIP, "the ZIP64 end of central directory is damaged")
        fields = _ZIP64_EOCD.unpack(record)
        entries, cd_size = fields[7], fields[8]
    return entries, cd_size


def _open_zip(fp: IO[bytes], limits: IntakeLimits) -> zipfile.ZipFile:
    """Open a ZIP after checking its end records, then check its central directory against the limits."""
    entries, cd_size = _central_directory_summary(fp)
    if entries > limits.max_entries:
        raise IntakeRefusedError(
            RefusalReason.TOO_MANY_ENTRIES, f"the ZIP has {entries:,} entries, over the limit of {limits.max_entries:,}"
        )
    max_cd_bytes = max(limits.max_entries, 1) * limits.max_central_directory_bytes_per_entry
    if cd_size > max_cd_bytes:
        raise IntakeRefusedError(
            RefusalReason.TOO_MANY_ENTRIES,
            f"the ZIP's central directory is {cd_size:,} bytes, more than {limits.max_entries:,} entries need",
        )
    fp.seek(0)
    try:
        archive = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error) as exc:
        raise IntakeRefusedError(RefusalReason.NOT_A_ZIP, "the ZIP archive is malformed") from exc
    try:
        infos = archive.infolist()
        # The end record's count can lie; the parsed directory cannot.
        if len(infos) > limits.max_entries:
            raise IntakeRefusedError(
                RefusalReason.TOO_MANY_ENTRIES,
                f"the ZIP has {len(infos):,} entries, over the limit of {limits.max_entries:,}",
            )
        total = sum(info.file_size for info in infos)
        if total > limits.max_total_uncompressed_bytes:
            raise IntakeRefusedError(
                RefusalReason.TOO_MUCH_DATA,
                f"the ZIP holds {total:,} bytes uncompressed, "
                f"over the limit of {limits.max_total_uncompressed_bytes:,}",
            )
    except BaseException:
        archive.close()
        raise
    return archive


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: IntakeLimits) -> bytes:
    """Read one entry, never more than its declared size or the image limit, whatever the stream holds."""
    cap = min(info.file_size, limits.max_image_bytes)
    buffer = bytearray()
    try:
        with archive.open(info) as stream:
            # zipfile stops at the declared size and then checks the CRC, so a header that understates the size
            # ends in a CRC error, not in a bigger read; the cap below holds even if that ever changed.
            while chunk := stream.read(_READ_CHUNK_BYTES):
                buffer += chunk
                if len(buffer) > cap:
                    raise _EntrySkippedError(
                        SkipReason.TOO_LARGE, f"entry expands beyond {cap:,} bytes while reading (header lied)"
                    )
    except _EntrySkippedError:
        raise
    except NotImplementedError as exc:
        raise _EntrySkippedError(
            SkipReason.UNSUPPORTED_COMPRESSION, "entry uses a compression method Peel cannot read"
        ) from exc
    except RuntimeError as exc:  # zipfile raises this for encryption it was not told about
        raise _EntrySkippedError(SkipReason.ENCRYPTED, "entry is encrypted") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error, LookupError) as exc:
        raise _EntrySkippedError(SkipReason.CORRUPT_ENTRY, "entry is damaged") from exc
    return bytes(buffer)


def _check_bytes(data: bytes, limits: IntakeLimits) -> _Checked:
    """Hash and validate one image already in memory."""
    if len(data) > limits.max_image_bytes:
        raise _EntrySkippedError(
            SkipReason.TOO_LARGE, f"image is {len(data):,} bytes, over the limit of {limits.max_image_bytes:,}"
        )
    try:
        facts = check_image(data, max_pixels=limits.max_pixels)
    except ImageRejectedError as exc:
        raise _EntrySkippedError(SkipReason(exc.problem.value), str(exc)) from exc
    return _Checked(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        format=facts.format,
        width=facts.width,
        height=facts.height,
    )


def _make_spool(spool_dir: Path | None) -> IO[bytes]:
    # Anonymous: on POSIX the file is unlinked at once (O_TMPFILE where available), so no name is ever visible.
    return tempfile.TemporaryFile(mode="w+b", dir=spool_dir)


def _load_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: IntakeLimits) -> _Checked:
    return _check_bytes(_read_entry(archive, info, limits), limits)


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


def content_key(sha256: str, fmt: ImageFormat) -> str:
    """Return the content-addressed key of an image: `inputs/{sha256}.{ext}`."""
    return f"{INPUTS_PREFIX}{sha256}.{fmt.value}"


# An entry of a ZIP on its way into the report: its check running, or what `_screen` made of it without reading it.
_Pending: TypeAlias = asyncio.Task[_Checked] | tuple[SkipReason | None, str]


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
        spool = await _in_thread(_make_spool, self._spool_dir)
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
        return await self._take_image(_ReportBuilder(), name, body)

    async def images(self, items: Iterable[tuple[str, Body]]) -> IntakeReport:
        """Take in several loose images as (name, body); the same image twice is stored once, as in a ZIP."""
        report = _ReportBuilder()
        for name, body in items:
            await self._take_image(report, name, body)
        return report.build()

    async def _take_image(self, report: _ReportBuilder, name: str, body: Body) -> AcceptedImage | SkippedEntry:
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
                checked = await _in_thread(_check_bytes, data, self._limits)
        except _EntrySkippedError as exc:
            return report.skip(name, exc.reason, exc.logged(name))
        return await self._store_image(report, name, checked)

    async def _from_zip(self, fp: IO[bytes], *, label: str) -> IntakeReport:
        """Take in a ZIP's entries in order, checking up to `max_parallel_checks` images at once.

        Pillow decodes without the GIL, so on a multi-core machine the checks of the next entries run while the
        current one is recorded; the report (and so a batch's item order) still follows the ZIP's order.
        """
        archive = await _in_thread(_open_zip, fp, self._limits)
        writes = _BackgroundWrites()
        window: deque[tuple[zipfile.ZipInfo, _Pending]] = deque()
        try:
            report = _ReportBuilder()
            checking = 0
            for info in archive.infolist():
                pending: _Pending | None = self._screen(info)
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
        unsafe = unsafe_path_reason(name)
        if unsafe is not None:
            return SkipReason.UNSAFE_PATH, f"unsafe entry name: {unsafe}"
        if info.is_dir():
            return None, "directory"
        if is_clutter(name):
            return None, "clutter"
        try:
            _check_record(info, self._limits)
        except _EntrySkippedError as exc:
            return exc.reason, str(exc)
        return None

    async def _check_entry(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Checked:
        async with self._checks:
            return await _in_thread(_load_entry, archive, info, self._limits)

    async def _record_entry(
        self, info: zipfile.ZipInfo, pending: _Pending, report: _ReportBuilder, writes: _BackgroundWrites
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
        except _EntrySkippedError as exc:
            report.skip(name, exc.reason, exc.logged(name))
            return 1
        await self._store_image(report, name, checked, writes)
        return 1

    async def _store_image(
        self, report: _ReportBuilder, name: str, checked: _Checked, writes: _BackgroundWrites | None = None
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
