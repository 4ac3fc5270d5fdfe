import pytest

from bot.core.models import JobId
from bot.core.seeds import MAX_SEED, item_seed, output_key, png_dimensions, seed_base


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


def test_png_dimensions_reads_ihdr_when_header_is_png() -> None:
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (640).to_bytes(4, "big") + (480).to_bytes(4, "big")

    assert png_dimensions(header) == (640, 480)


@pytest.mark.parametrize("header", [b"", b"GIF89a" + b"\x00" * 30, b"\x89PNG\r\n\x1a\n" + b"\x00" * 16])
def test_png_dimensions_is_none_when_not_png(header: bytes) -> None:
    assert png_dimensions(header) is None
