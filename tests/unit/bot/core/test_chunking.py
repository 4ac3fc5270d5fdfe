import pytest

from bot.core.chunking import ChunkPolicy, RoundTime
from worker.contract import MAX_ITEMS_PER_CHUNK


@pytest.mark.parametrize(("remaining", "expected"), [(0, 0), (1, 1), (4, 4), (9, 4)])
def test_interactive_chunk_takes_up_to_a_grid_when_remaining_varies(remaining: int, expected: int) -> None:
    assert ChunkPolicy().interactive_chunk_size(remaining) == expected


def size(ready: int, *, concurrency: int = 8, round_s: float = 20.0, window: int = 50, left: int = 0) -> int:
    return ChunkPolicy().batch_chunk_size(
        ready=ready, left=left, concurrency=concurrency, round_s=round_s, window=window
    )


@pytest.mark.parametrize(
    ("round_s", "expected"),
    [
        (20.0, 24),  # 60 s of 20 s rounds: 3 rounds of 8 (about the plan's first 10-25 items)
        (10.0, 48),
        (60.0, 8),  # a round longer than the target: still one whole round
        (0.5, 256),  # 120 rounds wanted: as many items as the worker takes
    ],
)
def test_batch_chunk_lasts_about_the_target_when_the_round_time_varies(round_s: float, expected: int) -> None:
    assert size(100_000, round_s=round_s) == expected


def test_batch_chunk_is_whole_rounds_unless_it_takes_all_that_is_ready() -> None:
    assert size(100_000, concurrency=7, round_s=0.5) == 252  # 256 cut to 36 rounds of 7
    assert size(30, concurrency=8, round_s=0.5, window=8) == 30  # the rest, whatever its last round


def test_batch_chunks_near_the_end_spread_what_is_left_over_the_window() -> None:
    # 400 items over 50 calls: 8 rounds each, so every chunk ends about together instead of one taking 32 rounds.
    assert size(400, round_s=0.5) == 64
    # What chunks already running still have to do counts too: 100 ready but 500 left is 10 rounds.
    assert size(100, left=500, round_s=0.5) == 80
    assert size(3, round_s=0.5) == 3
    # A share need not be whole rounds: 856 left over 50 calls is 17.1 items a call, 137 for 8 calls, 35 for 2.
    assert size(856, round_s=0.5) == 137
    assert size(34, left=856, concurrency=2, round_s=0.5) == 34


def test_last_wave_of_a_batch_takes_all_that_is_left_and_ends_together() -> None:
    # The dispatcher sizes one chunk after another, counting what it just submitted as running.
    policy, ready, running, wave = ChunkPolicy(), 856, 0, []
    for concurrency in (8, 8, 8, 8, 8, 8, 2):
        got = policy.batch_chunk_size(
            ready=ready, left=ready + running, concurrency=concurrency, round_s=0.5, window=50
        )
        wave.append(got)
        ready, running = ready - got, running + got

    assert sum(wave) == 856
    per_call = [got / concurrency for got, concurrency in zip(wave, (8, 8, 8, 8, 8, 8, 2), strict=True)]
    assert max(per_call) - min(per_call) <= 1.0  # within a round of each other


def test_batch_chunk_is_empty_when_nothing_is_ready_or_no_call_is_free() -> None:
    assert size(0) == 0
    assert size(10, concurrency=0) == 0


def test_batch_chunk_never_exceeds_what_the_worker_accepts_whatever_the_inputs() -> None:
    for ready in (1, 7, 99, 1000, 50_000):
        for concurrency in (1, 3, 8, 50, 256, 300):
            for round_s in (0.01, 0.5, 5.0, 100.0):
                got = size(ready, concurrency=concurrency, round_s=round_s, window=max(concurrency, 50))
                assert 1 <= got <= min(ready, MAX_ITEMS_PER_CHUNK)


def test_round_time_moves_toward_what_chunks_report_and_ignores_empty_reports() -> None:
    rounds = RoundTime(seconds=20.0)
    rounds.observe(execution_ms=None, made=8, concurrency=8)
    rounds.observe(execution_ms=5_000, made=0, concurrency=8)  # every output existed: no call was made
    assert rounds.seconds == 20.0

    rounds.observe(execution_ms=1_500, made=24, concurrency=8)  # the first report replaces the assumption
    assert rounds.seconds == pytest.approx(0.5)
    for _ in range(30):
        rounds.observe(execution_ms=1_700, made=24, concurrency=8)  # 3 rounds in 1.7 s
    assert rounds.seconds == pytest.approx(1.7 / 3, rel=0.01)
    rounds.observe(execution_ms=1_000, made=9, concurrency=8)  # 2 rounds, the second of one call
    assert rounds.seconds == pytest.approx(0.7 * 1.7 / 3 + 0.3 * 0.5, rel=0.01)


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
