"""The services a front end calls, built once over an opened `Runtime`: the only door to the ledger and dispatcher.

Cogs and the CLI translate Discord or argv into calls on these and their results into messages or output; none
of them reaches the runtime's ledger, dispatcher or store itself.
"""

from dataclasses import dataclass

from bot.app.account import AccountService
from bot.app.batches import BatchService
from bot.app.gallery import GalleryService
from bot.app.generation import GenerationService
from bot.app.groups import GroupService
from bot.app.runtime import Runtime


def generation_service(runtime: Runtime) -> GenerationService:
    """Return the interactive-generation service over a runtime."""
    return GenerationService(
        runtime.ledger, runtime.dispatcher, runtime.backends.store, default_model=runtime.settings.gemini_model
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """One service per use case: interactive generation, batches, groups, galleries, the account and its queue."""

    generation: GenerationService
    batches: BatchService
    groups: GroupService
    account: AccountService
    gallery: GalleryService

    @classmethod
    def of(cls, runtime: Runtime) -> "Services":
        """Build every service over an opened runtime."""
        return cls(
            generation=generation_service(runtime),
            batches=BatchService(runtime),
            groups=GroupService(runtime),
            account=AccountService(runtime.ledger, runtime.dispatcher),
            gallery=GalleryService(runtime),
        )


__all__ = ["Services", "generation_service"]
