"""The ledger's connection: opening, integrity check, migrations, backups and transactions (aiosqlite).

One aiosqlite connection runs on one thread and its users share one transaction, so every transaction holds
`self._lock`; writes use `BEGIN IMMEDIATE` so that a second process waits for the write lock (`busy_timeout`)
instead of failing halfway. WAL lets readers run while a writer writes. Every state change is one transaction.
The schema comes from numbered `migrations/NNNN_*.sql` files tracked by `PRAGMA user_version` (the number of the
last one applied; a number may be skipped, so two branches can each reserve one).
"""

import asyncio
import logging
import os
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

import aiosqlite

from bot.core.models import Job, JobId, UserId, UserLoad
from bot.ledger._rows import job_from
from bot.ledger.errors import LedgerDamagedError, LedgerMigrationError, LedgerTooNewError, UnknownJobError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
BUSY_TIMEOUT_MS = 5000


def _read_migrations() -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise LedgerMigrationError(f"migration file {path.name!r} is not named NNNN_name.sql")
        found.append((int(match.group(1)), path.read_text(encoding="utf-8")))
    numbers = [n for n, _ in found]
    # A number may be skipped (two branches reserve theirs before either is merged); each is applied once, in order.
    if len(set(numbers)) != len(numbers) or any(n < 1 for n in numbers):
        raise LedgerMigrationError(f"migrations must have distinct numbers from 1 up, found {numbers}")
    return found


def backup_path(path: Path | str) -> Path:
    """Return where the ledger at `path` keeps its backup: `<name>.bak` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".bak")


async def _damaged(path: Path | str, reason: str) -> LedgerDamagedError:
    absolute = await asyncio.to_thread(Path(path).resolve)
    backup = backup_path(absolute)
    return LedgerDamagedError(
        absolute, reason=reason, backup=backup if await asyncio.to_thread(backup.is_file) else None
    )


class LedgerConnection:
    """One SQLite connection with its lock: open, check, migrate, back up, close, and run transactions."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str) -> Self:
        """Open (creating if needed) the ledger at `path`, check that it is sound, and migrate it.

        Raises:
            LedgerDamagedError: the file is not a database, or is malformed, or fails `PRAGMA quick_check`.
            LedgerTooNewError: the file's schema is newer than this code knows.
        """
        db = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            db.row_factory = aiosqlite.Row
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Damage in the middle of the file goes unnoticed until a query reads that page, perhaps hours into
            # a batch; quick_check reads every page now (O(file size), no index cross-check) before anything writes.
            async with db.execute("PRAGMA quick_check") as cur:
                problems = [str(row[0]) for row in await cur.fetchall()]
            if problems != ["ok"]:
                log.debug("ledger quick_check: %s", "; ".join(problems[:5]))
                raise await _damaged(path, "integrity_check")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
            ledger = cls(db)
            await ledger._migrate(Path(path))
        except sqlite3.DatabaseError as exc:
            await db.close()
            # OperationalError (locked, cannot open, disk full) is a DatabaseError too: only damage is translated.
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_NOTADB:
                raise await _damaged(path, "not_a_database") from exc
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_CORRUPT:
                raise await _damaged(path, "malformed") from exc
            raise
        except BaseException:
            await db.close()
            raise
        return ledger

    async def back_up(self, dest: Path) -> None:
        """Write a consistent copy of the ledger to `dest` (written beside it, then renamed into place).

        `VACUUM INTO` reads one snapshot while writers go on (https://sqlite.org/lang_vacuum.html#vacuuminto).
        """
        temp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")  # VACUUM INTO refuses an existing file
        try:
            async with self._lock:
                await self._db.execute("VACUUM INTO ?", (str(temp),))
            await asyncio.to_thread(os.replace, temp, dest)
        finally:
            await asyncio.to_thread(temp.unlink, missing_ok=True)

    async def close(self) -> None:
        """Close the connection."""
        async with self._lock:
            await self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def ping(self) -> None:
        """Run a trivial query (readiness: the file is open and answers)."""
        await self._one("SELECT 1")

    async def schema_version(self) -> int:
        """Return the schema version (`PRAGMA user_version`)."""
        row = await self._one("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def known_schema_version(self) -> int:
        """Return the schema version this code migrates to (the number of its last migration)."""
        return max((n for n, _ in await asyncio.to_thread(_read_migrations)), default=0)

    async def probe_write(self) -> None:
        """Make a change SQLite must journal, then roll it back; raises when the file or its folder is read-only."""
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                await self._db.execute("CREATE TABLE _write_probe (x)")
            finally:
                await self._db.execute("ROLLBACK")

    async def _migrate(self, path: Path) -> None:
        migrations = await asyncio.to_thread(_read_migrations)
        current = await self.schema_version()
        latest = max((n for n, _ in migrations), default=0)
        if current > latest:
            raise LedgerTooNewError(path, schema=current, known=latest)
        for number, sql in (m for m in migrations if m[0] > current):
            # executescript commits first and runs the script as is, so the migration and its version bump
            # are one transaction of their own.
            async with self._lock:
                await self._db.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
            log.info("ledger migrated to schema %d", number, extra={"action": "migrate"})

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await asyncio.shield(self._db.execute("ROLLBACK"))
                raise
            await asyncio.shield(self._db.execute("COMMIT"))

    async def _all(self, sql: str, params: Sequence[object] = ()) -> list[aiosqlite.Row]:
        async with self._lock, self._db.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def _one(self, sql: str, params: Sequence[object] = ()) -> aiosqlite.Row | None:
        async with self._lock, self._db.execute(sql, params) as cur:
            return await cur.fetchone()

    # ---- helpers (inside a transaction) ----------------------------------------------------------------------

    @staticmethod
    async def _load(db: aiosqlite.Connection, owner_id: UserId) -> UserLoad:
        async with db.execute(
            "SELECT coalesce(sum(status IN ('queued', 'running')), 0), coalesce(sum(status = 'waiting'), 0)"
            " FROM jobs WHERE owner_id = ?",
            (owner_id,),
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        return UserLoad(running=int(row[0]), waiting=int(row[1]))

    @staticmethod
    async def _job_in(db: aiosqlite.Connection, job_id: JobId) -> Job:
        async with db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        if row is None:
            raise UnknownJobError(job_id)
        return job_from(row)

    @staticmethod
    async def _recount(db: aiosqlite.Connection, job_id: JobId) -> None:
        await db.execute(
            "UPDATE jobs SET"
            " ok = (SELECT count(*) FROM items WHERE job_id = ?1 AND status = 'ok'),"
            " failed = (SELECT count(*) FROM items WHERE job_id = ?1 AND status = 'error'),"
            " cancelled = (SELECT count(*) FROM items WHERE job_id = ?1 AND status = 'cancelled')"
            " WHERE id = ?1",
            (job_id,),
        )
