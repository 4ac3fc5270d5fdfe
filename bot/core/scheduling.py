"""Which job gets the next chunk: interactive jobs first (oldest first), then batches round robin."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.core.models import Chunk, JobId, Priority


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


def done_of(progress: object) -> int:
    """Return the `done` count of a progress payload (0 when there is none or it is not a count)."""
    done = progress.get("done") if isinstance(progress, dict) else None
    return done if isinstance(done, int) and not isinstance(done, bool) else 0


def items_left(chunk: Chunk) -> int:
    """Return how many of a chunk's items its last progress does not show done."""
    return max(0, len(chunk.indices) - done_of(chunk.last_progress))


def items_left_by_now(chunk: Chunk, *, now: datetime, round_s: float | None) -> int:
    """Return how many of a chunk's items are still to be made now, as far as the dispatcher can tell.

    Its last progress can be a report interval and a poll old, which at the end of a wave is a whole round:
    counted as left, items already made would size the next chunk rounds longer than the rest of its wave.
    So once a chunk has reported (it has started), `left` is also capped by the rounds it can have run since
    it was submitted, at the measured `round_s`. The cap errs low (time in RunPod's queue counts as running),
    which is safe: a chunk sized to too little ends early and the calls it frees get a chunk sized afresh.
    """
    left = items_left(chunk)
    if round_s is None or round_s <= 0 or chunk.last_progress is None or chunk.submitted_at is None:
        return left
    rounds = int((now - chunk.submitted_at).total_seconds() / round_s)
    return min(left, max(0, len(chunk.indices) - rounds * chunk.concurrency))


def calls_held(chunk: Chunk) -> int:
    """Return the Gemini calls a chunk in flight can still make at once (what it holds of the budget).

    Its concurrency, until its progress shows fewer items left than that: a chunk in its last round, or settling
    and reporting after its last call, frees the rest for the next chunk. `done` only grows, so the count never
    falls below the calls the worker can really have open.
    """
    return min(chunk.concurrency, items_left(chunk))
