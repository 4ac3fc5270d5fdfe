"""Relax batches: their items go to Gemini's Batch API in parts, each part moved through its phases by this loop.

A part is one Gemini batch job holding up to `RelaxPolicy.part_items` items (a chunk of the ledger with no online
calls, `relax_parts` beside it). Each dispatcher iteration advances every open part by at most one step:

    preparing   a `relax_prepare` RunPod job writes and uploads the requests (the worker: heavy bytes)
                → the bot looks for a batch with the part's display name and creates one only when none is found
    submitted   Gemini holds it (pending) ┐ the bot asks Gemini about it every `RelaxPolicy.poll`
    running     Gemini runs it            ┘ (one cheap GET; the counts feed the progress message)
    collecting  Gemini succeeded: a `relax_collect` RunPod job streams the result file into the store and answers
                a manifest, recorded like a chunk's
    done        every item has its verdict; the part's files are deleted from Gemini

Everything a step needs is in the ledger before the step's call, so a process killed at any point carries on:
a prepare or collect job RunPod forgot is sent again (the worker skips outputs already stored), and a batch the
bot created but did not record is found again by its display name, never created twice. A part holds only the items
its job's money caps leave room for (`BudgetsMixin._affordable`), as a fast chunk does. An expired or failed
batch fails its items `EXPIRED` (nothing made, nothing charged; "Retry failed" runs them in either mode). Pause
sends no new part; Gemini cannot pause a batch it holds, so parts already sent finish and are collected. Cancel
cancels the Gemini batches and the RunPod jobs of its open parts, and nothing more is collected.
"""

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import ValidationError

from bot.core.events import Progress, Started
from bot.core.models import Chunk, ChunkStatus, Item, ItemOutcome, ItemStatus, Job, JobId, JobStatus
from bot.core.relax import ENDED_UNMADE, STATE_SUCCEEDED, RelaxPart, RelaxPhase, RelaxStatus, phase_of_state, status_of
from bot.dispatch.cancels import CancelsMixin
from bot.dispatch.payloads import chunk_items, failure_of, parse_output
from bot.dispatch.scheduling import SchedulingMixin
from bot.gemini.types import BatchInfo, GeminiBatchError, GeminiProblem
from bot.runpod.errors import RunpodError
from bot.runpod.types import RemoteJob, RemoteStatus
from worker.contract import (
    ChunkProgress,
    ChunkResult,
    ErrorCode,
    RelaxCollectInput,
    RelaxCollectItem,
    RelaxPrepareInput,
    RelaxPrepareResult,
    relax_display_name,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from worker.contract import ItemResult

log = logging.getLogger(__name__)

OPEN_PHASES = (RelaxPhase.PREPARING, RelaxPhase.SUBMITTED, RelaxPhase.RUNNING, RelaxPhase.COLLECTING)
_WAITING = frozenset({RemoteStatus.IN_QUEUE, RemoteStatus.IN_PROGRESS})


class RelaxMixin(SchedulingMixin, CancelsMixin):
    """Runs relax jobs' parts through Gemini's Batch API (see the module docstring)."""

    if TYPE_CHECKING:  # the loop's own recording, shared with chunks (`bot.dispatch.loop.Dispatcher`)

        async def _record(
            self,
            chunk: Chunk,
            results: "Sequence[ItemResult]",
            *,
            progress: object = None,
            final: ChunkStatus | None = None,
            remote_status: RemoteStatus | None = None,
            execution_ms: int | None = None,
        ) -> None: ...

        async def _record_progress(self, chunk: Chunk, progress: "Mapping[str, object]") -> None: ...

        async def _reconcile(
            self,
            chunk: Chunk,
            *,
            code: ErrorCode | None,
            message: str,
            remote_status: RemoteStatus | None = None,
            backoff: bool = True,
            execution_ms: int | None = None,
        ) -> tuple[int, int]: ...

        def _failure(self, item: Item, code: ErrorCode | None, message: str, now: datetime) -> ItemOutcome: ...

    async def relax_status(self, job_id: JobId) -> RelaxStatus | None:
        """Return where a relax batch's open parts are, or None (a fast batch, or no part open)."""
        parts = await self._ledger.relax_parts(job_id=job_id, phases=OPEN_PHASES)
        return status_of(parts, trouble_since=self._relax_trouble)

    async def drain_relax(self) -> None:
        """Wait for the background deletes of closed parts' files."""
        while self._relax_tasks:
            await asyncio.gather(*self._relax_tasks, return_exceptions=True)

    # ---- each iteration ------------------------------------------------------------------------------------------

    async def _run_relax(self) -> None:
        """Advance every open part by one step, then start parts for relax jobs with items ready."""
        if self._batches is None:
            return
        for part in await self._ledger.relax_parts(phases=OPEN_PHASES):
            job = await self._ledger.get_job(JobId(part.job_id))
            if job is None:
                continue
            try:
                if job.status is JobStatus.CANCELLED:
                    await self._close_cancelled(part)
                else:
                    await self._advance(part, job)
            except GeminiBatchError as exc:
                await self._batch_call_failed(part, job, exc)
            except RunpodError as exc:
                log.warning("relax part %d: RunPod failed: %s", part.chunk_id, exc, extra={"job_id": job.id})
                if self._runpod_failed(exc):
                    break  # the breaker is open: nothing more reaches RunPod this iteration
        if self._runpod.up and not self.stopping:
            await self._schedule_relax()

    async def _advance(self, part: RelaxPart, job: Job) -> None:
        if part.phase is RelaxPhase.PREPARING:
            if part.input_file is None:
                await self._prepare(part, job)
            else:
                await self._create_batch(part, job)
        elif part.phase in (RelaxPhase.SUBMITTED, RelaxPhase.RUNNING):
            await self._watch_batch(part, job)
        elif part.phase is RelaxPhase.COLLECTING:
            await self._collect(part, job)

    # ---- starting parts ------------------------------------------------------------------------------------------

    async def _schedule_relax(self) -> None:
        """Start parts for queued or running relax jobs with ready items, within the policy's limits."""
        policy = self._policy.relax
        now = self._clock.now()
        open_parts = await self._ledger.relax_parts(phases=OPEN_PHASES)
        total = len(open_parts)
        per_job: dict[str, int] = {}
        for part in open_parts:
            per_job[part.job_id] = per_job.get(part.job_id, 0) + 1
        for entry in await self._ledger.schedulable(now=now):
            job = entry.job
            if not job.params.relax:
                continue
            while total < policy.max_parts and per_job.get(job.id, 0) < policy.parts_per_job:
                # Cut to the money left, like a fast chunk: Gemini cannot pause a part it holds, so a part of 500
                # could otherwise overspend a cap by 500 images. None fitting, the budget pass pauses the job.
                size = await self._affordable(job, policy.part_items)
                items = await self._ledger.ready_items(job.id, now=now, limit=size) if size else []
                if not items:
                    break
                try:
                    chunk_items(job, items)
                except ValidationError as exc:
                    await self._refuse_items(job, items, exc, now)
                    continue
                _chunk, part = await self._ledger.start_relax_part(job.id, [i.index for i in items], now=now)
                log.info(
                    "job %s: relax part %d started with %d items",
                    job.id,
                    part.chunk_id,
                    len(items),
                    extra={"job_id": job.id, "action": "relax_part"},
                )
                total += 1
                per_job[job.id] = per_job.get(job.id, 0) + 1
                if job.status is JobStatus.QUEUED:
                    started = await self._ledger.get_job(job.id)
                    self._positions.pop(job.id, None)
                    job = started or job
                    self._events.publish(Started(job=job))
                try:
                    await self._prepare(part, job)
                except RunpodError as exc:  # the part waits in the ledger; its prepare is sent on a later round
                    log.warning("relax part %d: RunPod failed: %s", part.chunk_id, exc, extra={"job_id": job.id})
                    if self._runpod_failed(exc):
                        return

    # ---- preparing -----------------------------------------------------------------------------------------------

    async def _prepare(self, part: RelaxPart, job: Job) -> None:
        """Send the part's relax_prepare job, or follow the one sent, and record what it uploaded."""
        if part.runpod_id is None:
            items = await self._ledger.submitted_items(part.chunk_id)
            if not items:
                await self._close(part)
                return
            payload = RelaxPrepareInput(
                job_id=job.id,
                part=part.chunk_id,
                model=job.params.model,
                items=chunk_items(job, items),
            )
            await self._send(part, payload.to_payload(), "prepare")
            return
        remote = await self._gateway.status(part.runpod_id)
        if remote.status in _WAITING:
            return
        output = remote.raw.get("output") if remote.status is RemoteStatus.COMPLETED else None
        try:
            prepared = RelaxPrepareResult.model_validate(output) if isinstance(output, dict) else None
        except ValidationError:
            prepared = None
        if prepared is None:
            await self._runpod_job_failed(part, remote, "prepare")
            return
        runpod_s, runpod_cost = self._runpod_time(remote.execution_ms)
        if runpod_s is not None:  # the prepare job's RunPod time, added to the part's chunk
            chunk = await self._chunk(part)
            now = self._clock.now()
            await self._ledger.record_outcomes(chunk.id, [], now=now, runpod_s=runpod_s, runpod_cost_usd=runpod_cost)
            self._spend_changed()
        await self._record_prepared(part, prepared)

    async def _record_prepared(self, part: RelaxPart, prepared: RelaxPrepareResult) -> None:
        chunk = await self._chunk(part)
        now = self._clock.now()
        if prepared.results:  # refused before any call: BAD_INPUT, TOO_LARGE, STORAGE
            await self._record(chunk, prepared.results)
        decided = set(prepared.included) | {r.index for r in prepared.results}
        left_out = [i for i in await self._ledger.submitted_items(part.chunk_id) if i.index not in decided]
        if left_out:  # they did not fit the part's file: a later part takes them, the attempt given back
            outcomes = [
                ItemOutcome(index=i.index, status=ItemStatus.PENDING, retry_at=now, refund_attempt=True)
                for i in left_out
            ]
            await self._ledger.record_outcomes(chunk.id, outcomes, now=now)
        if prepared.file_name is None or not prepared.included:
            await self._close(part, files=prepared.ref_files)
            return
        log.info(
            "relax part %d prepared: %d requests in %s (%d bytes)",
            part.chunk_id,
            len(prepared.included),
            prepared.file_name,
            prepared.file_bytes,
            extra={"job_id": part.job_id, "action": "relax_prepared"},
        )
        part = await self._ledger.update_relax_part(
            part.chunk_id,
            input_file=prepared.file_name,
            ref_files=list(prepared.ref_files),
            runpod_id=None,
            runpod_attempts=0,
        )
        job = await self._ledger.get_job(JobId(part.job_id))
        if job is not None and job.status is not JobStatus.CANCELLED:
            await self._create_batch(part, job)

    async def _create_batch(self, part: RelaxPart, job: Job) -> None:
        """Create the part's Gemini batch, unless one with its display name exists (a crash after creating it)."""
        assert self._batches is not None
        assert part.input_file is not None
        name = relax_display_name(job.id, part.chunk_id)
        batch = await self._batches.find(name)
        self._relax_trouble = None  # the Batch API answered
        if batch is None:
            batch = await self._batches.create(model=job.params.model, file_name=part.input_file, display_name=name)
            log.info("relax part %d: Gemini batch %s created", part.chunk_id, batch.name, extra={"job_id": job.id})
        else:
            log.info("relax part %d: Gemini batch %s found again", part.chunk_id, batch.name, extra={"job_id": job.id})
        now = self._clock.now()
        part = await self._ledger.update_relax_part(
            part.chunk_id,
            batch_name=batch.name,
            batch_state=batch.state,
            batch_created_at=batch.create_time or now,
            phase=RelaxPhase.SUBMITTED,
            checked_at=now,
        )
        self._publish_progress(job)

    # ---- while Gemini holds it -----------------------------------------------------------------------------------

    async def _watch_batch(self, part: RelaxPart, job: Job) -> None:
        """Ask Gemini about the batch (at most every `RelaxPolicy.poll`) and act on its state."""
        assert self._batches is not None
        assert part.batch_name is not None
        now = self._clock.now()
        if part.checked_at is not None and now - part.checked_at < self._policy.relax.poll:
            return
        batch = await self._batches.get(part.batch_name)
        self._relax_trouble = None  # the Batch API answered
        changed = batch.state != part.batch_state or batch.counts != part.counts
        if batch.state in ENDED_UNMADE:
            await self._batch_ended_unmade(part, batch)
            return
        if batch.state == STATE_SUCCEEDED and batch.result_file is None:
            await self._batch_ended_unmade(part, batch, detail="succeeded without a result file")
            return
        await self._ledger.update_relax_part(
            part.chunk_id,
            batch_state=batch.state,
            stats=batch.counts,
            phase=phase_of_state(batch.state),
            result_file=batch.result_file,
            checked_at=now,
        )
        if changed:
            self._publish_progress(job)
        if batch.state == STATE_SUCCEEDED:
            log.info("relax part %d: Gemini batch %s succeeded", part.chunk_id, batch.name, extra={"job_id": job.id})
            fresh = await self._ledger.get_relax_part(part.chunk_id)
            if fresh is not None:
                await self._collect(fresh, job)

    async def _batch_ended_unmade(self, part: RelaxPart, batch: BatchInfo, *, detail: str | None = None) -> None:
        """A batch that expired, failed or was cancelled outside Peel: its items fail EXPIRED, retried on request."""
        reason = detail or f"Gemini batch {batch.name} ended {batch.state}" + (
            f": {batch.error}" if batch.error else ""
        )
        log.warning("relax part %d: %s", part.chunk_id, reason, extra={"job_id": part.job_id, "action": "relax_ended"})
        chunk = await self._chunk(part)
        now = self._clock.now()
        outcomes = [
            ItemOutcome(
                index=i.index, status=ItemStatus.ERROR, error_code=ErrorCode.EXPIRED.value, error_message=reason
            )
            for i in await self._ledger.submitted_items(part.chunk_id)
        ]
        recorded = await self._ledger.record_outcomes(chunk.id, outcomes, now=now, final=ChunkStatus.LOST)
        self._after_record(recorded.job, (), recorded.newly_failed, False, now, final=True)
        await self._ledger.update_relax_part(part.chunk_id, batch_state=batch.state, stats=batch.counts)
        await self._close(part)

    # ---- collecting ----------------------------------------------------------------------------------------------

    async def _collect(self, part: RelaxPart, job: Job) -> None:
        """Send the part's relax_collect job, or follow the one sent, recording its results as a chunk's."""
        assert part.result_file is not None
        chunk = await self._chunk(part)
        if part.runpod_id is None:
            items = await self._ledger.submitted_items(part.chunk_id)
            if not items:
                await self._close(part)
                return
            payload = RelaxCollectInput(
                job_id=job.id,
                part=part.chunk_id,
                model=job.params.model,
                result_file=part.result_file,
                # The items' prompt and options go along for the PNG's metadata, as a chunk's worker writes it.
                items=[
                    RelaxCollectItem(
                        index=c.index,
                        output_key=c.output_key,
                        prompt=c.prompt,
                        seed=c.seed,
                        aspect_ratio=c.aspect_ratio,
                        image_size=c.image_size,
                        ref_keys=c.ref_keys,
                        edit_source=None if c.edit is None else c.edit.source_key,
                    )
                    for c in chunk_items(job, items)
                ],
            )
            await self._send(part, payload.to_payload(), "collect")
            return
        remote = await self._gateway.status(part.runpod_id)
        if remote.status is RemoteStatus.IN_QUEUE:
            return
        if remote.status is RemoteStatus.IN_PROGRESS:
            if isinstance(remote.progress, dict):
                await self._record_progress(chunk, remote.progress)
            return
        result = parse_output(remote.result) if remote.status is RemoteStatus.COMPLETED else None
        if not isinstance(result, ChunkResult):
            if isinstance(result, ChunkProgress) or remote.status is not RemoteStatus.NOT_FOUND:
                log.warning("relax part %d: collect ended %s", part.chunk_id, remote.status, extra={"job_id": job.id})
            await self._runpod_job_failed(part, remote, "collect")
            return
        await self._record(
            chunk, result.results, final=ChunkStatus.DONE, remote_status=remote.status, execution_ms=remote.execution_ms
        )
        # Items the manifest does not mention (it should mention all) are settled from the store.
        await self._reconcile(chunk, code=ErrorCode.UPSTREAM, message="missing from the batch's collected results")
        await self._close(part)

    # ---- RunPod jobs of a part -----------------------------------------------------------------------------------

    async def _send(self, part: RelaxPart, payload: dict[str, object], what: str) -> None:
        timeout_ms = int(self._policy.relax.runpod_timeout.total_seconds() * 1000)
        remote = await self._gateway.run(payload, execution_timeout_ms=timeout_ms)
        await self._ledger.update_relax_part(part.chunk_id, runpod_id=remote.id)
        log.info(
            "relax part %d: %s sent as RunPod job %s",
            part.chunk_id,
            what,
            remote.id,
            extra={"job_id": part.job_id, "action": f"relax_{what}", "remote_id": remote.id},
        )

    async def _runpod_job_failed(self, part: RelaxPart, remote: RemoteJob, what: str) -> None:
        """A prepare or collect job ended without an answer: send it again, or fail the part's items after too many.

        One RunPod forgot (404: an embedded endpoint that died with the bot) is not the part's fault and is sent again
        without counting.
        """
        runpod_s, runpod_cost = self._runpod_time(remote.execution_ms)
        if runpod_s is not None:  # the failed job's RunPod time was billed all the same
            chunk = await self._chunk(part)
            now = self._clock.now()
            await self._ledger.record_outcomes(chunk.id, [], now=now, runpod_s=runpod_s, runpod_cost_usd=runpod_cost)
            self._spend_changed()
        attempts = part.runpod_attempts + (remote.status is not RemoteStatus.NOT_FOUND)
        if attempts < self._policy.relax.runpod_attempts:
            await self._ledger.update_relax_part(part.chunk_id, runpod_id=None, runpod_attempts=attempts)
            return
        code, message = failure_of(remote)
        log.warning(
            "relax part %d: %s failed %d times (%s); its items fail",
            part.chunk_id,
            what,
            attempts,
            message,
            extra={"job_id": part.job_id},
        )
        chunk = await self._chunk(part)
        # Collected outputs already in the store are made; the rest fail as the retry policy says.
        await self._reconcile(chunk, code=code or ErrorCode.UPSTREAM, message=f"relax {what}: {message}")
        await self._close(part)

    # ---- Gemini's answers ----------------------------------------------------------------------------------------

    async def _batch_call_failed(self, part: RelaxPart, job: Job, exc: GeminiBatchError) -> None:
        """A Batch API call failed: wait and ask again, or fail the part's items when asking again cannot help."""
        now = self._clock.now()
        log.warning("relax part %d: %s", part.chunk_id, exc, extra={"job_id": job.id, "action": "relax_gemini"})
        if exc.problem in (GeminiProblem.UNREACHABLE, GeminiProblem.BUSY):
            # Asked again after one poll interval; the batch (if any) runs on at Gemini meanwhile. The progress
            # messages say since when Gemini has not answered, so a long silence is seen, not waited out.
            if exc.problem is GeminiProblem.UNREACHABLE and self._relax_trouble is None:
                self._relax_trouble = now
            await self._ledger.update_relax_part(part.chunk_id, checked_at=now)
            return
        if exc.problem is GeminiProblem.REFUSED:
            self._gemini_refused(str(exc))
            if part.batch_name is not None:  # the batch runs on: keep asking until the key is fixed
                await self._ledger.update_relax_part(part.chunk_id, checked_at=now)
                return
            await self._fail_part(part, ErrorCode.CONFIG, str(exc))
            return
        if exc.problem is GeminiProblem.NOT_FOUND and part.batch_name is not None:
            await self._fail_part(part, ErrorCode.EXPIRED, f"Gemini batch {part.batch_name} is gone")
            return
        await self._fail_part(part, ErrorCode.BAD_INPUT, str(exc))

    async def _fail_part(self, part: RelaxPart, code: ErrorCode, message: str) -> None:
        chunk = await self._chunk(part)
        now = self._clock.now()
        outcomes = [
            ItemOutcome(index=i.index, status=ItemStatus.ERROR, error_code=code.value, error_message=message[:500])
            for i in await self._ledger.submitted_items(part.chunk_id)
        ]
        recorded = await self._ledger.record_outcomes(chunk.id, outcomes, now=now, final=ChunkStatus.LOST)
        self._after_record(recorded.job, (), recorded.newly_failed, False, now, final=True)
        await self._close(part)

    # ---- closing -------------------------------------------------------------------------------------------------

    async def _close_cancelled(self, part: RelaxPart) -> None:
        """Stop a cancelled job's part: its batch on Gemini, its RunPod job; nothing more is collected."""
        if part.batch_name is not None and part.phase in (RelaxPhase.SUBMITTED, RelaxPhase.RUNNING):
            assert self._batches is not None
            try:
                await self._batches.cancel(part.batch_name)
            except GeminiBatchError as exc:
                if exc.problem is not GeminiProblem.NOT_FOUND:
                    raise
            log.info("relax part %d: Gemini batch %s cancelled", part.chunk_id, part.batch_name)
        if part.runpod_id is not None:
            self._request_cancel(part.runpod_id)
        chunk = await self._chunk(part)
        await self._ledger.record_outcomes(chunk.id, [], now=self._clock.now(), final=ChunkStatus.CANCELLED)
        await self._close(part)

    async def _close(self, part: RelaxPart, *, files: Sequence[str] = ()) -> None:
        """Mark a part done (its chunk too, when still open) and delete its files from Gemini in the background."""
        now = self._clock.now()
        chunk = await self._ledger.get_chunk(part.chunk_id)
        if chunk is not None and chunk.status.holds_budget:
            await self._ledger.record_outcomes(chunk.id, [], now=now, final=ChunkStatus.DONE)
        await self._ledger.update_relax_part(part.chunk_id, phase=RelaxPhase.DONE, runpod_id=None, finished_at=now)
        names = [*files, *part.ref_files, part.input_file, part.result_file]
        self._delete_files([n for n in names if n], batch=part.batch_name)
        job = await self._ledger.get_job(JobId(part.job_id))
        if job is not None:
            self._publish_progress(job)
        self.wake()

    def _delete_files(self, names: Sequence[str], *, batch: str | None = None) -> None:
        """Delete a closed part's files and its batch's record from Gemini; a failure is only logged.

        Files share the project's 20 GB of storage; a batch's record would lengthen the list each new part's batch
        is looked for in (by display name) before it is created.
        """
        if not (names or batch) or self._batches is None:
            return
        batches = self._batches

        async def delete_all() -> None:
            for name in dict.fromkeys(names):
                try:
                    await batches.delete_file(name)
                except GeminiBatchError as exc:
                    log.info("deleting %s from Gemini failed (it expires in 48 h anyway): %s", name, exc)
            if batch is not None:
                try:
                    await batches.delete(batch)
                except GeminiBatchError as exc:
                    log.info("deleting %s from Gemini failed: %s", batch, exc)

        task = asyncio.create_task(delete_all(), name="relax file deletes")
        self._relax_tasks.add(task)
        task.add_done_callback(self._relax_tasks.discard)

    async def _chunk(self, part: RelaxPart) -> Chunk:
        chunk = await self._ledger.get_chunk(part.chunk_id)
        assert chunk is not None  # a part is made with its chunk
        return chunk

    def _publish_progress(self, job: Job) -> None:
        self._events.publish(Progress(job=job, done=job.ok, failed=job.failed, total=job.total))
