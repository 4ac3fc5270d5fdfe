"""A job's items in the ledger: listing them, paging through them, and putting failed ones back."""

from collections.abc import AsyncIterator, Collection
from datetime import datetime

from bot.core.models import Item, ItemStatus, Job, JobId
from bot.ledger._rows import HOLD_FROM_SQL, db_time, item_from, placeholders
from bot.ledger.budgets import reserve_again_in
from bot.ledger.connection import LedgerConnection


class ItemsMixin(LedgerConnection):
    """Items: the images a job asks for, one row each, with their attempts and verdicts."""

    async def items(
        self, job_id: JobId, *, statuses: Collection[ItemStatus] | None = None, limit: int | None = None
    ) -> list[Item]:
        """Return a job's items in index order (the first `limit` of them, if given)."""
        where = "job_id = ?"
        args: list[object] = [job_id]
        if statuses is not None:
            where += f" AND status IN ({placeholders(statuses)})"
            args += [s.value for s in statuses]
        sql = f"SELECT * FROM items WHERE {where} ORDER BY idx"  # noqa: S608 - placeholders only
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [item_from(row) for row in await self._all(sql, tuple(args))]

    async def iter_items(self, job_id: JobId, *, page: int = 500) -> AsyncIterator[Item]:
        """Yield a job's items in index order, `page` rows per query, so a 10,000-item job is never all in memory."""
        after = -1
        while True:
            rows = await self._all(
                "SELECT * FROM items WHERE job_id = ? AND idx > ? ORDER BY idx LIMIT ?", (job_id, after, page)
            )
            for row in rows:
                item = item_from(row)
                after = item.index
                yield item
            if len(rows) < page:
                return

    async def get_item(self, job_id: JobId, index: int) -> Item | None:
        """Return one item."""
        row = await self._one("SELECT * FROM items WHERE job_id = ? AND idx = ?", (job_id, index))
        return None if row is None else item_from(row)

    async def ready_items(self, job_id: JobId, *, now: datetime, limit: int) -> list[Item]:
        """Return up to `limit` pending items of a job that are due and not held (`NOTE_HOLD_FROM`), in index order."""
        rows = await self._all(
            "SELECT * FROM items WHERE job_id = ? AND status = 'pending' AND (retry_at IS NULL OR retry_at <= ?)"  # noqa: S608
            f" AND idx < (SELECT {HOLD_FROM_SQL} FROM jobs WHERE jobs.id = items.job_id)"
            " ORDER BY idx LIMIT ?",
            (job_id, db_time(now), limit),
        )
        return [item_from(row) for row in rows]

    async def release_backoff(self, *, code: str, now: datetime) -> int:
        """Make every pending item whose last failure was `code` due now, ending its backoff; return how many.

        After an outage the items that failed just before it was recognised need not wait out their backoff.
        """
        async with (
            self._tx() as db,
            db.execute(
                "UPDATE items SET retry_at = ? WHERE status = 'pending' AND error_code = ? AND retry_at > ?",
                (db_time(now), code, db_time(now)),
            ) as cur,
        ):
            return cur.rowcount

    async def retry_failed(self, job_id: JobId, *, now: datetime) -> Job:
        """Put a job's failed-for-good items back to pending with fresh attempts (the "Retry failed" button).

        Safety blocks stay failed: retrying them costs money and cannot succeed. A finished job runs again.

        An ended job's settled reservation opens again for the retried items (`reserve_again_in`).

        Raises:
            UnknownJobError: no such job.
            BudgetRefusedError: the retried items would take one of the job's money caps over; nothing changed.
        """
        async with self._tx() as db:
            async with db.execute(
                "UPDATE items SET status = 'pending', attempts = 0, retry_at = NULL WHERE job_id = ? AND"
                " status = 'error' AND coalesce(error_code, '') NOT IN ('SAFETY', 'BAD_INPUT', 'TOO_LARGE')"
                " RETURNING idx, json_extract(inputs, '$.image_size') AS size",
                (job_id,),
            ) as cur:
                changed = await cur.fetchall()
            await reserve_again_in(db, job_id, [row["size"] for row in changed], now=now)
            if changed:
                await self._recount(db, job_id)
                await db.execute(
                    "UPDATE jobs SET status = 'running', finished_at = NULL WHERE id = ? AND status IN"
                    " ('done', 'failed')",
                    (job_id,),
                )
            return await self._job_in(db, job_id)
