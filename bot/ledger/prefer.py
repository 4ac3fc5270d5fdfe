"""A user's prompt suffix and option sets in the ledger (migration 0011)."""

from datetime import datetime

from bot.core.models import UserId
from bot.core.prefer import PromptPrefs
from bot.ledger._rows import db_time
from bot.ledger.connection import LedgerConnection


class PromptPrefsMixin(LedgerConnection):
    """`/prefer suffix` and `/prefer option set`: one suffix and up to a cap of named option sets per user."""

    async def prompt_prefs(self, user_id: UserId) -> PromptPrefs:
        """Return a user's suffix and option sets (empty when none were saved)."""
        row = await self._one("SELECT suffix FROM prompt_suffixes WHERE user_id = ?", (user_id,))
        rows = await self._all("SELECT name, options FROM option_sets WHERE user_id = ? ORDER BY name", (user_id,))
        return PromptPrefs(
            suffix=str(row["suffix"]) if row is not None else "",
            option_sets={str(r["name"]): str(r["options"]) for r in rows},
        )

    async def set_prompt_suffix(self, user_id: UserId, suffix: str | None, *, now: datetime) -> None:
        """Save a user's suffix; None (or empty) removes it."""
        async with self._tx() as db:
            if not suffix:
                await db.execute("DELETE FROM prompt_suffixes WHERE user_id = ?", (user_id,))
                return
            await db.execute(
                "INSERT INTO prompt_suffixes (user_id, suffix, updated_at) VALUES (?, ?, ?) ON CONFLICT (user_id)"
                " DO UPDATE SET suffix = excluded.suffix, updated_at = excluded.updated_at",
                (user_id, suffix, db_time(now)),
            )

    async def set_option_set(
        self, user_id: UserId, name: str, options: str | None, *, now: datetime, max_sets: int
    ) -> bool:
        """Save (or replace) one option set, or delete it when `options` is None.

        Returns:
            False when the set is new and the user already has `max_sets` (nothing written), else True. A delete of
            a set that does not exist is True too: the set is gone either way.
        """
        async with self._tx() as db:
            if options is None:
                await db.execute("DELETE FROM option_sets WHERE user_id = ? AND name = ?", (user_id, name))
                return True
            # Counted in the transaction that inserts, so two saves at once cannot pass the cap together.
            async with db.execute(
                "SELECT COUNT(*) AS n, SUM(name = ?) AS present FROM option_sets WHERE user_id = ?", (name, user_id)
            ) as cur:
                row = await cur.fetchone()
            count, present = (int(row[0]), bool(row[1])) if row is not None else (0, False)
            if not present and count >= max_sets:
                return False
            await db.execute(
                "INSERT INTO option_sets (user_id, name, options, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT"
                " (user_id, name) DO UPDATE SET options = excluded.options, updated_at = excluded.updated_at",
                (user_id, name, options, db_time(now)),
            )
            return True
