"""Per-user caps, Midjourney style: a few jobs running, some more waiting, the rest refused."""

from dataclasses import dataclass
from enum import StrEnum

from bot.core.models import UserLoad


class Admission(StrEnum):
    """What happens to a new job."""

    QUEUED = "queued"  # may run now
    WAITING = "waiting"  # the owner's running slots are full; it starts when one frees
    REFUSED = "refused"  # the owner's waiting slots are full too ("Queue full")


@dataclass(frozen=True, slots=True, kw_only=True)
class Caps:
    """How many jobs one user may have running and waiting; None means no limit."""

    max_running: int | None = 3
    max_waiting: int | None = 10

    def admit(self, load: UserLoad) -> Admission:
        """Decide where a new job of a user with `load` goes."""
        has_slot = self.max_running is None or load.running < self.max_running
        # A free running slot goes to a new job only when nothing older waits for it, so jobs start in order.
        if has_slot and load.waiting == 0:
            return Admission.QUEUED
        if self.max_waiting is None or load.waiting < self.max_waiting:
            return Admission.WAITING
        return Admission.REFUSED

    def admits_all(self, load: UserLoad, jobs: int) -> bool:
        """Tell whether `jobs` new jobs, submitted one after another, would all be admitted (none refused)."""
        for _ in range(jobs):
            admission = self.admit(load)
            if admission is Admission.REFUSED:
                return False
            queued = admission is Admission.QUEUED
            load = UserLoad(running=load.running + int(queued), waiting=load.waiting + int(not queued))
        return True

    def promotable(self, load: UserLoad) -> int:
        """Return how many of the user's waiting jobs may start now."""
        if self.max_running is None:
            return load.waiting
        return max(0, min(load.waiting, self.max_running - load.running))


@dataclass(frozen=True, slots=True, kw_only=True)
class CapPolicy:
    """Caps for ordinary users and for admins (default: admins are exempt)."""

    user: Caps = Caps()
    admin: Caps = Caps(max_running=None, max_waiting=None)

    def caps_for(self, *, is_admin: bool) -> Caps:
        """Return the caps that apply to a user."""
        return self.admin if is_admin else self.user


REFUSAL_TITLE = "Queue full"


def refusal_message(caps: Caps) -> str:
    """Return the short text shown under `REFUSAL_TITLE` when a job is refused (the title is not repeated)."""
    return f"You already have {caps.max_waiting} jobs waiting. Wait for one to finish, or cancel one."
