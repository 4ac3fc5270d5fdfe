"""`/prefer suffix`, `/prefer option set|list` and `/show`'s lookup, without Discord.

What a user saves here rewrites every prompt they type (`bot.core.prefer.personalize`, called by
`GenerationService` where it parses a user's prompt); `/show` finds a job its asker may see.
"""

from datetime import UTC, datetime

from bot.app.generation_types import GenerationError
from bot.core.models import Job, JobId, UserId
from bot.core.prefer import (
    MAX_OPTION_SETS,
    PreferError,
    PromptPrefs,
    check_name,
    check_options,
    check_suffix,
)
from bot.ledger import Ledger

# The same answer for a job that does not exist and one of someone else, so job ids of others leak nothing.
NO_SUCH_JOB = "Peel knows no job `{job}` of yours. Job ids are in /queue and on each result's message."


class PreferService:
    """A user's suffix and option sets, and the jobs `/show` may bring back."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def prefs(self, user_id: UserId) -> PromptPrefs:
        """Return what a user saved."""
        return await self._ledger.prompt_prefs(user_id)

    async def set_suffix(self, user_id: UserId, value: str | None) -> str:
        """Save a user's suffix (None or blank clears it); return it as saved ("" when cleared).

        Raises:
            GenerationError: too long, or a parameter in it does not parse.
        """
        suffix = ""
        if value is not None and value.strip():
            try:
                suffix = check_suffix(value)
            except PreferError as exc:
                raise GenerationError(f"{exc}.", title="Invalid suffix") from exc
        await self._ledger.set_prompt_suffix(user_id, suffix or None, now=datetime.now(UTC))
        return suffix

    async def set_option_set(self, user_id: UserId, name: str, value: str | None) -> tuple[str, str | None]:
        """Save an option set (None or blank deletes it); return its name and parameters as saved (None: deleted).

        Raises:
            GenerationError: a bad name or value, the name of a parameter, or `MAX_OPTION_SETS` sets already.
        """
        try:
            cleaned = check_name(name)
            options = check_options(value) if value is not None and value.strip() else None
        except PreferError as exc:
            raise GenerationError(f"{exc}.", title="Invalid option set") from exc
        saved = await self._ledger.set_option_set(
            user_id, cleaned, options, now=datetime.now(UTC), max_sets=MAX_OPTION_SETS
        )
        if not saved:
            raise GenerationError(
                f"You have {MAX_OPTION_SETS} option sets, the most Peel keeps; delete one first "
                "(`/prefer option set` with its name and no value).",
                title="Too many option sets",
            )
        return cleaned, options

    async def showable(self, job_id: str, user_id: UserId, *, is_admin: bool) -> Job:
        """Return a job its asker may show: their own, or anyone's for a Peel admin.

        Raises:
            GenerationError: no such job, or someone else's (the same words for both).
        """
        cleaned = job_id.strip()
        job = await self._ledger.get_job(JobId(cleaned)) if cleaned else None
        if job is None or (job.owner_id != user_id and not is_admin):
            raise GenerationError(NO_SUCH_JOB.format(job=cleaned[:40].replace("`", "")), title="No such job")
        return job


__all__ = ["NO_SUCH_JOB", "PreferService"]
