"""The dispatcher's shared state: the ledger, gateway, store, policy, budget, event bus and queue positions."""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from bot.core.budget import AimdBudget
from bot.core.chunking import RoundTime
from bot.core.clock import Clock, SystemClock
from bot.core.events import ImageReady, Progress
from bot.core.models import ChunkStatus, Image, Item, ItemOutcome, ItemStatus, Job, JobId, JobStatus
from bot.core.outage import ServiceHealth
from bot.core.policy import DispatchPolicy
from bot.core.pricing import cost_of
from bot.core.scheduling import Candidate, queue_positions
from bot.dispatch.bus import EventBus, Subscription
from bot.gemini.types import GeminiBatches
from bot.ledger import Ledger
from bot.runpod.types import RunpodGateway
from storage.base import Store
from storage.errors import StorageError
from storage.imageformat import png_dimensions
from worker.contract import ErrorCode, TokenUsage, add_usage

log = logging.getLogger(__name__)


class DispatcherBase:
    """The dispatcher's state and what every concern shares: events, waking, queue positions, recorded results."""

    def __init__(
        self,
        ledger: Ledger,
        gateway: RunpodGateway,
        store: Store,
        *,
        policy: DispatchPolicy | None = None,
        clock: Clock | None = None,
        poll_interval_s: float = 1.0,
        batches: GeminiBatches | None = None,
    ) -> None:
        self._ledger = ledger
        self._gateway = gateway
        self._store = store
        self._policy = policy or DispatchPolicy()
        self._clock = clock or SystemClock()
        self._poll_interval_s = poll_interval_s
        # Gemini's Batch API for relax jobs (`bot.dispatch.relax`); None: relax jobs wait, nothing runs them.
        self._batches = batches
        self._relax_trouble: datetime | None = None  # since when the Batch API has not answered (None: it does)
        self._relax_tasks: set[asyncio.Task[None]] = set()  # deletes of closed parts' files, in the background
        self._budget = AimdBudget(
            limit=self._policy.gemini_concurrency,
            decrease_cooldown=self._policy.rate_limit_cooldown,
            max_chunk_concurrency=self._policy.max_chunk_concurrency,
        )
        self._round_time = RoundTime(seconds=self._policy.chunks.item_latency_s)
        self._events = EventBus()
        self._wake = asyncio.Event()
        self._stopping = False  # set by `stop`: no new chunk is submitted, `run_forever` ends after this iteration
        self._last_batch_seq: int | None = None
        self._positions: dict[JobId, int] = {}
        # RunPod's breaker gates every call. Gemini's opens on a run of items failing UPSTREAM and then lets one item
        # at a time through as its probe; it also remembers a refused key, so admins hear of it once.
        self._runpod = ServiceHealth(service="runpod", policy=self._policy.outage)
        self._gemini = ServiceHealth(service="gemini", policy=self._policy.outage)
        # RunPod cancels of cancelled jobs' chunks, sent in the background (`CancelsMixin`), by RunPod job id: those
        # being sent, those RunPod answered, and when RunPod reported each final.
        self._cancel_tasks: dict[str, asyncio.Task[None]] = {}
        self._cancel_sent: set[str] = set()
        self._cancel_final: dict[str, datetime] = {}
        self._cancel_ran_ms: dict[str, int] = {}  # the RunPod time a final /status reported for a cancelled job
        # The budget pass (`BudgetsMixin._enforce_budgets`) runs when spend or reservations may have changed since
        # the last one (`_spend_changed`), or `DispatchPolicy.budget_pass_every` after it, not every iteration.
        self._budget_due = True
        self._budget_pass_at: datetime | None = None

    @property
    def budget(self) -> AimdBudget:
        """The AIMD window of Gemini calls (read it; the dispatcher changes it)."""
        return self._budget

    @property
    def ledger(self) -> Ledger:
        """The ledger this dispatcher writes."""
        return self._ledger

    def subscribe(self) -> Subscription:
        """Return a stream of every event from now on."""
        return self._events.subscribe()

    @property
    def stopping(self) -> bool:
        """True once `stop` was called: no new chunk is submitted."""
        return self._stopping

    def wake(self) -> None:
        """Make `run_forever` run its next iteration now."""
        self._wake.set()

    async def queue_positions(self) -> dict[JobId, int]:
        """Return every queued, not yet started job's 1-based place in line."""
        return await self._current_positions()

    async def _current_positions(self) -> dict[JobId, int]:
        queued = await self._ledger.list_jobs(statuses=(JobStatus.QUEUED,))
        seqs = await self._ledger.job_seqs(j.id for j in queued)
        return queue_positions(
            [Candidate(job_id=j.id, priority=j.priority, seq=seqs[j.id]) for j in queued if j.started_at is None]
        )

    def _spend_changed(self) -> None:
        """Note that spend or reservations may have changed: the next iteration runs the budget pass."""
        self._budget_due = True

    def _after_record(
        self,
        job: Job,
        images: Sequence[Image],
        newly_failed: int,
        rate_limited: bool,
        now: datetime,
        *,
        final: bool,
        retrying: int = 0,
    ) -> None:
        self._spend_changed()  # outcomes were recorded, with what they cost
        if rate_limited:
            if self._budget.on_rate_limited(now):
                log.warning(
                    "rate limited: Gemini budget now %d of %d",
                    self._budget.allowed,
                    self._budget.limit,
                    extra={"action": "retry", "job_id": job.id},
                )
        elif final and images:
            self._budget.on_success()
        for image in images:
            self._events.publish(ImageReady(job=job, index=image.index, key=image.key, image_id=image.id))
        # Items sent back for a retry change nothing the counts show, but a batch's message says they are being
        # retried: without this it would sit unchanged through an upstream outage.
        # A paused job's chunk that ends may be its last one out: its message goes from "pausing" to "paused".
        if images or newly_failed or retrying or (final and job.status is JobStatus.PAUSED):
            self._events.publish(Progress(job=job, done=job.ok, failed=job.failed, total=job.total))

    async def _fail_items(self, job: Job, items: Sequence[Item], code: ErrorCode, message: str, now: datetime) -> None:
        """Record items as failed without sending them: a chunk that never reached RunPod (it costs nothing)."""
        chunk = await self._ledger.start_chunk(job.id, [i.index for i in items], concurrency=0, now=now)
        outcomes = [
            ItemOutcome(index=i.index, status=ItemStatus.ERROR, error_code=code.value, error_message=message)
            for i in items
        ]
        recorded = await self._ledger.record_outcomes(chunk.id, outcomes, now=now, final=ChunkStatus.LOST)
        self._after_record(recorded.job, (), recorded.newly_failed, False, now, final=True)

    def _priced(
        self, outcome: ItemOutcome, item: Item, job: Job | None, *, usage: TokenUsage | None, made: bool, new: bool
    ) -> ItemOutcome:
        """Add what this attempt cost to the item's recorded cost and usage (`bot.core.pricing.cost_of`).

        `usage` (what the worker reported) is priced at the job's model, a relax job's at the Batch API's half
        price. An image made (`made`) without usage (a worker older than usage reports, or an image found in the
        store after its chunk's answer was lost) costs its size's catalogue price; one that was not made `new` (a
        stored image found again) costs nothing more, unless no cost was ever recorded for it (the attempt that
        made it was lost). A failure without usage cost nothing: no answer came.
        """
        if job is None or (usage is None and not made) or (made and not new and item.cost_usd is not None):
            return outcome
        size = item.inputs.image_size or job.params.image_size
        cost = cost_of(job.params.model, usage, batch=job.params.relax, image_size=size, made=made)
        total = cost if item.cost_usd is None or cost is None else item.cost_usd + cost
        return replace(outcome, cost_usd=total, usage=add_usage(item.usage, usage))

    def _runpod_time(self, execution_ms: int | None) -> tuple[float | None, float | None]:
        """Return the seconds and the USD of a RunPod job that ran `execution_ms` (None, None when unknown)."""
        if execution_ms is None:
            return None, None
        seconds = execution_ms / 1000
        return seconds, seconds * self._policy.runpod_price_per_s

    async def _made_in_store(self, item: Item) -> ItemOutcome | None:
        """Return an item's outcome as made when its output is in the store (a worker wrote it), else None."""
        dims = await self._stored_dimensions(item.output_key)
        if dims is None:
            return None
        width, height = dims
        return ItemOutcome(
            index=item.index, status=ItemStatus.OK, key=item.output_key, width=width or None, height=height or None
        )

    async def _stored_dimensions(self, key: str) -> tuple[int, int] | None:
        """Return an output's (width, height) if it exists ((0, 0) when its header is unreadable), else None."""
        try:
            info = await self._store.head(key)
            if info is None:
                return None
            header = await self._store.read_range(key, 0, 24)
        except StorageError as exc:
            log.warning("storage check of %s failed: %s", key, exc)
            return None
        return png_dimensions(header) or (0, 0)
