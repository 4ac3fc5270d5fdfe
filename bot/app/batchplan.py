"""A batch's plan and its pricing: what Start would queue, what it costs, and where it waits until Start.

`bot.app.batches.BatchService` makes plans and starts them; this module holds the values it trades in (the request,
the plan, the snapshot of a running batch), the job notes a batch keeps, the price of a plan and of a running batch,
and `PendingPlans`, which keeps a plan in the store under `batches/pending/{plan id}.json` until Start or Cancel.
"""

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.core.batch import BatchEstimate, estimate_batch, plan_text, thread_name
from bot.core.models import Job, JobParams
from bot.core.relax import RelaxStatus
from bot.core.render import BatchProgress, batch_state
from bot.errors import UserFacingError
from storage.base import Store
from storage.errors import ObjectNotFoundError
from worker.contract import ErrorCode, model_spec

log = logging.getLogger(__name__)

PENDING_PREFIX = "batches/pending/"
NOTE_PLAN = "batch_plan"  # the plan a job was started from (intake report included)
NOTE_SAMPLES = "batch_samples"  # set once the first results were shown in the batch's thread
SAMPLES = 4  # how many first results a running batch shows
NOTE_ZIP = "batch_zip"  # the finished batch's archive: key and file name
NOTE_SUMMARY_FOR = "batch_summary_for"  # the finished_at of the run the summary message describes
# Set once Discord refuses the progress message: the Discord error code (10003 Unknown Channel, 50001 Missing Access,
# 10008 Unknown Message). From then on the message is never edited again, across restarts too.
NOTE_PROGRESS_GONE = "batch_progress_gone"
STATUS = "status"  # the role of a batch's progress message
SUMMARY = "summary"  # the role of its summary message
NOTE_SKIPPED = "intake_skipped"  # before plans were shared: the skipped entries of a CLI batch, as [name, reason]


class BatchError(UserFacingError):
    """A batch that cannot be planned or started; `user_message` says why and what to do."""

    def __init__(self, user_message: str, *, title: str = "Can't run that batch") -> None:
        super().__init__(user_message, title=title)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedItem:
    """One item Start would queue: its image's stored key and name inside the ZIP ("" for text to image).

    The rest is set only where the item differs from the plan: its prompt (the model's text, and as Peel shows it)
    from a row, a caption or the template; options and further reference images from its row; the row's line.
    """

    key: str
    name: str
    prompt: str | None = None  # None: the plan's prompt
    display: str | None = None
    aspect_ratio: str | None = None  # None: the plan's
    image_size: str | None = None
    seed: int | None = None  # None: derived from the plan's seed base
    ref_keys: tuple[str, ...] = ()
    line: int | None = None

    def to_json(self) -> list[object]:
        """Return the item as stored: `[key, name]`, with an object of what is set when there is more.

        `display` is left out when it is the prompt (most rows): a 10,000-row plan is stored twice (pending, then
        in its job's note), and the copy would be a third of it.
        """
        extra: dict[str, object] = {
            k: v
            for k, v in (
                ("prompt", self.prompt),
                ("display", self.display if self.display != self.prompt else None),
                ("aspect_ratio", self.aspect_ratio),
                ("image_size", self.image_size),
                ("seed", self.seed),
                ("line", self.line),
            )
            if v is not None
        }
        if self.ref_keys:
            extra["ref_keys"] = list(self.ref_keys)
        return [self.key, self.name, extra] if extra else [self.key, self.name]

    @classmethod
    def from_json(cls, data: Sequence[object]) -> "PlannedItem":
        """Rebuild a stored item (a plan stored before items had prompts holds `[key, name]` only)."""
        extra = data[2] if len(data) > 2 and isinstance(data[2], Mapping) else {}
        refs, seed, line = extra.get("ref_keys", []), extra.get("seed"), extra.get("line")
        return cls(
            key=str(data[0]),
            name=str(data[1]),
            prompt=_opt_str(extra.get("prompt")),
            display=_opt_str(extra.get("display", extra.get("prompt"))),  # left out: the prompt
            aspect_ratio=_opt_str(extra.get("aspect_ratio")),
            image_size=_opt_str(extra.get("image_size")),
            seed=seed if isinstance(seed, int) else None,
            ref_keys=tuple(str(r) for r in refs) if isinstance(refs, list) else (),
            line=line if isinstance(line, int) else None,
        )

    @property
    def input_keys(self) -> tuple[str, ...]:
        """The item's reference images: its own image (if any), then its row's."""
        return ((self.key,) if self.key else ()) + self.ref_keys


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchPlan:
    """A batch as the summary shows it, before Start."""

    id: str
    owner_id: int
    guild_id: int | None
    channel_id: int
    prompt: str  # the text sent to the model (with `--no` rewritten)
    display_prompt: str  # as the user typed it, parameters included
    params: JobParams
    items: tuple[PlannedItem, ...]
    skipped: tuple[tuple[str, str], ...]  # (entry name, reason code) of every skipped entry and row problem
    notes: tuple[str, ...] = ()
    prompt_source: str = "one prompt"  # "one prompt", "prompts.csv: 60 rows", "captions: 12", "… + template"
    problems: tuple[tuple[str, str], ...] = ()  # (where, what is wrong) of each row that gives no item, in line order
    source: str = "upload.zip"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    idempotency_key: str | None = None  # None: the plan id (a second Start click never queues twice)
    shared_refs: tuple[tuple[str, str], ...] = ()  # (name, stored key) of the references every item gets
    retry_of: str | None = None  # "Retry failed, changed": the job whose failed items this plan copies

    @property
    def relax(self) -> bool:
        """Whether the batch runs in relax mode (kept in its params, so in its stored plan and its job's note)."""
        return self.params.relax

    @property
    def key(self) -> str:
        """The idempotency key the batch job is started under."""
        return self.idempotency_key or self.id

    @property
    def skip_counts(self) -> dict[str, int]:
        """Skipped entries by reason."""
        counts: dict[str, int] = {}
        for _, reason in self.skipped:
            counts[reason] = counts.get(reason, 0) + 1
        return counts

    def problem_lines(self, *, limit: int = 5) -> tuple[str, ...]:
        """Return the first `limit` row problems as `where: what` (every one is in the manifest)."""
        lines = [f"{where}: {what}" for where, what in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"… and {len(self.problems) - limit} more row problems (every one is in the manifest)")
        return tuple(lines)

    @property
    def name(self) -> str:
        """The batch's thread (group) name."""
        return thread_name(self.display_prompt, items=len(self.items))

    def to_json(self) -> dict[str, object]:
        """Return the plan as stored (pending, until Start)."""
        return {
            "id": self.id,
            "owner_id": self.owner_id,
            "guild_id": self.guild_id,
            "channel_id": self.channel_id,
            "prompt": self.prompt,
            "display_prompt": self.display_prompt,
            "params": self.params.to_json(),
            "items": [i.to_json() for i in self.items],
            "skipped": [list(s) for s in self.skipped],
            "notes": list(self.notes),
            "prompt_source": self.prompt_source,
            "problems": [list(p) for p in self.problems],
            "source": self.source,
            "created_at": self.created_at.isoformat(),
            "idempotency_key": self.idempotency_key,
            "shared_refs": [list(r) for r in self.shared_refs],
            "retry_of": self.retry_of,
        }

    def note_json(self) -> dict[str, object]:
        """Return the plan as its job keeps it: without its items, which are the job's items in the ledger.

        A 10,000-row plan's items are 2 MB of JSON: kept a second time they set a batch's peak memory at Start,
        and every progress refresh that reads the plan for its prompt would parse them again.
        """
        return {**self.to_json(), "items": []}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> "BatchPlan":
        """Rebuild a stored plan."""
        items, skipped, notes = data["items"], data.get("skipped", []), data.get("notes", [])
        params, problems = data["params"], data.get("problems", [])
        assert isinstance(items, list) and isinstance(skipped, list) and isinstance(notes, list)
        assert isinstance(problems, list)
        assert isinstance(params, dict)
        guild_id, key = data.get("guild_id"), data.get("idempotency_key")
        shared, retry_of = data.get("shared_refs", []), data.get("retry_of")  # plans stored before them: none
        assert isinstance(shared, list)
        return cls(
            id=str(data["id"]),
            owner_id=int(str(data["owner_id"])),
            guild_id=None if guild_id is None else int(str(guild_id)),
            channel_id=int(str(data["channel_id"])),
            prompt=str(data["prompt"]),
            display_prompt=str(data["display_prompt"]),
            params=JobParams.from_json(params),
            items=tuple(PlannedItem.from_json(i) for i in items),
            skipped=tuple((str(n), str(r)) for n, r in skipped),
            notes=tuple(str(n) for n in notes),
            prompt_source=str(data.get("prompt_source", "one prompt")),  # plans stored before it was kept
            problems=tuple((str(w), str(d)) for w, d in problems),
            source=str(data.get("source", "upload.zip")),
            created_at=datetime.fromisoformat(str(data["created_at"])),
            idempotency_key=None if key is None else str(key),
            shared_refs=tuple((str(n), str(k)) for n, k in shared),
            retry_of=None if retry_of is None else str(retry_of),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchSnapshot:
    """A batch's state at one moment, for its progress message."""

    job: Job
    progress: BatchProgress
    errors: Mapping[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchOptions:
    """The slash command's explicit options (None: from the prompt's inline parameters, then preferences)."""

    model: str | None = None
    aspect_ratio: str | None = None
    image_size: str | None = None
    seed: int | None = None
    repeat: int | None = None  # --repeat N: every item N times, each with its own seed
    relax: bool | None = None  # speed:relax / --relax (None: the guild's or the bot's default speed)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRequest:
    """Who asks for a batch, where, and with what prompt and options.

    `idempotency_key` names the job the plan starts as (None: the plan id); the CLI derives it from the input, so
    the same command run again finds the same job.
    """

    owner_id: int
    guild_id: int | None
    channel_id: int
    prompt: str
    options: BatchOptions = BatchOptions()
    is_admin: bool = False
    idempotency_key: str | None = None
    refs: tuple[tuple[str, bytes], ...] = ()  # (name, bytes) of the shared reference images, as given
    role_ids: frozenset[int] = frozenset()  # the owner's roles where they asked (budget gates and caps)


def unit_price(params: JobParams) -> float | None:
    """Return the price of one image made with `params`, at the batch price in relax (None: unknown)."""
    return model_spec(params.model).price(params.image_size, batch=params.relax)


def plan_summary(plan: BatchPlan, estimate: BatchEstimate, *, markdown: bool = True, budget: str | None = None) -> str:
    """Return the text that shows a plan before Start (`bot.core.batch.plan_text`): `/batch` and the CLI alike.

    `budget` is the plan's cost against what its owner's money caps leave (`BatchService.budget_line`).
    """
    return plan_text(
        prompt=plan.display_prompt,
        model=plan.params.model,
        image_size=plan.params.image_size,
        aspect_ratio=plan.params.aspect_ratio,
        seed=plan.params.seed,
        prompt_source=plan.prompt_source,
        accepted=len(plan.items),
        skipped=plan.skip_counts,
        # Row problems are named with what is wrong (below), the other skipped entries by their reason code.
        skipped_entries=[s for s in plan.skipped if s[0] not in {where for where, _ in plan.problems}],
        estimate=estimate,
        problems=plan.problem_lines(),
        references=[name for name, _ in plan.shared_refs],
        notes=plan.notes,
        markdown=markdown,
        budget=budget,
    )


def made_cost(params: JobParams, made_by_size: Mapping[str | None, int]) -> float:
    """Return what the images made cost: each size's count at its price (None: the job's size; unknown: free).

    A relax job's images cost Gemini's batch price (half the standard one).
    """
    spec = model_spec(params.model)
    return sum(
        n * (spec.price(size or params.image_size, batch=params.relax) or 0.0) for size, n in made_by_size.items()
    )


def plan_price(plan: BatchPlan, *, relax: bool | None = None) -> float | None:
    """Return the price of every item of a plan, each at its own image size (None: some price is unknown).

    `relax` prices it in that mode (None: the plan's own), so the plan can show what the other mode would cost.
    """
    batch = plan.relax if relax is None else relax
    spec = model_spec(plan.params.model)
    prices: dict[str | None, float | None] = {}
    total = 0.0
    for item in plan.items:
        size = item.image_size or plan.params.image_size
        if size not in prices:
            prices[size] = spec.price(size, batch=batch)
        price = prices[size]
        if price is None:
            return None
        total += price
    return total


def estimate_plan(plan: BatchPlan, *, latency_s: float, concurrency: int) -> BatchEstimate:
    """Estimate a plan's cost (the sum of its items' prices, and in the other mode) and time (fast mode's)."""
    count = max(1, len(plan.items))
    total, other = plan_price(plan), plan_price(plan, relax=not plan.relax)
    return estimate_batch(
        items=len(plan.items),
        unit_price_usd=None if total is None else total / count,
        latency_s=latency_s,
        concurrency=concurrency,
        relax=plan.relax,
        other_unit_price_usd=None if other is None else other / count,
    )


def snapshot_of(
    job: Job,
    *,
    errors: Mapping[str, int],
    retrying: Mapping[str, int],
    now: datetime | None = None,
    chunks_out: int = 0,
    made_by_size: Mapping[str | None, int] | None = None,
    trial: int | None = None,
    relax: RelaxStatus | None = None,
    recorded_usd: float | None = None,
    budget_line: str | None = None,
) -> BatchSnapshot:
    """Return a batch's counts (blocked = safety blocks, failed = other failures), elapsed time and cost so far.

    A cancelled batch keeps its total: its bar shows how far it got, and the items the cancel left are counted
    as such, not as remaining. `chunks_out` (its chunks still on RunPod) tells a pause still holding from a paused
    batch. `made_by_size` (items made by their own image size, None for the job's) prices each made item at its
    own size; without it every item is priced at the job's. `trial` (N of a "Try on N" whose rest is held) tells
    a trial that has made its N from a pause. `relax` is where a relax batch's open parts are. `recorded_usd` is
    what the ledger recorded the job really cost (`Ledger.job_cost`: Gemini's reported usage priced, RunPod time);
    with it, `made_by_size` counts only the made items without a recorded cost, added at the estimate.
    `budget_line` says which money cap a paused batch waits for (`render.budget_paused_line`).
    """
    blocked = errors.get(ErrorCode.SAFETY.value, 0)
    started = job.started_at or job.created_at
    end = job.finished_at or now or datetime.now(UTC)
    progress = BatchProgress(
        total=job.total,
        cancelled=job.cancelled,
        done=job.ok,
        failed=max(0, job.failed - blocked),
        blocked=blocked,
        elapsed_s=max(0.0, (end - started).total_seconds()),
        cost_usd=(recorded_usd or 0.0)
        + made_cost(job.params, made_by_size if made_by_size is not None else {None: job.ok}),
        state=batch_state(
            job.status, chunks_out=chunks_out, trial_held=trial is not None and job.ok + job.failed >= trial
        ),
        retrying=sum(retrying.values()),
        retry_code=max(retrying, key=retrying.__getitem__, default=None),
        relax=job.params.relax,
        relax_status=relax,
        relax_waiting_s=None
        if relax is None or relax.waiting_since is None
        else max(0.0, (end - relax.waiting_since).total_seconds()),
        relax_trouble_s=None
        if relax is None or relax.trouble_since is None
        else max(0.0, (end - relax.trouble_since).total_seconds()),
        budget_line=budget_line,
    )
    return BatchSnapshot(job=job, progress=progress, errors=errors)


class PendingPlans:
    """Plans kept in the store until Start or Cancel, so a summary's buttons still work after a restart.

    A plan older than `ttl_s` is expired: it is forgotten when read or swept, so Start cannot queue what the user
    saw priced and limited a day ago.
    """

    def __init__(self, store: Store, *, ttl_s: float) -> None:
        self._store, self._ttl_s = store, ttl_s

    @staticmethod
    def key(plan_id: str) -> str:
        """Return the store key a plan is kept under."""
        return f"{PENDING_PREFIX}{plan_id}.json"

    async def put(self, plan: BatchPlan) -> None:
        """Keep a plan until Start or Cancel."""
        await self._store.put(self.key(plan.id), json.dumps(plan.to_json()).encode(), content_type="application/json")

    async def get(self, plan_id: str) -> BatchPlan | None:
        """Return a pending plan, or None when it was started, cancelled, has expired or never existed."""
        try:
            data = await self._store.get_bytes(self.key(plan_id))
        except ObjectNotFoundError:
            return None
        plan = BatchPlan.from_json(json.loads(data))
        if self._expired(plan.created_at):
            log.info("batch plan %s expired", plan_id, extra={"action": "plan_expired", "plan_id": plan_id})
            await self.discard(plan_id)
            return None
        return plan

    def _expired(self, created_at: datetime, now: datetime | None = None) -> bool:
        age = (now or datetime.now(UTC)) - created_at
        return age.total_seconds() > self._ttl_s

    async def sweep(self, *, now: datetime | None = None) -> int:
        """Forget every pending plan that has expired; return how many. A plan is written once: its time is its age."""
        expired = [
            info.key
            async for info in self._store.list(PENDING_PREFIX)
            if info.modified_at is not None and self._expired(info.modified_at, now)
        ]
        for key in expired:
            await self._store.delete(key)
        if expired:
            log.info("forgot %d expired batch plan(s)", len(expired), extra={"action": "plan_sweep"})
        return len(expired)

    async def discard(self, plan_id: str) -> None:
        """Forget a pending plan (Cancel, or once started)."""
        await self._store.delete(self.key(plan_id))


__all__ = [
    "NOTE_PLAN",
    "NOTE_SKIPPED",
    "STATUS",
    "SUMMARY",
    "BatchError",
    "BatchOptions",
    "BatchPlan",
    "BatchRequest",
    "BatchSnapshot",
    "PendingPlans",
    "PlannedItem",
    "estimate_plan",
    "made_cost",
    "plan_price",
    "plan_summary",
    "snapshot_of",
    "unit_price",
]
