"""The dispatcher's loop: polling chunks in flight, recording and reconciling results, finishing jobs, resuming."""

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.core.chunking import ChunkPolicy
from bot.core.events import JobFailed, JobFinished, JobPaused, JobSummary
from bot.core.item_errors import item_error_message
from bot.core.models import Chunk, ChunkStatus, Item, ItemOutcome, ItemStatus, Job, JobStatus
from bot.core.outage import OutagePolicy, held_by_outage
from bot.core.policy import DispatchPolicy
from bot.core.relax import RelaxPolicy
from bot.core.scheduling import done_of
from bot.dispatch.budgets import BudgetsMixin
from bot.dispatch.payloads import failure_of, parse_output
from bot.runpod.errors import RunpodError
from bot.runpod.types import RemoteStatus
from worker.contract import ChunkProgress, ChunkResult, ErrorCode, ItemError, ItemOk, ItemResult

log = logging.getLogger(__name__)

# How long a stopping process lets the dispatcher finish its iteration: well inside the 10 s Docker gives a
# container between SIGTERM and SIGKILL, leaving the rest for closing the workers, the servers and the ledger.
STOP_GRACE_S = 4.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartReport:
    """What `resume_after_restart` found: chunks still on RunPod, and chunks caught mid-submission."""

    reattached: int
    reconciled: int
    recovered_items: int
    requeued_items: int


def policy_from_settings(
    *,
    gemini_concurrency: int,
    max_running_per_user: int,
    max_waiting_per_user: int,
    item_max_attempts: int | None = None,
    batch_chunk_s: float | None = None,
    outage_fail_after_s: float | None = None,
    outage_fail_batch_after_s: float | None = None,
    relax: RelaxPolicy | None = None,
    runpod_price_per_s: float | None = None,
) -> DispatchPolicy:
    """Build the dispatcher policy from the settings that configure it (`BotSettings` fields of the same names)."""
    from bot.core.admission import CapPolicy, Caps
    from bot.core.retry import RetryPolicy

    outage = OutagePolicy()
    if outage_fail_after_s is not None:
        outage = replace(outage, fail_after=timedelta(seconds=outage_fail_after_s))
    if outage_fail_batch_after_s is not None:
        outage = replace(outage, fail_batch_after=timedelta(seconds=outage_fail_batch_after_s))

    retry = RetryPolicy() if item_max_attempts is None else RetryPolicy(max_attempts=item_max_attempts)
    chunks = ChunkPolicy() if batch_chunk_s is None else ChunkPolicy(target_chunk_s=batch_chunk_s)
    policy = DispatchPolicy(
        chunks=chunks,
        gemini_concurrency=gemini_concurrency,
        caps=CapPolicy(user=Caps(max_running=max_running_per_user, max_waiting=max_waiting_per_user)),
        retry=retry,
        outage=outage,
        relax=relax or RelaxPolicy(),
    )
    return policy if runpod_price_per_s is None else replace(policy, runpod_price_per_s=runpod_price_per_s)


class Dispatcher(BudgetsMixin):
    """Schedules ledger jobs onto a RunPod endpoint and keeps the ledger in step with it."""

    async def run_forever(self, *, resume: bool = True) -> None:
        """Run iterations until stopped (`stop`, for good) or cancelled, every `poll_interval_s` or when woken."""
        if resume:
            await self.resume_after_restart()
        while not self.stopping:
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:  # one iteration is a boundary: log it and carry on
                log.exception("dispatcher iteration failed")
            # `stop` also wakes the loop, so a stopping dispatcher does not sleep out the interval first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval_s)

    async def stop(self, task: "asyncio.Task[None]", *, grace_s: float = STOP_GRACE_S) -> None:
        """End the `run_forever` task without losing or doubling work (a process stopping on SIGTERM).

        No new chunk is submitted from now on; the iteration in progress finishes its ledger writes (at most
        `grace_s`, then the task is cancelled). Chunks in flight are not cancelled on RunPod: the next process
        re-attaches to them (`resume_after_restart`), and a chunk caught mid-submission is reconciled there.
        """
        self._stopping = True
        self.wake()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace_s)
        except TimeoutError:
            log.warning("the dispatcher did not stop within %.0f s; cancelling it", grace_s)
            task.cancel()
        except Exception:  # it ended by raising: stopping is all that is asked here
            log.exception("the dispatcher loop failed")
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self._stop_cancels()
        # Deletes of closed relax parts' files are a courtesy (Gemini deletes them after 48 hours): not waited for.
        for delete in list(self._relax_tasks):
            delete.cancel()
        await asyncio.gather(*self._relax_tasks, return_exceptions=True)

    async def run_once(self) -> None:
        """Run one iteration: poll, record, finish, promote, schedule, report positions.

        While RunPod's breaker is open nothing is polled or submitted: one probe goes out when its backoff allows,
        and the unsent items of jobs that cannot run any more fail (`OutageMixin`). While Gemini's is open chunks
        are polled as usual, but only one item at a time is sent, as its probe (`SchedulingMixin`).
        """
        if not self._runpod.up:
            await self._probe_runpod()
        if self._runpod.up:
            in_flight = await self._ledger.chunks(statuses=(ChunkStatus.IN_FLIGHT,))
            cancelled = await self._cancelled_jobs(in_flight)
            for chunk in in_flight:
                follow = self._follow_cancelled if chunk.job_id in cancelled else self._poll
                if not await follow(chunk):
                    break  # RunPod stopped answering: the breaker is open, the other chunks wait for it
            await self._run_relax()
        await self._give_up_unsent()
        await self._finish_jobs()
        await self._pause_finished_trials()
        await self._enforce_budgets()
        await self._promote_waiting()
        if self._runpod.up:
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
            # RunPod unreachable (or refusing the key): the rest are kept as they are and polled once it answers.
            if self._runpod.up and await self._forgotten(chunk):
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
        except RunpodError as exc:
            self._runpod_failed(exc)
            return False
        return remote.status is RemoteStatus.NOT_FOUND

    async def _poll(self, chunk: Chunk) -> bool:
        """Poll one chunk and record what it reports; return False when RunPod could not be used (breaker open)."""
        assert chunk.runpod_id is not None  # in flight means RunPod gave an id
        try:
            remote = await self._gateway.status(chunk.runpod_id)
        except RunpodError as exc:
            log.warning("polling runpod job %s failed: %s", chunk.runpod_id, exc, extra={"action": "poll"})
            return not self._runpod_failed(exc)
        if remote.status is RemoteStatus.IN_QUEUE:
            return True
        if remote.status is RemoteStatus.IN_PROGRESS:
            # Polls come faster than progress updates: one already recorded is not parsed nor written again.
            if isinstance(remote.progress, dict) and done_of(remote.progress) > done_of(chunk.last_progress):
                await self._record_progress(chunk, remote.progress)
            return True
        if await self._cancelled_meanwhile(chunk):
            return True  # the job was cancelled since this iteration began: the chunk is settled as a cancelled one
        result = parse_output(remote.result) if remote.status is RemoteStatus.COMPLETED else None
        if isinstance(result, ChunkResult):
            made = sum(1 for r in result.results if not (isinstance(r, ItemOk) and r.skipped))
            self._round_time.observe(execution_ms=remote.execution_ms, made=made, concurrency=chunk.concurrency)
            await self._record(
                chunk,
                result.results,
                final=ChunkStatus.DONE,
                remote_status=remote.status,
                execution_ms=remote.execution_ms,
            )
            # Items the manifest does not mention (it should mention all) are reconciled like a lost chunk.
            await self._reconcile(chunk, code=None, message="missing from the result manifest")
            return True
        code, message = failure_of(remote)
        log.warning(
            "runpod job %s ended %s without a manifest: %s",
            chunk.runpod_id,
            remote.status,
            message,
            extra={"action": "retry", "job_id": chunk.job_id},
        )
        await self._reconcile(
            chunk, code=code, message=message, remote_status=remote.status, execution_ms=remote.execution_ms
        )
        return True

    async def _record_progress(self, chunk: Chunk, progress: Mapping[str, object]) -> None:
        """Record the items a progress report shows done that the ledger has not recorded yet.

        A report lists every result of the chunk so far (a poll may miss one), so a 256-item chunk repeats up to
        255 old ones: only those still waiting are validated and read back, and the chunk keeps the counts alone.
        """
        waiting = await self._ledger.submitted_indices(chunk.id)
        results = progress.get("results")
        listed = results if isinstance(results, list) else []
        fresh = [r for r in listed if isinstance(r, dict) and r.get("index") in waiting]
        parsed = parse_output({**progress, "results": fresh})
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
        execution_ms: int | None = None,
    ) -> None:
        now = self._clock.now()
        submitted = await self._ledger.submitted_items(chunk.id, indices=[result.index for result in results])
        waiting = {item.index: item for item in submitted}
        # Only results not recorded yet tell of Gemini (a final manifest repeats what progress reports said), and
        # before the outcomes: the failure that opens Gemini's breaker is already the outage's, not its item's.
        await self._watch_gemini([result for result in results if result.index in waiting])
        job = await self._ledger.get_job(chunk.job_id) if waiting else None
        runpod_s, runpod_cost = self._runpod_time(execution_ms)
        outcomes = [
            self._priced(
                self._outcome(result, item, now),
                item,
                job,
                usage=result.usage,
                made=isinstance(result, ItemOk),
                new=not (isinstance(result, ItemOk) and result.skipped),
            )
            for result in results
            if (item := waiting.get(result.index)) is not None
        ]
        recorded = await self._ledger.record_outcomes(
            chunk.id,
            outcomes,
            now=now,
            progress=progress if isinstance(progress, dict) else None,
            final=final,
            remote_status=None if remote_status is None else remote_status.value,
            runpod_s=runpod_s,
            runpod_cost_usd=runpod_cost,
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
        await self._after_gemini(recorded.job, results, now)

    async def _after_gemini(self, job: Job, results: Sequence[ItemResult], now: datetime) -> None:
        """Gemini refusing the worker's key or model: admins hear once, and the job's other items fail now."""
        refused = next((r for r in results if isinstance(r, ItemError) and r.code is ErrorCode.CONFIG), None)
        if refused is None:
            return
        self._gemini_refused(refused.message)
        await self._fail_unsent(job, ErrorCode.CONFIG, refused.message, now)

    def _outcome(self, result: ItemResult, item: Item, now: datetime) -> ItemOutcome:
        if isinstance(result, ItemOk):
            return ItemOutcome(
                index=item.index, status=ItemStatus.OK, key=result.key, width=result.width, height=result.height
            )
        if result.code is ErrorCode.STOPPED:
            # The job was paused before the worker called Gemini for it: nothing was spent and nothing failed, so
            # it is simply not sent yet (a cancelled job's items are cancelled already and do not change).
            return ItemOutcome(index=item.index, status=ItemStatus.PENDING, retry_at=now, refund_attempt=True)
        if held_by_outage(result.code, self._gemini):
            # Gemini is down: the item waits for it with its attempt given back, sent again as a probe or once
            # Gemini answers (no backoff of its own: the breaker's probes pace it).
            return ItemOutcome(
                index=item.index,
                status=ItemStatus.PENDING,
                error_code=result.code.value,
                error_message=result.message,
                retry_at=now,
                refund_attempt=True,
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
        execution_ms: int | None = None,
    ) -> tuple[int, int]:
        """Settle a chunk's undecided items from storage; return (items found made, items to retry or failed).

        `execution_ms` is the RunPod time of the chunk's job when it ended without a manifest (billed all the same).
        """
        now = self._clock.now()
        outcomes: list[ItemOutcome] = []
        job: Job | None = None
        for item in await self._ledger.submitted_items(chunk.id):
            found = await self._made_in_store(item)
            if found is not None:
                # Made, but its usage was lost with the manifest: priced at the catalogue's price for its size.
                job = job or await self._ledger.get_job(chunk.job_id)
                outcomes.append(self._priced(found, item, job, usage=None, made=True, new=False))
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
        runpod_s, runpod_cost = self._runpod_time(execution_ms)
        recorded = await self._ledger.record_outcomes(
            chunk.id,
            outcomes,
            now=now,
            final=final,
            remote_status=None if remote_status is None else remote_status.value,
            runpod_s=runpod_s,
            runpod_cost_usd=runpod_cost,
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

    async def _pause_finished_trials(self) -> None:
        """Pause each job whose trial has run (its items before the hold are final): the rest waits for Resume."""
        for job in await self._ledger.trials_over():
            paused, changed = await self._ledger.set_job_status(
                job.id, JobStatus.PAUSED, expect=(JobStatus.QUEUED, JobStatus.RUNNING)
            )
            if changed:
                log.info("job %s: its trial is over; paused", job.id, extra={"job_id": job.id, "action": "pause"})
                self._events.publish(JobPaused(job=paused))

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


def _retrying(outcomes: Sequence[ItemOutcome]) -> int:
    """Count the outcomes that send a failed item back for another attempt."""
    return sum(1 for o in outcomes if o.status is ItemStatus.PENDING and o.error_code is not None)


def _failure_reason(errors: dict[str, int]) -> str:
    if errors:
        return item_error_message(max(errors, key=lambda c: errors[c]))
    return "Nothing could be made."
