"""Which job gets the next chunk: interactive jobs first (oldest first), then batches round robin."""

from collections.abc import Sequence
from dataclasses import dataclass

from bot.core.models import JobId, Priority


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A job that has items ready to submit; `seq` orders jobs by creation."""

    job_id: JobId
    priority: Priority
    seq: int


def schedule_order(candidates: Sequence[Candidate], *, last_batch_seq: int | None) -> list[JobId]:
    """Return the order in which candidates get one chunk each in a scheduling pass.

    Interactive jobs come first, oldest first. Batches follow in creation order, rotated so that the first batch
    created after the one served last (`last_batch_seq`) comes first: over passes, batches take turns, and a batch
    that finished or paused meanwhile does not disturb the turn.
    """
    interactive = sorted((c for c in candidates if c.priority is Priority.INTERACTIVE), key=lambda c: c.seq)
    batches = sorted((c for c in candidates if c.priority is Priority.BATCH), key=lambda c: c.seq)
    start = 0
    if last_batch_seq is not None:
        start = next((i for i, c in enumerate(batches) if c.seq > last_batch_seq), 0)
    rotated = batches[start:] + batches[:start]
    return [c.job_id for c in interactive] + [c.job_id for c in rotated]


def queue_positions(not_started: Sequence[Candidate]) -> dict[JobId, int]:
    """Return each not-yet-started job's 1-based place in line: interactive jobs first, then batches, by age."""
    ordered = sorted(not_started, key=lambda c: (c.priority is not Priority.INTERACTIVE, c.seq))
    return {c.job_id: i for i, c in enumerate(ordered, start=1)}
