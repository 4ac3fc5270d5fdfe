"""`RenameWindow`: two thread renames per ten minutes, as Discord allows, counted at the exact boundaries."""

from bot.core.renames import RenameWindow


def test_two_renames_go_and_the_third_waits_until_the_first_leaves_the_window() -> None:
    window = RenameWindow()
    assert window.try_rename(0.0) and window.try_rename(10.0)
    assert not window.try_rename(599.9)  # the first is still in the window: nothing recorded
    assert abs(window.next_allowed_in(599.9) - 0.1) < 1e-9
    assert window.try_rename(600.0)  # exactly ten minutes after the first
    assert not window.try_rename(609.9)
    assert window.try_rename(610.0)


def test_next_allowed_is_now_while_under_the_limit() -> None:
    window = RenameWindow()
    assert window.next_allowed_in(0.0) == 0.0
    window.try_rename(5.0)
    assert window.next_allowed_in(6.0) == 0.0
