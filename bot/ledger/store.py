"""`Ledger`: the SQLite job ledger (aiosqlite).

One aiosqlite connection runs on one thread and its users share one transaction, so every transaction holds
`self._lock` (STYLE.md §8.5); writes use `BEGIN IMMEDIATE` so that a second process waits for the write lock
(`busy_timeout`) instead of failing halfway. WAL lets readers run while a writer writes. Every state change is
one transaction. The schema comes from numbered `migrations/NNNN_*.sql` files tracked by `PRAGMA user_version`.
"""

import asyncio
import json
import logging
import os
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self, cast

import aiosqlite

from bot.core.admission import Admission
from bot.core.models import (
    Chunk,
    ChunkId,
    ChunkStatus,
    Group,
    GroupId,
    Image,
    ImageId,
    Item,
    ItemInputs,
    ItemOutcome,
    ItemStatus,
    Job,
    JobId,
    JobKind,
    JobParams,
    JobStatus,
    NewItem,
    NewJob,
    Priority,
    UserId,
    UserLoad,
)
from bot.core.seeds import item_seed, output_key, seed_base
from bot.ledger.errors import LedgerDamagedError, LedgerMigrationError, LedgerTooNewError, UnknownJobError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
BUSY_TIMEOUT_MS = 5000
_UNFINISHED = (JobStatus.WAITING, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCreation:
    """What `create_job` did: `job` is None only when the job was refused."""

    job: Job | None
    created: bool
    admission: Admission


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """What `record_outcomes` changed: images made now, and the job after the change."""

    job: Job
    new_images: tuple[Image, ...]
    newly_failed: int
    rate_limited: bool


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


def _ts(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the ledger")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def _req_dt(value: object) -> datetime:
    return datetime.fromisoformat(str(value))


def _json_obj(text: object) -> dict[str, object]:
    data = json.loads(str(text))
    if not isinstance(data, dict):
        raise ValueError("ledger JSON column does not hold an object")
    return cast("dict[str, object]", data)


def _in(values: Collection[object]) -> str:
    return ",".join("?" * len(values))


def _group(row: aiosqlite.Row) -> Group:
    return Group(
        id=GroupId(row["id"]),
        name=row["name"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        thread_id=row["thread_id"],
        created_at=_req_dt(row["created_at"]),
        owner_id=row["owner_id"],
    )


def _job(row: aiosqlite.Row) -> Job:
    return Job(
        id=JobId(row["id"]),
        kind=JobKind(row["kind"]),
        owner_id=UserId(row["owner_id"]),
        guild_id=row["guild_id"],
        group_id=None if row["group_id"] is None else GroupId(row["group_id"]),
        prompt=row["prompt"],
        params=JobParams.from_json(_json_obj(row["params"])),
        parent_image_id=None if row["parent_image_id"] is None else ImageId(row["parent_image_id"]),
        status=JobStatus(row["status"]),
        priority=Priority(row["priority"]),
        idempotency_key=row["idempotency_key"],
        created_at=_req_dt(row["created_at"]),
        started_at=_dt(row["started_at"]),
        finished_at=_dt(row["finished_at"]),
        total=row["total"],
        ok=row["ok"],
        failed=row["failed"],
        cancelled=row["cancelled"],
        error=row["error"],
    )


def _item(row: aiosqlite.Row) -> Item:
    return Item(
        job_id=JobId(row["job_id"]),
        index=row["idx"],
        inputs=ItemInputs.from_json(_json_obj(row["inputs"])),
        prompt=row["prompt"],
        seed=row["seed"],
        output_key=row["output_key"],
        status=ItemStatus(row["status"]),
        attempts=row["attempts"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        retry_at=_dt(row["retry_at"]),
        chunk_id=None if row["chunk_id"] is None else ChunkId(row["chunk_id"]),
        width=row["width"],
        height=row["height"],
    )


def _chunk(row: aiosqlite.Row) -> Chunk:
    return Chunk(
        id=ChunkId(row["id"]),
        job_id=JobId(row["job_id"]),
        seq=row["seq"],
        runpod_id=row["runpod_id"],
        indices=tuple(int(i) for i in json.loads(row["indices"])),
        status=ChunkStatus(row["status"]),
        concurrency=row["concurrency"],
        attempt=row["attempt"],
        created_at=_req_dt(row["created_at"]),
        submitted_at=_dt(row["submitted_at"]),
        finished_at=_dt(row["finished_at"]),
        remote_status=row["remote_status"],
        last_progress=None if row["last_progress"] is None else _json_obj(row["last_progress"]),
    )


def _image(row: aiosqlite.Row) -> Image:
    return Image(
        id=ImageId(row["id"]),
        job_id=JobId(row["job_id"]),
        index=row["idx"],
        key=row["key"],
        group_id=None if row["group_id"] is None else GroupId(row["group_id"]),
        owner_id=UserId(row["owner_id"]),
        width=row["width"],
        height=row["height"],
        is_favourite=bool(row["favourite"]),
        message_id=row["message_id"],
        created_at=_req_dt(row["created_at"]),
    )


def _read_migrations() -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise LedgerMigrationError(f"migration file {path.name!r} is not named NNNN_name.sql")
        found.append((int(match.group(1)), path.read_text(encoding="utf-8")))
    numbers = [n for n, _ in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise LedgerMigrationError(f"migrations must be numbered 1..n without gaps, found {numbers}")
    return found


def backup_path(path: Path | str) -> Path:
    """Return where the ledger at `path` keeps its backup: `<name>.bak` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".bak")


async def _damaged(path: Path | str, reason: str) -> LedgerDamagedError:
    absolute = await asyncio.to_thread(Path(path).resolve)
    backup = backup_path(absolute)
    return LedgerDamagedError(
        absolute, reason=reason, backup=backup if await asyncio.to_thread(backup.is_file) else None
    )


def new_id(prefix: str) -> str:
    """Return a fresh random id such as `j_3f9a0c1d2e4b5a69` (lowercase, safe in storage keys and custom ids)."""
    return f"{prefix}_{secrets.token_hex(8)}"


class Ledger:
    """The job ledger over one SQLite file; open with `await Ledger.open(path)`, close with `close()`."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str) -> Self:
        """Open (creating if needed) the ledger at `path`, check that it is sound, and migrate it.

        Raises:
            LedgerDamagedError: the file is not a database, or is malformed, or fails `PRAGMA quick_check`.
            LedgerTooNewError: the file's schema is newer than this code knows.
        """
        db = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            db.row_factory = aiosqlite.Row
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Damage in the middle of the file goes unnoticed until a query reads that page, perhaps hours into
            # a batch; quick_check reads every page now (O(file size), no index cross-check) before anything writes.
            async with db.execute("PRAGMA quick_check") as cur:
                problems = [str(row[0]) for row in await cur.fetchall()]
            if problems != ["ok"]:
                log.debug("ledger quick_check: %s", "; ".join(problems[:5]))
                raise await _damaged(path, "integrity_check")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
            ledger = cls(db)
            await ledger._migrate(Path(path))
        except sqlite3.DatabaseError as exc:
            await db.close()
            # OperationalError (locked, cannot open, disk full) is a DatabaseError too: only damage is translated.
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_NOTADB:
                raise await _damaged(path, "not_a_database") from exc
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_CORRUPT:
                raise await _damaged(path, "malformed") from exc
            raise
        except BaseException:
            await db.close()
            raise
        return ledger

    async def back_up(self, dest: Path) -> None:
        """Write a consistent copy of the ledger to `dest` (written beside it, then renamed into place).

        `VACUUM INTO` reads one snapshot while writers go on (https://sqlite.org/lang_vacuum.html#vacuuminto).
        """
        temp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")  # VACUUM INTO refuses an existing file
        try:
            async with self._lock:
                await self._db.execute("VACUUM INTO ?", (str(temp),))
            await asyncio.to_thread(os.replace, temp, dest)
        finally:
            await asyncio.to_thread(temp.unlink, missing_ok=True)

    async def close(self) -> None:
        """Close the connection."""
        async with self._lock:
            await self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def schema_version(self) -> int:
        """Return the schema version (`PRAGMA user_version`)."""
        row = await self._one("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def _migrate(self, path: Path) -> None:
        migrations = await asyncio.to_thread(_read_migrations)
        current = await self.schema_version()
        latest = len(migrations)
        if current > latest:
            raise LedgerTooNewError(path, schema=current, known=latest)
        for number, sql in migrations[current:]:
            # executescript commits first and runs the script as is, so the migration and its version bump
            # are one transaction of their own.
            async with self._lock:
                await self._db.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
            log.info("ledger migrated to schema %d", number, extra={"action": "migrate"})

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await asyncio.shield(self._db.execute("ROLLBACK"))
                raise
            await asyncio.shield(self._db.execute("COMMIT"))

    async def _all(self, sql: str, params: Sequence[object] = ()) -> list[aiosqlite.Row]:
        async with self._lock, self._db.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def _one(self, sql: str, params: Sequence[object] = ()) -> aiosqlite.Row | None:
        async with self._lock, self._db.execute(sql, params) as cur:
            return await cur.fetchone()

    # ---- groups ----------------------------------------------------------------------------------------------

    async def ensure_group(
        self,
        *,
        name: str,
        now: datetime,
        guild_id: int | None = None,
        channel_id: int | None = None,
        thread_id: int | None = None,
        owner_id: int | None = None,
    ) -> Group:
        """Return the group of a thread (or a channel's default group), creating it if needed.

        `owner_id` is recorded only when the group is created: the first caller names the owner.
        """
        params: tuple[object, ...]
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO groups (id, guild_id, channel_id, thread_id, name, created_at, owner_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (new_id("g"), guild_id, channel_id, thread_id, name, _ts(now), owner_id),
            )
            if thread_id is not None:
                sql, params = "SELECT * FROM groups WHERE thread_id = ?", (thread_id,)
            elif channel_id is not None:
                sql, params = "SELECT * FROM groups WHERE channel_id = ? AND thread_id IS NULL", (channel_id,)
            else:
                sql, params = "SELECT * FROM groups WHERE rowid = last_insert_rowid()", ()
            async with db.execute(sql, params) as cur:
                row = await cur.fetchone()
        assert row is not None  # inserted, or there already
        return _group(row)

    async def get_group(self, group_id: GroupId) -> Group | None:
        """Return a group by id."""
        row = await self._one("SELECT * FROM groups WHERE id = ?", (group_id,))
        return None if row is None else _group(row)

    # ---- jobs ------------------------------------------------------------------------------------------------

    async def create_job(
        self,
        job: NewJob,
        items: Sequence[NewItem],
        *,
        now: datetime,
        admit: Callable[[UserLoad], Admission] | None = None,
    ) -> JobCreation:
        """Create a job, its items and its notes in one transaction, unless its idempotency key already names a job.

        Args:
            job: the job to create.
            items: its items, in index order; seeds default to the job's seed base plus the index.
            now: the creation time.
            admit: decides from the owner's current load whether the job is queued, waits, or is refused;
                None queues it unconditionally. It runs inside the transaction, so two concurrent submissions
                of one user cannot both take the last slot.

        Returns:
            The existing job (`created` False) when the key was used before, else the new job, or no job when
            `admit` refused it.
        """
        async with self._tx() as db:
            if job.idempotency_key is not None:
                async with db.execute("SELECT * FROM jobs WHERE idempotency_key = ?", (job.idempotency_key,)) as cur:
                    row = await cur.fetchone()
                if row is not None:
                    existing = _job(row)
                    return JobCreation(job=existing, created=False, admission=_admission_of(existing.status))
            admission = Admission.QUEUED if admit is None else admit(await self._load(db, job.owner_id))
            if admission is Admission.REFUSED:
                return JobCreation(job=None, created=False, admission=admission)
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
                    _ts(now),
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
            created = await self._job_in(db, job.id)
        log.info(
            "job %s created (%s, %d items)", job.id, status, len(items), extra={"job_id": job.id, "action": "enqueue"}
        )
        return JobCreation(job=created, created=True, admission=admission)

    async def get_job(self, job_id: JobId) -> Job | None:
        """Return a job by id."""
        row = await self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return None if row is None else _job(row)

    async def find_job(self, idempotency_key: str) -> Job | None:
        """Return the job created with an idempotency key."""
        row = await self._one("SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,))
        return None if row is None else _job(row)

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
            where.append(f"status IN ({_in(statuses)})")
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
        return [_job(row) for row in await self._all(sql, params)]

    async def job_seqs(self, job_ids: Iterable[JobId]) -> dict[JobId, int]:
        """Return the creation order number of each job."""
        ids = list(job_ids)
        if not ids:
            return {}
        rows = await self._all(f"SELECT id, seq FROM jobs WHERE id IN ({_in(ids)})", ids)  # noqa: S608
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
        return sorted((_job(row) for row in rows), key=lambda j: j.created_at)

    async def set_job_status(
        self, job_id: JobId, status: JobStatus, *, expect: Collection[JobStatus]
    ) -> tuple[Job, bool]:
        """Set a job's status if it is one of `expect`; return the job and whether it changed.

        Raises:
            UnknownJobError: no such job.
        """
        async with self._tx() as db:
            async with db.execute(
                f"UPDATE jobs SET status = ? WHERE id = ? AND status IN ({_in(expect)}) RETURNING *",  # noqa: S608
                (status.value, job_id, *(s.value for s in expect)),
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                return _job(row), True
            return await self._job_in(db, job_id), False

    async def cancel_job(self, job_id: JobId, *, now: datetime) -> Cancellation | None:
        """Cancel an unfinished job: unfinished items and chunks become cancelled; None if it was already final.

        Raises:
            UnknownJobError: no such job.
        """
        async with self._tx() as db:
            job = await self._job_in(db, job_id)
            if job.status.is_final:
                return None
            async with db.execute(
                "UPDATE chunks SET status = 'cancelled', finished_at = ? WHERE job_id = ? AND status IN"
                " ('submitting', 'in_flight') RETURNING *",
                (_ts(now), job_id),
            ) as cur:
                chunks = tuple(_chunk(row) for row in await cur.fetchall())
            await db.execute(
                "UPDATE items SET status = 'cancelled', retry_at = NULL WHERE job_id = ? AND status IN"
                " ('pending', 'submitted')",
                (job_id,),
            )
            await self._recount(db, job_id)
            await db.execute("UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ?", (_ts(now), job_id))
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
                (_ts(now), job_id),
            ) as cur,
        ):
            row = await cur.fetchone()
        if row is None:
            return None
        job = _job(row)
        log.info("job %s %s (%d ok, %d failed)", job.id, job.status, job.ok, job.failed, extra={"job_id": job.id})
        return job

    async def schedulable(self, *, now: datetime) -> list[Schedulable]:
        """Return queued or running jobs that have items ready to submit (pending, and due if backing off)."""
        rows = await self._all(
            "SELECT jobs.*, count(*) AS ready FROM jobs JOIN items ON items.job_id = jobs.id"
            " WHERE jobs.status IN ('queued', 'running') AND items.status = 'pending'"
            " AND (items.retry_at IS NULL OR items.retry_at <= ?) GROUP BY jobs.id ORDER BY jobs.seq",
            (_ts(now),),
        )
        return [Schedulable(job=_job(row), seq=int(row["seq"]), ready=int(row["ready"])) for row in rows]

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

    async def retrying_counts(self, job_id: JobId) -> dict[str, int]:
        """Return how many items of a job failed their last attempt and wait for (or run) another, by error code."""
        rows = await self._all(
            "SELECT error_code, count(*) AS n FROM items WHERE job_id = ? AND status IN ('pending', 'submitted')"
            " AND error_code IS NOT NULL GROUP BY error_code ORDER BY error_code",
            (job_id,),
        )
        return {str(row["error_code"]): int(row["n"]) for row in rows}

    # ---- items -----------------------------------------------------------------------------------------------

    async def items(
        self, job_id: JobId, *, statuses: Collection[ItemStatus] | None = None, limit: int | None = None
    ) -> list[Item]:
        """Return a job's items in index order (the first `limit` of them, if given)."""
        where = "job_id = ?"
        args: list[object] = [job_id]
        if statuses is not None:
            where += f" AND status IN ({_in(statuses)})"
            args += [s.value for s in statuses]
        sql = f"SELECT * FROM items WHERE {where} ORDER BY idx"  # noqa: S608 - placeholders only
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_item(row) for row in await self._all(sql, tuple(args))]

    async def iter_items(self, job_id: JobId, *, page: int = 500) -> AsyncIterator[Item]:
        """Yield a job's items in index order, `page` rows per query, so a 10,000-item job is never all in memory."""
        after = -1
        while True:
            rows = await self._all(
                "SELECT * FROM items WHERE job_id = ? AND idx > ? ORDER BY idx LIMIT ?", (job_id, after, page)
            )
            for row in rows:
                item = _item(row)
                after = item.index
                yield item
            if len(rows) < page:
                return

    async def get_item(self, job_id: JobId, index: int) -> Item | None:
        """Return one item."""
        row = await self._one("SELECT * FROM items WHERE job_id = ? AND idx = ?", (job_id, index))
        return None if row is None else _item(row)

    async def ready_items(self, job_id: JobId, *, now: datetime, limit: int) -> list[Item]:
        """Return up to `limit` pending items of a job that are due, in index order."""
        rows = await self._all(
            "SELECT * FROM items WHERE job_id = ? AND status = 'pending' AND (retry_at IS NULL OR retry_at <= ?)"
            " ORDER BY idx LIMIT ?",
            (job_id, _ts(now), limit),
        )
        return [_item(row) for row in rows]

    async def retry_failed(self, job_id: JobId, *, now: datetime) -> Job:
        """Put a job's failed-for-good items back to pending with fresh attempts (the "Retry failed" button).

        Safety blocks stay failed: retrying them costs money and cannot succeed. A finished job runs again.

        Raises:
            UnknownJobError: no such job.
        """
        async with self._tx() as db:
            async with db.execute(
                "UPDATE items SET status = 'pending', attempts = 0, retry_at = NULL WHERE job_id = ? AND"
                " status = 'error' AND coalesce(error_code, '') NOT IN ('SAFETY', 'BAD_INPUT') RETURNING idx",
                (job_id,),
            ) as cur:
                changed = await cur.fetchall()
            if changed:
                await self._recount(db, job_id)
                await db.execute(
                    "UPDATE jobs SET status = 'running', finished_at = NULL WHERE id = ? AND status IN"
                    " ('done', 'failed')",
                    (job_id,),
                )
            return await self._job_in(db, job_id)

    # ---- chunks ----------------------------------------------------------------------------------------------

    async def start_chunk(self, job_id: JobId, indices: Sequence[int], *, concurrency: int, now: datetime) -> Chunk:
        """Record a chunk about to be sent to RunPod: its items become submitted (one attempt each)."""
        async with self._tx() as db:
            async with db.execute(
                "INSERT INTO chunks (job_id, seq, indices, status, concurrency, attempt, created_at) VALUES"
                " (?1, (SELECT coalesce(max(seq), -1) + 1 FROM chunks WHERE job_id = ?1), ?2, 'submitting', ?3,"
                " 1 + coalesce((SELECT max(attempts) FROM items WHERE job_id = ?1 AND idx IN"
                " (SELECT value FROM json_each(?2))), 0), ?4) RETURNING *",
                (job_id, json.dumps(list(indices)), concurrency, _ts(now)),
            ) as cur:
                row = await cur.fetchone()
            assert row is not None
            chunk = _chunk(row)
            await db.execute(
                "UPDATE items SET status = 'submitted', attempts = attempts + 1, retry_at = NULL, chunk_id = ?"
                " WHERE job_id = ? AND status = 'pending' AND idx IN (SELECT value FROM json_each(?))",
                (chunk.id, job_id, json.dumps(list(indices))),
            )
            await db.execute(
                "UPDATE jobs SET status = CASE WHEN status = 'queued' THEN 'running' ELSE status END,"
                " started_at = coalesce(started_at, ?) WHERE id = ?",
                (_ts(now), job_id),
            )
        return chunk

    async def mark_chunk_submitted(self, chunk_id: ChunkId, runpod_id: str, *, now: datetime) -> Chunk:
        """Record RunPod's id for a chunk: it is in flight (unless it was cancelled meanwhile)."""
        async with (
            self._tx() as db,
            db.execute(
                "UPDATE chunks SET runpod_id = ?, submitted_at = ?, status = CASE WHEN status = 'submitting'"
                " THEN 'in_flight' ELSE status END WHERE id = ? RETURNING *",
                (runpod_id, _ts(now), chunk_id),
            ) as cur,
        ):
            row = await cur.fetchone()
        assert row is not None
        return _chunk(row)

    async def abandon_chunk(self, chunk_id: ChunkId, *, retry_at: datetime, now: datetime) -> None:
        """Give up a chunk RunPod never took: its items go back to pending at `retry_at`, the attempt uncounted."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE items SET status = 'pending', attempts = max(0, attempts - 1), retry_at = ?, chunk_id = NULL"
                " WHERE chunk_id = ? AND status = 'submitted'",
                (_ts(retry_at), chunk_id),
            )
            await db.execute(
                "UPDATE chunks SET status = 'lost', finished_at = ? WHERE id = ? AND status = 'submitting'",
                (_ts(now), chunk_id),
            )

    async def record_outcomes(
        self,
        chunk_id: ChunkId,
        outcomes: Iterable[ItemOutcome],
        *,
        now: datetime,
        progress: Mapping[str, object] | None = None,
        final: ChunkStatus | None = None,
        remote_status: str | None = None,
    ) -> Recorded:
        """Apply the dispatcher's verdicts on a chunk's items, and optionally close the chunk, in one transaction.

        Only items still `submitted` in this chunk change, so a progress report seen twice, or a result arriving
        after a cancel, changes nothing. An OK item gets its image row (once per job and index).
        """
        async with self._tx() as db:
            async with db.execute("SELECT * FROM chunks WHERE id = ?", (chunk_id,)) as cur:
                row = await cur.fetchone()
            if row is None:
                raise KeyError(chunk_id)
            chunk = _chunk(row)
            job = await self._job_in(db, chunk.job_id)
            new_images: list[Image] = []
            failed = 0
            rate_limited = False
            for outcome in outcomes:
                async with db.execute(
                    "UPDATE items SET status = ?, width = ?, height = ?, error_code = ?, error_message = ?,"
                    " retry_at = ? WHERE job_id = ? AND idx = ? AND chunk_id = ? AND status = 'submitted'"
                    " RETURNING output_key",
                    (
                        outcome.status.value,
                        outcome.width,
                        outcome.height,
                        outcome.error_code,
                        outcome.error_message,
                        None if outcome.retry_at is None else _ts(outcome.retry_at),
                        chunk.job_id,
                        outcome.index,
                        chunk_id,
                    ),
                ) as cur:
                    changed = await cur.fetchone()
                if changed is None:
                    continue
                rate_limited = rate_limited or outcome.error_code == "RATE_LIMITED"
                if outcome.status is ItemStatus.ERROR:
                    failed += 1
                if outcome.status is ItemStatus.OK:
                    async with db.execute(
                        "INSERT INTO images (id, job_id, idx, key, group_id, owner_id, width, height, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, idx) DO UPDATE SET"
                        " width = excluded.width, height = excluded.height RETURNING *",
                        (
                            new_id("i"),
                            chunk.job_id,
                            outcome.index,
                            outcome.key or changed["output_key"],
                            job.group_id,
                            job.owner_id,
                            outcome.width,
                            outcome.height,
                            _ts(now),
                        ),
                    ) as cur:
                        image_row = await cur.fetchone()
                    assert image_row is not None
                    new_images.append(_image(image_row))
            sets, params = [], list[object]()
            if progress is not None:
                sets.append("last_progress = ?")
                params.append(json.dumps(dict(progress)))
            if remote_status is not None:
                sets.append("remote_status = ?")
                params.append(remote_status)
            if final is not None:
                sets += ["status = ?", "finished_at = ?"]
                params += [final.value, _ts(now)]
            if sets:
                await db.execute(
                    f"UPDATE chunks SET {', '.join(sets)} WHERE id = ?",  # noqa: S608 (fixed column names)
                    (*params, chunk_id),
                )
            await self._recount(db, chunk.job_id)
            job = await self._job_in(db, chunk.job_id)
        return Recorded(job=job, new_images=tuple(new_images), newly_failed=failed, rate_limited=rate_limited)

    async def get_chunk(self, chunk_id: ChunkId) -> Chunk | None:
        """Return a chunk by id."""
        row = await self._one("SELECT * FROM chunks WHERE id = ?", (chunk_id,))
        return None if row is None else _chunk(row)

    async def chunks(
        self, *, job_id: JobId | None = None, statuses: Collection[ChunkStatus] | None = None
    ) -> list[Chunk]:
        """Return chunks matching the filters, oldest first."""
        where, params = ["1 = 1"], list[object]()
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        if statuses is not None:
            where.append(f"status IN ({_in(statuses)})")
            params.extend(s.value for s in statuses)
        rows = await self._all(f"SELECT * FROM chunks WHERE {' AND '.join(where)} ORDER BY id", params)  # noqa: S608
        return [_chunk(row) for row in rows]

    async def submitted_items(self, chunk_id: ChunkId, *, indices: Collection[int] | None = None) -> list[Item]:
        """Return the items of a chunk that still wait for a verdict (only those of `indices` when given)."""
        if indices is None:
            rows = await self._all(
                "SELECT * FROM items WHERE chunk_id = ? AND status = 'submitted' ORDER BY idx", (chunk_id,)
            )
        elif not indices:
            return []
        else:
            wanted = sorted(set(indices))
            rows = await self._all(
                f"SELECT * FROM items WHERE chunk_id = ? AND status = 'submitted' AND idx IN ({_in(wanted)})"  # noqa: S608
                " ORDER BY idx",
                (chunk_id, *wanted),
            )
        return [_item(row) for row in rows]

    async def submitted_indices(self, chunk_id: ChunkId) -> set[int]:
        """Return the indices of a chunk's items that still wait for a verdict."""
        rows = await self._all("SELECT idx FROM items WHERE chunk_id = ? AND status = 'submitted'", (chunk_id,))
        return {int(row[0]) for row in rows}

    async def in_flight_concurrency(self) -> int:
        """Return the Gemini calls held by chunks being submitted or in flight."""
        row = await self._one(
            "SELECT coalesce(sum(concurrency), 0) FROM chunks WHERE status IN ('submitting', 'in_flight')"
        )
        return 0 if row is None else int(row[0])

    # ---- images ----------------------------------------------------------------------------------------------

    async def image_at(self, job_id: JobId, index: int) -> Image | None:
        """Return the image made for item `index` of a job."""
        row = await self._one("SELECT * FROM images WHERE job_id = ? AND idx = ?", (job_id, index))
        return None if row is None else _image(row)

    async def images(self, *, job_id: JobId | None = None, group_id: GroupId | None = None) -> list[Image]:
        """Return the images of a job (index order) or of a group (creation order)."""
        if job_id is not None:
            rows = await self._all("SELECT * FROM images WHERE job_id = ? ORDER BY idx", (job_id,))
        elif group_id is not None:
            rows = await self._all(
                "SELECT * FROM images WHERE group_id = ? ORDER BY created_at, job_id, idx", (group_id,)
            )
        else:
            raise ValueError("give a job_id or a group_id")
        return [_image(row) for row in rows]

    async def set_favourite(self, image_id: ImageId, *, is_favourite: bool) -> Image | None:
        """Mark or unmark an image as a favourite."""
        async with (
            self._tx() as db,
            db.execute(
                "UPDATE images SET favourite = ? WHERE id = ? RETURNING *", (int(is_favourite), image_id)
            ) as cur,
        ):
            row = await cur.fetchone()
        return None if row is None else _image(row)

    async def set_image_message(self, image_id: ImageId, message_id: int) -> Image | None:
        """Record the Discord message that shows an image."""
        async with (
            self._tx() as db,
            db.execute("UPDATE images SET message_id = ? WHERE id = ? RETURNING *", (message_id, image_id)) as cur,
        ):
            row = await cur.fetchone()
        return None if row is None else _image(row)

    # ---- Discord messages and notes ---------------------------------------------------------------------------

    async def set_job_message(
        self, job_id: JobId, role: str, *, channel_id: int, message_id: int, now: datetime
    ) -> None:
        """Record the Discord message that shows a job in `role` (`status`, `result`, `summary`)."""
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO job_messages (job_id, role, channel_id, message_id, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (job_id, role) DO UPDATE SET channel_id = excluded.channel_id,"
                " message_id = excluded.message_id, updated_at = excluded.updated_at",
                (job_id, role, channel_id, message_id, _ts(now)),
            )

    async def job_message(self, job_id: JobId, role: str) -> tuple[int, int] | None:
        """Return the (channel id, message id) showing a job in `role`, or None."""
        row = await self._one(
            "SELECT channel_id, message_id FROM job_messages WHERE job_id = ? AND role = ?", (job_id, role)
        )
        return None if row is None else (int(row["channel_id"]), int(row["message_id"]))

    async def job_of_message(self, message_id: int) -> tuple[JobId, str] | None:
        """Return the job (and role) a Discord message shows, or None."""
        row = await self._one("SELECT job_id, role FROM job_messages WHERE message_id = ? LIMIT 1", (message_id,))
        return None if row is None else (JobId(row["job_id"]), str(row["role"]))

    async def image_of_message(self, message_id: int) -> Image | None:
        """Return the image a Discord message shows, or None."""
        row = await self._one("SELECT * FROM images WHERE message_id = ? LIMIT 1", (message_id,))
        return None if row is None else _image(row)

    async def set_note(self, job_id: JobId, name: str, value: object) -> None:
        """Store a JSON note about a job."""
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO job_notes (job_id, name, value) VALUES (?, ?, ?)"
                " ON CONFLICT (job_id, name) DO UPDATE SET value = excluded.value",
                (job_id, name, json.dumps(value)),
            )

    async def note(self, job_id: JobId, name: str) -> object:
        """Return a job's JSON note, or None."""
        row = await self._one("SELECT value FROM job_notes WHERE job_id = ? AND name = ?", (job_id, name))
        return None if row is None else json.loads(row["value"])

    # ---- groups: naming and listing ----------------------------------------------------------------------------

    async def rename_group(self, group_id: GroupId, name: str) -> Group | None:
        """Rename a group."""
        async with (
            self._tx() as db,
            db.execute("UPDATE groups SET name = ? WHERE id = ? RETURNING *", (name, group_id)) as cur,
        ):
            row = await cur.fetchone()
        return None if row is None else _group(row)

    async def groups_with_counts(self, *, guild_id: int | None, limit: int = 25) -> list[tuple[Group, int]]:
        """Return a guild's groups, newest first, each with how many images it holds."""
        rows = await self._all(
            "SELECT g.*, (SELECT count(*) FROM images i WHERE i.group_id = g.id) AS n FROM groups g"
            " WHERE g.guild_id IS ? ORDER BY g.created_at DESC LIMIT ?",
            (guild_id, limit),
        )
        return [(_group(r), int(r["n"])) for r in rows]

    # ---- user preferences ------------------------------------------------------------------------------------

    async def get_preferences(self, user_id: UserId) -> dict[str, object]:
        """Return a user's preferences (empty when never set)."""
        row = await self._one("SELECT prefs FROM user_preferences WHERE user_id = ?", (user_id,))
        return {} if row is None else _json_obj(row["prefs"])

    async def set_preferences(self, user_id: UserId, prefs: Mapping[str, object], *, now: datetime) -> None:
        """Replace a user's preferences."""
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO user_preferences (user_id, prefs, updated_at) VALUES (?, ?, ?) ON CONFLICT (user_id)"
                " DO UPDATE SET prefs = excluded.prefs, updated_at = excluded.updated_at",
                (user_id, json.dumps(dict(prefs)), _ts(now)),
            )

    # ---- helpers (inside a transaction) ----------------------------------------------------------------------

    @staticmethod
    async def _load(db: aiosqlite.Connection, owner_id: UserId) -> UserLoad:
        async with db.execute(
            "SELECT coalesce(sum(status IN ('queued', 'running')), 0), coalesce(sum(status = 'waiting'), 0)"
            " FROM jobs WHERE owner_id = ?",
            (owner_id,),
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        return UserLoad(running=int(row[0]), waiting=int(row[1]))

    @staticmethod
    async def _job_in(db: aiosqlite.Connection, job_id: JobId) -> Job:
        async with db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        if row is None:
            raise UnknownJobError(job_id)
        return _job(row)

    @staticmethod
    async def _recount(db: aiosqlite.Connection, job_id: JobId) -> None:
        await db.execute(
            "UPDATE jobs SET"
            " ok = (SELECT count(*) FROM items WHERE job_id = ?1 AND status = 'ok'),"
            " failed = (SELECT count(*) FROM items WHERE job_id = ?1 AND status = 'error'),"
            " cancelled = (SELECT count(*) FROM items WHERE job_id = ?1 AND status = 'cancelled')"
            " WHERE id = ?1",
            (job_id,),
        )


def _admission_of(status: JobStatus) -> Admission:
    return Admission.WAITING if status is JobStatus.WAITING else Admission.QUEUED
