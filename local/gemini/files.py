"""The Gemini Files API as the local server keeps it: resumable uploads, metadata, listing, download, expiry.

The wire, each rule from its source:

- Upload is Google's resumable protocol as google-genai speaks it (`google/genai/files.py` `Files.upload` and
  `_extra_utils.prepare_resumable_upload`, `_api_client.py` `upload_file`): `POST /upload/{version}/files` with
  `X-Goog-Upload-Protocol: resumable`, `X-Goog-Upload-Command: start`, `X-Goog-Upload-Header-Content-Length`,
  `X-Goog-Upload-Header-Content-Type` and the JSON body `{"file": {"displayName", "mimeType", "sizeBytes",
  "name"}}` answers `X-Goog-Upload-URL` (the SDK keeps its path and query, and puts its own base URL's host in
  front) and `X-Goog-Upload-Status: active`; then `POST` of each chunk (8 MiB in the SDK) to that URL with
  `X-Goog-Upload-Command: upload` (`upload, finalize` for the last) and `X-Goog-Upload-Offset`, answered
  `X-Goog-Upload-Status: active`, and `final` with the body `{"file": File}` on finalize. A chunk at the wrong
  offset is refused (stricter than Google, which would report the offset it has; the SDK never resumes).
- The `File` resource (https://ai.google.dev/api/files#File): `name` "files/{id}" (the id up to 40 lowercase
  alphanumerics or dashes, not starting or ending with a dash; generated when not given), `displayName` (at most
  512 characters), `mimeType`, `sizeBytes` (an int64 as a string), `createTime`, `updateTime`, `expirationTime`,
  `sha256Hash` (base64 of the SHA-256 of the bytes), `uri`, `downloadUri` (generated files only), `state`
  (ACTIVE: the image and JSONL files Peel uploads need no processing) and `source` (UPLOADED or GENERATED).
- Files "are stored for 48 hours" and the limit is "2 GB per file" (https://ai.google.dev/gemini-api/docs/files);
  this server counts 2 GB as 2,000,000,000 bytes (stricter than 2 GiB). Both are settable, and the clock too, so a
  test can expire a file without waiting two days.
- `GET /{version}/files/{id}` and `DELETE` of a file that does not exist (or expired) answer 403
  PERMISSION_DENIED "You do not have permission to access the File {id} or it may not exist." (observed: Google's
  answer as a public client's tests quote it).
- `GET /{version}/files` pages with `pageSize` ("If unspecified, defaults to 10. Maximum pageSize is 100.",
  https://ai.google.dev/api/files#method:-files.list) and `pageToken` / `nextPageToken`.
- `GET /{version}/files/{id}:download?alt=media` answers the bytes (google-genai `Files.download`). The SDK
  refuses to download a `File` without `downloadUri`: "Only generated files can be downloaded, uploaded files
  can't be downloaded"; this server refuses an uploaded file's download too, 400 INVALID_ARGUMENT (the wording
  assumed), so only files the server generated (batch results) can be downloaded.

The bytes are kept on disk, one file per stored file in a temporary directory of the store that `close` removes:
an upload appends each chunk to its file, and a batch's result file (gigabytes for 1,000 images, every image
base64-encoded) is written there and streamed on download, so no file is ever whole in memory. The blocking file
calls are meant to run off the event loop (the server calls them through `asyncio.to_thread`).
"""

import asyncio
import base64
import functools
import hashlib
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from local.gemini.wire import JsonObject


async def open_off_loop(path: Path, mode: str) -> IO[bytes]:
    """Open a file in a thread; a cancel while it opens still closes it (the thread opens it regardless)."""
    opening = asyncio.ensure_future(asyncio.to_thread(path.open, mode))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        await asyncio.wait({opening})
        if not opening.cancelled() and opening.exception() is None:
            opening.result().close()
        raise


FILE_TTL_S = 48 * 3600  # "Files are stored for 48 hours" (ai.google.dev/gemini-api/docs/files)
MAX_FILE_BYTES = 2_000_000_000  # "2 GB per file" (same page); decimal GB, stricter than GiB
DEFAULT_FILES_PAGE = 10  # files.list: "If unspecified, defaults to 10." (ai.google.dev/api/files)
MAX_FILES_PAGE = 100  # files.list: "Maximum pageSize is 100."
MAX_DISPLAY_NAME = 512  # File.displayName: "must be no more than 512 characters in length"
FILE_ID = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")  # File.name: "up to 40 characters … lowercase …"
DOWNLOAD_CHUNK = 1024 * 1024


class FileError(Exception):
    """A Files API call the server refuses: its HTTP status, Google status and message."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


def not_found(file_id: str) -> FileError:
    """Return Google's answer for a file that does not exist (or expired): 403, as Google answers it."""
    return FileError(
        403, "PERMISSION_DENIED", f"You do not have permission to access the File {file_id} or it may not exist."
    )


def timestamp(seconds: float) -> str:
    """Return an RFC 3339 timestamp, Z-normalized with 6 fractional digits (proto JSON's Timestamp)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def discard(path: Path) -> None:
    """Remove a file's bytes: in a worker thread when called on the event loop, so it never blocks the loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        path.unlink(missing_ok=True)
        return
    _ = loop.run_in_executor(None, functools.partial(path.unlink, missing_ok=True))  # the executor holds it


@dataclass(slots=True, kw_only=True)
class StoredFile:
    """One file: its metadata and where its bytes are on disk."""

    file_id: str
    display_name: str | None
    mime_type: str
    size: int
    path: Path
    created: float
    expires: float
    source: str  # "UPLOADED" or "GENERATED"
    sha256: bytes = b""

    def resource(self, base_url: str, version: str) -> JsonObject:
        """Return the `File` resource as Google answers it (https://ai.google.dev/api/files#File)."""
        uri = f"{base_url}/{version}/files/{self.file_id}"
        out: JsonObject = {
            "name": f"files/{self.file_id}",
            "mimeType": self.mime_type,
            "sizeBytes": str(self.size),
            "createTime": timestamp(self.created),
            "updateTime": timestamp(self.created),
            "expirationTime": timestamp(self.expires),
            "sha256Hash": base64.b64encode(self.sha256).decode(),
            "uri": uri,
            "state": "ACTIVE",
            "source": self.source,
        }
        if self.display_name:
            out["displayName"] = self.display_name
        if self.source == "GENERATED":
            out["downloadUri"] = f"{uri}:download?alt=media"
        return out


@dataclass(slots=True, kw_only=True)
class UploadSession:
    """A resumable upload that has started: the file it will become and the bytes received so far."""

    file: StoredFile
    declared_size: int
    received: int = 0
    hasher: "hashlib._Hash" = field(default_factory=hashlib.sha256)


class FileStore:
    """The files of the local Files API, on disk in a temporary directory, with a settable clock.

    Args:
        max_file_bytes: the largest file accepted (Google's 2 GB unless a test wants less).
        ttl_s: how long a file lives (Google's 48 hours).
        clock: returns the time in seconds since the epoch; `advance` moves it on.
    """

    def __init__(
        self,
        *,
        max_file_bytes: int = MAX_FILE_BYTES,
        ttl_s: float = FILE_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_file_bytes = max_file_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._skew_s = 0.0
        self._files: dict[str, StoredFile] = {}
        self._uploads: dict[str, UploadSession] = {}
        self._directory: Path | None = None

    def open(self) -> None:
        """Make the store's temporary directory (blocking: the server calls it off the event loop at start)."""
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="local-gemini-files-"))

    def now(self) -> float:
        """Return the store's time: the clock plus whatever `advance` added."""
        return self._clock() + self._skew_s

    def advance(self, seconds: float) -> None:
        """Move the store's clock on by `seconds` (to expire files in a test)."""
        self._skew_s += seconds

    def close(self) -> None:
        """Forget every file and upload and remove their bytes from disk (blocking)."""
        self._files.clear()
        self._uploads.clear()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def new_path(self) -> Path:
        """Return a fresh path in the store's directory (for a file the server is about to write).

        Raises:
            RuntimeError: the store is not open.
        """
        if self._directory is None:
            raise RuntimeError("the file store is not open")
        return self._directory / secrets.token_hex(12)

    # -- uploads --------------------------------------------------------------------------------------------

    def start_upload(self, meta: JsonObject, declared_size: int, mime_type: str) -> str:
        """Start a resumable upload of `declared_size` bytes; return its upload id.

        Raises:
            FileError: the size is over the limit, the name or display name is not valid, or the name is taken.
        """
        if declared_size < 0:
            raise FileError(400, "INVALID_ARGUMENT", "X-Goog-Upload-Header-Content-Length must be a size in bytes.")
        if declared_size > self.max_file_bytes:
            raise FileError(
                400, "INVALID_ARGUMENT", f"File size {declared_size} exceeds the limit of {self.max_file_bytes} bytes."
            )
        mime = str(meta.get("mimeType") or mime_type)
        if not mime:
            raise FileError(400, "INVALID_ARGUMENT", "The file's MIME type is not specified.")
        display = meta.get("displayName")
        if display is not None and (not isinstance(display, str) or len(display) > MAX_DISPLAY_NAME):
            raise FileError(400, "INVALID_ARGUMENT", "displayName must be no more than 512 characters.")
        file_id = self._new_id(meta.get("name"))
        self._expire()
        if file_id in self._files or any(s.file.file_id == file_id for s in self._uploads.values()):
            raise FileError(409, "ALREADY_EXISTS", f"File files/{file_id} already exists.")
        upload_id = secrets.token_urlsafe(24)
        stored = StoredFile(
            file_id=file_id,
            display_name=display,
            mime_type=mime,
            size=0,
            path=self.new_path(),
            created=self.now(),
            expires=self.now() + self.ttl_s,
            source="UPLOADED",
        )
        self._uploads[upload_id] = UploadSession(file=stored, declared_size=declared_size)
        return upload_id

    def _new_id(self, name: object) -> str:
        if name in (None, ""):
            return secrets.token_hex(6)
        text = str(name).removeprefix("files/")
        if not FILE_ID.fullmatch(text):
            raise FileError(
                400,
                "INVALID_ARGUMENT",
                f"Invalid file name: {name}. The ID may have up to 40 lowercase alphanumerics or dashes, and may not "
                "start or end with a dash.",
            )
        return text

    def append(self, upload_id: str, offset: int, chunk: bytes) -> None:
        """Add a chunk at `offset` to an upload (blocking: it writes to disk).

        Raises:
            FileError: an unknown upload, a chunk not at the end of what was received, or bytes past the size.
        """
        session = self._session(upload_id)
        if offset != session.received:
            raise FileError(
                400, "INVALID_ARGUMENT", f"Invalid upload offset {offset}: {session.received} bytes were received."
            )
        if session.received + len(chunk) > session.declared_size:
            raise FileError(400, "INVALID_ARGUMENT", "The upload has more bytes than its declared size.")
        with session.file.path.open("ab") as out:  # "ab" makes the file at the first chunk
            out.write(chunk)
        session.hasher.update(chunk)
        session.received += len(chunk)

    def finalize(self, upload_id: str) -> StoredFile:
        """Finish an upload: the file becomes ACTIVE and listed.

        Raises:
            FileError: an unknown upload, or fewer bytes than its declared size.
        """
        session = self._session(upload_id)
        session.file.path.touch()  # an empty upload has had no chunk to make its file
        if session.received != session.declared_size:
            raise FileError(
                400,
                "INVALID_ARGUMENT",
                f"The upload has {session.received} bytes, not the {session.declared_size} declared.",
            )
        del self._uploads[upload_id]
        stored = session.file
        stored.size = session.received
        stored.sha256 = session.hasher.digest()
        self._files[stored.file_id] = stored
        return stored

    def _session(self, upload_id: str) -> UploadSession:
        session = self._uploads.get(upload_id)
        if session is None:
            raise FileError(404, "NOT_FOUND", "The upload session does not exist or has ended.")
        return session

    # -- files ----------------------------------------------------------------------------------------------

    def add_generated(self, chunks: list[bytes], mime_type: str, display_name: str | None = None) -> StoredFile:
        """Store a file the server made itself from `chunks` (blocking: it writes them to disk)."""
        path = self.new_path()
        hasher = hashlib.sha256()
        size = 0
        with path.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
                hasher.update(chunk)
                size += len(chunk)
        return self.adopt_generated(path, mime_type, display_name, sha256=hasher.digest(), size=size)

    def adopt_generated(
        self, path: Path, mime_type: str, display_name: str | None = None, *, sha256: bytes, size: int
    ) -> StoredFile:
        """Make a file the server wrote at `path` (from `new_path`) a stored file: source GENERATED, downloadable.

        Args:
            path: the written file; the store owns it from now on.
            mime_type: its MIME type.
            display_name: its display name, if any.
            sha256: the SHA-256 of its bytes, computed while writing them (a result file can be gigabytes).
            size: its size in bytes, counted while writing them.
        """
        file_id = secrets.token_hex(6)
        stored = StoredFile(
            file_id=file_id,
            display_name=display_name,
            mime_type=mime_type,
            size=size,
            path=path,
            created=self.now(),
            expires=self.now() + self.ttl_s,
            source="GENERATED",
            sha256=sha256,
        )
        self._files[file_id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile:
        """Return a live file.

        Raises:
            FileError: 403 PERMISSION_DENIED, as Google answers for a file that does not exist or expired.
        """
        self._expire()
        stored = self._files.get(file_id)
        if stored is None:
            raise not_found(file_id)
        return stored

    def delete(self, file_id: str) -> None:
        """Delete a file and its bytes.

        Raises:
            FileError: the file does not exist (or expired).
        """
        stored = self.get(file_id)
        del self._files[file_id]
        discard(stored.path)  # a batch reading it keeps its open handle (POSIX)

    def listed(self) -> list[StoredFile]:
        """Return the live files, newest first (the order Google's listing shows)."""
        self._expire()
        return sorted(self._files.values(), key=lambda f: (-f.created, f.file_id))

    async def read(self, file_id: str) -> AsyncIterator[bytes]:
        """Yield a file's bytes in chunks.

        Raises:
            FileError: the file does not exist, expired, or was uploaded (only generated files download).
        """
        stored = self.get(file_id)
        if stored.source != "GENERATED":
            raise FileError(400, "INVALID_ARGUMENT", f"Only generated files can be downloaded: files/{file_id}.")
        source = await open_off_loop(stored.path, "rb")
        try:
            while chunk := await asyncio.to_thread(source.read, DOWNLOAD_CHUNK):
                yield chunk
        finally:
            source.close()

    def read_bytes(self, file_id: str) -> bytes:
        """Return a live file's bytes (blocking; for the small reference images a request points to).

        Raises:
            FileError: the file does not exist or expired.
        """
        return self.get(file_id).path.read_bytes()

    def _expire(self) -> None:
        """Forget the files older than the time to live, as Google deletes them after 48 hours."""
        now = self.now()
        for file_id in [f.file_id for f in self._files.values() if f.expires <= now]:
            discard(self._files.pop(file_id).path)
