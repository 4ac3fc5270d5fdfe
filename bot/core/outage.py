"""Whether an outside service can be used now: a circuit breaker with probes on capped backoff (pure).

The dispatcher feeds it what its calls met, with the time; it answers what to do next and which once-per-incident
event to tell. RunPod's breaker is fed the client's own calls: one that finds RunPod unreachable after the client's
retries opens it. Gemini's is fed the items the workers report (the bot never calls Gemini itself): one item
failing `UPSTREAM` may be that item's bad luck, so it opens after `OutagePolicy.down_after_failures` of them in a
row with no answer from Gemini in between (`gemini_signal`). Three states:

```
        failure (unreachable)                   probe ok
   UP ─────────────────────────▶ DOWN ─────────────────────────▶ UP     (ServiceDown, then ServiceRestored)
    │  refusal (401/403/404)       │ refusal                    ▲
    └──────────────────────────▶ MISCONFIGURED ── probe ok ─────┘      (ConfigError, then ServiceRestored)
```

While not UP nothing is submitted and no chunk is polled: only one probe goes out, first after `first_probe`,
each later one after twice the wait, up to `probe_cap`. The first success closes the breaker. Events are returned
only when the state changes, so admins hear of an incident once, not once per job or per probe.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from bot.core.events import ConfigError, ServiceDown, ServiceEvent, ServiceRestored
from worker.contract import ErrorCode, ItemOk, ItemResult


class ServiceState(StrEnum):
    """What Peel knows about a service."""

    UP = "up"
    DOWN = "down"  # unreachable: connection refused, timeouts, 5xx after the client's retries
    MISCONFIGURED = "misconfigured"  # it answers, and refuses Peel's key or endpoint id


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """A configuration error: what was refused (`code`, `detail`) and what the operator should change (`fix`)."""

    code: str
    detail: str
    fix: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OutagePolicy:
    """How long jobs wait through an outage before their items that never reached the service fail."""

    fail_after: timedelta = timedelta(minutes=10)  # interactive jobs (/imagine and its buttons)
    fail_batch_after: timedelta = timedelta(hours=1)  # batches
    first_probe: timedelta = timedelta(seconds=1)
    probe_cap: timedelta = timedelta(seconds=30)
    # Items failing UPSTREAM in a row (each after the worker's own retries, ~15 s) that make Gemini down. One is an
    # item's bad luck; three with no answer between are 45 s of a dead service, so the message says so early.
    down_after_failures: int = 3

    def fail_after_for(self, *, batch: bool) -> timedelta:
        """Return how long a job of this kind waits through an outage."""
        return self.fail_batch_after if batch else self.fail_after


@dataclass(slots=True, kw_only=True)
class ServiceHealth:
    """The breaker of one service; every method takes the current time (tests pass their own)."""

    service: str
    policy: OutagePolicy = field(default_factory=OutagePolicy)
    state: ServiceState = ServiceState.UP
    since: datetime | None = None  # when the current incident began
    reason: str = ""
    refusal: Refusal | None = None
    next_probe_at: datetime | None = None
    probe_wait: timedelta = timedelta(0)
    failures: int = 0  # failures in a row since the service last answered, while it is UP

    @property
    def down(self) -> bool:
        """Tell whether the service is unreachable (an outage, not a refusal)."""
        return self.state is ServiceState.DOWN

    @property
    def up(self) -> bool:
        """Tell whether calls may go to the service."""
        return self.state is ServiceState.UP

    def unreachable(self, now: datetime, reason: str) -> ServiceEvent | None:
        """Record that a call found the service unreachable; return `ServiceDown` when this starts an outage.

        A failed probe of a DOWN service only pushes the next probe back. A MISCONFIGURED service that stops
        answering stays MISCONFIGURED: the refusal is what an operator must fix, and it is already told.
        """
        if self.state is ServiceState.UP:
            self.state, self.since, self.reason = ServiceState.DOWN, now, reason
            self._first_probe(now)
            return ServiceDown(service=self.service, since=now, reason=reason)
        self._later_probe(now)
        return None

    def failed(self, now: datetime, reason: str, *, count: int = 1) -> ServiceEvent | None:
        """Record `count` failures that may be the service's or the request's; return `ServiceDown` at the threshold.

        `down_after_failures` of them in a row, with no answer (`answered`) in between, start an outage. While the
        service is already not UP they are failed probes: only the next probe moves back.
        """
        if count <= 0:
            return None
        if self.state is not ServiceState.UP:
            return self.unreachable(now, reason)
        self.failures += count
        if self.failures < self.policy.down_after_failures:
            return None
        return self.unreachable(now, reason)

    def refused(self, now: datetime, refusal: Refusal) -> ServiceEvent | None:
        """Record a configuration error; return `ConfigError` when it is new (first one, or a different one)."""
        if self.state is ServiceState.MISCONFIGURED and self.refusal == refusal:
            self._later_probe(now)
            return None
        if self.state is ServiceState.UP:
            self.since = now
        self.state, self.refusal, self.reason = ServiceState.MISCONFIGURED, refusal, refusal.detail
        self._first_probe(now)
        return ConfigError(service=self.service, code=refusal.code, detail=refusal.detail, fix=refusal.fix)

    def answered(self, now: datetime) -> ServiceEvent | None:
        """Record a successful call; return `ServiceRestored` when it ends an incident."""
        self.failures = 0
        if self.state is ServiceState.UP:
            return None
        since = self.since or now
        self.state, self.since, self.reason, self.refusal = ServiceState.UP, None, "", None
        self.next_probe_at, self.probe_wait = None, timedelta(0)
        return ServiceRestored(service=self.service, down_for=now - since)

    def probe_due(self, now: datetime) -> bool:
        """Tell whether the breaker is open and its next probe may go out now."""
        return not self.up and (self.next_probe_at is None or now >= self.next_probe_at)

    def outage_expired(self, now: datetime, *, batch: bool) -> bool:
        """Tell whether the service has been unreachable long enough that jobs of this kind give up waiting.

        Only an outage counts: a misconfigured service fails jobs at once (the dispatcher does that).
        """
        if self.state is not ServiceState.DOWN or self.since is None:
            return False
        return now - self.since >= self.policy.fail_after_for(batch=batch)

    def _first_probe(self, now: datetime) -> None:
        self.probe_wait = self.policy.first_probe
        self.next_probe_at = now + self.probe_wait

    def _later_probe(self, now: datetime) -> None:
        self.probe_wait = min(self.policy.probe_cap, max(self.policy.first_probe, self.probe_wait * 2))
        self.next_probe_at = now + self.probe_wait


@dataclass(frozen=True, slots=True, kw_only=True)
class Outage:
    """What holds jobs now: which service (`runpod`, `gemini`) has been unreachable since when, and why."""

    service: str
    since: datetime
    reason: str


def outage_of(*services: ServiceHealth) -> Outage | None:
    """Return the first of `services` that is unreachable (pass the one nearer the bot first), or None."""
    for health in services:
        if health.state is ServiceState.DOWN and health.since is not None:
            return Outage(service=health.service, since=health.since, reason=health.reason)
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class GeminiSignal:
    """What a batch of item results says about Gemini: it answered, or how many items it failed (and the last why)."""

    answered: bool = False
    failures: int = 0
    reason: str = ""


# Codes that mean Gemini answered, only not with an image: it is up.
_ANSWERS = frozenset({ErrorCode.SAFETY, ErrorCode.NO_IMAGE, ErrorCode.RATE_LIMITED})


def gemini_signal(results: Iterable[ItemResult]) -> GeminiSignal:
    """Read what the results a worker reported say about Gemini.

    An image made (not one found already stored), a block, an answer without an image or a 429 is Gemini
    answering, and a batch holding one is an answer whatever else it holds (its items finished in an order the
    list does not keep). Otherwise each `UPSTREAM` item (connection failures, timeouts, 5xx, malformed answers,
    after the worker's own retries) is a failure. Other codes say nothing about Gemini: a missing reference,
    the store, a refused key (told apart as `CONFIG`).
    """
    failures, reason = 0, ""
    for result in results:
        if isinstance(result, ItemOk):
            if not result.skipped:
                return GeminiSignal(answered=True)
        elif result.code in _ANSWERS:
            return GeminiSignal(answered=True)
        elif result.code is ErrorCode.UPSTREAM:
            failures, reason = failures + 1, result.message
    return GeminiSignal(failures=failures, reason=reason)


def held_by_outage(code: ErrorCode | None, gemini: ServiceHealth) -> bool:
    """Tell whether an item's failure is Gemini's outage, not the item's: it waits again without using an attempt.

    Only while Gemini is down, and only for `UPSTREAM` (what an outage makes items fail with); the item is failed
    as `UNAVAILABLE` instead when the outage outlasts its job's wait (`ServiceHealth.outage_expired`).
    """
    return code is ErrorCode.UPSTREAM and gemini.down
