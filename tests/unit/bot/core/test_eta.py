"""The expected wait for an interactive job, from the recent waits of its model and size."""

from bot.core.eta import CallTimes


def test_the_default_is_expected_before_anything_was_measured() -> None:
    times = CallTimes(default_s=12.0)
    assert times.expected_s("gemini-2.5-flash-image", None) == 12.0
    assert times.measured("gemini-2.5-flash-image", None) == 0


def test_the_median_of_recent_waits_is_expected_once_measured() -> None:
    times = CallTimes(default_s=12.0)
    for wait in (4.0, 5.0, 60.0):  # one slow call moves the median little
        times.observe("flash", None, wait)
    assert times.expected_s("flash", "1k") == 5.0  # no size is Gemini's 1K
    assert times.expected_s("flash", "2K") == 12.0  # another size: its own record
    assert times.expected_s("pro", None) == 12.0  # another model too


def test_only_the_most_recent_waits_count_when_more_were_seen() -> None:
    times = CallTimes(default_s=12.0, kept=3)
    for wait in (30.0, 30.0, 30.0, 2.0, 2.0, 2.0):
        times.observe("flash", "1K", wait)
    assert times.expected_s("flash", "1K") == 2.0
    assert times.measured("flash", "1K") == 3


def test_a_wait_of_nothing_is_not_recorded() -> None:
    times = CallTimes(default_s=12.0)
    times.observe("flash", None, 0.0)
    assert times.measured("flash", None) == 0
