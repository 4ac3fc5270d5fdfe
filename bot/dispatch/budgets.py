"""Budgets while jobs run: chunks sized to the money left, a job paused at its cap, reservations settled.

A job reserved its estimate when it was created. What it actually costs is what the ledger records (Gemini's
reported usage priced, its chunks' RunPod seconds: `bot.ledger.budgets.spend_by`), which may exceed the estimate
(and other jobs spend too), so each job with a reservation is asked again, under the caps in force now (admins'
changes since it was admitted count, with the roles its owner had then: `use_caps`), against everything spent and
every other job's outstanding reservation (its own left out, as that is what it is spending now):
- before a chunk (or a relax part) is submitted, it holds at most the images that fit beside the job's images in
  flight;
- in the budget pass (when something was recorded or submitted since the last, or every `budget_pass_every`), a
  job without room for one more image pauses: its stop marker is written, so its chunks in flight start no new
  Gemini call, and `JobPaused` names the cap and when it resets.
Spend past a cap is then at most the calls that were in flight when it was reached, plus the RunPod seconds of
their chunks until the workers stop. A relax part is sized the same way (`RelaxMixin._schedule_relax`).
"""

import logging
from dataclasses import replace
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.core.budgets import BudgetHold, Limit, Refused, check, micros, room
from bot.core.events import JobPaused
from bot.core.models import Job, JobStatus
from bot.dispatch.admission import AdmissionMixin
from bot.dispatch.relax import RelaxMixin
from worker.contract import model_spec

log = logging.getLogger(__name__)


def image_cost(job: Job) -> int:
    """Return the price table's cost of one more image of a job (its size and mode), in micro-dollars."""
    price = model_spec(job.params.model).price(job.params.image_size, batch=job.params.relax)
    return 0 if price is None else micros(price)


class CapsInForce(Protocol):
    """Where the caps in force now come from (`bot.app.budgets.BudgetService`: the settings and admins' changes)."""

    async def limits_now(
        self, *, owner_id: int, guild_id: int | None, role_ids: frozenset[int], is_admin: bool
    ) -> tuple[tuple[Limit, ...], ZoneInfo]:
        """Return the caps that apply now to a user (with the roles they had when their job was admitted)."""
        ...


class BudgetsMixin(AdmissionMixin, RelaxMixin):
    """Sizes chunks to the money left, pauses jobs at their caps and settles reservations."""

    _caps_in_force: CapsInForce | None = None

    def use_caps(self, caps: CapsInForce) -> None:
        """Read running jobs' caps from `caps` from now on, so an admin's change reaches jobs already running.

        Without it (a dispatcher alone, in tests) a job runs under the caps it was admitted with.
        """
        self._caps_in_force = caps

    async def _hold_now(self, job: Job) -> BudgetHold | None:
        """Return the caps a running job answers to now (None: no reservation, or no cap applies)."""
        found = await self._ledger.reservation(job.id)
        if found is None:
            return None
        _, hold = found
        if self._caps_in_force is not None:
            limits, tz = await self._caps_in_force.limits_now(
                owner_id=job.owner_id, guild_id=job.guild_id, role_ids=hold.role_ids, is_admin=hold.is_admin
            )
            hold = replace(hold, limits=limits, tz=tz)
        return hold if hold.limits else None

    async def _enforce_budgets(self) -> None:
        """Settle the reservations of ended jobs, then pause each running job that has no room for one more image.

        Only when something may have changed since the last pass (`_spend_changed`) or `budget_pass_every` after it:
        nothing else moves spend or reservations, so a round with nothing new would find what the last pass found.
        """
        now = self._clock.now()
        last = self._budget_pass_at
        if not self._budget_due and last is not None and now - last < self._policy.budget_pass_every:
            return
        self._budget_due, self._budget_pass_at = False, now
        await self._ledger.settle_reservations(now=now)
        for reservation in await self._ledger.open_reservations():
            job = await self._ledger.get_job(reservation.job_id)
            if job is None or job.status not in (JobStatus.QUEUED, JobStatus.RUNNING) or job.remaining <= 0:
                continue
            refused = await self.budget_refusal(job)
            if refused is not None:
                await self._pause_for_budget(job, refused)

    async def _room(self, job: Job) -> int | None:
        """Return what the job may still spend under the caps in force (None: no cap or no reservation)."""
        hold = await self._hold_now(job)
        if hold is None:
            return None
        used = await self._ledger.budget_usage(
            owner_id=job.owner_id, guild_id=job.guild_id, now=self._clock.now(), hold=hold, except_job=job.id
        )
        return room(hold.limits, used)

    async def budget_refusal(self, job: Job) -> Refused | None:
        """Return the cap a job's next image would take over (under the caps in force now), or None."""
        hold = await self._hold_now(job)
        if hold is None:
            return None  # no cap applies to it: nothing to read
        now = self._clock.now()
        used = await self._ledger.budget_usage(
            owner_id=job.owner_id, guild_id=job.guild_id, now=now, hold=hold, except_job=job.id
        )
        decision = check(image_cost(job), hold.limits, used, hold.resets(now))
        return decision if isinstance(decision, Refused) else None

    async def _affordable(self, job: Job, size: int) -> int:
        """Return how many of `size` items fit the job's money caps beside its images in flight."""
        left, cost = await self._room(job), image_cost(job)
        if left is None or cost == 0:
            return size
        fits = left // cost - await self._ledger.items_in_flight(job.id)
        return max(0, min(size, fits))

    async def _pause_for_budget(self, job: Job, refused: Refused) -> None:
        paused, changed = await self._ledger.set_job_status(
            job.id, JobStatus.PAUSED, expect=(JobStatus.QUEUED, JobStatus.RUNNING)
        )
        if not changed:
            return
        await self._write_stop_marker(job.id, "budget")
        log.info(
            "job %s paused at its %s %s cap",
            job.id,
            refused.scope,
            refused.period,
            extra={"job_id": job.id, "action": "pause"},
        )
        self._events.publish(JobPaused(job=paused, budget=refused))
