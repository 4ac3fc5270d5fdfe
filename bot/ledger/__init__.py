"""The job ledger: SQLite via aiosqlite, numbered SQL migrations."""

from bot.ledger._rows import NOTE_HOLD_FROM
from bot.ledger.errors import (
    LedgerDamagedError,
    LedgerError,
    LedgerMigrationError,
    LedgerTooNewError,
    UnknownJobError,
)
from bot.ledger.store import Cancellation, JobCreation, Ledger, Recorded, Schedulable, backup_path, new_id

__all__ = [
    "NOTE_HOLD_FROM",
    "Cancellation",
    "JobCreation",
    "Ledger",
    "LedgerDamagedError",
    "LedgerError",
    "LedgerMigrationError",
    "LedgerTooNewError",
    "Recorded",
    "Schedulable",
    "UnknownJobError",
    "backup_path",
    "new_id",
]
