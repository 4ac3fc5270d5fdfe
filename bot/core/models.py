"""Domain values of the job ledger: groups, jobs, items, chunks, images and user preferences.

These are frozen snapshots read from the ledger (`bot.ledger`); nothing here does I/O. Enum values are the strings
stored in SQLite, so renaming a member's value needs a migration.

Lifecycles:

    job     waiting → queued → running → done | failed      (any unfinished → cancelled; queued/running ⇄ paused)
    item    pending → submitted → ok | error | pending (retry later) | cancelled
    chunk   submitting → in_flight → done | lost | cancelled (submitting → lost when /run failed or we crashed)
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NewType

from bot.core.budgets import BudgetHold
from worker.contract import TokenUsage

GroupId = NewType("GroupId", str)
JobId = NewType("JobId", str)
ImageId = NewType("ImageId", str)
ChunkId = NewType("ChunkId", int)
UserId = NewType("UserId", int)


class JobKind(StrEnum):
    """What a job makes."""

    GRID = "grid"
    VARIATION = "variation"
    UPSCALE = "upscale"
    EDIT = "edit"
    REROLL = "reroll"
    ZOOM = "zoom"
    PAN = "pan"
    BATCH = "batch"
    DESCRIBE = "describe"  # an image described as prompts (`/describe`): its item's answer is JSON, not an image
    SQUARE = "square"  # Make Square: the image outpainted to 1:1
    REGION = "region"  # Vary (Region): one region of the image changed, the rest composited back unchanged


class Priority(StrEnum):
    """Scheduling class: interactive work always goes before batch work."""

    INTERACTIVE = "interactive"
    BATCH = "batch"

    @classmethod
    def for_kind(cls, kind: JobKind) -> "Priority":
        """Return the default priority of a job kind (batches are batch work, everything else interactive)."""
        return cls.BATCH if kind is JobKind.BATCH else cls.INTERACTIVE


class JobStatus(StrEnum):
    """Where a job is in its lifecycle (module docstring)."""

    WAITING = "waiting"  # accepted, but its owner already has the most running jobs allowed
    QUEUED = "queued"  # may be scheduled; nothing submitted yet
    RUNNING = "running"  # at least one chunk was submitted
    PAUSED = "paused"  # no new chunks; chunks in flight finish
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """Tell whether the job can change no more."""
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class ItemStatus(StrEnum):
    """Where one image of a job is."""

    PENDING = "pending"
    SUBMITTED = "submitted"
    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """Tell whether the item can change no more."""
        return self in (ItemStatus.OK, ItemStatus.ERROR, ItemStatus.CANCELLED)


class ChunkStatus(StrEnum):
    """Where one RunPod job (a chunk of items) is."""

    SUBMITTING = "submitting"  # recorded before /run; no RunPod id yet
    IN_FLIGHT = "in_flight"  # RunPod accepted it; polled until final
    DONE = "done"  # final status handled, items recorded
    LOST = "lost"  # never reached RunPod, or its fate was reconciled from storage
    CANCELLED = "cancelled"

    @property
    def holds_budget(self) -> bool:
        """Tell whether the chunk's concurrency counts against the global budget."""
        return self in (ChunkStatus.SUBMITTING, ChunkStatus.IN_FLIGHT)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobParams:
    """Generation options shared by every item of a job."""

    model: str
    aspect_ratio: str | None = None
    image_size: str | None = None
    seed: int | None = None  # seed base; item i gets a seed derived from it (`bot.core.seeds`)
    n: int = 1
    relax: bool = False  # relax mode: the items go through Gemini's Batch API at its price (`bot.core.relax`)

    def to_json(self) -> dict[str, object]:
        """Return the JSON object stored in `jobs.params` (`relax` only when set, as older rows have it)."""
        data: dict[str, object] = {
            "model": self.model,
            "aspect_ratio": self.aspect_ratio,
            "image_size": self.image_size,
            "seed": self.seed,
            "n": self.n,
        }
        if self.relax:
            data["relax"] = True
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> "JobParams":
        """Rebuild params from their stored JSON object."""
        seed, n = data.get("seed"), data.get("n", 1)
        aspect, size = data.get("aspect_ratio"), data.get("image_size")
        return cls(
            model=str(data["model"]),
            aspect_ratio=aspect if isinstance(aspect, str) else None,
            image_size=size if isinstance(size, str) else None,
            seed=seed if isinstance(seed, int) else None,
            n=n if isinstance(n, int) else 1,
            relax=data.get("relax") is True,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EditInput:
    """The image an edit starts from and the earlier instructions of its chain, oldest first."""

    source_key: str
    history: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemInputs:
    """What one item is made from, besides the prompt."""

    ref_keys: tuple[str, ...] = ()
    source_name: str | None = None  # a batch input's file name inside its ZIP, for the manifest
    edit: EditInput | None = None
    aspect_ratio: str | None = None  # None: the job's
    image_size: str | None = None  # None: the job's
    # Vary (Region): the part of the edit's source that may change, (left, top, right, bottom) as fractions
    region: tuple[float, float, float, float] | None = None

    def to_json(self) -> dict[str, object]:
        """Return the JSON object stored in `items.inputs`."""
        data: dict[str, object] = {"ref_keys": list(self.ref_keys)}
        if self.region is not None:
            data["region"] = list(self.region)
        if self.source_name is not None:
            data["source_name"] = self.source_name
        if self.edit is not None:
            data["edit"] = {"source_key": self.edit.source_key, "history": list(self.edit.history)}
        if self.aspect_ratio is not None:
            data["aspect_ratio"] = self.aspect_ratio
        if self.image_size is not None:
            data["image_size"] = self.image_size
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> "ItemInputs":
        """Rebuild inputs from their stored JSON object."""
        refs, name, edit = data.get("ref_keys", []), data.get("source_name"), data.get("edit")
        aspect, size, region = data.get("aspect_ratio"), data.get("image_size"), data.get("region")
        edit_input = None
        if isinstance(edit, Mapping):
            history = edit.get("history", [])
            edit_input = EditInput(
                source_key=str(edit["source_key"]),
                history=tuple(str(h) for h in history) if isinstance(history, list) else (),
            )
        return cls(
            ref_keys=tuple(str(r) for r in refs) if isinstance(refs, list) else (),
            source_name=name if isinstance(name, str) else None,
            edit=edit_input,
            aspect_ratio=aspect if isinstance(aspect, str) else None,
            image_size=size if isinstance(size, str) else None,
            region=_region_of(region),
        )


def _region_of(value: object) -> tuple[float, float, float, float] | None:
    """Read a stored region (four numbers), None when absent or malformed."""
    if not isinstance(value, list) or len(value) != 4 or not all(isinstance(v, int | float) for v in value):
        return None
    left, top, right, bottom = (float(v) for v in value)
    return left, top, right, bottom


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    """A set of images: a Discord thread, or a channel's default group."""

    id: GroupId
    name: str
    guild_id: int | None
    channel_id: int | None
    thread_id: int | None
    created_at: datetime
    owner_id: int | None = None  # who opened the thread; None for a channel's default group


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One user request: a grid, a single-image tool run, or a batch."""

    id: JobId
    kind: JobKind
    owner_id: UserId
    guild_id: int | None
    group_id: GroupId | None
    prompt: str
    params: JobParams
    parent_image_id: ImageId | None
    status: JobStatus
    priority: Priority
    idempotency_key: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    total: int
    ok: int
    failed: int
    cancelled: int
    error: str | None = None

    @property
    def remaining(self) -> int:
        """How many items are neither made, failed for good nor cancelled."""
        return self.total - self.ok - self.failed - self.cancelled


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One image to make within a job."""

    job_id: JobId
    index: int
    inputs: ItemInputs
    prompt: str | None  # overrides the job's prompt when set
    seed: int
    output_key: str
    status: ItemStatus
    attempts: int
    error_code: str | None
    error_message: str | None
    retry_at: datetime | None
    chunk_id: ChunkId | None
    width: int | None
    height: int | None
    cost_usd: float | None = None  # what Gemini charged for its attempts so far (None: nothing recorded)
    usage: TokenUsage | None = None  # the usage Gemini reported for them, summed


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    """One RunPod job: some items of one Peel job."""

    id: ChunkId
    job_id: JobId
    seq: int  # the chunk's number within its job (`ChunkInput.chunk`)
    runpod_id: str | None
    indices: tuple[int, ...]
    status: ChunkStatus
    concurrency: int
    attempt: int
    created_at: datetime
    submitted_at: datetime | None
    finished_at: datetime | None
    remote_status: str | None
    last_progress: Mapping[str, object] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Image:
    """A made image, in the store under `key`."""

    id: ImageId
    job_id: JobId
    index: int
    key: str
    group_id: GroupId | None
    owner_id: UserId
    width: int | None
    height: int | None
    is_favourite: bool
    message_id: int | None
    created_at: datetime
    deleted_at: datetime | None = None  # its message was deleted with ❌: no longer part of its group


@dataclass(frozen=True, slots=True, kw_only=True)
class NewItem:
    """An item as a request describes it (before it has a seed, an output key or a status)."""

    prompt: str | None = None
    inputs: ItemInputs = ItemInputs()
    seed: int | None = None  # None: derived from the job's seed base and the item's index


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob:
    """A job about to be written to the ledger."""

    id: JobId
    kind: JobKind
    owner_id: UserId
    prompt: str
    params: JobParams
    priority: Priority
    guild_id: int | None = None
    group_id: GroupId | None = None
    parent_image_id: ImageId | None = None
    idempotency_key: str | None = None
    notes: Mapping[str, object] = field(default_factory=dict)  # JSON notes written with the job


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemOutcome:
    """What the dispatcher decided about one submitted item; the ledger applies it in one transaction.

    `status` OK needs `key`; ERROR is final; PENDING means "try again at `retry_at`" and keeps the error fields as
    the last failure seen. `refund_attempt` gives back the attempt the failed try used (the failure was an
    outage's, not the item's). `cost_usd` and `usage`, when set, are the item's new totals over all its attempts
    (this one's added); None leaves what the ledger holds.
    """

    index: int
    status: ItemStatus
    key: str | None = None
    width: int | None = None
    height: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    retry_at: datetime | None = None
    refund_attempt: bool = False
    cost_usd: float | None = None
    usage: TokenUsage | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UserLoad:
    """How many jobs a user has in each admission-relevant state."""

    running: int  # queued or running (paused jobs hold no slot)
    waiting: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRequest:
    """What a front end (a slash command, a button, the CLI) asks the dispatcher to make.

    `items` lists the images one by one (a batch: one per input image); empty means `params.n` items that differ
    only by seed. `idempotency_key` is the interaction id, so a redelivered interaction never queues twice.
    """

    kind: JobKind
    owner_id: UserId
    prompt: str
    params: JobParams
    items: tuple[NewItem, ...] = ()
    guild_id: int | None = None
    group_id: GroupId | None = None
    parent_image_id: ImageId | None = None
    idempotency_key: str | None = None
    priority: Priority | None = None  # None: from the kind
    is_admin: bool = False
    notes: Mapping[str, object] = field(default_factory=dict)  # JSON notes, in the job's own transaction
    role_ids: frozenset[int] = frozenset()  # the owner's roles where they asked (budget rules)
    budget: BudgetHold | None = None  # its estimate, checked against its money caps and reserved with the job
