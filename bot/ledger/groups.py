"""Groups (a thread's or a channel's images) and the images in them."""

from datetime import datetime

from bot.core.models import Group, GroupId, Image, ImageId, JobId
from bot.ledger._rows import db_time, group_from, image_from, new_id
from bot.ledger.connection import LedgerConnection


class GroupsMixin(LedgerConnection):
    """Groups and images: creating and naming groups, listing and marking images."""

    async def ensure_group(
        self,
        *,
        name: str,
        now: datetime,
        guild_id: int | None = None,
        channel_id: int | None = None,
        thread_id: int | None = None,
        owner_id: int | None = None,
    ) -> Group:
        """Return the group of a thread (or a channel's default group), creating it if needed.

        `owner_id` is recorded only when the group is created: the first caller names the owner.
        """
        params: tuple[object, ...]
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO groups (id, guild_id, channel_id, thread_id, name, created_at, owner_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (new_id("g"), guild_id, channel_id, thread_id, name, db_time(now), owner_id),
            )
            if thread_id is not None:
                sql, params = "SELECT * FROM groups WHERE thread_id = ?", (thread_id,)
            elif channel_id is not None:
                sql, params = "SELECT * FROM groups WHERE channel_id = ? AND thread_id IS NULL", (channel_id,)
            else:
                sql, params = "SELECT * FROM groups WHERE rowid = last_insert_rowid()", ()
            async with db.execute(sql, params) as cur:
                row = await cur.fetchone()
        assert row is not None  # inserted, or there already
        return group_from(row)

    async def get_group(self, group_id: GroupId) -> Group | None:
        """Return a group by id."""
        row = await self._one("SELECT * FROM groups WHERE id = ?", (group_id,))
        return None if row is None else group_from(row)

    async def rename_group(self, group_id: GroupId, name: str) -> Group | None:
        """Rename a group."""
        async with (
            self._tx() as db,
            db.execute("UPDATE groups SET name = ? WHERE id = ? RETURNING *", (name, group_id)) as cur,
        ):
            row = await cur.fetchone()
        return None if row is None else group_from(row)

    async def groups_with_counts(self, *, guild_id: int | None, limit: int = 25) -> list[tuple[Group, int]]:
        """Return a guild's groups, newest first, each with how many images it holds (deleted ones left out)."""
        rows = await self._all(
            "SELECT g.*, (SELECT count(*) FROM images i WHERE i.group_id = g.id AND i.deleted_at IS NULL) AS n"
            " FROM groups g"
            " WHERE g.guild_id IS ? ORDER BY g.created_at DESC LIMIT ?",
            (guild_id, limit),
        )
        return [(group_from(r), int(r["n"])) for r in rows]

    async def image_at(self, job_id: JobId, index: int) -> Image | None:
        """Return the image made for item `index` of a job."""
        row = await self._one("SELECT * FROM images WHERE job_id = ? AND idx = ?", (job_id, index))
        return None if row is None else image_from(row)

    async def images(self, *, job_id: JobId | None = None, group_id: GroupId | None = None) -> list[Image]:
        """Return the images of a job (index order, every one) or of a group (creation order, deleted ones left out)."""
        if job_id is not None:
            rows = await self._all("SELECT * FROM images WHERE job_id = ? ORDER BY idx", (job_id,))
        elif group_id is not None:
            rows = await self._all(
                "SELECT * FROM images WHERE group_id = ? AND deleted_at IS NULL ORDER BY created_at, job_id, idx",
                (group_id,),
            )
        else:
            raise ValueError("give a job_id or a group_id")
        return [image_from(row) for row in rows]

    async def set_favourite(self, image_id: ImageId, *, is_favourite: bool) -> Image | None:
        """Mark or unmark an image as a favourite."""
        async with (
            self._tx() as db,
            db.execute(
                "UPDATE images SET favourite = ? WHERE id = ? RETURNING *", (int(is_favourite), image_id)
            ) as cur,
        ):
            row = await cur.fetchone()
        return None if row is None else image_from(row)

    async def mark_images_deleted(self, image_ids: list[ImageId], *, now: datetime) -> int:
        """Record that these images' message was deleted (❌): they leave their group; return how many were marked."""
        if not image_ids:
            return 0
        marks = ",".join("?" * len(image_ids))
        async with self._tx() as db:
            cur = await db.execute(
                f"UPDATE images SET deleted_at = ? WHERE deleted_at IS NULL AND id IN ({marks})",  # noqa: S608 (only ?s)
                (db_time(now), *image_ids),
            )
            return cur.rowcount

    async def set_image_message(self, image_id: ImageId, message_id: int) -> Image | None:
        """Record the Discord message that shows an image."""
        async with (
            self._tx() as db,
            db.execute("UPDATE images SET message_id = ? WHERE id = ? RETURNING *", (message_id, image_id)) as cur,
        ):
            row = await cur.fetchone()
        return None if row is None else image_from(row)
