"""Outages and configuration errors: the breakers' I/O, the once-per-incident alerts, and giving up on jobs.

The decisions are `bot.core.outage.ServiceHealth`'s, one for RunPod and one for Gemini. This mixin feeds RunPod's
what the dispatcher's calls met and probes RunPod's `/health` while it is open; it feeds Gemini's what the items
the workers report say of Gemini (`gemini_signal`: a run of `UPSTREAM` failures opens it, an image closes it; its
probes are single items, sent by `SchedulingMixin`). It publishes their events (and logs them once at ERROR), and
fails the items that never reached RunPod, or wait for Gemini: at once on a RunPod configuration error, after
`OutagePolicy.fail_after` (interactive) or `fail_batch_after` (batches) of continuous outage. Items in chunks RunPod
accepted stay: their results come when RunPod answers again.
"""

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.core.events import ConfigError, ServiceDown, ServiceEvent, ServiceRestored
from bot.core.item_errors import item_error_message
from bot.core.models import Job, JobKind, JobStatus
from bot.core.outage import Outage, Refusal, ServiceHealth, ServiceState, gemini_signal, outage_of
from bot.core.render import format_duration, service_name
from bot.dispatch.base import DispatcherBase
from bot.runpod.errors import RunpodAuthError, RunpodError, RunpodRejectedError, RunpodUnavailableError
from worker.contract import ErrorCode, ItemResult

log = logging.getLogger(__name__)

_PAGE = 500  # unsent items failed per ledger call
_EVER = timedelta(days=36500)  # "due by then" = every pending item, those in backoff included


def runpod_busy(exc: RunpodError) -> bool:
    """Tell whether a failed call met RunPod busy: 429 after the client's retries (a full queue, a rate limit)."""
    return isinstance(exc, RunpodUnavailableError) and exc.status_code == 429


class OutageMixin(DispatcherBase):
    """Keeps the RunPod and Gemini breakers, and fails what cannot run."""

    @property
    def outage(self) -> Outage | None:
        """The outage every waiting job is delayed by now: RunPod's first (nothing reaches Gemini without it)."""
        return outage_of(self._runpod, self._gemini)

    @property
    def runpod_down_since(self) -> datetime | None:
        """When RunPod became unreachable, while it is; None when it answers (or refuses Peel's configuration)."""
        health = self._runpod
        return health.since if health.state is ServiceState.DOWN else None

    @property
    def runpod_down_reason(self) -> str:
        """Why RunPod is unreachable or refused (the operator's detail); empty while it answers."""
        return self._runpod.reason

    @property
    def runpod_refusal(self) -> Refusal | None:
        """What RunPod refused of Peel's configuration and how to fix it, while it does."""
        return self._runpod.refusal if self._runpod.state is ServiceState.MISCONFIGURED else None

    @property
    def runpod_misconfigured(self) -> bool:
        """Tell whether RunPod refuses Peel's key or endpoint id (new jobs are refused until a probe succeeds)."""
        return self._runpod.state is ServiceState.MISCONFIGURED

    def _runpod_failed(self, exc: RunpodError) -> bool:
        """Feed a failed RunPod call to the breaker; return True when the failure concerns the service (it is open).

        A 429 after the client's retries is RunPod busy (`runpod_busy`): held, but no outage. Unreachable
        (connection refused, timeouts, 5xx after the client's retries) is an outage; 401/403
        (the key) and 404 on `/run` or `/health` (the endpoint id) are configuration errors. Other refusals concern
        one request only and leave the breaker as it is.
        """
        now = self._clock.now()
        if runpod_busy(exc):
            # RunPod answers: its queue is full or a rate limit holds. That is no outage: opening the breaker would
            # close it again at the next /health and flap, alerting each time. The caller backs off instead.
            log.info("runpod is busy: %s", exc, extra={"action": "busy"})
        elif isinstance(exc, RunpodUnavailableError):
            self._tell(self._runpod.unreachable(now, str(exc)))
        elif isinstance(exc, RunpodAuthError):
            self._tell(self._runpod.refused(now, self._auth_refusal(exc)))
        elif isinstance(exc, RunpodRejectedError) and exc.status_code == 404:
            self._tell(
                self._runpod.refused(
                    now,
                    Refusal(
                        code="RUNPOD_ENDPOINT",
                        detail=f"RunPod does not know the endpoint {self._endpoint_name()} (HTTP 404)",
                        fix="set RUNPOD_ENDPOINT_ID to the id of an endpoint on RunPod's Serverless page",
                    ),
                )
            )
        else:
            return False
        return True

    def _auth_refusal(self, exc: RunpodAuthError) -> Refusal:
        return Refusal(
            code="RUNPOD_AUTH",
            detail=f"RunPod refused RUNPOD_API_KEY (HTTP {exc.status_code})",
            fix=f"set RUNPOD_API_KEY to a key with access to the endpoint {self._endpoint_name()}",
        )

    def _endpoint_name(self) -> str:
        url = getattr(self._gateway, "endpoint_url", "")
        return str(url).rstrip("/").rsplit("/", 1)[-1] or "(unknown)"

    async def _probe_runpod(self) -> None:
        """While the breaker is open, ask RunPod's `/health` when the backoff allows; the first answer closes it."""
        if not self._runpod.probe_due(self._clock.now()):
            return
        try:
            await self._gateway.health(once=True)  # the breaker's backoff is the retry loop: no retries within
        except RunpodError as exc:
            log.info("runpod probe failed: %s", exc, extra={"action": "probe"})
            if self._runpod_failed(exc):
                return
            # Neither an outage nor a configuration error (an odd answer): RunPod answers, so calls may go again.
        self._tell(self._runpod.answered(self._clock.now()))

    def _gemini_refused(self, message: str) -> None:
        """A worker reported Gemini refusing its key or model: tell the admins once per incident."""
        refusal = Refusal(
            code="GEMINI_CONFIG",
            detail=f"Gemini refused the worker's request: {message[:200]}",
            fix="set GEMINI_API_KEY on the RunPod endpoint to a valid key, and GEMINI_MODEL to a model it can use",
        )
        self._tell(self._gemini.refused(self._clock.now(), refusal))

    async def _watch_gemini(self, results: Sequence[ItemResult]) -> None:
        """Feed Gemini's breaker what newly reported item results say of Gemini (`gemini_signal`)."""
        signal = gemini_signal(results)
        now = self._clock.now()
        if signal.answered:
            restored = self._gemini.answered(now)
            self._tell(restored)
            if isinstance(restored, ServiceRestored):
                # The items that failed before the run of failures was long enough to open the breaker still wait
                # out their own backoff (up to minutes): Gemini is back, so they go now with the rest.
                await self._ledger.release_backoff(code=ErrorCode.UPSTREAM.value, now=now)
        elif signal.failures:
            self._tell(self._gemini.failed(now, signal.reason, count=signal.failures))

    def _tell(self, event: ServiceEvent | None) -> None:
        """Log an incident's change once (ERROR when it begins) and publish it to the front ends."""
        if event is None:
            return
        if isinstance(event, ServiceDown):
            log.error(
                "%s unreachable since %s (%s); waiting jobs are delayed, probing until it answers",
                service_name(event.service),
                event.since.isoformat(timespec="seconds"),
                event.reason,
                extra={"action": "outage"},
            )
        elif isinstance(event, ConfigError):
            log.error(
                "%s: %s; fix: %s", service_name(event.service), event.detail, event.fix, extra={"action": "config"}
            )
        elif isinstance(event, ServiceRestored):
            log.warning(
                "%s is back after %s",
                service_name(event.service),
                format_duration(event.down_for.total_seconds()),
                extra={"action": "restored"},
            )
        self._events.publish(event)

    async def _give_up_unsent(self) -> None:
        """Fail the unsent items of jobs that cannot run: all on a configuration error, the overdue on an outage.

        Unsent includes the items sent back to wait for Gemini: during its outage they wait unsent, but for a probe.
        """
        misconfigured = self._runpod.state is ServiceState.MISCONFIGURED
        if not misconfigured and self.outage is None:
            return
        now = self._clock.now()
        for job in await self._ledger.unfinished_jobs():
            if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
                continue  # paused and waiting jobs send nothing; they meet the breaker when they go on
            if misconfigured:
                await self._fail_unsent(job, ErrorCode.CONFIG, self._runpod.reason, now)
            elif (expired := self._expired(now, batch=job.kind is JobKind.BATCH)) is not None:
                reason = f"{service_name(expired.service)} unreachable since {expired.since}: {expired.reason}"
                await self._fail_unsent(job, ErrorCode.UNAVAILABLE, reason, now)

    def _expired(self, now: datetime, *, batch: bool) -> ServiceHealth | None:
        """Return the breaker whose outage has lasted longer than a job of this kind waits, if one has."""
        return next((h for h in (self._runpod, self._gemini) if h.outage_expired(now, batch=batch)), None)

    async def _fail_unsent(self, job: Job, code: ErrorCode, message: str, now: datetime) -> int:
        """Fail every pending item of a job (those in backoff too) with `code`; return how many failed."""
        failed = 0
        while items := await self._ledger.ready_items(job.id, now=now + _EVER, limit=_PAGE):
            await self._fail_items(job, items, code, message[:500], now)
            failed += len(items)
        if failed:
            log.warning(
                "job %s: %d unsent item(s) failed (%s): %s",
                job.id,
                failed,
                code.value,
                item_error_message(code.value),
                extra={"job_id": job.id, "action": "give_up"},
            )
        return failed
