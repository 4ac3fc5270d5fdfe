"""The global budget of in-flight Gemini calls, shared by running chunks and adapted AIMD-style.

The configured budget is the account's quota (`GEMINI_CONCURRENCY`). The current window starts there, halves
when a chunk reports RATE_LIMITED (at most once per `decrease_cooldown`, so one burst of 429s counts once), and
grows back by `increase` calls for each chunk that finishes with successes and no rate limit (a chunk is our
round trip, as in TCP's congestion avoidance). It never exceeds the
configured budget and never drops below 1. A chunk's concurrency is fixed when it is submitted, so the sum of the
concurrencies of chunks in flight is what must stay within the window when a new chunk is admitted.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(slots=True, kw_only=True)
class AimdBudget:
    """Mutable AIMD window; the dispatcher owns one."""

    limit: int
    decrease_cooldown: timedelta = timedelta(seconds=10)
    max_chunk_concurrency: int | None = None  # a single chunk never gets more than this (None: the window)
    increase: float = 1.0
    window: float = 0.0
    last_decrease: datetime | None = None

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("the budget must allow at least one call")
        if self.window <= 0:
            self.window = float(self.limit)
        self.window = min(float(self.limit), max(1.0, self.window))

    @property
    def allowed(self) -> int:
        """How many calls may be in flight now."""
        return max(1, math.floor(self.window))

    def available(self, in_flight: int) -> int:
        """Return how many more calls may start while `in_flight` are running."""
        return max(0, self.allowed - in_flight)

    def on_rate_limited(self, now: datetime) -> bool:
        """Halve the window (unless it was halved within the cooldown); return whether it changed."""
        if self.last_decrease is not None and now - self.last_decrease < self.decrease_cooldown:
            return False
        self.last_decrease = now
        before = self.window
        self.window = max(1.0, self.window / 2)
        return self.window != before

    def on_success(self) -> None:
        """Grow the window by `increase` after a chunk finished well, up to the limit."""
        self.window = min(float(self.limit), self.window + self.increase)

    def chunk_concurrency(self, *, items: int, in_flight: int, contenders: int) -> int:
        """Return the concurrency for a new chunk of `items`, or 0 when the budget has no room.

        Args:
            items: items in the chunk (it never needs more calls than that).
            in_flight: calls already held by chunks in flight.
            contenders: jobs sharing the window (with chunks in flight or ready to submit), at least 1; each
                chunk gets at most its job's fair share, so one batch cannot take the whole window.
        """
        share = max(1, self.allowed // max(1, contenders))
        cap = share if self.max_chunk_concurrency is None else min(share, self.max_chunk_concurrency)
        return max(0, min(items, cap, self.available(in_flight)))
