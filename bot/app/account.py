"""A user's account and jobs as a service, without Discord: the queue, cancelling, usage, events, where jobs show.

`/queue`, `/cancel`, `/info` and the ❌ reaction call it with plain ids and render what comes back; the cogs that
follow jobs (`/imagine`, `/batch`) listen to its events and record here which message shows a job.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.core.models import Job, JobId, JobStatus, UserId
from bot.dispatch import CancelResult, Dispatcher, Subscription
from bot.ledger import Ledger

log = logging.getLogger(__name__)

UNFINISHED = (JobStatus.WAITING, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEntry:
    """An unfinished job and its place in line (None: running, paused or waiting for a slot)."""

    job: Job
    position: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """What a user has asked Peel for, in all and now."""

    jobs: int
    running: int
    waiting: int
    made: int  # images made
    not_made: int  # images that failed (not billed as images; a blocked prompt's input tokens are)


class AccountService:
    """Queue, cancel, usage and job bookkeeping over the ledger and the dispatcher."""

    def __init__(self, ledger: Ledger, dispatcher: Dispatcher) -> None:
        self._ledger = ledger
        self._dispatcher = dispatcher

    def events(self) -> Subscription:
        """Subscribe to the dispatcher's job events (close the subscription to stop)."""
        return self._dispatcher.subscribe()

    async def job(self, job_id: JobId) -> Job | None:
        """Return a job, or None when Peel does not know it."""
        return await self._ledger.get_job(job_id)

    async def unfinished_jobs(self) -> list[Job]:
        """Return every job not final yet, everyone's (what a restart adopts)."""
        return await self._ledger.unfinished_jobs()

    async def open_jobs(self, owner_id: UserId | None) -> list[Job]:
        """Return the waiting, queued, running and paused jobs of a user (None: everyone's)."""
        jobs = await self._ledger.list_jobs(statuses=UNFINISHED, owner_id=owner_id)
        return [j for j in jobs if owner_id is None or j.owner_id == owner_id]

    async def queue(self, owner_id: UserId | None) -> list[QueueEntry]:
        """Return a user's unfinished jobs (None: everyone's) with their places in line."""
        jobs = await self.open_jobs(owner_id)
        positions = await self._dispatcher.queue_positions()
        return [QueueEntry(job=j, position=positions.get(j.id)) for j in jobs]

    async def cancel(self, job_id: JobId, by: UserId, *, is_admin: bool) -> CancelResult:
        """Cancel a job for its owner (or an admin); the result says whether it was and why not."""
        return await self._dispatcher.cancel(job_id, by, is_admin=is_admin)

    async def usage(self, user_id: UserId) -> Usage:
        """Return a user's jobs and images in all, and how many jobs run and wait now."""
        load = await self._ledger.user_load(user_id)
        jobs = await self._ledger.list_jobs(owner_id=user_id)
        return Usage(
            jobs=len(jobs),
            running=load.running,
            waiting=load.waiting,
            made=sum(j.ok for j in jobs),
            not_made=sum(j.failed for j in jobs),
        )

    async def message_of(self, job_id: JobId, role: str) -> tuple[int, int] | None:
        """Return (channel id, message id) of the message that shows a job in `role` ("status", "result", …)."""
        return await self._ledger.job_message(job_id, role)

    async def record_message(self, job_id: JobId, role: str, *, channel_id: int, message_id: int) -> None:
        """Remember which message shows a job in `role`, so a restart finds it again."""
        await self._ledger.set_job_message(
            job_id, role, channel_id=channel_id, message_id=message_id, now=datetime.now(UTC)
        )


__all__ = ["UNFINISHED", "AccountService", "QueueEntry", "Usage"]
