"""Chunks in the ledger: the RunPod jobs that carry a job's items, and the verdicts recorded from them."""

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from bot.core.models import Chunk, ChunkId, ChunkStatus, Image, Item, ItemOutcome, ItemStatus, Job, JobId, JobKind
from bot.ledger._rows import chunk_from, db_time, image_from, item_from, new_id, placeholders
from bot.ledger.connection import LedgerConnection


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """What `record_outcomes` changed: images made now, and the job after the change."""

    job: Job
    new_images: tuple[Image, ...]
    newly_failed: int
    rate_limited: bool


class ChunksMixin(LedgerConnection):
    """Chunks: started, submitted or abandoned, then closed with the outcomes of their items."""

    async def start_chunk(self, job_id: JobId, indices: Sequence[int], *, concurrency: int, now: datetime) -> Chunk:
        """Record a chunk about to be sent to RunPod: its items become submitted (one attempt each)."""
        async with self._tx() as db:
            return await self._open_chunk(db, job_id, indices, concurrency=concurrency, now=now)

    async def _open_chunk(
        self,
        db: aiosqlite.Connection,
        job_id: JobId,
        indices: Sequence[int],
        *,
        concurrency: int,
        now: datetime,
        in_flight: bool = False,
    ) -> Chunk:
        """Insert a chunk of `indices` in the transaction `db`: its items submitted, its job running.

        A chunk starts `submitting` (before RunPod's /run) unless `in_flight` (a relax part, which has no RunPod
        id of its own).
        """
        async with db.execute(
            "INSERT INTO chunks (job_id, seq, indices, status, concurrency, attempt, created_at, submitted_at) VALUES"
            " (?1, (SELECT coalesce(max(seq), -1) + 1 FROM chunks WHERE job_id = ?1), ?2, ?3, ?4,"
            " 1 + coalesce((SELECT max(attempts) FROM items WHERE job_id = ?1 AND idx IN"
            " (SELECT value FROM json_each(?2))), 0), ?5, ?6) RETURNING *",
            (
                job_id,
                json.dumps(list(indices)),
                ChunkStatus.IN_FLIGHT.value if in_flight else ChunkStatus.SUBMITTING.value,
                concurrency,
                db_time(now),
                db_time(now) if in_flight else None,
            ),
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        chunk = chunk_from(row)
        await db.execute(
            "UPDATE items SET status = 'submitted', attempts = attempts + 1, retry_at = NULL, chunk_id = ?"
            " WHERE job_id = ? AND status = 'pending' AND idx IN (SELECT value FROM json_each(?))",
            (chunk.id, job_id, json.dumps(list(indices))),
        )
        await db.execute(
            "UPDATE jobs SET status = CASE WHEN status = 'queued' THEN 'running' ELSE status END,"
            " started_at = coalesce(started_at, ?) WHERE id = ?",
            (db_time(now), job_id),
        )
        return chunk

    async def mark_chunk_submitted(self, chunk_id: ChunkId, runpod_id: str, *, now: datetime) -> Chunk:
        """Record RunPod's id for a chunk: it is in flight (unless it was cancelled meanwhile)."""
        async with (
            self._tx() as db,
            db.execute(
                "UPDATE chunks SET runpod_id = ?, submitted_at = ?, status = CASE WHEN status = 'submitting'"
                " THEN 'in_flight' ELSE status END WHERE id = ? RETURNING *",
                (runpod_id, db_time(now), chunk_id),
            ) as cur,
        ):
            row = await cur.fetchone()
        assert row is not None
        return chunk_from(row)

    async def abandon_chunk(self, chunk_id: ChunkId, *, retry_at: datetime, now: datetime) -> None:
        """Give up a chunk RunPod never took: its items go back to pending at `retry_at`, the attempt uncounted."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE items SET status = 'pending', attempts = max(0, attempts - 1), retry_at = ?, chunk_id = NULL"
                " WHERE chunk_id = ? AND status = 'submitted'",
                (db_time(retry_at), chunk_id),
            )
            await db.execute(
                "UPDATE chunks SET status = 'lost', finished_at = ? WHERE id = ? AND status = 'submitting'",
                (db_time(now), chunk_id),
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
        revive_cancelled: bool = False,
        runpod_s: float | None = None,
        runpod_cost_usd: float | None = None,
    ) -> Recorded:
        """Apply the dispatcher's verdicts on a chunk's items, and optionally close the chunk, in one transaction.

        Only items still `submitted` in this chunk change, so a progress report seen twice, or a result arriving
        after a cancel, changes nothing. An OK item gets its image row (once per job and index); an outcome with
        `refund_attempt` takes back the attempt `start_chunk` counted. `revive_cancelled` settles a cancelled job's
        chunk instead: its `cancelled` items change (an image the worker made before the cancel is made, and paid).
        An outcome's `cost_usd` and `usage` replace the item's (they are its totals), stamped `spent_at` = `now`;
        `runpod_s` and `runpod_cost_usd` (a RunPod job of the chunk that ended) are added to the chunk's.
        """
        expected = ItemStatus.CANCELLED if revive_cancelled else ItemStatus.SUBMITTED
        async with self._tx() as db:
            async with db.execute("SELECT * FROM chunks WHERE id = ?", (chunk_id,)) as cur:
                row = await cur.fetchone()
            if row is None:
                raise KeyError(chunk_id)
            chunk = chunk_from(row)
            job = await self._job_in(db, chunk.job_id)
            new_images: list[Image] = []
            failed = 0
            rate_limited = False
            for outcome in outcomes:
                spent = outcome.cost_usd is not None or outcome.usage is not None
                async with db.execute(
                    "UPDATE items SET status = ?, width = ?, height = ?, error_code = ?, error_message = ?,"
                    " retry_at = ?, attempts = max(0, attempts - ?), cost_usd = coalesce(?, cost_usd),"
                    " usage = coalesce(?, usage), spent_at = coalesce(?, spent_at)"
                    " WHERE job_id = ? AND idx = ? AND chunk_id = ? AND status = ? RETURNING output_key",
                    (
                        outcome.status.value,
                        outcome.width,
                        outcome.height,
                        outcome.error_code,
                        outcome.error_message,
                        None if outcome.retry_at is None else db_time(outcome.retry_at),
                        1 if outcome.refund_attempt else 0,
                        outcome.cost_usd,
                        None if outcome.usage is None else outcome.usage.model_dump_json(),
                        db_time(now) if spent else None,
                        chunk.job_id,
                        outcome.index,
                        chunk_id,
                        expected.value,
                    ),
                ) as cur:
                    changed = await cur.fetchone()
                if changed is None:
                    continue
                rate_limited = rate_limited or outcome.error_code == "RATE_LIMITED"
                if outcome.status is ItemStatus.ERROR:
                    failed += 1
                if outcome.status is ItemStatus.OK and job.kind is not JobKind.DESCRIBE:  # a description is no image
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
                            db_time(now),
                        ),
                    ) as cur:
                        image_row = await cur.fetchone()
                    assert image_row is not None
                    new_images.append(image_from(image_row))
            sets, params = [], list[object]()
            if progress is not None:
                sets.append("last_progress = ?")
                params.append(json.dumps(dict(progress)))
            if remote_status is not None:
                sets.append("remote_status = ?")
                params.append(remote_status)
            if final is not None:
                sets += ["status = ?", "finished_at = ?"]
                params += [final.value, db_time(now)]
            if runpod_s is not None:
                sets += ["runpod_s = coalesce(runpod_s, 0) + ?", "runpod_cost_usd = coalesce(runpod_cost_usd, 0) + ?"]
                params += [runpod_s, runpod_cost_usd or 0.0]
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
        return None if row is None else chunk_from(row)

    async def chunks(
        self, *, job_id: JobId | None = None, statuses: Collection[ChunkStatus] | None = None
    ) -> list[Chunk]:
        """Return chunks matching the filters, oldest first (not relax parts' chunks: they are no RunPod jobs)."""
        where, params = ["id NOT IN (SELECT chunk_id FROM relax_parts)"], list[object]()
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        if statuses is not None:
            where.append(f"status IN ({placeholders(statuses)})")
            params.extend(s.value for s in statuses)
        rows = await self._all(f"SELECT * FROM chunks WHERE {' AND '.join(where)} ORDER BY id", params)  # noqa: S608
        return [chunk_from(row) for row in rows]

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
                f"SELECT * FROM items WHERE chunk_id = ? AND status = 'submitted' AND idx IN ({placeholders(wanted)})"  # noqa: S608
                " ORDER BY idx",
                (chunk_id, *wanted),
            )
        return [item_from(row) for row in rows]

    async def cancelled_items(self, chunk_id: ChunkId) -> list[Item]:
        """Return the items of a chunk that were cancelled with their job (to settle the chunk once RunPod stops)."""
        rows = await self._all(
            "SELECT * FROM items WHERE chunk_id = ? AND status = 'cancelled' ORDER BY idx", (chunk_id,)
        )
        return [item_from(row) for row in rows]

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
