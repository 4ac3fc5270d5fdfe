"""Scheduling: which ready items go to RunPod next, in chunks of what size and concurrency, and queue positions."""

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import ValidationError

from bot.core.events import PositionChanged, Started
from bot.core.models import ChunkStatus, Item, Job, JobId, JobStatus, Priority
from bot.core.scheduling import Candidate, calls_held, items_left_by_now, schedule_order
from bot.dispatch.outage import OutageMixin, runpod_busy
from bot.dispatch.payloads import chunk_input
from bot.ledger import Schedulable
from bot.runpod.errors import RunpodError
from worker.contract import ErrorCode

log = logging.getLogger(__name__)


class SchedulingMixin(OutageMixin):
    """Submits chunks while the Gemini budget has room: interactive jobs first, batches round robin."""

    async def _schedule(self) -> None:
        now = self._clock.now()
        # Relax jobs' items go to Gemini's Batch API in parts (`bot.dispatch.relax`), never in chunks.
        schedulable = {s.job.id: s for s in await self._ledger.schedulable(now=now) if not s.job.params.relax}
        if not schedulable:
            return
        ready = {job_id: s.ready for job_id, s in schedulable.items()}
        in_flight_chunks = await self._ledger.chunks(statuses=(ChunkStatus.SUBMITTING, ChunkStatus.IN_FLIGHT))
        if self._gemini.down:
            await self._probe_gemini(schedulable, busy=bool(in_flight_chunks), now=now)
            return
        in_flight = sum(calls_held(c) for c in in_flight_chunks)
        running: dict[JobId, int] = {}  # items of each job still to finish in chunks in flight
        round_s = self._round_time.seconds if self._round_time.measured else None
        for c in in_flight_chunks:
            running[c.job_id] = running.get(c.job_id, 0) + items_left_by_now(c, now=now, round_s=round_s)
        contenders = len({c.job_id for c in in_flight_chunks} | set(schedulable))
        while not self.stopping:
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
            size = await self._affordable(entry.job, size)
            if size == 0:  # its money cap has no room beside what it has in flight (`bot.dispatch.budgets`)
                ready[entry.job.id] = 0
                continue
            concurrency = min(concurrency, size)
            submitted = await self._submit_chunk(entry.job, size, concurrency, now)
            if submitted is None:
                return
            in_flight += concurrency
            ready[entry.job.id] -= max(1, submitted)
            running[entry.job.id] = running.get(entry.job.id, 0) + submitted
            if entry.job.priority is Priority.BATCH:
                self._last_batch_seq = entry.seq

    async def _affordable(self, job: Job, size: int) -> int:
        """Return how many of `size` items the job's money caps allow now (`bot.dispatch.budgets` decides)."""
        return size

    async def _probe_gemini(self, schedulable: Mapping[JobId, Schedulable], *, busy: bool, now: datetime) -> None:
        """While Gemini is down, send the first item in line alone, when no chunk is out and the backoff allows.

        The probe is a real item, not a self-test's `models.get`: Gemini can list a model it cannot draw with (a
        5xx on generateContent only), and a probe that succeeds is an image made, not a call spent. Chunks still
        out are probes already: any image they report closes the breaker, and each failure moves the next probe
        back. A failed probe's item waits again with its attempt given back (`held_by_outage`).
        """
        if busy or not self._gemini.probe_due(now):
            return
        candidates = [
            Candidate(job_id=job_id, priority=s.job.priority, seq=s.seq) for job_id, s in schedulable.items() if s.ready
        ]
        order = schedule_order(candidates, last_batch_seq=self._last_batch_seq)
        if order:
            job = schedulable[order[0]].job
            log.info("gemini is down: one item of job %s goes as its probe", job.id, extra={"action": "probe"})
            await self._submit_chunk(job, 1, 1, now)

    async def _submit_chunk(self, job: Job, size: int, concurrency: int, now: datetime) -> int | None:
        """Submit the next `size` ready items of `job`; return how many went, or None to stop scheduling."""
        items = await self._ledger.ready_items(job.id, now=now, limit=size)
        if not items:
            return 0
        try:
            payload = chunk_input(job, items, concurrency, seq=0)
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
            # RunPod down or refusing Peel: the breaker holds every submission until a probe succeeds, so the items
            # are due again at once; RunPod busy (a full queue) and any other refusal wait `submit_retry_delay`.
            held = self._runpod_failed(exc) and not runpod_busy(exc)
            retry_at = now if held else now + self._policy.submit_retry_delay
            await self._ledger.abandon_chunk(chunk.id, retry_at=retry_at, now=now)
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
        await self._fail_items(job, items, ErrorCode.BAD_INPUT, "invalid request", now)

    async def _report_positions(self) -> None:
        positions = await self._current_positions()
        changed = [job_id for job_id, pos in positions.items() if self._positions.get(job_id) not in (None, pos)]
        for job_id in changed:
            job = await self._ledger.get_job(job_id)
            if job is not None:
                self._events.publish(PositionChanged(job=job, position=positions[job_id]))
        self._positions = positions
