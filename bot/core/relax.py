"""Relax mode's rules: what a relax batch's progress shows (pure).

A relax batch sends its items to Gemini's Batch API (half the price, a 24-hour target) in parts, one Gemini batch
job each. The dispatcher (`bot.dispatch.relax`) moves each part through its phases; this module holds what every
front end shows of them.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from bot.core.models import ChunkId, JobId


class RelaxPhase(StrEnum):
    """Where a part of a relax batch is, in the order it gets there."""

    PREPARING = "preparing"  # a worker writes the part's requests and uploads them (Files API)
    SUBMITTED = "submitted"  # Gemini holds the batch and has not started it (JOB_STATE_PENDING)
    RUNNING = "running"  # Gemini runs it (JOB_STATE_RUNNING)
    COLLECTING = "collecting"  # Gemini finished; a worker streams the results into the store
    DONE = "done"  # every item of the part has its verdict (or the part was closed: cancelled, expired, failed)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchCounts:
    """Gemini's counts of one batch job (`batchStats`)."""

    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    pending: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RelaxPart:
    """One part of a relax batch as the ledger keeps it (`relax_parts`, with the chunk holding its items)."""

    chunk_id: ChunkId
    job_id: JobId
    phase: RelaxPhase
    items: int = 0  # items the part was made with
    runpod_id: str | None = None  # the relax_prepare or relax_collect RunPod job in flight
    runpod_attempts: int = 0
    input_file: str | None = None
    ref_files: tuple[str, ...] = ()
    batch_name: str | None = None
    batch_state: str | None = None
    counts: BatchCounts = field(default_factory=BatchCounts)
    result_file: str | None = None
    created_at: datetime
    batch_created_at: datetime | None = None
    checked_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RelaxStatus:
    """A relax batch's parts still open, summed: what its progress message says beside the counts.

    `phase` is the least advanced phase of its open parts (what the batch as a whole is waiting for); the counts
    are Gemini's own (`batchStats`) over the parts Gemini holds; `waiting_since` is when the oldest of them was
    created on Gemini (None while every part is still being prepared).
    """

    phase: RelaxPhase
    parts: int  # parts open (being prepared, held by Gemini, or being collected)
    sent: int  # items in those parts
    gemini_done: int  # requests Gemini reports succeeded, not collected yet
    gemini_failed: int  # requests Gemini reports failed, not collected yet
    waiting_since: datetime | None = None
    # Since when Gemini's Batch API has not answered the bot's calls (None: it answers). Peel keeps asking; the
    # batches themselves run on at Gemini meanwhile.
    trouble_since: datetime | None = None


# Gemini's batch states (google.genai.types.JobState; the REST API says BATCH_STATE_…, the SDK JOB_STATE_…).
STATE_SUCCEEDED = "JOB_STATE_SUCCEEDED"
STATE_RUNNING = "JOB_STATE_RUNNING"
ENDED_UNMADE = frozenset({"JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"})


def phase_of_state(state: str) -> RelaxPhase:
    """Return the part's phase while Gemini reports `state` (pending and unknown states wait as submitted)."""
    if state == STATE_SUCCEEDED:
        return RelaxPhase.COLLECTING
    if state == STATE_RUNNING:
        return RelaxPhase.RUNNING
    return RelaxPhase.SUBMITTED


def status_of(parts: Sequence[RelaxPart], *, trouble_since: datetime | None = None) -> RelaxStatus | None:
    """Return what a batch's progress shows of its open parts, or None when none is open."""
    open_parts = [p for p in parts if p.phase is not RelaxPhase.DONE]
    if not open_parts:
        return None
    order = list(RelaxPhase)
    phase = min((p.phase for p in open_parts), key=order.index)
    held = [p for p in open_parts if p.phase in (RelaxPhase.SUBMITTED, RelaxPhase.RUNNING)]
    since = [p.batch_created_at for p in open_parts if p.batch_created_at is not None]
    return RelaxStatus(
        phase=phase,
        parts=len(open_parts),
        sent=sum(p.items for p in open_parts),
        gemini_done=sum(p.counts.succeeded for p in held),
        gemini_failed=sum(p.counts.failed for p in held),
        waiting_since=min(since) if since else None,
        trouble_since=trouble_since,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RelaxPolicy:
    """How relax batches are cut into Gemini batch jobs and watched (`RELAX_*` settings)."""

    # Items per part (one Gemini batch job, one JSONL file under Gemini's 2 GB): a part's file is prepared and its
    # results collected by one RunPod job each, so a part must stay small enough for a worker's timeout.
    part_items: int = 500
    # Open parts per job and in all: Gemini runs at most 100 batch jobs at once per project
    # (ai.google.dev/gemini-api/docs/rate-limits#batch-mode), and the rest wait in Peel's ledger, not on Gemini.
    parts_per_job: int = 4
    max_parts: int = 50
    # How often Gemini is asked about a batch it holds (one cheap GET each).
    poll: timedelta = timedelta(seconds=30)
    # RunPod jobs of one phase (prepare or collect) that may end without an answer before the part's items fail.
    runpod_attempts: int = 3
    # A prepare or collect job reads or writes up to `part_items` images: its RunPod execution timeout.
    runpod_timeout: timedelta = timedelta(minutes=30)
