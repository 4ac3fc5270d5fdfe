"""`GroupService` below Discord: a group's manifest, its ZIP and an export to a configured destination."""

import asyncio
import csv
import dataclasses
import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.app.batches import BatchService
from bot.app.batchplan import BatchRequest
from bot.app.groups import GroupError, GroupService
from bot.app.runtime import Runtime
from bot.core.models import Group, JobId, JobKind, JobParams, JobRequest, UserId
from bot.ledger import Ledger
from bot.web import StableLinks
from storage import s3  # noqa: F401  # copy_object imports it lazily; importing reads files, which blocks a loop
from storage.memory import MemoryStore
from tests.e2e.bot._batchzips import make_zip
from tests.protocol.services.conftest import RunToEnd


async def batch_into(runtime: Runtime, group: Group, run_to_end: RunToEnd, tmp_path: Path, count: int) -> JobId:
    path = tmp_path / "in.zip"
    await asyncio.to_thread(path.write_bytes, await asyncio.to_thread(make_zip, count))
    service = BatchService(runtime)
    request = BatchRequest(owner_id=1, guild_id=7, channel_id=70, prompt="watercolour")
    plan = await service.plan_from_file(path, request, source="in.zip")
    result = await service.start(plan, group_id=group.id, is_admin=False)
    assert result.job is not None
    await run_to_end(result.job.id)
    return result.job.id


async def grid_into(runtime: Runtime, group: Group, run_to_end: RunToEnd, prompt: str) -> JobId:
    """Make a 4-image grid in the group, as `/imagine` in its thread does."""
    request = JobRequest(
        kind=JobKind.GRID,
        owner_id=UserId(1),
        prompt=prompt,
        params=JobParams(model=runtime.settings.gemini_model, aspect_ratio="16:9", n=4),
        guild_id=7,
        group_id=group.id,
    )
    result = await runtime.dispatcher.submit(request)
    assert result.job is not None
    await run_to_end(result.job.id)
    return result.job.id


def hex6(job_id: str) -> str:
    return job_id.removeprefix("j_")[:6]


async def test_rows_list_every_image_of_the_group_with_its_source_name(
    runtime: Runtime, group: Group, run_to_end: RunToEnd, tmp_path: Path
) -> None:
    job_id = await batch_into(runtime, group, run_to_end, tmp_path, 3)

    header, rows = await GroupService(runtime).rows(group)

    assert header.job_id == group.id
    assert [(r.index, r.source_name, r.prompt, r.output_name) for r in rows] == [
        (i, f"photos/img-{i:05d}.png", "watercolour", f"img-{i:05d}-{hex6(job_id)}-{i + 1}.png") for i in range(3)
    ]


async def test_download_names_grid_images_after_their_prompt_and_says_where_they_came_from(
    runtime: Runtime, store: MemoryStore, group: Group, run_to_end: RunToEnd
) -> None:
    first = await grid_into(runtime, group, run_to_end, "A red fox, in the snow")
    second = await grid_into(runtime, group, run_to_end, "A red fox, in the snow")

    download = await GroupService(runtime).download(group)

    archive = zipfile.ZipFile(io.BytesIO(await store.get_bytes(download.key)))
    table = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode(), newline="")))
    expected = [
        (f"a-red-fox-in-the-snow-{hex6(job)}-{n}.png", f"grid {job} #{n}")
        for job in (first, second)
        for n in range(1, 5)
    ]
    assert sorted((row["file"], row["source"]) for row in table) == sorted(expected)  # both made at one fake time
    assert sorted(n for n in archive.namelist() if n.endswith(".png")) == sorted(name for name, _ in expected)
    assert {row["aspect_ratio"] for row in table} == {"16:9"}


async def test_download_leaves_out_images_deleted_with_the_cross(
    runtime: Runtime, ledger: Ledger, store: MemoryStore, group: Group, run_to_end: RunToEnd
) -> None:
    kept = await grid_into(runtime, group, run_to_end, "kept fox")
    deleted = await grid_into(runtime, group, run_to_end, "deleted fox")
    images = await ledger.images(job_id=deleted)  # what a ❌ on the grid's message deletes
    assert await ledger.mark_images_deleted([i.id for i in images], now=datetime.now(UTC)) == 4
    assert await ledger.mark_images_deleted([i.id for i in images], now=datetime.now(UTC)) == 0  # once

    service = GroupService(runtime)
    download = await service.download(group)

    archive = zipfile.ZipFile(io.BytesIO(await store.get_bytes(download.key)))
    document = json.loads(archive.read("manifest.json"))
    assert [item["source"] for item in document["items"]] == [f"grid {kept} #{n}" for n in range(1, 5)]
    assert not [name for name in archive.namelist() if "deleted" in name]
    assert [n for _, n in await service.groups_with_counts(guild_id=7)] == [4]
    assert len(await ledger.images(job_id=deleted)) == 4  # still the job's: only the group lets them go


async def test_download_answers_a_stable_link_when_users_reach_the_web_server(
    runtime: Runtime, store: MemoryStore, group: Group, run_to_end: RunToEnd, tmp_path: Path
) -> None:
    await batch_into(runtime, group, run_to_end, tmp_path, 2)
    stable = StableLinks(b"test-secret", "https://peel.example.com")

    download = await GroupService(dataclasses.replace(runtime, stable_links=stable)).download(group)

    assert download.url.startswith("https://peel.example.com/l/")
    target = stable.resolve(download.url.rpartition("/")[2])
    assert target is not None and (target.key, target.filename) == (download.key, download.filename)
    assert await store.exists(target.key)


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
    job_id = await batch_into(runtime, group, run_to_end, tmp_path, 2)
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
        f"team/a/watercolour-{group.id}/00000-img-00000-{hex6(job_id)}-1.png",
        f"team/a/watercolour-{group.id}/00001-img-00001-{hex6(job_id)}-2.png",
        f"team/a/watercolour-{group.id}/manifest.csv",
        f"team/a/watercolour-{group.id}/manifest.json",
    ]
    assert seen == [(1, 2), (2, 2)]
    with pytest.raises(GroupError, match="not a usable folder"):
        await service.export(group, destination="archive", prefix="Bad Name!")
    await destination_close()
