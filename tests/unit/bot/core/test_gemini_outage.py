"""Gemini's breaker: a run of UPSTREAM items makes it down, an answer resets the run, its items keep their attempts."""

from datetime import UTC, datetime, timedelta

from bot.core.events import ServiceDown, ServiceRestored
from bot.core.outage import (
    GeminiSignal,
    Outage,
    OutagePolicy,
    ServiceHealth,
    ServiceState,
    gemini_signal,
    held_by_outage,
    outage_of,
)
from worker.contract import ErrorCode, ItemError, ItemOk

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = OutagePolicy(down_after_failures=3)
WHY = "Gemini unreachable: ClientConnectorError"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def gemini() -> ServiceHealth:
    return ServiceHealth(service="gemini", policy=POLICY)


def state(h: ServiceHealth) -> ServiceState:
    """The breaker's state, read through a call (mypy would keep an assert's narrowing of the attribute)."""
    return h.state


def ok(index: int, *, skipped: bool = False) -> ItemOk:
    return ItemOk(index=index, key=f"out/{index}.png", width=8, height=8, skipped=skipped)


def error(index: int, code: ErrorCode = ErrorCode.UPSTREAM, message: str = WHY) -> ItemError:
    return ItemError(index=index, code=code, message=message, retryable=code.is_retryable)


def test_one_failure_under_the_threshold_tells_nothing_and_the_threshold_opens_the_breaker_once() -> None:
    h = gemini()
    assert h.failed(at(0), WHY) is None
    assert h.failed(at(5), WHY) is None  # two in a row: still an item's bad luck
    assert state(h) is ServiceState.UP
    down = h.failed(at(10), WHY)
    assert down == ServiceDown(service="gemini", since=at(10), reason=WHY)
    assert state(h) is ServiceState.DOWN
    assert h.failed(at(11), WHY, count=4) is None  # more of the same outage: told once


def test_several_failures_reported_together_count_each() -> None:
    h = gemini()
    assert h.failed(at(0), WHY, count=2) is None
    assert isinstance(h.failed(at(1), WHY, count=2), ServiceDown)
    assert isinstance(gemini().failed(at(0), WHY, count=3), ServiceDown)
    assert gemini().failed(at(0), WHY, count=0) is None


def test_an_answer_resets_the_run() -> None:
    h = gemini()
    h.failed(at(0), WHY, count=2)
    assert h.answered(at(1)) is None  # it was up: nothing to tell
    assert h.failed(at(2), WHY, count=2) is None  # the run starts again from nothing
    assert isinstance(h.failed(at(3), WHY), ServiceDown)


def test_the_first_answer_restores_once_and_failed_probes_back_off() -> None:
    h = gemini()
    h.failed(at(0), WHY, count=3)
    assert h.probe_due(at(1)) and not h.probe_due(at(0.5))
    h.failed(at(20), WHY)  # the probe item failed too: the next one waits twice as long
    assert not h.probe_due(at(21.9)) and h.probe_due(at(22))
    assert h.answered(at(30)) == ServiceRestored(service="gemini", down_for=timedelta(seconds=30))
    assert h.answered(at(31)) is None
    assert h.up and h.failures == 0
    assert h.failed(at(32), WHY, count=2) is None  # a new outage needs a new run


def test_an_outage_expires_like_runpods() -> None:
    h = gemini()
    h.failed(at(0), WHY, count=3)
    assert not h.outage_expired(at(599.9), batch=False)
    assert h.outage_expired(at(600), batch=False)
    assert not h.outage_expired(at(600), batch=True)


def test_what_results_say_of_gemini() -> None:
    assert gemini_signal([error(0), error(1), error(2, message="Gemini did not answer in time")]) == GeminiSignal(
        failures=3, reason="Gemini did not answer in time"
    )
    # An image made anywhere in the batch is an answer: results come in index order, not in the order they ended.
    assert gemini_signal([error(0), ok(1), error(2)]) == GeminiSignal(answered=True)
    for code in (ErrorCode.SAFETY, ErrorCode.NO_IMAGE, ErrorCode.RATE_LIMITED):
        assert gemini_signal([error(0), error(1, code)]).answered  # it answered, only not with an image
    # An image already stored and codes about other things say nothing of Gemini.
    for silent in (ErrorCode.BAD_INPUT, ErrorCode.STORAGE, ErrorCode.CONFIG):
        assert gemini_signal([ok(0, skipped=True), error(1, silent)]) == GeminiSignal()
    assert gemini_signal([]) == GeminiSignal()


def test_only_upstream_failures_during_an_outage_keep_their_attempt() -> None:
    h = gemini()
    assert not held_by_outage(ErrorCode.UPSTREAM, h)  # up: a failure is the item's, with backoff and an attempt
    h.failed(at(0), WHY, count=3)
    assert held_by_outage(ErrorCode.UPSTREAM, h)
    for code in (*(c for c in ErrorCode if c is not ErrorCode.UPSTREAM), None):
        assert not held_by_outage(code, h)
    h.answered(at(1))
    assert not held_by_outage(ErrorCode.UPSTREAM, h)


def test_the_outage_shown_is_runpods_first() -> None:
    runpod, g = ServiceHealth(service="runpod"), gemini()
    assert outage_of(runpod, g) is None
    g.failed(at(0), WHY, count=3)
    assert outage_of(runpod, g) == Outage(service="gemini", since=at(0), reason=WHY)
    runpod.unreachable(at(5), "cannot connect")
    assert outage_of(runpod, g) == Outage(service="runpod", since=at(5), reason="cannot connect")
