"""How many downloads Peel runs at once, per user and in all, and how many bytes they may hold on disk.

A download takes a `DownloadSlot` before it starts and gives it back when its file is gone; the slot reserves
bytes as they arrive (or the declared length at once), so one user cannot run many downloads and all of them
together cannot fill the disk. A refusal never waits: the user is told to try again.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadLimits:
    """Downloads at once per user and in all, and the bytes all of them may hold on disk."""

    per_user: int
    total: int
    disk_bytes: int


class DownloadRefusedError(Exception):
    """A download may not start now; `user_message` says why."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class DownloadSlot:
    """One running download's place; `reserve` holds bytes against the disk budget, `release` frees it all."""

    def __init__(self, quota: "DownloadQuota", user_id: int) -> None:
        self._quota = quota
        self.user_id = user_id
        self.held = 0
        self._released = False

    def reserve(self, n: int) -> bool:
        """Hold `n` more bytes on disk; False (nothing held) when the disk budget has not that much left."""
        if self._released or not self._quota.take(n):
            return False
        self.held += n
        return True

    def release(self) -> None:
        """Give back the slot and its bytes (the download's file is gone); a second call does nothing."""
        if not self._released:
            self._released = True
            self._quota.give_back(self)

    def __enter__(self) -> "DownloadSlot":
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class DownloadQuota:
    """The downloads running now, against `DownloadLimits`."""

    def __init__(self, limits: DownloadLimits) -> None:
        self.limits = limits
        self._running: dict[int, int] = {}  # user id -> downloads running
        self.held_bytes = 0

    @property
    def running(self) -> int:
        """Downloads running now."""
        return sum(self._running.values())

    def acquire(self, user_id: int) -> DownloadSlot:
        """Take a slot for a new download by `user_id`.

        Raises:
            DownloadRefusedError: the user already runs their share, or Peel runs as many as it may.
        """
        mine = self._running.get(user_id, 0)
        if mine >= self.limits.per_user:
            raise DownloadRefusedError(
                "You already have a download running; wait for it to finish."
                if mine == 1
                else f"You already have {mine} downloads running; wait for one to finish."
            )
        if self.running >= self.limits.total:
            raise DownloadRefusedError("Peel is busy with other downloads right now; try again in a minute.")
        self._running[user_id] = mine + 1
        return DownloadSlot(self, user_id)

    def take(self, n: int) -> bool:
        """Take `n` bytes of the disk budget if that many are left."""
        if self.held_bytes + n > self.limits.disk_bytes:
            return False
        self.held_bytes += n
        return True

    def give_back(self, slot: DownloadSlot) -> None:
        """Return a released slot's place and bytes."""
        self.held_bytes -= slot.held
        left = self._running[slot.user_id] - 1
        if left:
            self._running[slot.user_id] = left
        else:
            del self._running[slot.user_id]
