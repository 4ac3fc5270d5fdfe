"""The dispatcher: turns ledger jobs into RunPod chunks, polls them, records results, retries and resumes.

One `run_once()` is one iteration (tests drive it directly, like arq's burst mode):

1. poll every chunk in flight (`RunpodGateway.status`) and record what it reports: progress results as they
   come, the result manifest when COMPLETED; COMPLETED without a manifest, FAILED, TIMED_OUT, CANCELLED by
   someone else, and NOT_FOUND (RunPod forgot it) are reconciled from storage: an item whose deterministic
   output key exists is made, the others are retried per the retry policy;
2. finish jobs with nothing left to do, then let waiting jobs of their owners start;
3. submit new chunks while the Gemini budget has room: interactive jobs first, batches round robin;
4. tell listeners about queue positions that changed.

Events go to every `subscribe()`r. Front ends only `submit()` requests and listen; `run_forever()` runs the loop.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import TracebackType

from pydantic import ValidationError

from bot.core.admission import Admission, refusal_message
from bot.core.budget import AimdBudget
from bot.core.chunking import ChunkPolicy, RoundTime
from bot.core.clock import Clock, SystemClock
from bot.core.events import (
    Event,
    ImageReady,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobPaused,
    JobResumed,
    JobSummary,
    PositionChanged,
    Progress,
    Queued,
    Started,
)
from bot.core.item_errors import item_error_message
from bot.core.models import (
    Chunk,
    ChunkStatus,
    Image,
    Item,
    ItemInputs,
    ItemOutcome,
    ItemStatus,
    Job,
    JobId,
    JobParams,
    JobRequest,
    JobStatus,
    NewItem,
    NewJob,
    Priority,
    UserId,
)
from bot.core.policy import DispatchPolicy
from bot.core.scheduling import Candidate, queue_positions, schedule_order
from bot.core.seeds import output_key
from bot.ledger import Ledger, UnknownJobError, new_id
from bot.runpod.errors import RunpodError
from bot.runpod.types import RemoteJob, RemoteStatus, RunpodGateway
from storage.base import Store
from storage.errors import StorageError
from storage.imageformat import png_dimensions
from worker.contract import (
    ChunkInput,
    ChunkItem,
    ChunkOutput,
    ChunkProgress,
    ChunkResult,
    ErrorCode,
    ItemOk,
    ItemResult,
    parse_top_level_error,
)

log = logging.getLogger(__name__)


class SubmitStatus(StrEnum):
    """What `submit` did with a request."""

    QUEUED = "queued"  # accepted; it runs as soon as the budget allows
    WAITING = "waiting"  # accepted; it starts when one of the owner's running jobs finishes
    DUPLICATE = "duplicate"  # the idempotency key was seen before; `job` is the earlier job
    REFUSED = "refused"  # the owner's queue is full; nothing was created


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitResult:
    """The answer to a request: what happened, the job (unless refused), its place in line, and a short text."""

    status: SubmitStatus
    job: Job | None
    position: int | None
    message: str

    @property
    def accepted(self) -> bool:
        """Tell whether a job exists for the request."""
        return self.job is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelResult:
    """What `cancel` did; `job` is None for an unknown job and for someone else's."""

    cancelled: bool
    job: Job | None
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartReport:
    """What `resume_after_restart` found: chunks still on RunPod, and chunks caught mid-submission."""

    reattached: int
    reconciled: int
    recovered_items: int
    requeued_items: int


class InvalidRequestError(ValueError):
    """A request that cannot become a job; `user_message` says why."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class Subscription:
    """One listener's event stream: `async for event in subscription`; `close()` (or `with`) to stop."""

    def __init__(self, owner: "EventBus") -> None:
        self._owner = owner
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._closed = False

    def put(self, event: Event) -> None:
        """Deliver an event (called by the bus)."""
        if not self._closed:
            self._queue.put_nowait(event)

    def drain(self) -> list[Event]:
        """Return the events delivered so far without waiting (for tests and polling front ends)."""
        events: list[Event] = []
        while not self._queue.empty():
            event = self._queue.get_nowait()
            if event is not None:
                events.append(event)
        return events

    def close(self) -> None:
        """Stop receiving events; an `async for` over the subscription ends."""
        if not self._closed:
            self._closed = True
            self._owner.remove(self)
            self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EventBus:
    """Fan-out of dispatcher events to subscriptions (unbounded queues: listeners must keep up)."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []

    def subscribe(self) -> Subscription:
        """Return a new subscription that receives every event published from now on."""
        subscription = Subscription(self)
        self._subscriptions.append(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        """Forget a subscription."""
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)

    def publish(self, event: Event) -> None:
        """Deliver an event to every subscription."""
        for subscription in list(self._subscriptions):
            subscription.put(event)


def policy_from_settings(
    *,
    gemini_concurrency: int,
    max_running_per_user: int,
    max_waiting_per_user: int,
    item_max_attempts: int | None = None,
    batch_chunk_s: float | None = None,
) -> DispatchPolicy:
    """Build the dispatcher policy from the settings that configure it (`BotSettings` fields of the same names)."""
    from bot.core.admission import CapPolicy, Caps
    from bot.core.retry import RetryPolicy

    retry = RetryPolicy() if item_max_attempts is None else RetryPolicy(max_attempts=item_max_attempts)
    chunks = ChunkPolicy() if batch_chunk_s is None else ChunkPolicy(target_chunk_s=batch_chunk_s)
    return DispatchPolicy(
        chunks=chunks,
        gemini_concurrency=gemini_concurrency,
        caps=CapPolicy(user=Caps(max_running=max_running_per_user, max_waiting=max_waiting_per_user)),
        retry=retry,
    )


class Dispatcher:
    """Schedules ledger jobs onto a RunPod endpoint and keeps the ledger in step with it."""

    def __init__(
        self,
        ledger: Ledger,
        gateway: RunpodGateway,
        store: Store,
        *,
        policy: DispatchPolicy | None = None,
        clock: Clock | None = None,
        poll_interval_s: float = 1.0,
    ) -> None:
        self._ledger = ledger
        self._gateway = gateway
        self._store = store
        self._policy = policy or DispatchPolicy()
        self._clock = clock or SystemClock()
        self._poll_interval_s = poll_interval_s
        self._budget = AimdBudget(
            limit=self._policy.gemini_concurrency,
            decrease_cooldown=self._policy.rate_limit_cooldown,
            max_chunk_concurrency=self._policy.max_chunk_concurrency,
        )
        self._round_time = RoundTime(seconds=self._policy.chunks.item_latency_s)
        self._events = EventBus()
        self._wake = asyncio.Event()
        self._last_batch_seq: int | None = None
        self._positions: dict[JobId, int] = {}

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

    def wake(self) -> None:
        """Make `run_forever` run its next iteration now."""
        self._wake.set()

    async def queue_positions(self) -> dict[JobId, int]:
        """Return every queued, not yet started job's 1-based place in line."""
        return await self._current_positions()

    # ---- requests ----------------------------------------------------------------------------------------------

    async def submit(self, request: JobRequest) -> SubmitResult:
        """Create a job for the request (idempotently), or refuse it when the owner's queue is full.

        Raises:
            InvalidRequestError: the request could never run (no items, a prompt or option the worker refuses).
        """
        items = list(request.items) or [NewItem() for _ in range(request.params.n)]
        if not items:
            raise InvalidRequestError("Nothing to make: the request has no images.")
        job_id = JobId(new_id("j"))
        self._validate(job_id, request, items)
        caps = self._policy.caps.caps_for(is_admin=request.is_admin)
        new = NewJob(
            id=job_id,
            kind=request.kind,
            owner_id=request.owner_id,
            prompt=request.prompt,
            params=request.params,
            priority=request.priority or Priority.for_kind(request.kind),
            guild_id=request.guild_id,
            group_id=request.group_id,
            parent_image_id=request.parent_image_id,
            idempotency_key=request.idempotency_key,
            notes=request.notes,
        )
        creation = await self._ledger.create_job(new, items, now=self._clock.now(), admit=caps.admit)
        job = creation.job
        if job is None:
            return SubmitResult(status=SubmitStatus.REFUSED, job=None, position=None, message=refusal_message(caps))
        position = (await self._current_positions()).get(job.id)
        if not creation.created:
            return SubmitResult(status=SubmitStatus.DUPLICATE, job=job, position=position, message="Already submitted.")
        if creation.admission is Admission.WAITING:
            self._events.publish(Queued(job=job, position=None))
            return SubmitResult(
                status=SubmitStatus.WAITING,
                job=job,
                position=None,
                message="Job waiting: it starts when one of your running jobs finishes.",
            )
        if position is not None:
            self._positions[job.id] = position
        self._events.publish(Queued(job=job, position=position))
        self.wake()
        return SubmitResult(
            status=SubmitStatus.QUEUED,
            job=job,
            position=position,
            message="Job queued." if position is None else f"Job queued (position {position}).",
        )

    async def cancel(self, job_id: JobId, by: UserId, *, is_admin: bool = False) -> CancelResult:
        """Cancel a job for its owner (or an admin): its chunks are cancelled on RunPod, its items here."""
        job = await self._ledger.get_job(job_id)
        if job is None or (job.owner_id != by and not is_admin):
            # Someone else's job is answered as a missing one: the answer must not tell which ids exist.
            return CancelResult(cancelled=False, job=None, message="No such job.")
        cancellation = await self._ledger.cancel_job(job_id, now=self._clock.now())
        if cancellation is None:
            return CancelResult(cancelled=False, job=job, message=f"The job is already {job.status}.")
        for chunk in cancellation.chunks:
            if chunk.runpod_id is None:
                continue
            try:
                await self._gateway.cancel(chunk.runpod_id)
            except RunpodError as exc:
                # The chunk is forgotten here either way; the worker skips nothing it was not asked for again.
                log.warning("could not cancel runpod job %s: %s", chunk.runpod_id, exc, extra={"action": "cancel"})
        self._positions.pop(job_id, None)
        self._events.publish(JobCancelled(job=cancellation.job, by=by))
        self.wake()
        return CancelResult(cancelled=True, job=cancellation.job, message="Job cancelled.")

    async def pause(self, job_id: JobId) -> Job:
        """Stop submitting new chunks for a job; chunks in flight finish and are recorded.

        Raises:
            UnknownJobError: no such job.
        """
        job, changed = await self._ledger.set_job_status(
            job_id, JobStatus.PAUSED, expect=(JobStatus.QUEUED, JobStatus.RUNNING)
        )
        if changed:
            log.info("job %s paused", job_id, extra={"job_id": job_id, "action": "pause"})
            self._events.publish(JobPaused(job=job))
        return job

    async def resume(self, job_id: JobId) -> Job:
        """Let a paused job submit chunks again.

        Raises:
            UnknownJobError: no such job.
        """
        current = await self._ledger.get_job(job_id)
        if current is None:
            raise UnknownJobError(job_id)
        target = JobStatus.RUNNING if current.started_at is not None else JobStatus.QUEUED
        job, changed = await self._ledger.set_job_status(job_id, target, expect=(JobStatus.PAUSED,))
        if changed:
            log.info("job %s resumed", job_id, extra={"job_id": job_id, "action": "resume"})
            self._events.publish(JobResumed(job=job))
            self.wake()
        return job

    async def retry_failed(self, job_id: JobId) -> Job:
        """Try a job's retryable failed items again (the "Retry failed" button); safety blocks stay failed.

        Raises:
            UnknownJobError: no such job.
        """
        job = await self._ledger.retry_failed(job_id, now=self._clock.now())
        self.wake()
        return job

    # ---- the loop ----------------------------------------------------------------------------------------------

    async def run_forever(self, *, resume: bool = True) -> None:
        """Run iterations until cancelled: after `poll_interval_s`, or sooner when woken (`wake()`)."""
        if resume:
            await self.resume_after_restart()
        while True:
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:  # one iteration is a boundary: log it and carry on (STYLE.md §5.3)
                log.exception("dispatcher iteration failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval_s)

    async def run_once(self) -> None:
        """Run one iteration: poll, record, finish, promote, schedule, report positions."""
        for chunk in await self._ledger.chunks(statuses=(ChunkStatus.IN_FLIGHT,)):
            await self._poll(chunk)
        await self._finish_jobs()
        await self._promote_waiting()
        await self._schedule()
        await self._report_positions()

    async def resume_after_restart(self) -> RestartReport:
        """Pick up where a previous process stopped.

        Chunks with a RunPod id that were in flight keep being polled, unless RunPod has forgotten them (404, e.g.
        an embedded endpoint that died with the previous process). Chunks that were being submitted when the
        process died may or may not have reached RunPod. Forgotten and stranded chunks are reconciled from storage
        at once (items whose output exists are made) and only the missing items are queued again, with no backoff
        (the worker skips existing outputs anyway, so a duplicate RunPod job would cost nothing twice).
        """
        reattached = recovered = requeued = 0
        stranded = await self._ledger.chunks(statuses=(ChunkStatus.SUBMITTING,))
        for chunk in stranded:
            # A crash is not the items' fault: they go again now, with no backoff.
            made, retried = await self._reconcile(
                chunk, code=None, message="interrupted while submitting", backoff=False
            )
            recovered += made
            requeued += retried
        forgotten: list[Chunk] = []
        for chunk in await self._ledger.chunks(statuses=(ChunkStatus.IN_FLIGHT,)):
            if await self._forgotten(chunk):
                forgotten.append(chunk)
            else:
                reattached += 1
        for chunk in forgotten:
            # RunPod no longer knows the chunk (an embedded endpoint died with the previous process, or its
            # retention ran out while we were down): also not the items' fault, so no backoff either.
            made, retried = await self._reconcile(
                chunk,
                code=None,
                message="forgotten by RunPod while the bot was down",
                remote_status=RemoteStatus.NOT_FOUND,
                backoff=False,
            )
            recovered += made
            requeued += retried
        report = RestartReport(
            reattached=reattached,
            reconciled=len(stranded) + len(forgotten),
            recovered_items=recovered,
            requeued_items=requeued,
        )
        log.info(
            "resumed: %d chunks re-attached, %d reconciled (%d items found, %d requeued)",
            reattached,
            len(stranded),
            recovered,
            requeued,
            extra={"action": "reclaim"},
        )
        self.wake()
        return report

    async def _forgotten(self, chunk: Chunk) -> bool:
        """Tell whether RunPod answers 404 for a chunk in flight (an error says nothing: it is polled later)."""
        assert chunk.runpod_id is not None  # in flight means RunPod gave an id
        try:
            remote = await self._gateway.status(chunk.runpod_id)
        except RunpodError:
            return False
        return remote.status is RemoteStatus.NOT_FOUND

    # ---- polling and recording ---------------------------------------------------------------------------------

    async def _poll(self, chunk: Chunk) -> None:
        assert chunk.runpod_id is not None  # in flight means RunPod gave an id
        try:
            remote = await self._gateway.status(chunk.runpod_id)
        except RunpodError as exc:
            log.warning("polling runpod job %s failed: %s", chunk.runpod_id, exc, extra={"action": "poll"})
            return
        if remote.status is RemoteStatus.IN_QUEUE:
            return
        if remote.status is RemoteStatus.IN_PROGRESS:
            # Polls come faster than progress updates: one already recorded is not parsed nor written again.
            if isinstance(remote.progress, dict) and _done_of(remote.progress) > _done_of(chunk.last_progress):
                await self._record_progress(chunk, remote.progress)
            return
        result = _parse_output(remote.result) if remote.status is RemoteStatus.COMPLETED else None
        if isinstance(result, ChunkResult):
            made = sum(1 for r in result.results if not (isinstance(r, ItemOk) and r.skipped))
            self._round_time.observe(execution_ms=remote.execution_ms, made=made, concurrency=chunk.concurrency)
            await self._record(chunk, result.results, final=ChunkStatus.DONE, remote_status=remote.status)
            # Items the manifest does not mention (it should mention all) are reconciled like a lost chunk.
            await self._reconcile(chunk, code=None, message="missing from the result manifest")
            return
        code, message = _failure_of(remote)
        log.warning(
            "runpod job %s ended %s without a manifest: %s",
            chunk.runpod_id,
            remote.status,
            message,
            extra={"action": "retry", "job_id": chunk.job_id},
        )
        await self._reconcile(chunk, code=code, message=message, remote_status=remote.status)

    async def _record_progress(self, chunk: Chunk, progress: Mapping[str, object]) -> None:
        """Record the items a progress report shows done that the ledger has not recorded yet.

        A report lists every result of the chunk so far (a poll may miss one), so a 256-item chunk repeats up to
        255 old ones: only those still waiting are validated and read back, and the chunk keeps the counts alone.
        """
        waiting = await self._ledger.submitted_indices(chunk.id)
        results = progress.get("results")
        listed = results if isinstance(results, list) else []
        fresh = [r for r in listed if isinstance(r, dict) and r.get("index") in waiting]
        parsed = _parse_output({**progress, "results": fresh})
        if isinstance(parsed, ChunkProgress):
            counts = {"type": "progress", "done": parsed.done, "total": parsed.total}
            await self._record(chunk, parsed.results, progress=counts)

    async def _record(
        self,
        chunk: Chunk,
        results: Sequence[ItemResult],
        *,
        progress: object = None,
        final: ChunkStatus | None = None,
        remote_status: RemoteStatus | None = None,
    ) -> None:
        now = self._clock.now()
        submitted = await self._ledger.submitted_items(chunk.id, indices=[result.index for result in results])
        waiting = {item.index: item for item in submitted}
        outcomes = [self._outcome(result, waiting[result.index], now) for result in results if result.index in waiting]
        recorded = await self._ledger.record_outcomes(
            chunk.id,
            outcomes,
            now=now,
            progress=progress if isinstance(progress, dict) else None,
            final=final,
            remote_status=None if remote_status is None else remote_status.value,
        )
        self._after_record(
            recorded.job,
            recorded.new_images,
            recorded.newly_failed,
            recorded.rate_limited,
            now,
            final=final is not None,
            retrying=_retrying(outcomes),
        )

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
        if images or newly_failed or retrying:
            self._events.publish(Progress(job=job, done=job.ok, failed=job.failed, total=job.total))

    def _outcome(self, result: ItemResult, item: Item, now: datetime) -> ItemOutcome:
        if isinstance(result, ItemOk):
            return ItemOutcome(
                index=item.index, status=ItemStatus.OK, key=result.key, width=result.width, height=result.height
            )
        return self._failure(item, result.code, result.message, now)

    def _failure(self, item: Item, code: ErrorCode | None, message: str, now: datetime) -> ItemOutcome:
        delay = self._policy.retry.decide(attempts=item.attempts, code=code)
        code_text = None if code is None else code.value
        if delay is None:
            return ItemOutcome(
                index=item.index,
                status=ItemStatus.ERROR,
                error_code=code_text or ErrorCode.UPSTREAM.value,
                error_message=message,
            )
        return ItemOutcome(
            index=item.index,
            status=ItemStatus.PENDING,
            error_code=code_text,
            error_message=message,
            retry_at=now + delay,
        )

    async def _reconcile(
        self,
        chunk: Chunk,
        *,
        code: ErrorCode | None,
        message: str,
        remote_status: RemoteStatus | None = None,
        backoff: bool = True,
    ) -> tuple[int, int]:
        """Settle a chunk's undecided items from storage; return (items found made, items to retry or failed)."""
        now = self._clock.now()
        outcomes: list[ItemOutcome] = []
        for item in await self._ledger.submitted_items(chunk.id):
            dims = await self._stored_dimensions(item.output_key)
            if dims is not None:
                width, height = dims
                outcomes.append(
                    ItemOutcome(
                        index=item.index,
                        status=ItemStatus.OK,
                        key=item.output_key,
                        width=width or None,
                        height=height or None,
                    )
                )
            elif not backoff:
                # The bot stopped (a crash, a restart): not the item's fault, so it goes again now, and an item
                # whose attempts are used up is not failed for it.
                outcomes.append(
                    ItemOutcome(index=item.index, status=ItemStatus.PENDING, error_message=message, retry_at=now)
                )
            else:
                outcomes.append(self._failure(item, code, message, now))
        current = await self._ledger.get_chunk(chunk.id)
        final = ChunkStatus.LOST if current is not None and current.status.holds_budget else None
        recorded = await self._ledger.record_outcomes(
            chunk.id,
            outcomes,
            now=now,
            final=final,
            remote_status=None if remote_status is None else remote_status.value,
        )
        self._after_record(
            recorded.job,
            recorded.new_images,
            recorded.newly_failed,
            recorded.rate_limited,
            now,
            final=True,
            retrying=_retrying(outcomes),
        )
        made = sum(1 for o in outcomes if o.status is ItemStatus.OK)
        return made, len(outcomes) - made

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

    # ---- finishing and admission -------------------------------------------------------------------------------

    async def _finish_jobs(self) -> None:
        now = self._clock.now()
        for job in await self._ledger.unfinished_jobs():
            if job.remaining > 0 or job.status is JobStatus.WAITING:
                continue
            finished = await self._ledger.finish_job_if_complete(job.id, now=now)
            if finished is None:
                continue
            self._positions.pop(job.id, None)
            errors = await self._ledger.error_counts(job.id)
            summary = JobSummary(
                ok=finished.ok,
                failed=finished.failed,
                cancelled=finished.cancelled,
                total=finished.total,
                errors=errors,
            )
            if finished.status is JobStatus.FAILED:
                self._events.publish(JobFailed(job=finished, reason=_failure_reason(errors), summary=summary))
            else:
                self._events.publish(JobFinished(job=finished, summary=summary))

    async def _promote_waiting(self) -> None:
        # Admins' caps are not known here (the front end says who is an admin per request); waiting jobs only
        # exist for users under the ordinary caps, so those decide.
        caps = self._policy.caps.user
        for owner_id in await self._ledger.users_with_waiting_jobs():
            for job in await self._ledger.promote_waiting(owner_id, caps.promotable):
                log.info("job %s promoted from waiting", job.id, extra={"job_id": job.id, "action": "enqueue"})
                position = (await self._current_positions()).get(job.id)
                if position is not None:
                    self._positions[job.id] = position
                self._events.publish(Queued(job=job, position=position))

    # ---- scheduling --------------------------------------------------------------------------------------------

    async def _schedule(self) -> None:
        now = self._clock.now()
        schedulable = {s.job.id: s for s in await self._ledger.schedulable(now=now)}
        if not schedulable:
            return
        ready = {job_id: s.ready for job_id, s in schedulable.items()}
        in_flight_chunks = await self._ledger.chunks(statuses=(ChunkStatus.SUBMITTING, ChunkStatus.IN_FLIGHT))
        in_flight = sum(_calls_held(c) for c in in_flight_chunks)
        running: dict[JobId, int] = {}  # items of each job still to finish in chunks in flight
        round_s = self._round_time.seconds if self._round_time.measured else None
        for c in in_flight_chunks:
            running[c.job_id] = running.get(c.job_id, 0) + _items_left_by_now(c, now=now, round_s=round_s)
        contenders = len({c.job_id for c in in_flight_chunks} | set(schedulable))
        while True:
            candidates = [
                Candidate(job_id=job_id, priority=schedulable[job_id].job.priority, seq=schedulable[job_id].seq)
                for job_id, count in ready.items()
                if count > 0
            ]
            order = schedule_order(candidates, last_batch_seq=self._last_batch_seq)
            if not order:
                return
            entry = schedulable[order[0]]
            waiting = ready[entry.job.id]
            chunks = self._policy.chunks
            size = waiting if entry.job.priority is Priority.BATCH else chunks.interactive_chunk_size(waiting)
            concurrency = self._budget.chunk_concurrency(items=size, in_flight=in_flight, contenders=contenders)
            if concurrency == 0:
                return  # the budget is full; the job first in line gets the next free calls
            if entry.job.priority is Priority.BATCH:
                size = chunks.batch_chunk_size(
                    ready=waiting,
                    left=waiting + running.get(entry.job.id, 0),
                    concurrency=concurrency,
                    round_s=self._round_time.seconds,
                    window=self._budget.allowed,
                )
                concurrency = min(concurrency, size)
            submitted = await self._submit_chunk(entry.job, size, concurrency, now)
            if submitted is None:
                return
            in_flight += concurrency
            ready[entry.job.id] -= max(1, submitted)
            running[entry.job.id] = running.get(entry.job.id, 0) + submitted
            if entry.job.priority is Priority.BATCH:
                self._last_batch_seq = entry.seq

    async def _submit_chunk(self, job: Job, size: int, concurrency: int, now: datetime) -> int | None:
        """Submit the next `size` ready items of `job`; return how many went, or None to stop scheduling."""
        items = await self._ledger.ready_items(job.id, now=now, limit=size)
        if not items:
            return 0
        try:
            payload = _chunk_input(job, items, concurrency, seq=0)
        except ValidationError as exc:
            await self._refuse_items(job, items, exc, now)
            return len(items)
        chunk = await self._ledger.start_chunk(job.id, [i.index for i in items], concurrency=concurrency, now=now)
        payload = payload.model_copy(update={"chunk": chunk.seq})
        chunks = self._policy.chunks
        try:
            remote = await self._gateway.run(
                payload.to_payload(),
                execution_timeout_ms=chunks.execution_timeout_ms(len(items), concurrency),
                ttl_ms=chunks.ttl_ms(len(items), concurrency),
                low_priority=self._policy.batch_low_priority and job.priority is Priority.BATCH,
            )
        except RunpodError as exc:
            log.warning("submitting chunk %d of job %s failed: %s", chunk.seq, job.id, exc, extra={"action": "submit"})
            await self._ledger.abandon_chunk(chunk.id, retry_at=now + self._policy.submit_retry_delay, now=now)
            return None
        await self._ledger.mark_chunk_submitted(chunk.id, remote.id, now=now)
        log.info(
            "job %s chunk %d submitted as %s (%d items, concurrency %d)",
            job.id,
            chunk.seq,
            remote.id,
            len(items),
            concurrency,
            extra={"job_id": job.id, "action": "submit", "remote_id": remote.id},
        )
        if job.status is JobStatus.QUEUED and chunk.seq == 0:
            started = await self._ledger.get_job(job.id)
            self._positions.pop(job.id, None)
            self._events.publish(Started(job=started or job))
        return len(items)

    async def _refuse_items(self, job: Job, items: Sequence[Item], exc: ValidationError, now: datetime) -> None:
        log.warning("job %s has items the worker would refuse: %s", job.id, exc.error_count())
        chunk = await self._ledger.start_chunk(job.id, [i.index for i in items], concurrency=0, now=now)
        outcomes = [
            ItemOutcome(
                index=i.index,
                status=ItemStatus.ERROR,
                error_code=ErrorCode.BAD_INPUT.value,
                error_message="invalid request",
            )
            for i in items
        ]
        recorded = await self._ledger.record_outcomes(chunk.id, outcomes, now=now, final=ChunkStatus.LOST)
        self._after_record(recorded.job, (), recorded.newly_failed, False, now, final=True)

    async def _current_positions(self) -> dict[JobId, int]:
        queued = await self._ledger.list_jobs(statuses=(JobStatus.QUEUED,))
        seqs = await self._ledger.job_seqs(j.id for j in queued)
        return queue_positions(
            [Candidate(job_id=j.id, priority=j.priority, seq=seqs[j.id]) for j in queued if j.started_at is None]
        )

    async def _report_positions(self) -> None:
        positions = await self._current_positions()
        changed = [job_id for job_id, pos in positions.items() if self._positions.get(job_id) not in (None, pos)]
        for job_id in changed:
            job = await self._ledger.get_job(job_id)
            if job is not None:
                self._events.publish(PositionChanged(job=job, position=positions[job_id]))
        self._positions = positions

    @staticmethod
    def _validate(job_id: JobId, request: JobRequest, items: Sequence[NewItem]) -> None:
        for index, item in enumerate(items):
            try:
                ChunkItem.model_validate(
                    _item_payload(
                        item.prompt or request.prompt,
                        item.inputs,
                        request.params,
                        index=index,
                        seed=item.seed or 0,
                        key=output_key(job_id, index),
                    )
                )
            except ValidationError as exc:
                field = ".".join(str(part) for part in exc.errors()[0]["loc"]) or "request"
                raise InvalidRequestError(f"Image {index + 1} cannot be made: invalid {field}.") from exc


def _retrying(outcomes: Sequence[ItemOutcome]) -> int:
    """Count the outcomes that send a failed item back for another attempt."""
    return sum(1 for o in outcomes if o.status is ItemStatus.PENDING and o.error_code is not None)


def _done_of(progress: object) -> int:
    """Return the `done` count of a progress payload (0 when there is none or it is not a count)."""
    done = progress.get("done") if isinstance(progress, dict) else None
    return done if isinstance(done, int) and not isinstance(done, bool) else 0


def _items_left(chunk: Chunk) -> int:
    """Return how many of a chunk's items its last progress does not show done."""
    return max(0, len(chunk.indices) - _done_of(chunk.last_progress))


def _items_left_by_now(chunk: Chunk, *, now: datetime, round_s: float | None) -> int:
    """Return how many of a chunk's items are still to be made now, as far as the dispatcher can tell.

    Its last progress can be a report interval and a poll old, which at the end of a wave is a whole round:
    counted as left, items already made would size the next chunk rounds longer than the rest of its wave.
    So once a chunk has reported (it has started), `left` is also capped by the rounds it can have run since
    it was submitted, at the measured `round_s`. The cap errs low (time in RunPod's queue counts as running),
    which is safe: a chunk sized to too little ends early and the calls it frees get a chunk sized afresh.
    """
    left = _items_left(chunk)
    if round_s is None or round_s <= 0 or chunk.last_progress is None or chunk.submitted_at is None:
        return left
    rounds = int((now - chunk.submitted_at).total_seconds() / round_s)
    return min(left, max(0, len(chunk.indices) - rounds * chunk.concurrency))


def _calls_held(chunk: Chunk) -> int:
    """Return the Gemini calls a chunk in flight can still make at once (what it holds of the budget).

    Its concurrency, until its progress shows fewer items left than that: a chunk in its last round, or settling
    and reporting after its last call, frees the rest for the next chunk. `done` only grows, so the count never
    falls below the calls the worker can really have open.
    """
    return min(chunk.concurrency, _items_left(chunk))


def _item_payload(
    prompt: str, inputs: ItemInputs, params: JobParams, *, index: int, seed: int, key: str
) -> dict[str, object]:
    payload: dict[str, object] = {
        "index": index,
        "prompt": prompt,
        "ref_keys": list(inputs.ref_keys),
        "aspect_ratio": params.aspect_ratio,
        "image_size": params.image_size,
        "seed": seed,
        "output_key": key,
    }
    if inputs.edit is not None:
        payload["edit"] = {"source_key": inputs.edit.source_key, "history": list(inputs.edit.history)}
    return payload


def _chunk_input(job: Job, items: Sequence[Item], concurrency: int, *, seq: int) -> ChunkInput:
    entries = [
        _item_payload(
            item.prompt or job.prompt, item.inputs, job.params, index=item.index, seed=item.seed, key=item.output_key
        )
        for item in items
    ]
    return ChunkInput.model_validate(
        {
            "job_id": job.id,
            "chunk": seq,
            "model": job.params.model,
            "concurrency": max(1, concurrency),
            "items": entries,
        }
    )


def _parse_output(data: object) -> ChunkProgress | ChunkResult | None:
    if data is None:
        return None
    try:
        return ChunkOutput.validate_python(data)
    except ValidationError:
        log.warning("runpod output is not a progress report or result manifest", extra={"action": "poll"})
        return None


def _failure_of(remote: RemoteJob) -> tuple[ErrorCode | None, str]:
    if remote.error:
        return parse_top_level_error(remote.error)
    return None, {
        RemoteStatus.COMPLETED: "completed without a result manifest",
        RemoteStatus.TIMED_OUT: "timed out on RunPod",
        RemoteStatus.NOT_FOUND: "forgotten by RunPod",
        RemoteStatus.CANCELLED: "cancelled on RunPod",
    }.get(remote.status, f"ended {remote.status.value}")


def _failure_reason(errors: dict[str, int]) -> str:
    if errors:
        return item_error_message(max(errors, key=lambda c: errors[c]))
    return "Nothing could be made."


__all__ = [
    "CancelResult",
    "Dispatcher",
    "EventBus",
    "InvalidRequestError",
    "RestartReport",
    "SubmitResult",
    "SubmitStatus",
    "Subscription",
    "policy_from_settings",
]
