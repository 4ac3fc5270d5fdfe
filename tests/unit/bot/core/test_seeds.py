import pytest

from bot.core.models import JobId
from bot.core.seeds import item_seed, output_key, seed_base
from worker.contract import MAX_SEED


def test_seed_base_uses_requested_seed_when_given() -> None:
    assert seed_base(JobId("j_a"), 42) == 42
    assert seed_base(JobId("j_a"), MAX_SEED + 5) == 4


def test_seed_base_is_deterministic_when_derived_from_job_id() -> None:
    first = seed_base(JobId("j_abc"), None)

    assert first == seed_base(JobId("j_abc"), None)
    assert first != seed_base(JobId("j_abd"), None)
    assert 0 <= first <= MAX_SEED


@pytest.mark.parametrize(("base", "index", "expected"), [(10, 0, 10), (10, 5, 15), (MAX_SEED, 1, 0)])
def test_item_seed_when_base_and_index_vary(base: int, index: int, expected: int) -> None:
    assert item_seed(base, index) == expected


def test_output_key_is_zero_padded_when_built() -> None:
    assert output_key(JobId("j_x"), 75) == "outputs/j_x/00075.png"
