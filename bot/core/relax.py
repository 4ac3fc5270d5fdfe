"""Relax mode's rules: what a relax batch's progress shows (pure).

A relax batch sends its items to Gemini's Batch API (half the price, a 24-hour target) in parts, one Gemini batch
job each. The dispatcher (`bot.dispatch.relax`) moves each part through its phases; this module holds what every
front end shows of them.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class RelaxPhase(StrEnum):
    """Where a part of a relax batch is, in the order it gets there."""

    PREPARING = "preparing"  # a worker writes the part's requests and uploads them (Files API)
    SUBMITTED = "submitted"  # Gemini holds the batch and has not started it (JOB_STATE_PENDING)
    RUNNING = "running"  # Gemini runs it (JOB_STATE_RUNNING)
    COLLECTING = "collecting"  # Gemini finished; a worker streams the results into the store


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
