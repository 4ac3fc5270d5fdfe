"""When a failed item is tried again: retryable codes back off exponentially; safety blocks and bad inputs never."""

from dataclasses import dataclass
from datetime import timedelta

from worker.contract import ErrorCode


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with a cap, up to `max_attempts` attempts per item (the first one included)."""

    max_attempts: int = 4
    base_delay: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(minutes=10)

    def decide(self, *, attempts: int, code: ErrorCode | None) -> timedelta | None:
        """Return the delay before the next attempt, or None to give up.

        Args:
            attempts: how many attempts were made, the failed one included.
            code: why it failed; None for a chunk lost without a verdict (treated as retryable).
        """
        if code is not None and not code.is_retryable:
            return None
        if attempts >= self.max_attempts:
            return None
        delay: timedelta = self.base_delay * 2 ** max(0, attempts - 1)
        return min(self.cap, delay)
