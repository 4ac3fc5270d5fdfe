"""STUB for the Discord side's development (replaced by the gallery branch's service at merge)."""

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.app.runtime import Runtime
from bot.core.models import Group, JobId
from bot.errors import UserFacingError


class GalleryError(UserFacingError):
    """A gallery action that cannot be done."""


@dataclass(frozen=True)
class GalleryLink:
    """A gallery's capability URL."""

    url: str
    created_at: datetime


class GalleryService:
    """Stub."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    def available(self) -> bool:
        """Stub."""
        return self._rt.stable_links is not None

    async def link(
        self, group: Group, *, issued_by: int, can_export: bool = False, job_id: JobId | None = None
    ) -> GalleryLink:
        """Stub."""
        suffix = f"?job={job_id}" if job_id else ""
        return GalleryLink(url=f"http://127.0.0.1:8081/g/stub-{group.id}{suffix}", created_at=datetime.now(UTC))

    async def revoke(self, group: Group, *, by: int, is_admin: bool, can_export: bool = False) -> GalleryLink:
        """Stub."""
        if not is_admin and by != group.owner_id:
            raise GalleryError("Only the group's owner or a Peel admin can revoke its gallery link.")
        return GalleryLink(url=f"http://127.0.0.1:8081/g/stub2-{group.id}", created_at=datetime.now(UTC))
