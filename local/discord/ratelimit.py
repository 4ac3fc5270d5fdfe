"""Fixed-window rate limits with Discord's headers and 429 body.

Discord answers every rate-limited route with ``X-RateLimit-*`` headers; discord.py reads them and waits
pre-emptively when ``Remaining`` reaches 0, and on a 429 it sleeps ``retry_after`` (only if the response has a
``Via`` header; without one it assumes a Cloudflare ban and raises). The playground limits rapid message edits.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(slots=True)
class _Window:
    started_at: float
    used: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The outcome of one request against a bucket, with the headers to send."""

    allowed: bool
    limit: int
    remaining: int
    reset_after_s: float
    bucket: str
    wall_reset_at: float

    def headers(self) -> dict[str, str]:
        """Return the ``X-RateLimit-*`` headers (plus ``Retry-After`` and ``Via`` on a 429)."""
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": f"{self.wall_reset_at:.3f}",
            "X-RateLimit-Reset-After": f"{self.reset_after_s:.3f}",
            "X-RateLimit-Bucket": self.bucket,
        }
        if not self.allowed:
            out["Retry-After"] = str(max(1, math.ceil(self.reset_after_s)))
            out["X-RateLimit-Scope"] = "user"
            out["Via"] = "1.1 google"  # discord.py treats a 429 without Via as a Cloudflare ban
        return out

    def body(self) -> dict[str, Any]:
        """Return Discord's 429 JSON body."""
        return {"message": "You are being rate limited.", "retry_after": round(self.reset_after_s, 3), "global": False}


@dataclass(slots=True)
class RateLimiter:
    """Allow ``limit`` requests per ``window_s`` for each key (e.g. one channel's message edits)."""

    limit: int = 5
    window_s: float = 5.0
    name: str = "message-edit"
    clock: Callable[[], float] = time.monotonic
    _windows: dict[str, _Window] = field(default_factory=dict)

    def hit(self, key: str) -> Decision:
        """Count one request for ``key`` and say whether it may proceed."""
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now - window.started_at >= self.window_s:
            window = _Window(started_at=now)
            self._windows[key] = window
        reset_after = max(0.0, window.started_at + self.window_s - now)
        allowed = window.used < self.limit
        if allowed:
            window.used += 1
        bucket = hashlib.sha1(f"{self.name}:{key}".encode(), usedforsecurity=False).hexdigest()[:16]
        return Decision(
            allowed=allowed,
            limit=self.limit,
            remaining=max(0, self.limit - window.used),
            reset_after_s=reset_after,
            bucket=bucket,
            wall_reset_at=time.time() + reset_after,
        )
