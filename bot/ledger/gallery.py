"""Gallery links (one active capability link per group) and the queries behind a group's gallery pages.

Every query starts from the group: an item is reachable only through a job whose `group_id` is the link's group,
so a link to one group never reads another's rows. Images deleted with ❌ (`images.deleted_at`) have left their
group and are not shown, as the group's ZIP leaves them out.
"""

from collections.abc import Sequence
from datetime import datetime

import aiosqlite

from bot.core.gallery import (
    BLOCKED_CODE,
    GalleryCounts,
    GalleryEntry,
    GalleryFilter,
    GalleryLinkRecord,
    like_pattern,
)
from bot.core.models import ItemInputs, JobParams
from bot.ledger._rows import db_time, json_object, opt_time, req_time
from bot.ledger.connection import LedgerConnection

# The rows a gallery shows: every item of the group's jobs, with its image when there is one (not deleted).
_FROM = (
    " FROM jobs j JOIN items i ON i.job_id = j.id"
    " LEFT JOIN images im ON im.job_id = i.job_id AND im.idx = i.idx"
    " WHERE j.group_id = ? AND im.deleted_at IS NULL"
)
_COLUMNS = (
    "SELECT j.id AS job_id, j.kind, j.params, j.prompt AS job_prompt, j.created_at, i.idx, i.inputs, i.prompt,"
    " i.seed, i.status, i.error_code, im.key AS image_key, coalesce(im.favourite, 0) AS favourite"
)
_MADE = "(i.status = 'ok' AND im.key IS NOT NULL)"
_FAILED = f"(i.status = 'error' AND coalesce(i.error_code, '') != '{BLOCKED_CODE}')"
_BLOCKED = f"(i.status = 'error' AND i.error_code = '{BLOCKED_CODE}')"
_FAVOURITE = f"({_MADE} AND im.favourite = 1)"
_FILTERS = {
    GalleryFilter.ALL: "1",
    GalleryFilter.MADE: _MADE,
    GalleryFilter.FAILED: _FAILED,
    GalleryFilter.BLOCKED: _BLOCKED,
    GalleryFilter.FAVOURITES: _FAVOURITE,
}


def _link_from(row: aiosqlite.Row) -> GalleryLinkRecord:
    return GalleryLinkRecord(
        group_id=row["group_id"],
        nonce=row["nonce"],
        issued_by=row["issued_by"],
        created_at=req_time(row["created_at"]),
        can_export=bool(row["can_export"]),
        revoked_at=opt_time(row["revoked_at"]),
    )


def _entry_from(row: aiosqlite.Row) -> GalleryEntry:
    params = JobParams.from_json(json_object(row["params"]))
    inputs = ItemInputs.from_json(json_object(row["inputs"]))
    made = row["status"] == "ok" and row["image_key"] is not None
    return GalleryEntry(
        job_id=row["job_id"],
        index=row["idx"],
        job_kind=row["kind"],
        status=row["status"],
        prompt=row["prompt"] or row["job_prompt"] or "",
        seed=row["seed"],
        model=params.model,
        aspect_ratio=inputs.aspect_ratio or params.aspect_ratio,
        image_size=inputs.image_size or params.image_size,
        mode="relax" if params.relax else "fast",
        ref_keys=inputs.ref_keys,
        source_name=inputs.source_name,
        output_key=row["image_key"] if made else None,
        error_code=row["error_code"],
        favourite=bool(row["favourite"]) and made,
        created_at=req_time(row["created_at"]),
    )


def _narrowing(job_id: str | None, query: str) -> tuple[str, list[object]]:
    """Return the SQL and arguments that narrow a group's rows to one job and to prompts containing `query`."""
    sql, args = "", list[object]()
    if job_id is not None:
        sql += " AND j.id = ?"
        args.append(job_id)
    if query:
        sql += " AND coalesce(i.prompt, j.prompt) LIKE ? ESCAPE '\\'"
        args.append(like_pattern(query))
    return sql, args


class GalleryMixin(LedgerConnection):
    """Gallery links and the reads of the gallery pages."""

    async def gallery_link(self, group_id: str) -> GalleryLinkRecord | None:
        """Return the group's active (not revoked) gallery link."""
        row = await self._one("SELECT * FROM gallery_links WHERE group_id = ? AND revoked_at IS NULL", (group_id,))
        return None if row is None else _link_from(row)

    async def gallery_link_by_hash(self, token_hash: str) -> GalleryLinkRecord | None:
        """Return the link whose token has this SHA-256, revoked or not."""
        row = await self._one("SELECT * FROM gallery_links WHERE token_hash = ?", (token_hash,))
        return None if row is None else _link_from(row)

    async def issue_gallery_link(
        self,
        *,
        group_id: str,
        nonce: str,
        token_hash: str,
        issued_by: int,
        can_export: bool,
        now: datetime,
        revoke_active: bool,
    ) -> GalleryLinkRecord:
        """Record a new link for the group and return the group's active link, in one transaction.

        With `revoke_active` the active link is revoked first (its token stops working) and the new one becomes
        active; without it an active link already there wins (two first calls at once agree on one link).
        """
        async with self._tx() as db:
            if revoke_active:
                await db.execute(
                    "UPDATE gallery_links SET revoked_at = ? WHERE group_id = ? AND revoked_at IS NULL",
                    (db_time(now), group_id),
                )
            await db.execute(
                "INSERT INTO gallery_links (token_hash, group_id, nonce, issued_by, created_at, can_export)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (token_hash, group_id, nonce, issued_by, db_time(now), int(can_export)),
            )
            async with db.execute(
                "SELECT * FROM gallery_links WHERE group_id = ? AND revoked_at IS NULL", (group_id,)
            ) as cur:
                row = await cur.fetchone()
        assert row is not None  # inserted, or there already
        return _link_from(row)

    async def gallery_counts(self, group_id: str, *, job_id: str | None = None, query: str = "") -> GalleryCounts:
        """Return how many items each filter shows, in one grouped query."""
        narrow, args = _narrowing(job_id, query)
        row = await self._one(
            f"SELECT count(*), coalesce(sum({_MADE}), 0), coalesce(sum({_FAILED}), 0),"
            f" coalesce(sum({_BLOCKED}), 0), coalesce(sum({_FAVOURITE}), 0){_FROM}{narrow}",
            (group_id, *args),
        )
        assert row is not None  # an aggregate always answers one row
        return GalleryCounts(all=row[0], made=row[1], failed=row[2], blocked=row[3], favourites=row[4])

    async def gallery_entries(
        self,
        group_id: str,
        *,
        which: GalleryFilter = GalleryFilter.ALL,
        job_id: str | None = None,
        query: str = "",
        limit: int,
        offset: int = 0,
    ) -> list[GalleryEntry]:
        """Return one page of the group's items: newest job first, each job's items in index order."""
        narrow, args = _narrowing(job_id, query)
        rows = await self._all(
            f"{_COLUMNS}{_FROM}{narrow} AND {_FILTERS[which]} ORDER BY j.seq DESC, i.idx LIMIT ? OFFSET ?",
            (group_id, *args, limit, offset),
        )
        return [_entry_from(row) for row in rows]

    async def gallery_entry(self, group_id: str, job_id: str, index: int) -> GalleryEntry | None:
        """Return one item of the group's jobs, or None when that job is not the group's (or there is no such item)."""
        row = await self._one(
            f"{_COLUMNS}{_FROM} AND i.job_id = ? AND i.idx = ?",
            (group_id, job_id, index),
        )
        return None if row is None else _entry_from(row)

    async def gallery_made(self, group_id: str, pairs: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        """Return which of the (job id, index) pairs are made images of the group (the others are dropped)."""
        found: list[tuple[str, int]] = []
        step = 400  # under SQLite's 999 variables per statement of older builds
        for start in range(0, len(pairs), step):
            part = pairs[start : start + step]
            values = ",".join("(?, ?)" for _ in part)
            flat = [value for pair in part for value in pair]
            rows = await self._all(
                f"WITH wanted (job_id, idx) AS (VALUES {values})"  # noqa: S608 (placeholders only)
                f" SELECT i.job_id, i.idx{_FROM} AND {_MADE}"
                " AND (i.job_id, i.idx) IN (SELECT job_id, idx FROM wanted)",
                (*flat, group_id),
            )
            found += [(str(r[0]), int(r[1])) for r in rows]
        return found
