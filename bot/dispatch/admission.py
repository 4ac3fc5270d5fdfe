"""Request admission: validating a request, creating its job under the owner's caps, and job controls."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError

from bot.core.admission import Admission, Caps, refusal_message
from bot.core.budgets import Refused
from bot.core.events import JobCancelled, JobPaused, JobResumed, Queued
from bot.core.item_errors import item_error_message
from bot.core.models import ChunkStatus, Job, JobId, JobRequest, JobStatus, NewItem, NewJob, Priority, UserId
from bot.core.seeds import output_key
from bot.dispatch.cancels import CancelsMixin
from bot.dispatch.payloads import item_payload
from bot.ledger import UnknownJobError, new_id
from storage.errors import StorageError
from worker.contract import ChunkItem, ErrorCode, stop_key

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
    budget: Refused | None = None  # the money cap that refused it (status REFUSED)

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


class InvalidRequestError(ValueError):
    """A request that cannot become a job; `user_message` says why."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class AdmissionMixin(CancelsMixin):
    """Requests from front ends (submit, cancel, pause, resume, retry), and promoting waiting jobs."""

    def caps_for(self, *, is_admin: bool) -> Caps:
        """Return the per-user caps a request of a user (an admin or not) is admitted under."""
        return self._policy.caps.caps_for(is_admin=is_admin)

    async def submit(self, request: JobRequest) -> SubmitResult:
        """Create a job for the request (idempotently), or refuse it when the owner's queue is full.

        Raises:
            InvalidRequestError: the request could never run (no items, a prompt or option the worker refuses).
        """
        if self.runpod_misconfigured:
            # Nothing can run until an operator fixes the key or endpoint id; a probe notices when they have.
            raise InvalidRequestError(item_error_message(ErrorCode.CONFIG.value))
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
        creation = await self._ledger.create_job(
            new, items, now=self._clock.now(), admit=caps.admit, hold=request.budget
        )
        job = creation.job
        if job is None and creation.budget is not None and request.budget is not None:
            return SubmitResult(
                status=SubmitStatus.REFUSED,
                job=None,
                position=None,
                message=creation.budget.message(request.budget.tz),
                budget=creation.budget,
            )
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
        self._spend_changed()  # a job, a reservation or items to run again: the budget pass looks again
        self.wake()
        return SubmitResult(
            status=SubmitStatus.QUEUED,
            job=job,
            position=position,
            message="Job queued." if position is None else f"Job queued (position {position}).",
        )

    async def cancel(self, job_id: JobId, by: UserId, *, is_admin: bool = False) -> CancelResult:
        """Cancel a job for its owner (or an admin): its items here at once, its chunks on RunPod in the background."""
        job = await self._ledger.get_job(job_id)
        if job is None or (job.owner_id != by and not is_admin):
            # Someone else's job is answered as a missing one: the answer must not tell which ids exist.
            return CancelResult(cancelled=False, job=None, message="No such job.")
        cancellation = await self._ledger.cancel_job(job_id, now=self._clock.now())
        if cancellation is None:
            return CancelResult(cancelled=False, job=job, message=f"The job is already {job.status}.")
        # Workers running its chunks start no more Gemini calls from now on, however late RunPod's cancel reaches
        # them; the marker stays (a cancelled job never runs again).
        await self._write_stop_marker(job_id, "cancelled")
        # RunPod's cancels go in the background, paced under its limits: the user is answered now. A chunk still
        # being submitted gets its cancel from the loop once RunPod has given it an id (`CancelsMixin`).
        for chunk in cancellation.chunks:
            if chunk.runpod_id is not None:
                self._request_cancel(chunk.runpod_id)
        self._positions.pop(job_id, None)
        self._events.publish(JobCancelled(job=cancellation.job, by=by))
        self._spend_changed()  # a job, a reservation or items to run again: the budget pass looks again
        self.wake()
        return CancelResult(cancelled=True, job=cancellation.job, message="Job cancelled.")

    async def pause(self, job_id: JobId) -> Job:
        """Pause a job: no new chunk is submitted, and its chunks in flight start no new Gemini call.

        The job's stop marker is written to the store, which the workers look for before each call
        (`worker.contract.stop_key`): the calls in flight now finish and are recorded, the items not yet sent come
        back `STOPPED` and go back to pending with their attempt given back. The job is "pausing" while any of its
        chunks is still out, "paused" once none is (`pausing`); resume sends exactly the rest.

        Raises:
            UnknownJobError: no such job.
        """
        job, changed = await self._ledger.set_job_status(
            job_id, JobStatus.PAUSED, expect=(JobStatus.QUEUED, JobStatus.RUNNING)
        )
        if changed:
            await self._write_stop_marker(job_id, "paused")
            log.info("job %s paused", job_id, extra={"job_id": job_id, "action": "pause"})
            self._events.publish(JobPaused(job=job))
        return job

    async def pausing(self, job_id: JobId) -> int:
        """Return how many chunks of a job are still out (a paused job with some is still "pausing")."""
        out = await self._ledger.chunks(job_id=job_id, statuses=(ChunkStatus.SUBMITTING, ChunkStatus.IN_FLIGHT))
        return len(out)

    async def resume(self, job_id: JobId, *, release_hold: bool = False) -> Job:
        """Let a paused job submit chunks again.

        A trial's held items (`bot.ledger.NOTE_HOLD_FROM`) stay held unless `release_hold` ("Start the rest"): a
        Pause and Resume in the middle of a trial resumes the trial, not the whole batch. A trial that is over and
        resumed without releasing pauses itself again at once, having nothing to run.

        Raises:
            UnknownJobError: no such job.
        """
        current = await self._ledger.get_job(job_id)
        if current is None:
            raise UnknownJobError(job_id)
        target = JobStatus.RUNNING if current.started_at is not None else JobStatus.QUEUED
        if current.status is JobStatus.PAUSED:
            # Before the status: a chunk submitted once it is running must not find the marker still there.
            await self._delete_stop_marker(job_id)
            if release_hold:
                await self._ledger.release_hold(job_id)
        job, changed = await self._ledger.set_job_status(job_id, target, expect=(JobStatus.PAUSED,))
        if changed:
            log.info("job %s resumed", job_id, extra={"job_id": job_id, "action": "resume"})
            self._events.publish(JobResumed(job=job))
            self._spend_changed()  # a job, a reservation or items to run again: the budget pass looks again
        self.wake()
        return job

    async def retry_failed(self, job_id: JobId) -> Job:
        """Try a job's retryable failed items again (the "Retry failed" button); safety blocks stay failed.

        Raises:
            UnknownJobError: no such job.
            BudgetRefusedError: the job had ended and its retried items would take a money cap over.
        """
        job = await self._ledger.retry_failed(job_id, now=self._clock.now())
        self._spend_changed()  # a job, a reservation or items to run again: the budget pass looks again
        self.wake()
        return job

    async def _write_stop_marker(self, job_id: JobId, why: str) -> None:
        """Ask the workers to start no more Gemini calls for a job (see `pause`); a store error is only logged.

        Without the marker a pause still holds, later: its chunks run to their end (and a cancel's chunks until
        RunPod's cancel reaches them), and what they make is recorded as before.
        """
        try:
            await self._store.put(stop_key(job_id), why.encode(), content_type="text/plain")
        except StorageError as exc:
            log.warning("job %s: its stop marker could not be written: %s", job_id, exc, extra={"job_id": job_id})

    async def _delete_stop_marker(self, job_id: JobId) -> None:
        """Let workers call Gemini for a job again (resume).

        Raises:
            StorageError: the marker could not be deleted; the job stays paused (a chunk sent now would stop).
        """
        await self._store.delete(stop_key(job_id))

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

    @staticmethod
    def _validate(job_id: JobId, request: JobRequest, items: Sequence[NewItem]) -> None:
        for index, item in enumerate(items):
            try:
                ChunkItem.model_validate(
                    item_payload(
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
