"""Reading a user's ZIP safely: screening entries by their central-directory record, and reading and checking one.

Everything here blocks (zipfile, hashing, Pillow) and runs in a worker thread of `storage.intake`, one entry at a
time. A ZIP as a whole is refused with `IntakeRefusedError` before anything is extracted; one entry is skipped
with `EntrySkippedError`, whose reason and message go into the report.
"""

import hashlib
import logging
import re
import stat
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from storage._imagecheck import ARCHIVE_SUFFIXES, ImageRejectedError, check_image
from storage.imageformat import ImageFormat
from storage.intakereport import IntakeLimits, IntakeRefusedError, MiB, RefusalReason, SkipReason, TextFile
from usertext.names import suffix

log = logging.getLogger(__name__)

_READ_CHUNK_BYTES = MiB


class EntrySkippedError(Exception):
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
class CheckedImage:
    """One image that passed its checks, with its bytes, digest, format and size."""

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


def check_record(info: zipfile.ZipInfo, limits: IntakeLimits) -> None:
    """Refuse an entry from its central-directory record alone (nothing read yet)."""
    # The high 16 bits of external_attr hold a Unix st_mode; many tools store permission bits only (type 0).
    mode = info.external_attr >> 16
    file_type = stat.S_IFMT(mode)
    if file_type == stat.S_IFLNK:
        raise EntrySkippedError(SkipReason.SYMLINK, "entry is a symbolic link")
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise EntrySkippedError(SkipReason.NOT_REGULAR_FILE, f"entry is not a regular file (mode {mode:o})")
    if info.flag_bits & _ENCRYPTION_FLAGS:
        raise EntrySkippedError(SkipReason.ENCRYPTED, "entry is encrypted")
    if info.compress_type not in _SUPPORTED_COMPRESSION:
        raise EntrySkippedError(
            SkipReason.UNSUPPORTED_COMPRESSION, f"entry uses unsupported compression method {info.compress_type}"
        )
    if _has_archive_suffix(info.filename):
        raise EntrySkippedError(SkipReason.NESTED_ARCHIVE, "entry is an archive inside the archive")
    if info.file_size > limits.max_image_bytes:
        raise EntrySkippedError(
            SkipReason.TOO_LARGE,
            f"entry is {info.file_size:,} bytes uncompressed, over the limit of {limits.max_image_bytes:,}",
        )
    if info.file_size >= limits.ratio_check_min_bytes and info.file_size > limits.max_compression_ratio * max(
        info.compress_size, 1
    ):
        ratio = info.file_size / max(info.compress_size, 1)
        raise EntrySkippedError(
            SkipReason.SUSPICIOUS_RATIO,
            f"entry compresses {ratio:,.0f}:1, over the limit of {limits.max_compression_ratio:,.0f}:1 (zip bomb?)",
        )


# ---------------------------------------------------------------------------------------------------------------
# Blocking helpers (run in worker threads)
# ---------------------------------------------------------------------------------------------------------------

_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


def central_directory_summary(fp: IO[bytes]) -> tuple[int, int]:
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


def open_zip(fp: IO[bytes], limits: IntakeLimits) -> zipfile.ZipFile:
    """Open a ZIP after checking its end records, then check its central directory against the limits.

    Text files (the prompt table, captions) count against `max_text_entries`, everything else against
    `max_entries`; the end records cannot tell them apart, so before parsing only their sum is bounded.
    """
    entries, cd_size = central_directory_summary(fp)
    most = limits.max_entries + limits.max_text_entries
    if entries > most:
        raise IntakeRefusedError(
            RefusalReason.TOO_MANY_ENTRIES, f"the ZIP has {entries:,} entries, over the limit of {most:,}"
        )
    max_cd_bytes = max(most, 1) * limits.max_central_directory_bytes_per_entry
    if cd_size > max_cd_bytes:
        raise IntakeRefusedError(
            RefusalReason.TOO_MANY_ENTRIES,
            f"the ZIP's central directory is {cd_size:,} bytes, more than {most:,} entries need",
        )
    fp.seek(0)
    try:
        archive = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error) as exc:
        raise IntakeRefusedError(RefusalReason.NOT_A_ZIP, "the ZIP archive is malformed") from exc
    try:
        infos = archive.infolist()
        _check_entry_counts(infos, limits)  # the end record's count can lie; the parsed directory cannot
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


def _check_entry_counts(infos: list[zipfile.ZipInfo], limits: IntakeLimits) -> None:
    texts = sum(1 for info in infos if text_limit(info.filename, limits) is not None)
    others = len(infos) - texts
    if others > limits.max_entries:
        raise IntakeRefusedError(
            RefusalReason.TOO_MANY_ENTRIES,
            f"the ZIP has {others:,} entries besides its text files, over the limit of {limits.max_entries:,}",
        )
    if texts > limits.max_text_entries:
        limit = limits.max_text_entries
        detail = f"the ZIP has {texts:,} text files (prompt table, captions), over the limit of {limit:,}"
        raise IntakeRefusedError(RefusalReason.TOO_MANY_ENTRIES, detail)


def read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: IntakeLimits) -> bytes:
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
                    raise EntrySkippedError(
                        SkipReason.TOO_LARGE, f"entry expands beyond {cap:,} bytes while reading (header lied)"
                    )
    except EntrySkippedError:
        raise
    except NotImplementedError as exc:
        raise EntrySkippedError(
            SkipReason.UNSUPPORTED_COMPRESSION, "entry uses a compression method Peel cannot read"
        ) from exc
    except RuntimeError as exc:  # zipfile raises this for encryption it was not told about
        raise EntrySkippedError(SkipReason.ENCRYPTED, "entry is encrypted") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error, LookupError) as exc:
        raise EntrySkippedError(SkipReason.CORRUPT_ENTRY, "entry is damaged") from exc
    return bytes(buffer)


def check_bytes(data: bytes, limits: IntakeLimits) -> CheckedImage:
    """Hash and validate one image already in memory."""
    if len(data) > limits.max_image_bytes:
        raise EntrySkippedError(
            SkipReason.TOO_LARGE, f"image is {len(data):,} bytes, over the limit of {limits.max_image_bytes:,}"
        )
    try:
        facts = check_image(data, max_pixels=limits.max_pixels)
    except ImageRejectedError as exc:
        raise EntrySkippedError(SkipReason(exc.problem.value), str(exc)) from exc
    return CheckedImage(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        format=facts.format,
        width=facts.width,
        height=facts.height,
    )


# The text files intake hands back rather than skips: the prompt table at the ZIP's root, and captions anywhere.
TABLE_NAMES = frozenset({"prompts.csv", "prompts.jsonl"})
CAPTION_SUFFIX = ".txt"


def text_limit(name: str, limits: IntakeLimits) -> int | None:
    """Return the size a text entry may have (the table's or a caption's), or None when `name` is not one."""
    if name.lower() in TABLE_NAMES:  # at the root only: no "/" in the name
        return limits.max_table_bytes
    if suffix(name).lower() == CAPTION_SUFFIX:
        return limits.max_caption_bytes
    return None


def load_text(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: IntakeLimits) -> TextFile:
    """Read one text entry (at most its limit) and decode it as strict UTF-8; its name is only a label."""
    cap = text_limit(info.filename, limits) or 0
    if info.file_size > cap:
        detail = f"text file is {info.file_size:,} bytes, over the limit of {cap:,}"
        raise EntrySkippedError(SkipReason.TOO_LARGE, detail)
    data = read_entry(archive, info, replace(limits, max_image_bytes=cap))
    try:
        return TextFile(name=info.filename, text=data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise EntrySkippedError(SkipReason.NOT_UTF8, "text file is not UTF-8") from exc


def make_spool(spool_dir: Path | None) -> IO[bytes]:
    """Return an anonymous temporary file to spool a streamed ZIP into."""
    # Anonymous: on POSIX the file is unlinked at once (O_TMPFILE where available), so no name is ever visible.
    return tempfile.TemporaryFile(mode="w+b", dir=spool_dir)


def load_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: IntakeLimits) -> CheckedImage:
    """Read one entry and check it as an image."""
    return check_bytes(read_entry(archive, info, limits), limits)
