from datetime import timedelta

import pytest

from bot.core.retry import RetryPolicy
from worker.contract import ErrorCode

POLICY = RetryPolicy(max_attempts=4, base_delay=timedelta(seconds=10), cap=timedelta(seconds=30))


@pytest.mark.parametrize(
    ("attempts", "code", "expected"),
    [
        (1, ErrorCode.RATE_LIMITED, timedelta(seconds=10)),
        (2, ErrorCode.UPSTREAM, timedelta(seconds=20)),
        (3, ErrorCode.NO_IMAGE, timedelta(seconds=30)),  # 40 s capped
        (4, ErrorCode.UPSTREAM, None),  # out of attempts
        (1, ErrorCode.SAFETY, None),  # never retried
        (1, ErrorCode.BAD_INPUT, None),
        (1, None, timedelta(seconds=10)),  # lost chunk: retryable
        (0, None, timedelta(seconds=10)),
    ],
)
def test_decide_when_attempts_and_code_vary(attempts: int, code: ErrorCode | None, expected: timedelta | None) -> None:
    assert POLICY.decide(attempts=attempts, code=code) == expected
