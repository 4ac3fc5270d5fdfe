import pytest

from bot.core.admission import REFUSAL_TITLE, Admission, CapPolicy, Caps, refusal_message
from bot.core.models import UserLoad


@pytest.mark.parametrize(
    ("running", "waiting", "expected"),
    [
        (0, 0, Admission.QUEUED),
        (2, 0, Admission.QUEUED),
        (3, 0, Admission.WAITING),  # over the running cap: the job waits
        (3, 9, Admission.WAITING),
        (3, 10, Admission.REFUSED),  # over the waiting cap: refused
        (1, 2, Admission.WAITING),  # a slot is free, but older jobs wait for it first
        (2, 10, Admission.REFUSED),
    ],
)
def test_admit_when_user_load_varies(running: int, waiting: int, expected: Admission) -> None:
    caps = Caps(max_running=3, max_waiting=10)

    assert caps.admit(UserLoad(running=running, waiting=waiting)) is expected


def test_admit_never_refuses_when_caps_are_unlimited() -> None:
    caps = CapPolicy().caps_for(is_admin=True)

    assert caps.admit(UserLoad(running=1000, waiting=1000)) is Admission.WAITING  # behind older waiting jobs
    assert caps.admit(UserLoad(running=1000, waiting=0)) is Admission.QUEUED


def test_admit_refuses_when_waiting_cap_is_zero_and_running_is_full() -> None:
    caps = Caps(max_running=1, max_waiting=0)

    assert caps.admit(UserLoad(running=1, waiting=0)) is Admission.REFUSED


@pytest.mark.parametrize(
    ("caps", "running", "waiting", "expected"),
    [
        (Caps(max_running=3), 1, 5, 2),
        (Caps(max_running=3), 3, 5, 0),
        (Caps(max_running=3), 4, 5, 0),
        (Caps(max_running=3), 0, 1, 1),
        (Caps(max_running=None), 9, 4, 4),
    ],
)
def test_promotable_when_slots_free(caps: Caps, running: int, waiting: int, expected: int) -> None:
    assert caps.promotable(UserLoad(running=running, waiting=waiting)) == expected


def test_caps_for_returns_raised_caps_when_admin() -> None:
    policy = CapPolicy(user=Caps(max_running=1, max_waiting=1), admin=Caps(max_running=10, max_waiting=50))

    assert policy.caps_for(is_admin=False).max_running == 1
    assert policy.caps_for(is_admin=True).max_waiting == 50


def test_refusal_message_names_the_cap_when_refused() -> None:
    assert "10 jobs waiting" in refusal_message(Caps(max_waiting=10))
    assert REFUSAL_TITLE.lower() not in refusal_message(Caps()).lower()  # shown under the title, not repeating it


def test_admits_all_counts_running_slots_then_waiting_ones() -> None:
    caps = Caps(max_running=3, max_waiting=10)
    assert caps.admits_all(UserLoad(running=0, waiting=0), 13)
    assert not caps.admits_all(UserLoad(running=0, waiting=0), 14)
    assert caps.admits_all(UserLoad(running=3, waiting=9), 1)
    assert not caps.admits_all(UserLoad(running=3, waiting=9), 2)
    assert Caps(max_running=None, max_waiting=None).admits_all(UserLoad(running=50, waiting=50), 1000)
