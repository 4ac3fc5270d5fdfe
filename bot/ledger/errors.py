"""Errors of the job ledger.

```
LedgerError
├── LedgerMigrationError   the database is newer than this code, or a migration file is malformed
└── UnknownJobError        no job with that id
```
"""


class LedgerError(Exception):
    """Base of every ledger error."""


class LedgerMigrationError(LedgerError):
    """The schema cannot be brought to the version this code expects."""


class UnknownJobError(LedgerError, KeyError):
    """No job has the given id."""
