"""Groups (threads) as a service, without Discord: a ZIP of a group's images, and export to a configured bucket.

An export copies every image of the group to `{prefix}/{group name}-{group id}/` of the destination store (any
store URL: `s3://…`, `file://…`), named as in the group's ZIP, then writes `manifest.csv` and `manifest.json` next
to them, so the destination is usable without Peel.

A group's ZIP and export hold what its thread shows: an image whose message its owner deleted with ❌ (the ledger's
`images.deleted_at`) is left out of both, files and manifest rows.
"""

import logging
import re
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from bot.app.downloads import ZipDownload, build_zip
from bot.app.runtime import Runtime
from bot.core.manifest import ItemStatus as RowStatus
from bot.core.manifest import (
    ManifestHeader,
    ManifestRow,
    assign_output_names,
    group_member_stem,
    image_origin,
    job_mode,
    render_csv,
    render_json,
)
from bot.core.models import Group, Job, JobId
from bot.core.render import code
from bot.errors import UserFacingError
from storage import Store, open_store
from storage.copy import CopyProgress, copy_object
from storage.errors import InvalidKeyError
from storage.keys import validate_prefix
from storage.zipwriter import MANIFEST_CSV_NAME, MANIFEST_JSON_NAME
from usertext.names import suffix

log = logging.getLogger(__name__)

_SLUG = re.compile(r"[^a-z0-9._-]+")


class GroupError(UserFacingError):
    """A group action that cannot be done; `user_message` says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportResult:
    """What an export wrote: images, bytes, and where."""

    destination: str
    prefix: str
    images: int
    bytes: int


def slug(text: str) -> str:
    """Return `text` as a lowercase storage-key segment (`[a-z0-9._-]`), never empty."""
    cleaned = _SLUG.sub("-", text.lower()).strip("-.")
    return cleaned[:60] or "group"


class GroupService:
    """Downloads and exports of groups, over the runtime's ledger and store.

    Args:
        runtime: the opened runtime.
        open_destination: opens an export destination's store from its URL (default `storage.open_store`).
    """

    def __init__(self, runtime: Runtime, *, open_destination: Callable[[str], Store] | None = None) -> None:
        self._rt = runtime
        self._open = open_destination or (lambda url: open_store(url))

    async def group_of(
        self,
        *,
        name: str,
        guild_id: int | None,
        channel_id: int | None,
        thread_id: int | None = None,
        owner_id: int | None = None,
    ) -> Group:
        """Return the group of a thread (or a channel's default group), creating it (owned by `owner_id`) if needed."""
        return await self._rt.ledger.ensure_group(
            name=name,
            now=datetime.now(UTC),
            guild_id=guild_id,
            channel_id=channel_id,
            thread_id=thread_id,
            owner_id=owner_id,
        )

    async def groups_with_counts(self, *, guild_id: int | None) -> list[tuple[Group, int]]:
        """Return a guild's groups, newest first, with how many images each holds."""
        return await self._rt.ledger.groups_with_counts(guild_id=guild_id)

    async def rename(self, group: Group, name: str) -> None:
        """Rename a group."""
        await self._rt.ledger.rename_group(group.id, name)

    async def rows(
        self, group: Group, *, selection: Collection[tuple[JobId, int]] | None = None
    ) -> tuple[ManifestHeader, list[ManifestRow]]:
        """Return the manifest of a group: one row per image still in it (not deleted with ❌), oldest first.

        With `selection` (job id, index pairs: a gallery's checked cells), only those images of the group.

        Each file is named after its input (a batch image) or its prompt, with a short id of its job and number
        (`bot.core.manifest.group_member_stem`); `source` is the input's name in its batch ZIP, or for an image
        made without one where it came from (`grid j_… #2`), so every row can be traced back to its job. A deleted
        image is left out of both the archive and the manifests: its owner took it out of the thread, and the group's
        ZIP is what the thread holds.
        """
        jobs: dict[JobId, Job | None] = {}
        rows: list[ManifestRow] = []
        wanted = None if selection is None else set(selection)
        for image in await self._rt.ledger.images(group_id=group.id):
            if wanted is not None and (image.job_id, image.index) not in wanted:
                continue
            if image.job_id not in jobs:
                jobs[image.job_id] = await self._rt.ledger.get_job(image.job_id)
            job = jobs[image.job_id]
            item = await self._rt.ledger.get_item(image.job_id, image.index)
            prompt = (item.prompt if item and item.prompt else None) or (job.prompt if job else "")
            source = item.inputs.source_name if item else None
            stem = group_member_stem(source_name=source, prompt=prompt, job_id=image.job_id, index=image.index)
            rows.append(
                ManifestRow(
                    index=len(rows),
                    status=RowStatus.OK,
                    prompt=prompt,
                    model=job.params.model if job else "",
                    source_name=source or image_origin(job.kind.value if job else "job", image.job_id, image.index),
                    seed=item.seed if item else None,
                    aspect_ratio=(
                        (item.inputs.aspect_ratio if item else None) or (job.params.aspect_ratio if job else None)
                    ),
                    image_size=((item.inputs.image_size if item else None) or (job.params.image_size if job else None)),
                    output_key=image.key,
                    output_name=stem + (suffix(image.key).lower() or ".png"),
                    mode=job_mode(job) if job else "fast",
                )
            )
        header = ManifestHeader(job_id=group.id, prompt=group.name, model="", created_at=group.created_at)
        return header, rows

    async def download(self, group: Group, *, selection: Collection[tuple[JobId, int]] | None = None) -> ZipDownload:
        """Write a ZIP of every image of the group (or of `selection`, see `rows`) with both manifests; return its link.

        Raises:
            GroupError: the group (or the selection) has no image.
        """
        header, rows = await self.rows(group, selection=selection)
        if not rows:
            raise GroupError("This group has no images yet.", title="Nothing to download")
        store = self._rt.backends.store
        # A selection's archive gets a name of its own: two selections of the same size must not overwrite each other.
        name = f"group-{len(rows)}" if selection is None else f"selection-{len(rows)}-{secrets.token_hex(4)}"
        download = await build_zip(
            store,
            store,
            header=header,
            rows=rows,
            name=name,
            filename=f"{slug(group.name)}.zip" if selection is None else f"{slug(group.name)}-{len(rows)}.zip",
            expires_s=self._rt.settings.link_expiry_s,
            signer=self._rt.signer,
        )
        # Posted in Discord: a stable link, working for as long as the ZIP is kept (`Runtime.lasting_link`).
        return replace(download, url=await self._rt.lasting_link(download.key, filename=download.filename))

    def destination_url(self, name: str) -> str:
        """Return the store URL of an export destination named in settings.

        Raises:
            GroupError: no destination has that name.
        """
        destinations = self._rt.settings.export_destinations
        url = destinations.get(name)
        if url is None:
            known = ", ".join(f"`{d}`" for d in sorted(destinations)) or "none are configured"
            raise GroupError(f"There is no export destination {code(name)} (known: {known}).", title="Unknown bucket")
        return url

    async def export(
        self,
        group: Group,
        *,
        destination: str,
        prefix: str = "",
        progress: Callable[[int, int], object] | None = None,
        selection: Collection[tuple[JobId, int]] | None = None,
    ) -> ExportResult:
        """Copy the group's images and both manifests to a configured destination.

        Args:
            group: the group to export.
            destination: the destination's name in `settings.export_destinations`.
            prefix: a folder inside the destination (`a/b`); the group's own folder goes under it.
            progress: called with (images copied, images in all) after each image.
            selection: only these images of the group (job id, index pairs), as `rows` takes them.

        Raises:
            GroupError: unknown destination, a malformed prefix, or no image in the group.
        """
        url = self.destination_url(destination)
        folder = "/".join(p for p in (prefix.strip("/"), f"{slug(group.name)}-{group.id}") if p) + "/"
        try:
            validate_prefix(folder)
        except InvalidKeyError as exc:
            raise GroupError(f"{code(prefix)} is not a usable folder name (use a-z, 0-9, `-`, `_`, `.`, `/`).") from exc
        header, rows = await self.rows(group, selection=selection)
        if not rows:
            raise GroupError("This group has no images yet.", title="Nothing to export")
        named = assign_output_names(rows, reserved=(MANIFEST_CSV_NAME, MANIFEST_JSON_NAME))
        dest = self._open(url)
        total_bytes = 0
        try:
            for done, row in enumerate(named, start=1):
                assert row.output_key is not None and row.output_name is not None  # every group row has a file
                info = await copy_object(self._rt.backends.store, row.output_key, dest, folder + _key_name(row))
                total_bytes += info.size
                if progress is not None:
                    progress(done, len(named))
            # The manifests name each image by its file name in the folder (the same as inside the ZIP).
            renamed = [_with_key_name(row) for row in named]
            await dest.put(folder + MANIFEST_CSV_NAME, render_csv(renamed).encode(), content_type="text/csv")
            await dest.put(
                folder + MANIFEST_JSON_NAME, render_json(header, renamed).encode(), content_type="application/json"
            )
        finally:
            await dest.close()
        log.info(
            "group %s exported to %s: %d images, %d bytes",
            group.id,
            destination,
            len(named),
            total_bytes,
            extra={"action": "export", "group_id": group.id},
        )
        return ExportResult(destination=destination, prefix=folder, images=len(named), bytes=total_bytes)


def _key_name(row: ManifestRow) -> str:
    """Return a row's file name as a storage key segment (stores accept a narrower alphabet than ZIPs)."""
    name = row.output_name or f"{row.index:05d}.png"
    stem, _, ext = name.rpartition(".")
    return f"{row.index:05d}-{slug(stem)}.{slug(ext) or 'png'}"


def _with_key_name(row: ManifestRow) -> ManifestRow:
    from dataclasses import replace

    return replace(row, output_name=_key_name(row))


__all__ = ["CopyProgress", "ExportResult", "GroupError", "GroupService", "slug"]
