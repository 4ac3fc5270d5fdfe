"""The RunPod breaker: once-per-incident events, probes on capped backoff, and when waiting jobs give up."""

from datetime import UTC, datetime, timedelta

from bot.core.events import ConfigError, ServiceDown, ServiceRestored
from bot.core.outage import OutagePolicy, Refusal, ServiceHealth, ServiceState

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = OutagePolicy(
    fail_after=timedelta(seconds=600),
    fail_batch_after=timedelta(seconds=3600),
    first_probe=timedelta(seconds=1),
    probe_cap=timedelta(seconds=30),
)
KEY = Refusal(code="RUNPOD_AUTH", detail="401", fix="set RUNPOD_API_KEY")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def health() -> ServiceHealth:
    return ServiceHealth(service="runpod", policy=POLICY)


def test_the_first_failure_opens_the_breaker_and_is_told_once() -> None:
    h = health()
    first = h.unreachable(at(0), "connection refused")
    assert first == ServiceDown(service="runpod", since=at(0), reason="connection refused")
    assert not h.up
    assert h.unreachable(at(1), "connection refused") is None
    assert h.unreachable(at(5), "timeout") is None
    assert h.since == at(0)


def test_probes_back_off_from_one_second_to_the_cap() -> None:
    h = health()
    h.unreachable(at(0), "down")
    assert not h.probe_due(at(0.999))
    assert h.probe_due(at(1))
    waits = []
    now = at(1)
    for _ in range(8):
        h.unreachable(now, "still down")
        assert h.next_probe_at is not None
        waits.append((h.next_probe_at - now).total_seconds())
        now = h.next_probe_at
    assert waits == [2, 4, 8, 16, 30, 30, 30, 30]


def test_an_up_service_has_no_probe_due() -> None:
    assert not health().probe_due(at(0))


def test_the_first_success_restores_once_and_says_how_long_it_was_down() -> None:
    h = health()
    h.unreachable(at(0), "down")
    restored = h.answered(at(240))
    assert restored == ServiceRestored(service="runpod", down_for=timedelta(minutes=4))
    assert h.up and h.since is None and h.next_probe_at is None
    assert h.answered(at(241)) is None
    # A later outage starts again at the first probe wait.
    h.unreachable(at(300), "down again")
    assert h.next_probe_at == at(301)


def test_interactive_jobs_give_up_at_fail_after_and_not_a_moment_before() -> None:
    h = health()
    h.unreachable(at(0), "down")
    assert not h.outage_expired(at(599.999), batch=False)
    assert h.outage_expired(at(600), batch=False)
    assert not h.outage_expired(at(3599.999), batch=True)
    assert h.outage_expired(at(3600), batch=True)


def test_nothing_expires_while_up() -> None:
    h = health()
    assert not h.outage_expired(at(10_000), batch=False)
    h.unreachable(at(0), "down")
    h.answered(at(1))
    assert not h.outage_expired(at(10_000), batch=False)


def test_a_refusal_is_a_config_error_told_once_and_never_an_expiring_outage() -> None:
    h = health()
    event = h.refused(at(0), KEY)
    assert event == ConfigError(service="runpod", code="RUNPOD_AUTH", detail="401", fix="set RUNPOD_API_KEY")
    assert h.state is ServiceState.MISCONFIGURED
    assert h.refused(at(1), KEY) is None
    assert not h.outage_expired(at(10_000), batch=False)
    assert not h.probe_due(at(2.999))
    assert h.probe_due(at(3))


def test_a_different_refusal_is_told_too() -> None:
    h = health()
    h.refused(at(0), KEY)
    other = Refusal(code="RUNPOD_ENDPOINT", detail="404", fix="set RUNPOD_ENDPOINT_ID")
    assert isinstance(h.refused(at(1), other), ConfigError)


def test_an_outage_that_turns_into_a_refusal_is_told_as_one() -> None:
    h = health()
    h.unreachable(at(0), "down")
    assert isinstance(h.refused(at(10), KEY), ConfigError)
    # Unreachable again while misconfigured: the refusal stands, nothing new to tell.
    assert h.unreachable(at(20), "down") is None
    assert h.state is ServiceState.MISCONFIGURED
    assert h.answered(at(70)) == ServiceRestored(service="runpod", down_for=timedelta(seconds=70))
