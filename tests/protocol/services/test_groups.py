"""`GroupService` below Discord: a group's manifest, its ZIP and an export to a configured destination."""

import asyncio
import io
import zipfile
from pathlib import Path

import pytest

from bot.app.batches import BatchService
from bot.app.batchplan import BatchRequest
from bot.app.groups import GroupError, GroupService
from bot.app.runtime import Runtime
from bot.core.models import Group
from bot.ledger import Ledger
from storage import s3  # noqa: F401  # copy_object imports it lazily; importing reads files, which blocks a loop
from storage.memory import MemoryStore
from tests.e2e.bot._batchzips import make_zip
from tests.protocol.services.conftest import RunToEnd


async def batch_into(runtime: Runtime, group: Group, run_to_end: RunToEnd, tmp_path: Path, count: int) -> None:
    path = tmp_path / "in.zip"
    await asyncio.to_thread(path.write_bytes, await asyncio.to_thread(make_zip, count))
    service = BatchService(runtime)
    request = BatchRequest(owner_id=1, guild_id=7, channel_id=70, prompt="watercolour")
    plan = await service.plan_from_file(path, request, source="in.zip")
    result = await service.start(plan, group_id=group.id, is_admin=False)
    assert result.job is not None
    await run_to_end(result.job.id)


async def test_rows_list_every_image_of_the_group_with_its_source_name(
    runtime: Runtime, group: Group, run_to_end: RunToEnd, tmp_path: Path
) -> None:
    await batch_into(runtime, group, run_to_end, tmp_path, 3)

    header, rows = await GroupService(runtime).rows(group)

    assert header.job_id == group.id
    assert [(r.index, r.source_name, r.prompt) for r in rows] == [
        (i, f"photos/img-{i:05d}.png", "watercolour") for i in range(3)
    ]


async def test_download_zips_every_image_and_both_manifests(
    runtime: Runtime, store: MemoryStore, group: Group, run_to_end: RunToEnd, tmp_path: Path
) -> None:
    await batch_into(runtime, group, run_to_end, tmp_path, 2)

    download = await GroupService(runtime).download(group)

    names = zipfile.ZipFile(io.BytesIO(await store.get_bytes(download.key))).namelist()
    assert sum(name.endswith(".png") for name in names) == 2
    assert any(name.endswith("manifest.csv") for name in names)
    assert any(name.endswith("manifest.json") for name in names)
    assert download.filename == "watercolour.zip"


async def test_download_and_export_are_refused_when_the_group_has_no_image(
    runtime: Runtime, ledger: Ledger, group: Group
) -> None:
    service = GroupService(runtime, open_destination=lambda url: MemoryStore(url))
    with pytest.raises(GroupError, match="no images yet"):
        await service.download(group)
    with pytest.raises(GroupError, match="no export destination"):
        await service.export(group, destination="nowhere")


async def test_export_copies_images_and_manifests_under_the_group_s_folder(
    runtime: Runtime, group: Group, run_to_end: RunToEnd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await batch_into(runtime, group, run_to_end, tmp_path, 2)
    monkeypatch.setattr(runtime.settings, "export_destinations", {"archive": "memory://archive"})
    destination = MemoryStore("memory://archive")
    destination_close = destination.close

    async def keep_open() -> None:  # the test reads it afterwards; the service closes what it opened
        return None

    monkeypatch.setattr(destination, "close", keep_open)
    seen: list[tuple[int, int]] = []
    service = GroupService(runtime, open_destination=lambda url: destination)

    result = await service.export(
        group, destination="archive", prefix="team/a", progress=lambda d, t: seen.append((d, t))
    )

    keys = sorted([info.key async for info in destination.list("")])
    assert result.images == 2 and result.prefix == f"team/a/watercolour-{group.id}/"
    assert keys == [
        f"team/a/watercolour-{group.id}/00000-photos-img-00000.png",
        f"team/a/watercolour-{group.id}/00001-photos-img-00001.png",
        f"team/a/watercolour-{group.id}/manifest.csv",
        f"team/a/watercolour-{group.id}/manifest.json",
    ]
    assert seen == [(1, 2), (2, 2)]
    with pytest.raises(GroupError, match="not a usable folder"):
        await service.export(group, destination="archive", prefix="Bad Name!")
    await destination_close()
