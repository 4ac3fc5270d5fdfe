import pytest

from bot.core.restart import RestartBackoff


@pytest.mark.parametrize(
    ("uptimes", "expected"),
    [
        ([0.1], [1.0]),  # the first restart waits the least
        ([0.1, 0.1, 0.1, 0.1], [1.0, 2.0, 4.0, 8.0]),  # a crash loop doubles the wait
        ([0.1] * 7, [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]),  # up to the cap
        ([0.1, 0.1, 0.1, 60.0, 0.1], [1.0, 2.0, 4.0, 1.0, 2.0]),  # up a while: recovered, back to the first wait
        ([0.1, 0.1, 29.9], [1.0, 2.0, 4.0]),  # just under `stable_s` is still a crash loop
    ],
)
def test_after_exit_when_process_exits_after_these_uptimes(uptimes: list[float], expected: list[float]) -> None:
    backoff = RestartBackoff(first_s=1.0, cap_s=10.0, stable_s=30.0)

    assert [backoff.after_exit(up) for up in uptimes] == expected
