"""A store on the local filesystem (`file://PATH`), served to users through signed links.

Every filesystem call runs in a worker thread (`asyncio.to_thread`), so the event loop never blocks. A write goes
to a temporary file in the target's directory, is fsynced and then renamed over the target (`os.replace`), so a
reader sees the whole old object, the whole new one, or none. Temporary names contain a `~`, which no valid key
contains, so they never show up in `list`.

Every key maps to a path under the root; the path is resolved (symlinks followed) and refused unless it is still
inside the root, so neither a hostile key nor a symlink planted inside the root can reach outside it.
"""

import asyncio
import contextlib
import errno
import logging
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISLNK, S_ISREG
from typing import BinaryIO, ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

from storage.base import DEFAULT_CHUNK_BYTES, Body, ObjectInfo
from storage.errors import (
    InvalidKeyError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
    StoreConfigError,
)
from storage.keys import is_valid_key, validate_key, validate_prefix
from storage.links import LinkSigner
from storage.memory import guess_content_type

log = logging.getLogger(__name__)

# Small chunks from a stream are gathered up to this size before one threaded write, so a stream of tiny chunks
# does not cost one thread hop per chunk; memory stays bounded by this plus one chunk.
_WRITE_BUFFER_BYTES = 1024 * 1024
_TEMP_MARK = ".peel-tmp~"

P = ParamSpec("P")
T = TypeVar("T")


def path_from_file_url(url: str) -> Path:
    """Return the filesystem path of a `file://` URL: `file:///abs`, `file://./rel` or `file://rel/path`.

    Raises:
        StoreConfigError: the URL is not a `file://` URL or names no path.
    """
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise StoreConfigError(f"not a file:// URL: {url!r}")
    if parts.query or parts.fragment:
        raise StoreConfigError("a file:// store URL takes no query or fragment")
    netloc, path = unquote(parts.netloc), unquote(parts.path)
    raw = path if netloc in ("", "localhost") else netloc + path
    if not raw:
        raise StoreConfigError(f"file:// URL names no directory: {url!r}")
    return Path(raw)


class FileStore:
    """Objects as files under a root directory; the root is created on the first write."""

    def __init__(self, root: Path | str, *, url: str | None = None, signer: LinkSigner | None = None) -> None:
        self._root_arg = Path(root)
        self._url = url or f"file://{root}"
        self._signer = signer
        self._root_resolved: str | None = None

    @classmethod
    def from_url(cls, url: str, *, signer: LinkSigner | None = None) -> "FileStore":
        """Open the store named by a `file://` URL (see `path_from_file_url`)."""
        return cls(path_from_file_url(url), url=url, signer=signer)

    @property
    def url(self) -> str:
        """The URL this store was opened from."""
        return self._url

    # -- paths (blocking: call from a thread) -----------------------------------------------------------------

    def _root(self) -> Path:
        return Path(self._root_str())

    def _root_str(self) -> str:
        if self._root_resolved is None:
            self._root_resolved = os.path.realpath(self._root_arg)
        return self._root_resolved

    def path_for(self, key: str) -> Path:
        """Return the resolved path of `key`, guaranteed to be inside the root. Blocking: call it from a thread.

        The web server uses it to serve files (with Range support) straight from disk. The path may not exist.

        Raises:
            InvalidKeyError: the key is malformed, or resolving it (through a symlink) leaves the root.
        """
        return Path(self.fs_path(key))

    def fs_path(self, key: str) -> str:
        """Return `path_for(key)` as a string: what the store's own reads and writes use. Blocking.

        No `Path` is made: on Python 3.11 every `Path` interns each part of its name, so 10,000 content-addressed
        keys grew the interpreter's table of interned strings by about 2 MB, for good.

        Raises:
            InvalidKeyError: the key is malformed, or resolving it (through a symlink) leaves the root.
        """
        validate_key(key)
        root = self._root_str()
        resolved = _resolve_under(root, key)
        if not resolved.startswith(root.rstrip("/") + "/") or resolved == root:
            raise InvalidKeyError(f"key {key!r} resolves outside the store root")
        return resolved

    async def local_path(self, key: str) -> Path:
        """Return the path of an existing object's file, resolved inside the root.

        Raises:
            InvalidKeyError: the key is malformed or escapes the root.
            ObjectNotFoundError: there is no object under `key`.
        """
        path = await asyncio.to_thread(self.path_for, key)
        if not await asyncio.to_thread(path.is_file):
            raise ObjectNotFoundError(key)
        return path

    # -- writing ----------------------------------------------------------------------------------------------

    def _open_temp(self, key: str) -> tuple[str, str, BinaryIO]:
        target = self.fs_path(key)
        parent, name = os.path.split(target)
        try:
            os.makedirs(parent, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InvalidKeyError(f"key {key!r} runs through an existing object") from exc
        if os.path.isdir(target):
            raise InvalidKeyError(f"key {key!r} is a directory of other objects")
        temp = os.path.join(parent, f"{_TEMP_MARK}{name}.{uuid.uuid4().hex}")
        # O_EXCL + O_NOFOLLOW: never write through something that appeared at the temp name.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        return target, temp, os.fdopen(fd, "wb")

    @staticmethod
    def _commit(handle: BinaryIO, temp: str, target: str) -> os.stat_result:
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(temp, target)
        _fsync_dir(os.path.dirname(target))
        return os.stat(target)

    @staticmethod
    def _discard(handle: BinaryIO, temp: str) -> None:
        try:
            handle.close()
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    @contextmanager
    def writing(self, key: str) -> Iterator[BinaryIO]:
        """Open a file to write `key` into. Blocking: call it, and write, from a thread.

        What is written lands in a temporary file; when the block ends cleanly it is fsynced and renamed into place,
        when it raises the file is removed. An OS failure, in the block or around it, becomes a storage error.
        The streaming ZIP writer uses it to write an archive from its own thread, without a hop per chunk.
        """
        try:
            target, temp, handle = self._open_temp(key)
        except OSError as exc:
            raise _storage_error(exc) from exc
        try:
            yield handle
            self._commit(handle, temp, target)
        except BaseException as exc:
            self._discard(handle, temp)
            if isinstance(exc, OSError):
                raise _storage_error(exc) from exc
            raise

    async def put(self, key: str, body: Body, *, content_type: str | None = None) -> ObjectInfo:
        """Write `body` under `key` atomically; a stream is written in bounded memory.

        The file store keeps no metadata: `content_type` is only echoed in the returned info, and `head` and
        `list` guess the type from the key's extension.
        """
        validate_key(key)
        if isinstance(body, bytes | bytearray | memoryview):
            # One thread hop, not three: a worker stores every image it makes while holding a Gemini slot.
            stat = await _run_to_completion(self._put_bytes, key, body)
            return _info(key, stat, content_type)
        opening = asyncio.ensure_future(_threaded(self._open_temp, key))
        try:
            target, temp, handle = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The thread still creates the temp file: wait for it (a quick open) and remove it, or the handle and
            # the file leak (a copy of many objects cancels its siblings when one read fails).
            await asyncio.wait({opening})
            if not opening.cancelled() and opening.exception() is None:
                _, temp, handle = opening.result()
                await asyncio.shield(asyncio.to_thread(self._discard, handle, temp))
            raise
        committed = False
        try:
            await self._write_stream(handle, body)
            stat = await _run_to_completion(self._commit, handle, temp, target)
            committed = True
        finally:
            if not committed:
                # Shielded so that a second cancellation cannot leave the temp file behind.
                await asyncio.shield(asyncio.to_thread(self._discard, handle, temp))
        return _info(key, stat, content_type)

    def _put_bytes(self, key: str, body: bytes | bytearray | memoryview) -> os.stat_result:
        with self.writing(key) as handle:
            handle.write(body)
            handle.flush()
            # Size and mtime as the renamed file will have them: fsync and rename change neither.
            return os.fstat(handle.fileno())

    @staticmethod
    async def _write_stream(handle: BinaryIO, body: AsyncIterable[bytes]) -> None:
        pending: list[bytes] = []
        pending_bytes = 0
        async for chunk in body:
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= _WRITE_BUFFER_BYTES:
                await _threaded(handle.writelines, pending)
                pending, pending_bytes = [], 0
        if pending:
            await _threaded(handle.writelines, pending)

    # -- reading ----------------------------------------------------------------------------------------------

    def _open_existing(self, key: str) -> BinaryIO:
        try:
            return open(self.fs_path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(key) from exc

    async def read(self, key: str, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> AsyncIterator[bytes]:
        """Yield the object's bytes in chunks of at most `chunk_bytes`."""
        opening = asyncio.ensure_future(_threaded(self._open_and_read, key, chunk_bytes))
        try:
            handle, size, first = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The thread still opens the file: close it when it does, or the handle leaks (a ZIP of many members
            # cancels its read-ahead when one member is missing).
            opening.add_done_callback(_close_opened)
            raise
        try:
            # Objects are replaced atomically, never grown in place, so the size at open is the whole object:
            # reading exactly that much saves the thread hop that would only find the end of the file.
            remaining = size - len(first)
            chunk = first
            while chunk:
                yield chunk
                if remaining <= 0:
                    break
                chunk = await _threaded(handle.read, min(chunk_bytes, remaining))
                remaining -= len(chunk)
        finally:
            await asyncio.shield(asyncio.to_thread(handle.close))

    def _open_and_read(self, key: str, chunk_bytes: int) -> tuple[BinaryIO, int, bytes]:
        handle = self._open_existing(key)
        try:
            size = os.fstat(handle.fileno()).st_size
            return handle, size, handle.read(min(chunk_bytes, size))
        except BaseException:
            handle.close()
            raise

    def _read_range(self, key: str, start: int, end: int) -> bytes:
        with self._open_existing(key) as handle:
            handle.seek(start)
            return handle.read(end - start)

    async def read_range(self, key: str, start: int, end: int) -> bytes:
        """Return bytes `start` to `end` (exclusive); fewer when the object is shorter."""
        if start < 0 or end < start:
            raise ValueError(f"bad range {start}-{end}")
        return await _threaded(self._read_range, key, start, end)

    def _get_bytes(self, key: str) -> bytes:
        with self._open_existing(key) as handle:
            return handle.read()

    async def get_bytes(self, key: str) -> bytes:
        """Return the whole object; for small objects only."""
        return await _threaded(self._get_bytes, key)

    def _head(self, key: str) -> ObjectInfo | None:
        try:
            stat = os.stat(self.fs_path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not _is_regular(stat):
            return None
        return _info(key, stat)

    async def head(self, key: str) -> ObjectInfo | None:
        """Return the object's size, guessed content type and modification time, or None."""
        return await _threaded(self._head, key)

    async def exists(self, key: str) -> bool:
        """Tell whether an object exists under `key`."""
        return await self.head(key) is not None

    def _list(self, prefix: str) -> list[ObjectInfo]:
        root = self._root()
        # Walk only the deepest directory the prefix names; the rest of the prefix filters names.
        start = root / prefix.rpartition("/")[0] if "/" in prefix else root
        if not Path(os.path.realpath(start)).is_relative_to(root):  # the prefix runs through a symlink out
            return []
        found: list[ObjectInfo] = []
        stack = [start]
        while stack:
            directory = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                key = Path(entry.path).relative_to(root).as_posix()
                # Symlinks are not followed: a link could lead out of the root or into a cycle.
                if entry.is_dir(follow_symlinks=False):
                    if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                        stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False) and key.startswith(prefix) and is_valid_key(key):
                    found.append(_info(key, entry.stat(follow_symlinks=False)))
        found.sort(key=lambda info: info.key)
        return found

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Yield the objects whose key starts with `prefix`, in key order (temporary files excluded)."""
        validate_prefix(prefix)
        for info in await _threaded(self._list, prefix):
            yield info

    # -- the rest ---------------------------------------------------------------------------------------------

    def _delete(self, key: str) -> None:
        path = self.fs_path(key)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError as exc:
            raise InvalidKeyError(f"key {key!r} is a directory of other objects") from exc

    async def delete(self, key: str) -> None:
        """Delete the object; a missing key is not an error."""
        await _threaded(self._delete, key)

    async def url_for(self, key: str, *, expires_s: int, filename: str | None = None) -> str:
        """Return a signed link to the object, served by the bot's web server.

        Raises:
            StoreConfigError: the store was opened without a link signer.
            ObjectNotFoundError: there is no object under `key`.
        """
        if self._signer is None:
            raise StoreConfigError("this file store has no link signer, so it cannot make links")
        if not await self.exists(key):
            raise ObjectNotFoundError(key)
        return self._signer.sign(key, expires_s=expires_s, filename=filename)

    async def close(self) -> None:
        """Nothing to release."""


async def _threaded(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking filesystem call in a thread, translating OS failures into storage errors."""
    try:
        return await asyncio.to_thread(func, *args, **kwargs)
    except StorageError:
        raise
    except OSError as exc:
        raise _storage_error(exc) from exc


def _storage_error(exc: OSError) -> StorageError:
    if exc.errno in (errno.ELOOP, errno.ENAMETOOLONG):
        return InvalidKeyError(f"unusable path: {exc.strerror}")
    return StorageUnavailableError(f"file store I/O failed: {exc.strerror or exc}")


async def _run_to_completion(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `func` in a thread; if cancelled meanwhile, wait for it to finish before re-raising the cancel.

    Used for the fsync-and-rename step, so that cleanup never races a rename still running in its thread.
    """
    task = asyncio.ensure_future(_threaded(func, *args, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise


def _close_opened(opening: "asyncio.Future[tuple[BinaryIO, int, bytes]]") -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result()[0].close()


def _resolve_under(root: str, key: str) -> str:
    """Return `os.path.realpath(f"{root}/{key}")` for a resolved `root` and a valid key, walking only the key's parts.

    Each existing part is checked with one `lstat`; a symlink among them hands the whole path to `realpath`,
    and a part that cannot be looked at (missing, say) ends the walk, as `realpath` takes the rest unchanged.
    The same answer as `realpath` of the whole path, without its `lstat` of every directory above the root:
    a worker resolves four keys an image.
    """
    whole = f"{root.rstrip('/')}/{key}"
    path = root.rstrip("/")
    for part in key.split("/"):
        path = f"{path}/{part}"
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return whole  # as realpath: what cannot be looked at is taken as it is
        if S_ISLNK(mode):
            return os.path.realpath(whole)
    return path


def _fsync_dir(directory: str) -> None:
    """Make a rename durable; some filesystems cannot open a directory, which is harmless to skip."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        log.debug("fsync of directory %s not supported", directory)
    finally:
        os.close(fd)


def _is_regular(stat: os.stat_result) -> bool:
    return S_ISREG(stat.st_mode)


def _info(key: str, stat: os.stat_result, content_type: str | None = None) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=stat.st_size,
        content_type=content_type or guess_content_type(key),
        modified_at=datetime.fromtimestamp(stat.st_mtime, UTC),
    )
