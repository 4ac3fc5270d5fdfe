"""What the dispatcher needs of Gemini's Batch API, without the SDK: a batch's state and the errors (pure)."""

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from bot.core.relax import BatchCounts


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchInfo:
    """One Gemini batch job as Peel reads it; `state` is a JOB_STATE_… name (`google.genai.types.JobState`)."""

    name: str  # "batches/…"
    display_name: str | None = None
    state: str = "JOB_STATE_PENDING"
    counts: BatchCounts = field(default_factory=BatchCounts)
    result_file: str | None = None  # "files/…" once it succeeded with a file input
    create_time: datetime | None = None
    error: str | None = None  # Gemini's reason when it failed (the operator's detail)


class GeminiProblem(StrEnum):
    """Why a Batch API call failed, as the dispatcher acts on it."""

    UNREACHABLE = "unreachable"  # connection failure, timeout, 5xx: try again later
    BUSY = "busy"  # 429: too many batches at once or a quota; try again later
    REFUSED = "refused"  # 401/403 or API_KEY_INVALID: the key is wrong; an operator must fix it
    NOT_FOUND = "not_found"  # 404: no such batch or file
    INVALID = "invalid"  # 400: Gemini refuses the request as made


class GeminiBatchError(Exception):
    """A Batch API call failed; `problem` says what to do, the message is the operator's detail."""

    def __init__(self, problem: GeminiProblem, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.problem = problem
        self.status = status


class GeminiBatches(Protocol):
    """The Batch API calls the dispatcher makes (`bot.gemini.client.GenaiBatches` makes them with google-genai)."""

    async def find(self, display_name: str) -> BatchInfo | None:
        """Return the newest batch with this display name, or None."""
        ...

    async def create(self, *, model: str, file_name: str, display_name: str) -> BatchInfo:
        """Create a batch job of the requests in an uploaded JSONL file."""
        ...

    async def get(self, name: str) -> BatchInfo:
        """Return a batch's state and counts now."""
        ...

    async def cancel(self, name: str) -> None:
        """Ask Gemini to stop a batch (it ends JOB_STATE_CANCELLED)."""
        ...

    async def delete_file(self, name: str) -> None:
        """Delete an uploaded or result file (one already gone is no error)."""
        ...

    async def delete(self, name: str) -> None:
        """Delete an ended batch job's record (one already gone is no error)."""
        ...
