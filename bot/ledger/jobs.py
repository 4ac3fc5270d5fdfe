"""Jobs in the ledger: creation with admission, status changes, cancelling, finishing, and what is schedulable."""

import json
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.core.admission import Admission
from bot.core.budgets import BudgetHold, Refused
from bot.core.models import Chunk, GroupId, ItemStatus, Job, JobId, JobStatus, NewItem, NewJob, UserId, UserLoad
from bot.core.seeds import item_seed, output_key, seed_base
from bot.ledger._rows import HOLD_FROM_SQL, NO_HOLD, NOTE_HOLD_FROM, chunk_from, db_time, job_from, placeholders
from bot.ledger.budgets import refusal_in, reserve_in
from bot.ledger.connection import LedgerConnection

log = logging.getLogger(__name__)

_UNFINISHED = (JobStatus.WAITING, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCreation:
    """What `create_job` did: `job` is None only when the job was refused."""

    job: Job | None
    created: bool
    admission: Admission
    budget: Refused | None = None  # why a budget cap refused it (`admission` is REFUSED then)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancellation:
    """What `cancel_job` did: the job after it, and the chunks that were on RunPod (to cancel there too)."""

    job: Job
    chunks: tuple[Chunk, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedulable:
    """A job with items ready to submit now."""

    job: Job
    seq: int
    ready: int


class JobsMixin(LedgerConnection):
    """Jobs: each one is created with its items and notes in one transaction, and moves through its statuses."""

    async def create_job(
        self,
        job: NewJob,
        items: Sequence[NewItem],
        *,
        now: datetime,
        admit: Callable[[UserLoad], Admission] | None = None,
        hold: BudgetHold | None = None,
    ) -> JobCreation:
        """Create a job, its items and its notes in one transaction, unless its idempotency key already names a job.

        Args:
            job: the job to create.
            items: its items, in index order; seeds default to the job's seed base plus the index.
            now: the creation time.
            admit: decides from the owner's current load whether the job is queued, waits, or is refused;
                None queues it unconditionally. It runs inside the transaction, so two concurrent submissions
                of one user cannot both take the last slot.
            hold: the job's estimated cost and the money caps it must fit under (`bot.ledger.budgets.reserve_in`):
                checked and reserved inside the same transaction, for the same reason; None reserves nothing.

        Returns:
            The existing job (`created` False) when the key was used before, else the new job, or no job when
            `admit` refused it.
        """
        async with self._tx() as db:
            if job.idempotency_key is not None:
                async with db.execute("SELECT * FROM jobs WHERE idempotency_key = ?", (job.idempotency_key,)) as cur:
                    row = await cur.fetchone()
                if row is not None:
                    existing = job_from(row)
                    return JobCreation(job=existing, created=False, admission=_admission_of(existing.status))
            admission = Admission.QUEUED if admit is None else admit(await self._load(db, job.owner_id))
            if admission is Admission.REFUSED:
                return JobCreation(job=None, created=False, admission=admission)
            if hold is not None:
                refused = await refusal_in(db, owner_id=job.owner_id, guild_id=job.guild_id, hold=hold, now=now)
                if refused is not None:
                    return JobCreation(job=None, created=False, admission=Admission.REFUSED, budget=refused)
            status = JobStatus.QUEUED if admission is Admission.QUEUED else JobStatus.WAITING
            async with db.execute(
                "INSERT INTO jobs (id, seq, kind, owner_id, guild_id, group_id, prompt, params, parent_image_id,"
                " status, priority, idempotency_key, created_at, total)"
                " VALUES (?, (SELECT coalesce(max(seq), 0) + 1 FROM jobs), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                (
                    job.id,
                    job.kind.value,
                    job.owner_id,
                    job.guild_id,
                    job.group_id,
                    job.prompt,
                    json.dumps(job.params.to_json()),
                    job.parent_image_id,
                    status.value,
                    job.priority.value,
                    job.idempotency_key,
                    db_time(now),
                    len(items),
                ),
            ) as cur:
                inserted = await cur.fetchone()
            assert inserted is not None  # the key was checked under the write lock
            base = seed_base(job.id, job.params.seed)
            # A generator, drawn by sqlite3 row by row: a 10,000-item list of these rows was 2.5 MB of the peak.
            await db.executemany(
                "INSERT INTO items (job_id, idx, inputs, prompt, seed, output_key, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        job.id,
                        index,
                        json.dumps(item.inputs.to_json()),
                        item.prompt,
                        item.seed if item.seed is not None else item_seed(base, index),
                        output_key(job.id, index),
                        ItemStatus.PENDING.value,
                    )
                    for index, item in enumerate(items)
                ),
            )
            await db.executemany(
                "INSERT INTO job_notes (job_id, name, value) VALUES (?, ?, ?)",
                [(job.id, name, json.dumps(value)) for name, value in job.notes.items()],
            )
            if hold is not None:
                await reserve_in(db, job.id, owner_id=job.owner_id, guild_id=job.guild_id, hold=hold, now=now)
            created = await self._job_in(db, job.id)
        log.info(
            "job %s created (%s, %d items)", job.id, status, len(items), extra={"job_id": job.id, "action": "enqueue"}
        )
        return JobCreation(job=created, created=True, admission=admission)

    async def get_job(self, job_id: JobId) -> Job | None:
        """Return a job by id."""
        row = await self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return None if row is None else job_from(row)

    async def find_job(self, idempotency_key: str) -> Job | None:
        """Return the job created with an idempotency key."""
        row = await self._one("SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,))
        return None if row is None else job_from(row)

    async def list_jobs(
        self,
        *,
        statuses: Collection[JobStatus] | None = None,
        owner_id: UserId | None = None,
        group_id: GroupId | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """Return jobs matching every given filter, oldest first."""
        where, params = ["1 = 1"], list[object]()
        if statuses is not None:
            where.append(f"status IN ({placeholders(statuses)})")
            params.extend(s.value for s in statuses)
        if owner_id is not None:
            where.append("owner_id = ?")
            params.append(owner_id)
        if group_id is not None:
            where.append("group_id = ?")
            params.append(group_id)
        sql = f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY seq"  # noqa: S608 (placeholders only)
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [job_from(row) for row in await self._all(sql, params)]

    async def job_seqs(self, job_ids: Iterable[JobId]) -> dict[JobId, int]:
        """Return the creation order number of each job."""
        ids = list(job_ids)
        if not ids:
            return {}
        rows = await self._all(f"SELECT id, seq FROM jobs WHERE id IN ({placeholders(ids)})", ids)  # noqa: S608
        return {JobId(row["id"]): int(row["seq"]) for row in rows}

    async def user_load(self, owner_id: UserId) -> UserLoad:
        """Return how many jobs a user has running and waiting."""
        async with self._lock:
            return await self._load(self._db, owner_id)

    async def users_with_waiting_jobs(self) -> list[UserId]:
        """Return the users that have waiting jobs."""
        rows = await self._all("SELECT DISTINCT owner_id FROM jobs WHERE status = ? ORDER BY owner_id", ("waiting",))
        return [UserId(row["owner_id"]) for row in rows]

    async def promote_waiting(self, owner_id: UserId, decide: Callable[[UserLoad], int]) -> list[Job]:
        """Move the user's oldest waiting jobs to queued, as many as `decide(load)` allows; return them."""
        async with self._tx() as db:
            count = decide(await self._load(db, owner_id))
            if count <= 0:
                return []
            async with db.execute(
                "UPDATE jobs SET status = 'queued' WHERE id IN (SELECT id FROM jobs WHERE owner_id = ? AND"
                " status = 'waiting' ORDER BY seq LIMIT ?) RETURNING *",
                (owner_id, count),
            ) as cur:
                rows = await cur.fetchall()
        return sorted((job_from(row) for row in rows), key=lambda j: j.created_at)

    async def set_job_status(
        self, job_id: JobId, status: JobStatus, *, expect: Collection[JobStatus]
    ) -> tuple[Job, bool]:
        """Set a job's status if it is one of `expect`; return the job and whether it changed.

        Raises:
            UnknownJobError: no such job.
        """
        async with self._tx() as db:
            async with db.execute(
                f"UPDATE jobs SET status = ? WHERE id = ? AND status IN ({placeholders(expect)}) RETURNING *",  # noqa: S608
                (status.value, job_id, *(s.value for s in expect)),
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                return job_from(row), True
            return await self._job_in(db, job_id), False

    async def cancel_job(self, job_id: JobId, *, now: datetime) -> Cancellation | None:
        """Cancel an unfinished job: its unfinished items become cancelled; None if it was already final.

        Its chunks being submitted or in flight are returned and stay as they are: they still run on RunPod until
        the dispatcher's cancel there goes through, and what they made by then is recorded when they are settled
        (`record_outcomes(..., revive_cancelled=True)`), so the ledger never loses track of a RunPod job.

        Raises:
            UnknownJobError: no such job.
        """
        async with self._tx() as db:
            job = await self._job_in(db, job_id)
            if job.status.is_final:
                return None
            async with db.execute(
                "SELECT * FROM chunks WHERE job_id = ? AND status IN ('submitting', 'in_flight')"
                " AND id NOT IN (SELECT chunk_id FROM relax_parts)",  # a relax part is settled by its own loop
                (job_id,),
            ) as cur:
                chunks = tuple(chunk_from(row) for row in await cur.fetchall())
            await db.execute(
                "UPDATE items SET status = 'cancelled', retry_at = NULL WHERE job_id = ? AND status IN"
                " ('pending', 'submitted')",
                (job_id,),
            )
            await self._recount(db, job_id)
            await db.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ?", (db_time(now), job_id)
            )
            job = await self._job_in(db, job_id)
        log.info("job %s cancelled", job_id, extra={"job_id": job_id, "action": "cancel"})
        return Cancellation(job=job, chunks=tuple(sorted(chunks, key=lambda c: c.id)))

    async def finish_job_if_complete(self, job_id: JobId, *, now: datetime) -> Job | None:
        """Mark a job done (or failed, when nothing was made) once no item is left to do; return it if it changed."""
        async with (
            self._tx() as db,
            db.execute(
                "UPDATE jobs SET finished_at = ?, status = CASE WHEN ok = 0 AND failed > 0 THEN 'failed'"
                " ELSE 'done' END WHERE id = ? AND status IN ('queued', 'running', 'paused')"
                " AND ok + failed + cancelled >= total RETURNING *",
                (db_time(now), job_id),
            ) as cur,
        ):
            row = await cur.fetchone()
        if row is None:
            return None
        job = job_from(row)
        log.info("job %s %s (%d ok, %d failed)", job.id, job.status, job.ok, job.failed, extra={"job_id": job.id})
        return job

    async def schedulable(self, *, now: datetime) -> list[Schedulable]:
        """Return queued or running jobs that have items ready to submit (pending, and due if backing off)."""
        rows = await self._all(
            "SELECT jobs.*, count(*) AS ready FROM jobs JOIN items ON items.job_id = jobs.id"  # noqa: S608 (constants)
            " WHERE jobs.status IN ('queued', 'running') AND items.status = 'pending'"
            f" AND (items.retry_at IS NULL OR items.retry_at <= ?) AND items.idx < {HOLD_FROM_SQL}"
            " GROUP BY jobs.id ORDER BY jobs.seq",
            (db_time(now),),
        )
        return [Schedulable(job=job_from(row), seq=int(row["seq"]), ready=int(row["ready"])) for row in rows]

    async def trials_over(self) -> list[Job]:
        """Return the queued or running jobs holding items (`NOTE_HOLD_FROM`) whose items before the hold are final.

        Those are trials that have run: the dispatcher pauses them until the rest is released.
        """
        rows = await self._all(
            "SELECT jobs.* FROM jobs WHERE jobs.status IN ('queued', 'running')"  # noqa: S608 (constants, no input)
            f" AND {HOLD_FROM_SQL} < {NO_HOLD} AND NOT EXISTS (SELECT 1 FROM items WHERE items.job_id = jobs.id"
            f" AND items.idx < {HOLD_FROM_SQL} AND items.status IN ('pending', 'submitted')) ORDER BY jobs.seq"
        )
        return [job_from(row) for row in rows]

    async def release_hold(self, job_id: JobId) -> bool:
        """Release a job's held items (the rest after a trial); return whether it held any."""
        async with (
            self._tx() as db,
            db.execute("DELETE FROM job_notes WHERE job_id = ? AND name = ?", (job_id, NOTE_HOLD_FROM)) as cur,
        ):
            return cur.rowcount > 0

    async def unfinished_jobs(self) -> list[Job]:
        """Return every job that is not final, oldest first."""
        return await self.list_jobs(statuses=_UNFINISHED)

    async def error_counts(self, job_id: JobId) -> dict[str, int]:
        """Return how many items of a job failed for good, by error code."""
        rows = await self._all(
            "SELECT error_code, count(*) AS n FROM items WHERE job_id = ? AND status = 'error' GROUP BY error_code"
            " ORDER BY error_code",
            (job_id,),
        )
        return {str(row["error_code"]): int(row["n"]) for row in rows}

    async def made_by_size(self, job_id: JobId) -> dict[str | None, int]:
        """Return how many items of a job were made, by their own image size (None: the job's size).

        One grouped query over the job's `ok` items (the `items_by_status` index), so a batch's running cost
        prices each item at its own size without reading 10,000 rows into Python at every refresh.
        """
        return await self.count_by_size(job_id, status="ok")

    async def count_by_size(self, job_id: JobId, *, status: str, from_index: int = 0) -> dict[str | None, int]:
        """Return how many items of a job in `status` (from item `from_index` on) there are, by their own size.

        None stands for the job's size. One grouped query: e.g. the items a trial holds back, to price them.
        """
        rows = await self._all(
            "SELECT json_extract(inputs, '$.image_size') AS size, count(*) AS n FROM items"
            " WHERE job_id = ? AND status = ? AND idx >= ? GROUP BY size",
            (job_id, status, from_index),
        )
        return {None if row["size"] is None else str(row["size"]): int(row["n"]) for row in rows}

    async def retrying_counts(self, job_id: JobId) -> dict[str, int]:
        """Return how many items of a job failed their last attempt and wait for (or run) another, by error code."""
        rows = await self._all(
            "SELECT error_code, count(*) AS n FROM items WHERE job_id = ? AND status IN ('pending', 'submitted')"
            " AND error_code IS NOT NULL GROUP BY error_code ORDER BY error_code",
            (job_id,),
        )
        return {str(row["error_code"]): int(row["n"]) for row in rows}


def _admission_of(status: JobStatus) -> Admission:
    return Admission.WAITING if status is JobStatus.WAITING else Admission.QUEUED
