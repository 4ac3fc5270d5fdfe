"""`/batch`'s speed as typed in the "Retry failed, changed…" modal: fast, relax, or unchanged."""

import pytest

from bot.errors import UserFacingError
from bot.exts.batch import typed_speed


@pytest.mark.parametrize(("typed", "relax"), [("relax", True), (" Fast ", False), ("", None), (None, None)])
def test_a_typed_speed_is_relax_fast_or_unchanged(typed: str | None, relax: bool | None) -> None:
    assert typed_speed(typed) is relax


def test_another_speed_is_refused_naming_the_two() -> None:
    with pytest.raises(UserFacingError, match="`fast` or `relax`"):
        typed_speed("turbo")
