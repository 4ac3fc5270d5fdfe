"""A damaged ledger file is refused on open with a message that says how to restore it; a backup restores it."""

import asyncio
import shutil
from pathlib import Path

import pytest

from bot.ledger import Ledger, LedgerDamagedError, backup_path
from tests.fakes.damage import DAMAGES, damage_middle_page, make_ledger_file, schema_reads


async def refused(path: Path) -> LedgerDamagedError:
    """Open the ledger expecting a refusal; close it and fail the test if it opens."""
    try:
        ledger = await Ledger.open(path)
    except LedgerDamagedError as exc:
        return exc
    await ledger.close()
    pytest.fail(f"the damaged ledger {path} was opened")


REASONS = {"middle_page": {"integrity_check", "malformed"}, "header": {"not_a_database"}, "truncated": {"malformed"}}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
async def test_open_refuses_naming_the_file_and_the_way_back_when_the_file_is_damaged(
    db_path: Path, damage: str
) -> None:
    await make_ledger_file(db_path)
    await asyncio.to_thread(DAMAGES[damage], db_path)
    before = await asyncio.to_thread(db_path.read_bytes)

    exc = await refused(db_path)

    where = await asyncio.to_thread(db_path.resolve)
    assert exc.path == where
    assert exc.reason in REASONS[damage]
    assert exc.backup is None  # nothing wrote one: Ledger.open alone does not back up
    advice = exc.user_message
    assert str(where) in advice
    assert f"mv {where} {where}.damaged" in advice
    assert '".recover"' in advice and "start fresh" in advice
    assert await asyncio.to_thread(db_path.read_bytes) == before  # nothing was written to the damaged file


async def test_damage_in_the_middle_is_not_seen_by_a_plain_open_when_only_a_page_is_bad(db_path: Path) -> None:
    """The case quick_check exists for: SQLite opens the file and reads its schema without complaint."""
    await make_ledger_file(db_path)
    await asyncio.to_thread(damage_middle_page, db_path)

    assert await asyncio.to_thread(schema_reads, db_path)
    assert (await refused(db_path)).reason in {"integrity_check", "malformed"}


async def test_restoring_the_backup_brings_back_every_job_when_the_ledger_was_damaged(db_path: Path) -> None:
    jobs = await make_ledger_file(db_path)
    async with await Ledger.open(db_path) as ledger:
        await ledger.back_up(backup_path(db_path))
    await asyncio.to_thread(damage_middle_page, db_path)

    exc = await refused(db_path)
    where = await asyncio.to_thread(db_path.resolve)
    assert exc.backup == backup_path(where)
    assert f"cp {exc.backup} {where}" in exc.user_message

    # What the message says: move the damaged file aside, copy the backup in.
    await asyncio.to_thread(db_path.rename, db_path.with_name(db_path.name + ".damaged"))
    await asyncio.to_thread(shutil.copyfile, exc.backup, db_path)
    async with await Ledger.open(db_path) as restored:
        assert sorted(j.id for j in await restored.list_jobs()) == sorted(jobs)
        assert len(await restored.items(jobs[0])) == 200
