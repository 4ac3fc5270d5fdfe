"""Gallery links as a service: issue, show again and revoke a group's capability URL, and serve its pages' port.

A group has at most one active link, `{base}/g/{token}` (`bot.web.gallery`). The token is derived from the link
secret and a random nonce (`bot.core.gallery.gallery_token`); the ledger keeps the nonce and the token's SHA-256,
so the same link can be shown again (`/group gallery`) while a copy of the ledger alone opens nothing. Revoking
stamps the old link and issues a new one at once. Links are only handed out where users can open the web server
(`bot.core.deployment.web_server_reaches_users`, i.e. `Runtime.stable_links` is set).

Building the service attaches `GalleryPages`, the port the web pages read through, to the runtime's web server.
"""

import asyncio
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.app.groups import GroupError, GroupService
from bot.app.runtime import Runtime
from bot.core.gallery import (
    MAX_SELECTION,
    GalleryCounts,
    GalleryEntry,
    GalleryFilter,
    GalleryLinkRecord,
    gallery_token,
    token_hash,
)
from bot.core.models import Group, GroupId, JobId
from bot.errors import UserFacingError
from bot.web.gallery import (
    ROUTE,
    GalleryAccess,
    GalleryRefusedError,
    GallerySelection,
    Revoked,
    TakenZip,
)
from storage.errors import InvalidKeyError, ObjectNotFoundError
from storage.keys import thumb_key
from storage.thumbnails import THUMB_CONTENT_TYPE, ThumbnailError, make_thumbnail

log = logging.getLogger(__name__)


class GalleryError(UserFacingError):
    """A gallery action that cannot be done; `user_message` says why."""


@dataclass(frozen=True, slots=True)
class GalleryLink:
    """A group's gallery URL (a secret: never log it) and when its link was issued."""

    url: str
    created_at: datetime


class GalleryService:
    """Gallery links of groups, over the runtime's ledger; building it starts serving the gallery pages.

    Args:
        runtime: the opened runtime.
        groups: the group service whose ZIP and export the pages reuse (default: one over the same runtime).
    """

    def __init__(self, runtime: Runtime, *, groups: GroupService | None = None) -> None:
        self._rt = runtime
        self._pages = GalleryPages(runtime, groups or GroupService(runtime))
        runtime.gallery_mount.attach(self._pages)

    def available(self) -> bool:
        """Tell whether gallery links can be given: the web server runs where users can open it."""
        return self._rt.stable_links is not None

    async def link(
        self, group: Group, *, issued_by: int, can_export: bool = False, job_id: JobId | None = None
    ) -> GalleryLink:
        """Return the group's active link, issuing one on the first call; with `job_id`, filtered to that batch.

        `can_export` counts only when a link is issued: an active link keeps what it was issued with.

        Raises:
            GalleryError: the web server cannot be reached by users here.
        """
        active = await self._rt.ledger.gallery_link(group.id)
        if active is None:
            active = await self._issue(group, issued_by=issued_by, can_export=can_export, replace=False)
        return self._link_of(active, job_id)

    async def revoke(self, group: Group, *, by: int, is_admin: bool, can_export: bool = False) -> GalleryLink:
        """Revoke the group's link (its token stops working at once) and issue a new one; owner or admin only.

        Raises:
            GalleryError: `by` neither owns the group nor is an admin, or links cannot be given here.
        """
        if not is_admin and (group.owner_id is None or group.owner_id != by):
            raise GalleryError(
                "Only the group's owner or a Peel admin can revoke its gallery link.", title="Not allowed"
            )
        record = await self._issue(group, issued_by=by, can_export=can_export, replace=True)
        log.info("gallery link of group %s revoked and reissued", group.id, extra={"action": "gallery_revoke"})
        return self._link_of(record, None)

    async def _issue(self, group: Group, *, issued_by: int, can_export: bool, replace: bool) -> GalleryLinkRecord:
        self._base_url()  # refuse before writing anything
        nonce = secrets.token_urlsafe(16)
        return await self._rt.ledger.issue_gallery_link(
            group_id=group.id,
            nonce=nonce,
            token_hash=token_hash(gallery_token(self._rt.signer.secret, group.id, nonce)),
            issued_by=issued_by,
            can_export=can_export,
            now=datetime.now(UTC),
            revoke_active=replace,
        )

    def _base_url(self) -> str:
        links = self._rt.stable_links
        if links is None:
            raise GalleryError(
                "Galleries need Peel's web server to be reachable; ask an admin to set PUBLIC_BASE_URL.",
                title="No gallery here",
            )
        return links.base_url.rstrip("/")

    def _link_of(self, record: GalleryLinkRecord, job_id: JobId | None) -> GalleryLink:
        token = gallery_token(self._rt.signer.secret, record.group_id, record.nonce)
        url = f"{self._base_url()}{ROUTE}{token}" + (f"?job={job_id}" if job_id is not None else "")
        return GalleryLink(url=url, created_at=record.created_at)


class GalleryPages:
    """`bot.web.gallery.GalleryPort` over the ledger, the store and the group service (ZIPs and exports)."""

    def __init__(self, runtime: Runtime, groups: GroupService) -> None:
        self._rt = runtime
        self._groups = groups
        self._making: dict[str, asyncio.Lock] = {}

    async def open(self, token: str) -> GalleryAccess | Revoked | None:
        """Return what `token` opens: its group, `Revoked.REVOKED`, or None for a token of no link."""
        record = await self._rt.ledger.gallery_link_by_hash(token_hash(token))
        if record is None:
            return None
        expected = gallery_token(self._rt.signer.secret, record.group_id, record.nonce)
        if not hmac.compare_digest(expected, token):  # a link made with another secret
            return None
        if record.revoked_at is not None:
            return Revoked.REVOKED
        group = await self._rt.ledger.get_group(GroupId(record.group_id))
        if group is None:
            return None
        destinations = tuple(sorted(self._rt.settings.export_destinations)) if record.can_export else ()
        return GalleryAccess(
            group_id=group.id, group_name=group.name, can_export=record.can_export, destinations=destinations
        )

    async def counts(self, access: GalleryAccess, *, job_id: str | None, query: str) -> GalleryCounts:
        """Return the count of each filter."""
        return await self._rt.ledger.gallery_counts(access.group_id, job_id=job_id, query=query)

    async def entries(
        self,
        access: GalleryAccess,
        *,
        which: GalleryFilter,
        job_id: str | None,
        query: str,
        limit: int,
        offset: int,
    ) -> list[GalleryEntry]:
        """Return one page of the group's items."""
        return await self._rt.ledger.gallery_entries(
            access.group_id, which=which, job_id=job_id, query=query, limit=limit, offset=offset
        )

    async def entry(self, access: GalleryAccess, job_id: str, index: int) -> GalleryEntry | None:
        """Return one of the group's items."""
        return await self._rt.ledger.gallery_entry(access.group_id, job_id, index)

    async def thumbnail(self, key: str) -> str | None:
        """Return the key of the image's thumbnail (`storage.keys.thumb_key`), made once and stored when missing."""
        store = self._rt.backends.store
        try:
            thumb = thumb_key(key)
        except InvalidKeyError:
            return None
        lock = self._making.setdefault(thumb, asyncio.Lock())
        async with lock:  # two first views at once make it once
            try:
                if await store.exists(thumb):
                    return thumb
                data = await store.get_bytes(key)
                small = await asyncio.to_thread(make_thumbnail, data)
                await store.put(thumb, small, content_type=THUMB_CONTENT_TYPE)
                log.debug("thumbnail %s made (%d bytes)", thumb, len(small))
                return thumb
            except (ObjectNotFoundError, InvalidKeyError, OSError, ThumbnailError):
                return None  # the image is gone, or is no image Pillow reads
            finally:
                self._making.pop(thumb, None)

    async def _pairs(self, access: GalleryAccess, selection: GallerySelection) -> list[tuple[JobId, int]]:
        """Return the made images of the group a selection names (checked cells, or every one the filter shows)."""
        if selection.pairs is not None:
            pairs = await self._rt.ledger.gallery_made(access.group_id, selection.pairs)
        else:
            shown = await self._rt.ledger.gallery_entries(
                access.group_id,
                which=selection.which,
                job_id=selection.job_id,
                query=selection.query,
                limit=MAX_SELECTION,
            )
            pairs = [(e.job_id, e.index) for e in shown if e.made]
        if not pairs:
            raise GalleryRefusedError("None of the selected items has an image to take.")
        return [(JobId(job), index) for job, index in pairs]

    async def _group(self, access: GalleryAccess) -> Group:
        group = await self._rt.ledger.get_group(GroupId(access.group_id))
        if group is None:
            raise GalleryRefusedError("This group no longer exists.", status=404)
        return group

    async def take_zip(self, access: GalleryAccess, selection: GallerySelection) -> TakenZip:
        """Write a ZIP of the selection's images with both manifests (the group ZIP's writer and rows)."""
        pairs = await self._pairs(access, selection)
        try:
            download = await self._groups.download(await self._group(access), selection=pairs)
        except GroupError as exc:
            raise GalleryRefusedError(exc.user_message) from exc
        return TakenZip(key=download.key, filename=download.filename, images=download.images)

    async def export(self, access: GalleryAccess, selection: GallerySelection, destination: str) -> str:
        """Copy the selection's images and both manifests to a configured destination (the group export)."""
        if not access.can_export:
            raise GalleryRefusedError("This gallery link may not export; ask the group's owner.", status=403)
        pairs = await self._pairs(access, selection)
        try:
            result = await self._groups.export(await self._group(access), destination=destination, selection=pairs)
        except GroupError as exc:
            raise GalleryRefusedError(exc.user_message) from exc
        return f"Exported {result.images} images ({result.bytes:,} bytes) to {result.destination}: {result.prefix}"


__all__ = ["GalleryError", "GalleryLink", "GalleryPages", "GalleryService"]
