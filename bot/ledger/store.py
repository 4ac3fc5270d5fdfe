"""`Ledger`: the SQLite job ledger (aiosqlite), one class composed of one mixin per aggregate.

Each aggregate keeps its queries in its own module (`jobs`, `items`, `chunks`, `groups`, `gallery`, `messages`,
`prefs`, `relax`, `budgets`, `budget_rules`, `spend`); all of them run on the one connection, lock and transaction
helper of `LedgerConnection` (`connection`), so a method that touches several tables (creating a job with its items and
notes, recording a chunk's outcomes with their images) is still one transaction, and callers see one `Ledger`
with every method.
"""

from bot.ledger._rows import new_id
from bot.ledger.budget_rules import BudgetRulesMixin
from bot.ledger.budgets import BudgetsMixin
from bot.ledger.chunks import ChunksMixin, Recorded
from bot.ledger.connection import BUSY_TIMEOUT_MS, MIGRATIONS_DIR, backup_path
from bot.ledger.gallery import GalleryMixin
from bot.ledger.groups import GroupsMixin
from bot.ledger.items import ItemsMixin
from bot.ledger.jobs import Cancellation, JobCreation, JobsMixin, Schedulable
from bot.ledger.messages import MessagesMixin
from bot.ledger.prefer import PromptPrefsMixin
from bot.ledger.prefs import PreferencesMixin
from bot.ledger.relax import RelaxMixin
from bot.ledger.spend import SpendMixin


class Ledger(
    JobsMixin,
    ItemsMixin,
    RelaxMixin,
    ChunksMixin,
    GroupsMixin,
    GalleryMixin,
    MessagesMixin,
    PreferencesMixin,
    PromptPrefsMixin,
    BudgetsMixin,
    BudgetRulesMixin,
    SpendMixin,
):
    """The job ledger over one SQLite file; open with `await Ledger.open(path)`, close with `close()`."""


__all__ = [
    "BUSY_TIMEOUT_MS",
    "MIGRATIONS_DIR",
    "Cancellation",
    "JobCreation",
    "Ledger",
    "Recorded",
    "Schedulable",
    "backup_path",
    "new_id",
]
