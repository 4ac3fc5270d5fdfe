"""Job ↔ Discord message records, job notes and group naming survive a reopen of the ledger file."""

from pathlib import Path

from bot.ledger import Ledger
from tests.fakes.clock import FakeClock
from tests.protocol.ledger.conftest import MakeJob, items


async def test_job_message_is_found_both_ways_when_recorded_and_reopened(
    ledger: Ledger, db_path: Path, make_job: MakeJob, clock: FakeClock
) -> None:
    created = await ledger.create_job(make_job(), items(4), now=clock.now())
    assert created.job is not None
    job_id = created.job.id
    await ledger.set_job_message(job_id, "status", channel_id=10, message_id=100, now=clock.now())
    await ledger.set_job_message(job_id, "status", channel_id=11, message_id=101, now=clock.now())
    await ledger.set_note(job_id, "chain", ["make it red", "now blue"])
    await ledger.close()

    reopened = await Ledger.open(db_path)
    try:
        assert await reopened.job_message(job_id, "status") == (11, 101)
        assert await reopened.job_message(job_id, "result") is None
        assert await reopened.job_of_message(101) == (job_id, "status")
        assert await reopened.job_of_message(100) is None
        assert await reopened.note(job_id, "chain") == ["make it red", "now blue"]
        assert await reopened.note(job_id, "missing") is None
    finally:
        await reopened.close()


async def test_groups_are_listed_with_counts_and_renamed(ledger: Ledger, clock: FakeClock) -> None:
    a = await ledger.ensure_group(name="cats", guild_id=1, channel_id=5, thread_id=50, now=clock.now())
    clock.advance(1)
    b = await ledger.ensure_group(name="dogs", guild_id=1, channel_id=5, thread_id=51, now=clock.now())
    await ledger.ensure_group(name="other guild", guild_id=2, channel_id=6, now=clock.now())

    listed = await ledger.groups_with_counts(guild_id=1)
    assert [(g.name, n) for g, n in listed] == [("dogs", 0), ("cats", 0)]
    renamed = await ledger.rename_group(a.id, "kittens")
    assert renamed is not None and renamed.name == "kittens"
    again = await ledger.get_group(a.id)
    assert again is not None and again.name == "kittens"
    assert b.id != a.id
