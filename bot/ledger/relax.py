"""Relax parts in the ledger: the Gemini batch jobs of relax batches, each holding one chunk's items."""

import json
from collections.abc import Collection, Sequence
from datetime import datetime

import aiosqlite

from bot.core.models import Chunk, ChunkId, JobId
from bot.core.relax import BatchCounts, RelaxPart, RelaxPhase
from bot.ledger._rows import db_time, opt_time, req_time
from bot.ledger.chunks import ChunksMixin

_UPDATABLE = frozenset(
    {
        "phase",
        "runpod_id",
        "runpod_attempts",
        "input_file",
        "ref_files",
        "batch_name",
        "batch_state",
        "stats",
        "result_file",
        "batch_created_at",
        "checked_at",
        "finished_at",
    }
)


def _counts(text: str | None) -> BatchCounts:
    data = json.loads(text) if text else {}
    if not isinstance(data, dict):
        return BatchCounts()
    return BatchCounts(**{k: int(v) for k, v in data.items() if k in BatchCounts.__slots__ and isinstance(v, int)})


def _part_from(row: aiosqlite.Row) -> RelaxPart:
    refs = json.loads(row["ref_files"] or "[]")
    return RelaxPart(
        chunk_id=ChunkId(row["chunk_id"]),
        job_id=JobId(row["job_id"]),
        phase=RelaxPhase(row["phase"]),
        items=int(row["items"]),
        runpod_id=row["runpod_id"],
        runpod_attempts=row["runpod_attempts"],
        input_file=row["input_file"],
        ref_files=tuple(str(r) for r in refs) if isinstance(refs, list) else (),
        batch_name=row["batch_name"],
        batch_state=row["batch_state"],
        counts=_counts(row["stats"]),
        result_file=row["result_file"],
        created_at=req_time(row["created_at"]),
        batch_created_at=opt_time(row["batch_created_at"]),
        checked_at=opt_time(row["checked_at"]),
    )


_SELECT = (
    "SELECT relax_parts.*, json_array_length(chunks.indices) AS items FROM relax_parts"
    " JOIN chunks ON chunks.id = relax_parts.chunk_id"
)


class RelaxMixin(ChunksMixin):
    """Relax parts: started with their items, moved through their phases, closed with the chunk."""

    async def start_relax_part(
        self, job_id: JobId, indices: Sequence[int], *, now: datetime
    ) -> tuple[Chunk, RelaxPart]:
        """Record a new part of a relax job: its items become submitted (one attempt each) in a chunk in flight.

        The chunk holds no online Gemini calls (concurrency 0) and no RunPod id: the part's RunPod jobs (prepare,
        collect) and its Gemini batch are the part's own, so the fast dispatcher's polling never sees it.
        """
        async with self._tx() as db:
            chunk = await self._open_chunk(db, job_id, indices, concurrency=0, now=now, in_flight=True)
            await db.execute(
                "INSERT INTO relax_parts (chunk_id, job_id, phase, created_at) VALUES (?, ?, 'preparing', ?)",
                (chunk.id, job_id, db_time(now)),
            )
            async with db.execute(f"{_SELECT} WHERE relax_parts.chunk_id = ?", (chunk.id,)) as cur:
                part_row = await cur.fetchone()
        assert part_row is not None
        return chunk, _part_from(part_row)

    async def relax_parts(
        self, *, job_id: JobId | None = None, phases: Collection[RelaxPhase] | None = None
    ) -> list[RelaxPart]:
        """Return relax parts, oldest first: those of one job, or in some phases (open ones: every phase but done)."""
        where, params = ["1 = 1"], list[object]()
        if job_id is not None:
            where.append("relax_parts.job_id = ?")
            params.append(job_id)
        if phases is not None:
            where.append(f"relax_parts.phase IN ({', '.join('?' for _ in phases)})")
            params.extend(p.value for p in phases)
        rows = await self._all(f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY relax_parts.chunk_id", params)
        return [_part_from(row) for row in rows]

    async def get_relax_part(self, chunk_id: ChunkId) -> RelaxPart | None:
        """Return one relax part by its chunk's id."""
        row = await self._one(f"{_SELECT} WHERE relax_parts.chunk_id = ?", (chunk_id,))
        return None if row is None else _part_from(row)

    async def update_relax_part(self, chunk_id: ChunkId, **fields: object) -> RelaxPart:
        """Set some of a part's columns (times as datetimes, `ref_files` as a list, `stats` as BatchCounts)."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not a relax part column: {sorted(unknown)}")
        values: list[object] = []
        for name, value in fields.items():
            if isinstance(value, datetime):
                value = db_time(value)
            elif isinstance(value, RelaxPhase):
                value = value.value
            elif isinstance(value, BatchCounts):
                value = json.dumps(
                    {
                        "requests": value.requests,
                        "succeeded": value.succeeded,
                        "failed": value.failed,
                        "pending": value.pending,
                    }
                )
            elif name == "ref_files":
                value = json.dumps(list(value))  # type: ignore[call-overload]
            values.append(value)
        sets = ", ".join(f"{name} = ?" for name in fields)
        async with self._tx() as db:
            await db.execute(f"UPDATE relax_parts SET {sets} WHERE chunk_id = ?", (*values, chunk_id))  # noqa: S608
            async with db.execute(f"{_SELECT} WHERE relax_parts.chunk_id = ?", (chunk_id,)) as cur:
                row = await cur.fetchone()
        if row is None:
            raise KeyError(chunk_id)
        return _part_from(row)
