"""Cancelling on RunPod: a cancelled job's chunks are stopped there in the background, then settled here.

`cancel` answers at once: the job and its unfinished items are cancelled in the ledger, nothing more of it is
submitted, and each of its chunks on RunPod gets a `/cancel` sent by a background task. The gateway paces those
under RunPod's `/cancel` limits (`bot.runpod.pacing`), so a 400-chunk batch takes RunPod's time, not the user's.
Until a chunk is settled it stays in flight in the ledger (it still holds Gemini calls on RunPod) and each
iteration follows it: a cancel that failed is sent again, and its status is polled. Once RunPod reports it final
(the cancel went through, it finished first, or RunPod forgot it) and `DispatchPolicy.cancel_settle` has passed,
the items whose output is in the store are recorded as made (the worker made them: they are paid for) with the
RunPod time the job ran (`executionTime`, billed all the same), the rest stay cancelled, and the chunk closes as
cancelled. Nothing is retried or submitted again for a cancelled job.
A process that stops with cancels unsent leaves the chunks in flight; the next one sends them.
"""

import asyncio
import logging
from collections.abc import Sequence

from bot.core.models import Chunk, ChunkStatus, ItemOutcome, JobId, JobStatus
from bot.dispatch.outage import OutageMixin
from bot.runpod.errors import RunpodError

log = logging.getLogger(__name__)


class CancelsMixin(OutageMixin):
    """Sends RunPod cancels in the background and settles cancelled jobs' chunks once RunPod stops them."""

    async def drain_cancels(self) -> None:
        """Wait until every RunPod cancel requested so far has been answered or has failed."""
        while self._cancel_tasks:
            await asyncio.gather(*self._cancel_tasks.values(), return_exceptions=True)

    @property
    def cancels_pending(self) -> int:
        """How many RunPod cancels are being sent now."""
        return len(self._cancel_tasks)

    def _request_cancel(self, runpod_id: str) -> None:
        """Send RunPod a cancel for one of its jobs in the background, unless one is out or was answered."""
        if runpod_id in self._cancel_tasks or runpod_id in self._cancel_sent or runpod_id in self._cancel_final:
            return
        task = asyncio.create_task(self._send_cancel(runpod_id), name=f"runpod cancel {runpod_id}")
        self._cancel_tasks[runpod_id] = task
        task.add_done_callback(lambda done: self._forget_task(runpod_id, done))

    def _forget_task(self, runpod_id: str, task: "asyncio.Task[None]") -> None:
        if self._cancel_tasks.get(runpod_id) is task:
            del self._cancel_tasks[runpod_id]

    async def _send_cancel(self, runpod_id: str) -> None:
        try:
            remote = await self._gateway.cancel(runpod_id)
        except RunpodError as exc:
            # The gateway's own retries are spent: the chunk is still in flight here, so the next iteration that
            # follows it asks again (the pacer keeps every attempt under RunPod's limits).
            log.warning("cancelling runpod job %s failed: %s", runpod_id, exc, extra={"action": "cancel"})
            return
        self._cancel_sent.add(runpod_id)
        if remote.status.is_final:
            self._cancel_final.setdefault(runpod_id, self._clock.now())

    async def _stop_cancels(self) -> None:
        """Drop the cancels still being sent (a stopping process): the next process sends them again."""
        tasks = list(self._cancel_tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _cancelled_jobs(self, chunks: Sequence[Chunk]) -> set[JobId]:
        """Return which of the chunks' jobs are cancelled."""
        cancelled: set[JobId] = set()
        for job_id in {c.job_id for c in chunks}:
            job = await self._ledger.get_job(job_id)
            if job is not None and job.status is JobStatus.CANCELLED:
                cancelled.add(job_id)
        return cancelled

    async def _cancelled_meanwhile(self, chunk: Chunk) -> bool:
        """For a chunk RunPod reports final: tell whether its job is cancelled now (then it is settled later)."""
        job = await self._ledger.get_job(chunk.job_id)
        if job is None or job.status is not JobStatus.CANCELLED:
            return False
        assert chunk.runpod_id is not None
        self._cancel_final.setdefault(chunk.runpod_id, self._clock.now())
        return True

    async def _follow_cancelled(self, chunk: Chunk) -> bool:
        """Cancel a cancelled job's chunk on RunPod and settle it once stopped; False when RunPod is unreachable."""
        assert chunk.runpod_id is not None  # in flight means RunPod gave an id
        runpod_id = chunk.runpod_id
        now = self._clock.now()
        final_at = self._cancel_final.get(runpod_id)
        if final_at is None:
            self._request_cancel(runpod_id)
            try:
                remote = await self._gateway.status(runpod_id)
            except RunpodError as exc:
                log.warning("polling runpod job %s failed: %s", runpod_id, exc, extra={"action": "poll"})
                return not self._runpod_failed(exc)
            if not remote.status.is_final:
                return True
            if remote.execution_ms is not None:
                self._cancel_ran_ms[runpod_id] = remote.execution_ms
            final_at = self._cancel_final.setdefault(runpod_id, now)
        if now - final_at >= self._policy.cancel_settle:
            await self._settle_cancelled(chunk)
        return True

    async def _cancelled_ran_ms(self, runpod_id: str) -> int | None:
        """Return how long RunPod ran a cancelled job (`executionTime`), billed like any other (None: unknown).

        RunPod bills a worker's execution time whatever ends the job (https://docs.runpod.io/serverless/pricing), and
        `/status` of a cancelled job still reports `executionTime`, while `/cancel` answers only its id and status
        (https://docs.runpod.io/serverless/endpoints/operation-reference). Unless a poll already saw it final, one
        `/status` asks; a job never started, forgotten, or RunPod not answering leaves it unknown.
        """
        known = self._cancel_ran_ms.pop(runpod_id, None)
        if known is not None:
            return known
        try:
            remote = await self._gateway.status(runpod_id)
        except RunpodError as exc:
            log.warning("runpod job %s: its time is unknown: %s", runpod_id, exc, extra={"action": "cancel"})
            return None
        return remote.execution_ms

    async def _settle_cancelled(self, chunk: Chunk) -> None:
        """Record as made the cancelled items whose output exists and the RunPod time, and close the chunk cancelled."""
        assert chunk.runpod_id is not None
        now = self._clock.now()
        outcomes: list[ItemOutcome] = []
        job = None
        for item in await self._ledger.cancelled_items(chunk.id):
            made = await self._made_in_store(item)
            if made is not None:
                # Made and paid before the cancel; its usage went with the answer nobody reads: the estimate.
                job = job or await self._ledger.get_job(chunk.job_id)
                outcomes.append(self._priced(made, item, job, usage=None, made=True, new=False))
        runpod_s, runpod_cost = self._runpod_time(await self._cancelled_ran_ms(chunk.runpod_id))
        # No events: the job's messages already say it was cancelled; its archive and usage read the ledger.
        await self._ledger.record_outcomes(
            chunk.id,
            outcomes,
            now=now,
            final=ChunkStatus.CANCELLED,
            revive_cancelled=True,
            runpod_s=runpod_s,
            runpod_cost_usd=runpod_cost,
        )
        self._spend_changed()  # its made images, its RunPod time, and its job's reservation to settle
        self._cancel_sent.discard(chunk.runpod_id)
        self._cancel_final.pop(chunk.runpod_id, None)
        log.info(
            "job %s chunk %d settled after its cancel: %d image(s) made before it stopped",
            chunk.job_id,
            chunk.seq,
            len(outcomes),
            extra={"job_id": chunk.job_id, "action": "cancel", "remote_id": chunk.runpod_id},
        )
