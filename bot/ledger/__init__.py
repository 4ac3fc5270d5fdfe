"""The job ledger: SQLite via aiosqlite, numbered SQL migrations."""

from bot.ledger.errors import LedgerError, LedgerMigrationError, UnknownJobError
from bot.ledger.store import Cancellation, JobCreation, Ledger, Recorded, Schedulable, new_id

__all__ = [
    "Cancellation",
    "JobCreation",
    "Ledger",
    "LedgerError",
    "LedgerMigrationError",
    "Recorded",
    "Schedulable",
    "UnknownJobError",
    "new_id",
]
