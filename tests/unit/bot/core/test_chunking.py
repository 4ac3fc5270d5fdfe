import pytest

from bot.core.chunking import ChunkPolicy
from bot.core.models import Priority


@pytest.mark.parametrize(
    ("remaining", "priority", "expected"),
    [
        (0, Priority.BATCH, 0),
        (4, Priority.INTERACTIVE, 4),
        (1, Priority.INTERACTIVE, 1),
        (9, Priority.INTERACTIVE, 4),
        (5, Priority.BATCH, 5),  # a small batch goes whole
        (25, Priority.BATCH, 25),
        (26, Priority.BATCH, 13),  # balanced, not 25 + 1
        (30, Priority.BATCH, 15),
        (51, Priority.BATCH, 17),
        (2000, Priority.BATCH, 25),
    ],
)
def test_next_chunk_size_when_remaining_varies(remaining: int, priority: Priority, expected: int) -> None:
    assert ChunkPolicy().next_chunk_size(remaining, priority) == expected


def test_next_chunk_size_stays_within_bounds_when_batch_exceeds_a_chunk() -> None:
    policy = ChunkPolicy()
    for remaining in range(26, 600):
        size = policy.next_chunk_size(remaining, Priority.BATCH)
        assert policy.min_batch_items <= size <= policy.max_batch_items


@pytest.mark.parametrize(
    ("items", "concurrency", "expected_ms"),
    [
        (4, 4, 120_000),  # 60 + 1 round * 20 * 2 = 100 s, raised to the 120 s floor
        (25, 5, 260_000),  # 60 + 5 rounds * 40 s
        (25, 1, 1_060_000),
        (1000, 1, 3_600_000),  # capped
        (0, 0, 120_000),
    ],
)
def test_execution_timeout_when_items_and_concurrency_vary(items: int, concurrency: int, expected_ms: int) -> None:
    assert ChunkPolicy().execution_timeout_ms(items, concurrency) == expected_ms


def test_ttl_adds_queue_allowance_when_computed() -> None:
    policy = ChunkPolicy(queue_allowance_s=600)

    assert policy.ttl_ms(25, 5) == policy.execution_timeout_ms(25, 5) + 600_000
