"""Discord bindings and notes in the ledger: which message shows a job or an image, and a job's JSON notes."""

import json
from datetime import datetime

from bot.core.models import Image, JobId
from bot.ledger._rows import db_time, image_from
from bot.ledger.connection import LedgerConnection


class MessagesMixin(LedgerConnection):
    """Message bindings and job notes."""

    async def set_job_message(
        self, job_id: JobId, role: str, *, channel_id: int, message_id: int, now: datetime
    ) -> None:
        """Record the Discord message that shows a job in `role` (`status`, `result`, `summary`)."""
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO job_messages (job_id, role, channel_id, message_id, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (job_id, role) DO UPDATE SET channel_id = excluded.channel_id,"
                " message_id = excluded.message_id, updated_at = excluded.updated_at",
                (job_id, role, channel_id, message_id, db_time(now)),
            )

    async def job_message(self, job_id: JobId, role: str) -> tuple[int, int] | None:
        """Return the (channel id, message id) showing a job in `role`, or None."""
        row = await self._one(
            "SELECT channel_id, message_id FROM job_messages WHERE job_id = ? AND role = ?", (job_id, role)
        )
        return None if row is None else (int(row["channel_id"]), int(row["message_id"]))

    async def job_of_message(self, message_id: int) -> tuple[JobId, str] | None:
        """Return the job (and role) a Discord message shows, or None."""
        row = await self._one("SELECT job_id, role FROM job_messages WHERE message_id = ? LIMIT 1", (message_id,))
        return None if row is None else (JobId(row["job_id"]), str(row["role"]))

    async def image_of_message(self, message_id: int) -> Image | None:
        """Return the image a Discord message shows, or None."""
        row = await self._one("SELECT * FROM images WHERE message_id = ? LIMIT 1", (message_id,))
        return None if row is None else image_from(row)

    async def set_note(self, job_id: JobId, name: str, value: object) -> None:
        """Store a JSON note about a job."""
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO job_notes (job_id, name, value) VALUES (?, ?, ?)"
                " ON CONFLICT (job_id, name) DO UPDATE SET value = excluded.value",
                (job_id, name, json.dumps(value)),
            )

    async def note(self, job_id: JobId, name: str) -> object:
        """Return a job's JSON note, or None."""
        row = await self._one("SELECT value FROM job_notes WHERE job_id = ? AND name = ?", (job_id, name))
        return None if row is None else json.loads(row["value"])
