"""How often a thread may be renamed: Discord's channel-name limit, kept by Peel instead of learned from a 429.

Discord lets a channel (a thread included) change its name twice per 10 minutes; a third rename is answered 429
with a `retry_after` of several minutes, which discord.py sleeps out while the user waits, past the interaction
token's 15 minutes (reported in discord/discord-api-docs#1900, explained by discord.py's maintainer in
Rapptz/discord.py#9073; Discord does not document it: discord/discord-api-docs#2760). The group is renamed in the
ledger at once either way; only the thread's name waits for the next rename Discord allows.
"""

from collections import deque
from dataclasses import dataclass, field

RENAMES_PER_WINDOW = 2
RENAME_WINDOW_S = 600.0


@dataclass(slots=True)
class RenameWindow:
    """The renames of one thread in the last `window_s` seconds (times from a monotonic clock)."""

    limit: int = RENAMES_PER_WINDOW
    window_s: float = RENAME_WINDOW_S
    _times: deque[float] = field(default_factory=deque)

    def _forget_before(self, now: float) -> None:
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()

    def try_rename(self, now: float) -> bool:
        """Record a rename at `now` and return True if Discord will take it, else False (nothing recorded)."""
        self._forget_before(now)
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True

    def next_allowed_in(self, now: float) -> float:
        """Return the seconds until the next rename is allowed (0 when it is now)."""
        self._forget_before(now)
        if len(self._times) < self.limit:
            return 0.0
        return self.window_s - (now - self._times[0])
