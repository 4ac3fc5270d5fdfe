from datetime import UTC, datetime, timedelta

import pytest

from bot.core.budget import AimdBudget

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_window_starts_at_limit_when_created() -> None:
    budget = AimdBudget(limit=10)

    assert budget.allowed == 10
    assert budget.available(3) == 7
    assert budget.available(12) == 0


def test_init_refuses_when_limit_below_one() -> None:
    with pytest.raises(ValueError, match="at least one"):
        AimdBudget(limit=0)


def test_init_clamps_window_when_given_out_of_range() -> None:
    assert AimdBudget(limit=4, window=9).allowed == 4
    assert AimdBudget(limit=4, window=0).window == 4  # unset → the limit
    assert AimdBudget(limit=4, window=0.2).window == 1  # never below one


def test_on_rate_limited_halves_when_outside_cooldown() -> None:
    budget = AimdBudget(limit=16, decrease_cooldown=timedelta(seconds=10))

    assert budget.on_rate_limited(T0) is True
    assert budget.allowed == 8
    assert budget.on_rate_limited(T0 + timedelta(seconds=5)) is False  # same burst
    assert budget.allowed == 8
    assert budget.on_rate_limited(T0 + timedelta(seconds=10)) is True
    assert budget.allowed == 4


def test_on_rate_limited_never_goes_below_one_when_repeated() -> None:
    budget = AimdBudget(limit=3, decrease_cooldown=timedelta(0))
    for i in range(10):
        budget.on_rate_limited(T0 + timedelta(seconds=i))

    assert budget.window == 1.0
    assert budget.on_rate_limited(T0 + timedelta(seconds=99)) is False
    assert budget.allowed == 1


def test_on_success_grows_additively_and_caps_at_limit_when_chunks_finish_well() -> None:
    budget = AimdBudget(limit=10, window=4)

    budget.on_success()
    assert budget.allowed == 5
    for _ in range(20):
        budget.on_success()
    assert budget.window == 10.0


@pytest.mark.parametrize(
    ("items", "in_flight", "contenders", "max_chunk", "expected"),
    [
        (4, 0, 1, None, 4),  # never more than the chunk's items
        (25, 0, 1, None, 10),  # the whole window for a lone job
        (25, 0, 2, None, 5),  # fair share
        (25, 8, 1, None, 2),  # what is left
        (25, 10, 1, None, 0),  # no room
        (25, 0, 1, 8, 8),  # per-chunk ceiling
        (25, 0, 50, None, 1),  # share never below one
    ],
)
def test_chunk_concurrency_when_budget_is_shared(
    items: int, in_flight: int, contenders: int, max_chunk: int | None, expected: int
) -> None:
    budget = AimdBudget(limit=10, max_chunk_concurrency=max_chunk)

    assert budget.chunk_concurrency(items=items, in_flight=in_flight, contenders=contenders) == expected
