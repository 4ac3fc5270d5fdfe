"""One job's store operations: retried while the store is unavailable, with a breaker once their tries are spent.

Every job kind of the worker (a chunk, a relax part's preparation or collection) reads references and outputs the
same way, so they share this: a store operation that fails as unavailable is retried with jittered exponential
backoff; once one exhausts its tries the store is taken as down for the rest of the job (nothing clears it: a job
is short, and the bot retries what it returns later, with backoff), and further operations fail at once as
`STORAGE`, except the writes of images already paid for (`while_down`), whose own tries are their only chance.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter
from tenacity.stop import stop_base

from storage import InvalidKeyError, ObjectNotFoundError, StorageError, StorageUnavailableError, Store
from storage.keys import thumb_key
from storage.thumbnails import THUMB_CONTENT_TYPE, ThumbnailError, make_thumbnail
from worker.contract import ErrorCode
from worker.errors import GenerationError
from worker.generation import InputImage
from worker.images import PNG_HEADER_BYTES, ImageRejectedError, load_reference, png_dimensions

log = logging.getLogger(__name__)

T = TypeVar("T")

STORE_DOWN = "the store is unavailable; the job stopped before this item"

# Thumbnails decoded at once per job: a 4K image decodes to 48 MB of pixels, and a chunk runs 8 items at once.
THUMBNAILS_AT_ONCE = 2


class _StopWhen(stop_base):
    """Stop retrying as soon as `condition()` holds (the breaker opened during another item's tries)."""

    def __init__(self, condition: Callable[[], bool]) -> None:
        self._condition = condition

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._condition()


class StoreCalls:
    """The store as one job uses it.

    Args:
        store: the store.
        job_id: Peel's job id, for the logs.
        attempts: tries of one operation, the first included, while the store is unavailable.
        backoff_s: the first wait between two tries; it doubles per try (plus up to as much jitter).
        backoff_cap_s: the longest wait between two tries.
        sleep: awaits a number of seconds.
        max_reference_bytes: the largest reference image (or edit source) read.
        max_reference_pixels: the most pixels a reference image may have.
    """

    def __init__(
        self,
        *,
        store: Store,
        job_id: str,
        attempts: int,
        backoff_s: float,
        backoff_cap_s: float,
        sleep: Callable[[float], Awaitable[None]],
        max_reference_bytes: int,
        max_reference_pixels: int,
    ) -> None:
        self.store = store
        self._job_id = job_id
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._backoff_cap_s = backoff_cap_s
        self._sleep = sleep
        self._max_reference_bytes = max_reference_bytes
        self._max_reference_pixels = max_reference_pixels
        self.down = False
        self._thumbnails = asyncio.Semaphore(THUMBNAILS_AT_ONCE)

    async def run(self, operation: Callable[[], Awaitable[T]], what: str, *, while_down: bool = False) -> T:
        """Run a store operation, retrying it with backoff while the store is unavailable.

        Gives up at once when the breaker is open, unless `while_down` (a write of an image already made, whose
        own tries are its only chance). Other storage errors (not found, invalid key) propagate unchanged.

        Raises:
            GenerationError: STORAGE once the tries are spent (which opens the breaker) or the breaker is open.
        """
        if self.down and not while_down:
            raise GenerationError(ErrorCode.STORAGE, STORE_DOWN)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts) | _StopWhen(lambda: self.down and not while_down),
            wait=wait_exponential_jitter(initial=self._backoff_s, max=self._backoff_cap_s, jitter=self._backoff_s),
            retry=retry_if_exception_type(StorageUnavailableError),
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(state, what),
            reraise=True,
        )
        try:
            # tenacity awaits what it calls only when it is a coroutine function: hence partials, not lambdas.
            return await retrying(operation)
        except StorageUnavailableError as exc:
            if not self.down:
                self.down = True
                log.warning(
                    "job %s: store unavailable while %s (%s); the job stops calling Gemini",
                    self._job_id,
                    what,
                    exc,
                    extra={"job_id": self._job_id, "action": "fail"},
                )
            raise GenerationError(ErrorCode.STORAGE, f"the store was unavailable while {what}") from exc

    def _log_retry(self, state: RetryCallState, what: str) -> None:
        log.warning(
            "job %s: store unavailable while %s (try %d), retrying in %.2fs",
            self._job_id,
            what,
            state.attempt_number,
            state.upcoming_sleep,
            extra={"job_id": self._job_id, "action": "retry"},
        )

    async def put_output(self, key: str, png: bytes) -> None:
        """Write a made image to its output key, tried even while the store is down (the image is paid for).

        Every try writes the same bytes: an image is never generated again for a write.

        Raises:
            GenerationError: BAD_INPUT for an invalid key; STORAGE when every try failed.
        """
        try:
            await self.run(
                partial(self.store.put, key, png, content_type="image/png"), f"writing {key}", while_down=True
            )
        except InvalidKeyError as exc:
            raise GenerationError(ErrorCode.BAD_INPUT, f"output key {key} is invalid") from exc
        await self.put_thumbnail(key, png)

    async def put_thumbnail(self, key: str, image: bytes) -> bool:
        """Write the gallery thumbnail of the image `key` holds (`image`) under `thumb_key(key)`; best effort.

        One try, outside the breaker: a thumbnail is a convenience the gallery makes itself when it is missing, so a
        failure (an undecodable image, a store error) is logged and never fails the item or stops the job.

        Returns:
            Whether the thumbnail was written.
        """
        try:
            async with self._thumbnails:
                thumb = await asyncio.to_thread(make_thumbnail, image)
            await self.store.put(thumb_key(key), thumb, content_type=THUMB_CONTENT_TYPE)
        except (ThumbnailError, StorageError) as exc:
            log.warning("job %s: no thumbnail for %s: %s", self._job_id, key, exc, extra={"job_id": self._job_id})
            return False
        return True

    async def ensure_thumbnail(self, key: str) -> None:
        """Write the thumbnail of the stored image `key` when it has none (a re-run skipping an output made before).

        One HEAD when it exists; otherwise the image is read and `put_thumbnail` writes it. Best effort, as there.
        """
        try:
            if await self.store.head(thumb_key(key)) is not None:
                return
            image = await self.store.get_bytes(key)
        except StorageError as exc:
            log.warning("job %s: no thumbnail for %s: %s", self._job_id, key, exc, extra={"job_id": self._job_id})
            return
        await self.put_thumbnail(key, image)

    async def stored_png_size(self, key: str) -> tuple[int, int] | None:
        """Return the width and height of the PNG stored under `key`, or None when there is none (or not a PNG).

        Raises:
            GenerationError: BAD_INPUT when the key is invalid; STORAGE as `run`.
        """
        what = f"checking {key}"
        try:
            if await self.run(partial(self.store.head, key), what) is None:
                return None
            head = await self.run(partial(self.store.read_range, key, 0, PNG_HEADER_BYTES), what)
        except ObjectNotFoundError:
            return None  # deleted between the two calls
        except InvalidKeyError as exc:
            raise GenerationError(ErrorCode.BAD_INPUT, f"output key {key} is invalid") from exc
        size = png_dimensions(head)
        if size is None:
            log.warning("%s exists but is not a PNG; making it again", key)
        return size

    async def load_image(self, key: str, role: str) -> InputImage | str:
        """Return the image under `key`, or why it is unusable (missing, too large, not an image).

        Raises:
            GenerationError: STORAGE as `run` (not cached by callers: a later item tries again).
        """
        limit = self._max_reference_bytes
        what = f"reading {role} {key}"
        try:
            info = await self.run(partial(self.store.head, key), what)
            if info is None:
                return f"{role} {key} is not in the store"
            if info.size > limit:
                return f"{role} {key} is {info.size:,} bytes, over the limit of {limit:,}"
            data = await self.run(partial(self.store.get_bytes, key), what)
        except ObjectNotFoundError:
            return f"{role} {key} is not in the store"
        except InvalidKeyError:
            return f"{role} key is invalid"
        try:
            return await asyncio.to_thread(load_reference, data, max_pixels=self._max_reference_pixels)
        except ImageRejectedError as exc:
            return f"{role} {key} is unusable: {exc}"
