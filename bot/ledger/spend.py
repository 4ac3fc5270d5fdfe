"""What was really spent, from the ledger: items' Gemini costs and their chunks' RunPod time (#25).

The costs are written with each item's outcome (`ChunksMixin.record_outcomes`): an item's `cost_usd` (its attempts'
total, stamped `spent_at`) and a chunk's `runpod_cost_usd` (stamped by its `finished_at`). A period's spend is what
was recorded within it, so an item counts in the day and month of its last billed attempt, and a chunk's RunPod
time in those it ended in.
"""

from datetime import datetime

from bot.core.models import JobId
from bot.ledger._rows import db_time
from bot.ledger.connection import LedgerConnection


class SpendMixin(LedgerConnection):
    """Sums of recorded costs, by owner, guild, job and period."""

    async def spent(
        self,
        owner_id: int | None = None,
        guild_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> float:
        """Return the USD recorded as spent: items' Gemini costs plus their chunks' RunPod costs.

        Args:
            owner_id: only the jobs of this user.
            guild_id: only the jobs started in this guild.
            since: only what was recorded at or after this moment.
            until: only what was recorded before this moment.
        """
        job_where, job_params = _job_filter(owner_id, guild_id)
        items_sql = f"SELECT coalesce(sum(cost_usd), 0) FROM items WHERE cost_usd IS NOT NULL{job_where}"  # noqa: S608
        chunks_sql = (
            f"SELECT coalesce(sum(runpod_cost_usd), 0) FROM chunks WHERE runpod_cost_usd IS NOT NULL{job_where}"  # noqa: S608
        )
        item_times, item_params = _period("spent_at", since, until)
        chunk_times, chunk_params = _period("finished_at", since, until)
        row = await self._one(
            f"SELECT ({items_sql}{item_times}) + ({chunks_sql}{chunk_times})",
            (*job_params, *item_params, *job_params, *chunk_params),
        )
        return float(row[0]) if row is not None else 0.0

    async def job_cost(self, job_id: JobId) -> float | None:
        """Return what a job was recorded to have cost in USD (items and RunPod), None when nothing was recorded."""
        row = await self._one(
            "SELECT (SELECT sum(cost_usd) FROM items WHERE job_id = ?1),"
            " (SELECT sum(runpod_cost_usd) FROM chunks WHERE job_id = ?1)",
            (job_id,),
        )
        if row is None or (row[0] is None and row[1] is None):
            return None
        return float(row[0] or 0.0) + float(row[1] or 0.0)

    async def unpriced_made_by_size(self, job_id: JobId) -> dict[str | None, int]:
        """Return how many of a job's made items have no recorded cost, by their own image size (None: the job's).

        Those are made before costs were recorded (a ledger older than migration 0007) or on a model the price
        table does not know: a running cost adds them at the estimate to what `job_cost` recorded.
        """
        rows = await self._all(
            "SELECT json_extract(inputs, '$.image_size') AS size, count(*) AS n FROM items"
            " WHERE job_id = ? AND status = 'ok' AND cost_usd IS NULL GROUP BY size",
            (job_id,),
        )
        return {row["size"]: int(row["n"]) for row in rows}


def _job_filter(owner_id: int | None, guild_id: int | None) -> tuple[str, tuple[object, ...]]:
    """Return the condition (" AND …") keeping rows of the jobs of `owner_id` and `guild_id`, and its parameters."""
    where, params = [], list[object]()
    if owner_id is not None:
        where.append("owner_id = ?")
        params.append(owner_id)
    if guild_id is not None:
        where.append("guild_id = ?")
        params.append(guild_id)
    if not where:
        return "", ()
    return f" AND job_id IN (SELECT id FROM jobs WHERE {' AND '.join(where)})", tuple(params)  # noqa: S608


def _period(column: str, since: datetime | None, until: datetime | None) -> tuple[str, tuple[object, ...]]:
    """Return the condition (" AND …") keeping rows whose `column` time is in [since, until), and its parameters."""
    where, params = "", list[object]()
    if since is not None:
        where += f" AND {column} >= ?"
        params.append(db_time(since))
    if until is not None:
        where += f" AND {column} < ?"
        params.append(db_time(until))
    return where, tuple(params)
