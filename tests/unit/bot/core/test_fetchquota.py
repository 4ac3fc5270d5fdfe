"""The download quota: slots per user and in all, and the disk budget their bytes share."""

import pytest

from bot.core.fetchquota import DownloadLimits, DownloadQuota, DownloadRefusedError

LIMITS = DownloadLimits(per_user=1, total=3, disk_bytes=1000)


def test_second_download_by_one_user_is_refused_when_the_first_runs() -> None:
    quota = DownloadQuota(LIMITS)
    quota.acquire(1)
    with pytest.raises(DownloadRefusedError, match="You already have a download running; wait for it to finish"):
        quota.acquire(1)


def test_user_may_download_again_when_the_slot_is_released() -> None:
    quota = DownloadQuota(LIMITS)
    with quota.acquire(1):
        pass
    assert quota.acquire(1).user_id == 1


def test_refusal_counts_the_running_downloads_when_a_user_may_run_several() -> None:
    quota = DownloadQuota(DownloadLimits(per_user=2, total=4, disk_bytes=1000))
    quota.acquire(1)
    quota.acquire(1)
    with pytest.raises(DownloadRefusedError, match="You already have 2 downloads running"):
        quota.acquire(1)


def test_download_is_refused_when_peel_runs_as_many_as_it_may() -> None:
    quota = DownloadQuota(LIMITS)
    for user in (1, 2, 3):
        quota.acquire(user)
    with pytest.raises(DownloadRefusedError, match="busy with other downloads"):
        quota.acquire(4)
    assert quota.running == 3


def test_reservations_stop_at_the_disk_budget_and_come_back_on_release() -> None:
    quota = DownloadQuota(LIMITS)
    a, b = quota.acquire(1), quota.acquire(2)
    assert a.reserve(600)
    assert not b.reserve(500)  # 1100 > 1000: nothing taken
    assert b.reserve(400)
    assert quota.held_bytes == 1000
    a.release()
    a.release()  # twice is harmless
    assert quota.held_bytes == 400
    assert not a.reserve(1)  # a released slot holds nothing more
    assert quota.running == 1
