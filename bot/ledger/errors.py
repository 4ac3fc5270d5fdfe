"""Errors of the job ledger.

```
LedgerError
├── LedgerDamagedError     the SQLite file is damaged: not a database, malformed, or it fails `PRAGMA quick_check`
├── LedgerMigrationError   the database is newer than this code, or a migration file is malformed
│   └── LedgerTooNewError  the database was written by a newer Peel: the operator's message says what to do
├── UnknownJobError        no job with that id
└── BudgetRefusedError    what was asked would take a money cap over (`refused` says which)
```
"""

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from bot.core.budgets import Refused

_REASONS = {
    "not_a_database": "it is not an SQLite database any more: its header is damaged",
    "malformed": "SQLite found damaged pages in it",
    "integrity_check": "it fails SQLite's integrity check",
}


class LedgerError(Exception):
    """Base of every ledger error."""


class LedgerDamagedError(LedgerError):
    """The ledger file is damaged; `user_message` tells the operator how to restore it.

    `reason` is one of `not_a_database` (the header is unreadable), `malformed` (SQLite hit a damaged page) and
    `integrity_check` (`PRAGMA quick_check` found damage); `backup` is the ledger's backup copy, when there is one.
    """

    def __init__(self, path: Path, *, reason: str, backup: Path | None) -> None:
        super().__init__(f"ledger {path} is damaged ({reason})")
        self.path = path
        self.reason = reason
        self.backup = backup

    @property
    def user_message(self) -> str:
        """One paragraph for the operator: what is wrong, where the file is and how to restore it."""
        path = str(self.path)
        p, damaged = shlex.quote(path), shlex.quote(f"{path}.damaged")
        if self.backup is not None:
            restore = (
                f"then copy the backup in (cp {shlex.quote(str(self.backup))} {p}; Peel wrote that copy at its last "
                "start that passed the check)"
            )
        else:
            restore = f"then copy in a backup of the ledger that you kept (cp BACKUP {p})"
        return (
            f"Peel will not start: the job ledger {path} is damaged ({_REASONS.get(self.reason, self.reason)})."
            f" To restore it, stop every Peel process that uses it, move the damaged file aside (mv {p} {damaged},"
            f" and mv {shlex.quote(path + '-wal')} {shlex.quote(path + '.damaged-wal')} if there is one; then"
            f" rm -f {shlex.quote(path + '-shm')}), {restore}. SQLite can often salvage the rows instead:"
            f' sqlite3 {damaged} ".recover" | sqlite3 {p}. Or start fresh by leaving the damaged file moved aside:'
            " Peel makes an empty ledger and forgets the jobs it held (their images stay in the store). Keep a copy"
            " of the ledger somewhere other than its own disk."
        )


class LedgerMigrationError(LedgerError):
    """The schema cannot be brought to the version this code expects."""


class LedgerTooNewError(LedgerMigrationError):
    """The ledger was written by a newer Peel; `user_message` tells the operator what to do (no traceback)."""

    def __init__(self, path: Path, *, schema: int, known: int) -> None:
        super().__init__(f"ledger schema {schema} is newer than this code ({known})")
        self.path = path
        self.user_message = (
            f"Peel will not start: the job ledger {path} has schema version {schema}, newer than this version of"
            f" Peel knows ({known}); a newer Peel wrote it. Run that newer version, or, to go back to this one,"
            " stop Peel and restore a copy of the ledger from before the upgrade (a backup Peel wrote is no use"
            " here if the newer version wrote it). Peel leaves the file as it is."
        )


class UnknownJobError(LedgerError, KeyError):
    """No job has the given id."""


class BudgetRefusedError(LedgerError):
    """What was asked of a job (e.g. "Retry failed") would take one of its money caps over; nothing changed.

    `refused` names the cap, what is spent or reserved, the cost and the reset; `user_message` says it in the
    budgets' time zone.
    """

    def __init__(self, refused: "Refused", *, tz: "ZoneInfo") -> None:
        super().__init__(f"over the {refused.scope} {refused.period} cap")
        self.refused = refused
        self.user_message = refused.message(tz)
