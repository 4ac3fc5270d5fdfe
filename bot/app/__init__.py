"""Peel's use cases and their wiring.

The services (`generation`, `batches`, `groups`, `account`, with `downloads` and `imaging` as their helpers) are
the only front door for the cogs and the CLI: they take plain requests and return plain results or events.
`runtime` opens what a process runs on (back ends, ledger, dispatcher, link server); `embedded` starts the local
stand-ins for whatever the settings leave unset; `services` builds the services once over a runtime.
"""

from bot.dispatch import InvalidRequestError, SubmitStatus
from bot.ledger import LedgerDamagedError, LedgerTooNewError
from storage.intake import IntakeReport

# The types of the layers below that a front end names when it renders a result or an error, so the cogs and the
# CLI import them from here and never reach the dispatcher, the ledger or the store themselves.
__all__ = ["IntakeReport", "InvalidRequestError", "LedgerDamagedError", "LedgerTooNewError", "SubmitStatus"]
