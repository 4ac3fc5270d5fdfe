"""The services a front end calls, built once over an opened `Runtime`: the only door to the ledger and dispatcher.

Cogs and the CLI translate Discord or argv into calls on these and their results into messages or output; none
of them reaches the runtime's ledger, dispatcher or store itself.
"""

from dataclasses import dataclass

from bot.app.account import AccountService
from bot.app.batches import BatchService
from bot.app.budgets import BudgetService
from bot.app.describe import DescribeService
from bot.app.gallery import GalleryService
from bot.app.generation import GenerationService
from bot.app.groups import GroupService
from bot.app.prefer import PreferService
from bot.app.references import ReferenceLinks
from bot.app.runtime import Runtime


def budget_service(runtime: Runtime) -> BudgetService:
    """Return the budgets service over a runtime (the settings' caps and role rules, admins' caps from the ledger).

    The runtime's dispatcher reads running jobs' caps from it, so an admin's change reaches jobs already running.
    """
    budgets = BudgetService(runtime.ledger, runtime.settings.budget_config())
    runtime.dispatcher.use_caps(budgets)
    return budgets


def generation_service(runtime: Runtime, budgets: BudgetService | None = None) -> GenerationService:
    """Return the interactive-generation service over a runtime (`budgets` unset: the runtime's settings')."""
    return GenerationService(
        runtime.ledger,
        runtime.dispatcher,
        runtime.backends.store,
        default_model=runtime.settings.gemini_model,
        budgets=budgets or budget_service(runtime),
        links=ReferenceLinks.from_settings(runtime.settings),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """One service per use case: generation, describe, batches, groups, galleries, account, budgets, preferences."""

    generation: GenerationService
    batches: BatchService
    groups: GroupService
    gallery: GalleryService
    account: AccountService
    budgets: BudgetService
    prefer: PreferService
    describe: DescribeService

    @classmethod
    def of(cls, runtime: Runtime) -> "Services":
        """Build every service over an opened runtime."""
        groups = GroupService(runtime)
        budgets = budget_service(runtime)
        generation = generation_service(runtime, budgets)
        return cls(
            generation=generation,
            batches=BatchService(runtime, budgets=budgets),
            groups=groups,
            gallery=GalleryService(runtime, groups=groups),
            account=AccountService(runtime.ledger, runtime.dispatcher),
            budgets=budgets,
            prefer=PreferService(runtime.ledger),
            describe=DescribeService(
                runtime.ledger, runtime.dispatcher, runtime.backends.store, generation, runtime.settings
            ),
        )


__all__ = ["Services", "budget_service", "generation_service"]
