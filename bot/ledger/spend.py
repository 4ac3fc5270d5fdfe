"""What was really spent, from the ledger: items' Gemini costs and their chunks' RunPod time (#25).

The costs are written with each item's outcome (`ChunksMixin.record_outcomes`): an item's `cost_usd` (its attempts'
total, stamped `spent_at`) and a chunk's `runpod_cost_usd` (stamped by its `finished_at`). A period's spend is what
was recorded within it, so an item counts in the day and month of its last billed attempt, and a chunk's RunPod
time in those it ended in. `spent` reads the same sum as the budgets (`bot.ledger.budgets.spend_by`).
"""

from datetime import datetime

from bot.core.budgets import MICROS_PER_USD
from bot.core.models import JobId
from bot.ledger.budgets import spent_in
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
        """Return the USD spent: items' Gemini costs plus their chunks' RunPod costs, as the caps count it.

        The budgets' own sum (`bot.ledger.budgets.spend_by`) in dollars: each cost rounded to the micro-dollar, and
        a made image with no recorded cost at the price table's estimate.

        Args:
            owner_id: only the jobs of this user.
            guild_id: only the jobs started in this guild.
            since: only what was recorded at or after this moment.
            until: only what was recorded before this moment.
        """
        async with self._lock:
            micros = await spent_in(self._db, owner_id=owner_id, guild_id=guild_id, since=since, until=until)
        return micros / MICROS_PER_USD

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
