"""The client's retry delays: capped exponential growth with jitter, Retry-After honoured up to the cap."""

import pytest

from bot.runpod.client import Backoff


@pytest.mark.parametrize(
    ("attempt", "rand", "retry_after", "expected"),
    [
        (1, 0.0, None, 0.25),  # jitter keeps at least half of the ceiling
        (1, 0.999999, None, 0.5),
        (2, 0.0, None, 0.5),
        (4, 0.999999, None, 4.0),
        (10, 0.999999, None, 30.0),  # capped
        (1, 0.0, 3.0, 3.0),  # Retry-After longer than our delay wins
        (3, 0.999999, 0.1, 2.0),  # ...but never shortens it
        (1, 0.0, 120.0, 30.0),  # ...and never exceeds the cap
    ],
)
def test_delay_when_attempt_and_retry_after_vary(
    attempt: int, rand: float, retry_after: float | None, expected: float
) -> None:
    delay = Backoff(base_delay_s=0.5, cap_s=30.0).delay(attempt, rand=rand, retry_after_s=retry_after)

    assert delay == pytest.approx(expected, abs=1e-4)
