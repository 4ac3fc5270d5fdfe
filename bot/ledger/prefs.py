"""User preferences in the ledger."""

import json
from collections.abc import Mapping
from datetime import datetime

from bot.core.models import UserId
from bot.ledger._rows import db_time, json_object
from bot.ledger.connection import LedgerConnection


class PreferencesMixin(LedgerConnection):
    """Per-user preferences, one JSON object per user."""

    async def get_preferences(self, user_id: UserId) -> dict[str, object]:
        """Return a user's preferences (empty when never set)."""
        row = await self._one("SELECT prefs FROM user_preferences WHERE user_id = ?", (user_id,))
        return {} if row is None else json_object(row["prefs"])

    async def set_preferences(self, user_id: UserId, prefs: Mapping[str, object], *, now: datetime) -> None:
        """Replace a user's preferences."""
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO user_preferences (user_id, prefs, updated_at) VALUES (?, ?, ?) ON CONFLICT (user_id)"
                " DO UPDATE SET prefs = excluded.prefs, updated_at = excluded.updated_at",
                (user_id, json.dumps(dict(prefs)), db_time(now)),
            )
