"""Ways a SQLite ledger file gets damaged: a bad page in the middle, a bad header, a truncated file.

Each works on a closed ledger file (no -wal beside it) and changes it in place, as a disk or a crash would.
"""

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bot.core.models import JobId, JobKind, JobParams, NewItem, NewJob, Priority, UserId
from bot.ledger import Ledger, new_id


async def make_ledger_file(path: Path, *, jobs: int = 3, items: int = 200) -> list[JobId]:
    """Write a real ledger with `jobs` batch jobs of `items` items (a few dozen pages); return the job ids."""
    made: list[JobId] = []
    async with await Ledger.open(path) as ledger:
        for n in range(jobs):
            new = NewJob(
                id=JobId(new_id("j")),
                kind=JobKind.BATCH,
                owner_id=UserId(1),
                prompt=f"make it blue #{n}",
                params=JobParams(model="gemini-2.5-flash-image", n=1),
                priority=Priority.for_kind(JobKind.BATCH),
                idempotency_key=f"damage-{n}",
            )
            created = await ledger.create_job(new, [NewItem() for _ in range(items)], now=datetime.now(UTC))
            assert created.job is not None
            made.append(created.job.id)
    wal = path.with_name(path.name + "-wal")
    assert not await asyncio.to_thread(wal.exists)  # closing checkpointed everything into the file
    return made


def _page_size(data: bytes | bytearray) -> int:
    size = int.from_bytes(data[16:18], "big")  # https://sqlite.org/fileformat.html#the_database_header
    return 65536 if size == 1 else size


def damage_middle_page(path: Path) -> None:
    """Overwrite the b-tree header of the page in the middle of the file: the header and schema still read."""
    data = bytearray(path.read_bytes())
    page = _page_size(data)
    middle = (len(data) // page // 2) * page
    assert middle > 0
    data[middle : middle + 12] = b"\xff" * 12  # 0xff is no page type; the cell count and pointers go wild
    path.write_bytes(bytes(data))


def damage_header(path: Path) -> None:
    """Overwrite the 16-byte magic string `SQLite format 3\\0`."""
    data = bytearray(path.read_bytes())
    data[:16] = b"not a ledger!!!\0"
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    """Cut the file to its first third, as a full disk or a half-copied file leaves it."""
    data = path.read_bytes()
    page = _page_size(data)
    path.write_bytes(data[: (len(data) // page // 3) * page + page // 2])


DAMAGES: dict[str, Callable[[Path], None]] = {
    "middle_page": damage_middle_page,
    "header": damage_header,
    "truncated": truncate,
}


def schema_reads(path: Path) -> bool:
    """Return whether plain SQLite still reads the file's schema (the damage is not seen on open)."""
    try:
        with sqlite3.connect(path) as db:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError:
        return False
    return True
