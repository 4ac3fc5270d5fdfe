"""`build_zip`: a batch's images and both manifests in one streamed ZIP, downloadable through its link."""

import csv
import io
import json
import logging
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import ClientSession

from bot.app.downloads import build_zip, zip_key
from bot.core.manifest import ItemStatus, ManifestHeader, ManifestRow
from storage.errors import InvalidKeyError
from storage.file import FileStore
from storage.memory import MemoryStore
from tests.protocol.web.conftest import Served

CREATED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
FAILED = {4: ("SAFETY", "IMAGE_SAFETY"), 9: ("UPSTREAM", "503 after retries"), 15: ("BAD_INPUT", "not an image")}


def png(index: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + index.to_bytes(4, "big") * (100 + index)


async def make_batch(store: FileStore) -> list[ManifestRow]:
    rows = []
    for index in range(20):
        source = f"uploads/photo_{index:02d}.jpg" if index != 7 else "uploads/photo_03.JPG"  # a clash, renamed
        if index in FAILED:
            code, reason = FAILED[index]
            rows.append(
                ManifestRow(
                    index=index,
                    status=ItemStatus.ERROR,
                    prompt="=make it blue",
                    model="gemini-2.5-flash-image",
                    source_name=source,
                    seed=index,
                    error_code=code,
                    error_reason=reason,
                )
            )
            continue
        key = f"outputs/j_batch/{index:05d}.png"
        await store.put(key, png(index))
        rows.append(
            ManifestRow(
                index=index,
                status=ItemStatus.OK,
                prompt="=make it blue",
                model="gemini-2.5-flash-image",
                source_name=source,
                seed=index,
                output_key=key,
            )
        )
    return rows


async def test_build_zip_holds_images_and_manifests_when_some_items_failed(
    served: Served, http: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileStore(served.root, signer=served.signer)
    rows = await make_batch(store)
    header = ManifestHeader(
        job_id="j_batch", prompt="=make it blue", model="gemini-2.5-flash-image", created_at=CREATED
    )

    with caplog.at_level(logging.INFO):
        download = await build_zip(store, store, header=header, rows=rows, name="results")
    assert "renamed" not in caplog.text  # the writer kept every name the manifest gives
    assert download.url not in caplog.text

    assert download.key == "zips/j_batch/results.zip"
    assert download.images == 17
    assert download.not_included == 3
    assert download.url.startswith(served.base_url + "/files/zips/j_batch/results.zip?")
    async with http.get(download.url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/zip"
        assert resp.headers["Content-Disposition"] == 'attachment; filename="results.zip"'
        body = await resp.read()
    assert len(body) == download.size

    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        images = [name for name in names if name.endswith(".png")]
        assert len(images) == 17
        assert sorted(names) == sorted([*images, "manifest.csv", "manifest.json"])
        assert "uploads/photo_03.png" in images  # the input's folder and name, with the output's extension
        assert "uploads/photo_03 (2).png" in images  # index 7's source clashes with index 3's
        assert archive.read("uploads/photo_03 (2).png") == png(7)
        assert archive.read("uploads/photo_00.png") == png(0)
        table = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode(), newline="")))
        document = json.loads(archive.read("manifest.json"))

    assert [int(row["index"]) for row in table] == list(range(20))
    failed = [row for row in table if row["status"] == "error"]
    assert [(int(r["index"]), r["error_code"], r["error_reason"], r["file"]) for r in failed] == [
        (index, code, reason, "") for index, (code, reason) in FAILED.items()
    ]
    ok = [row for row in table if row["status"] == "ok"]
    assert {row["file"] for row in ok} == set(images)
    assert all(row["prompt"] == "'=make it blue" for row in table)  # formula guard
    assert document["job_id"] == "j_batch"
    assert document["prompt"] == "=make it blue"
    assert document["counts"] == {"ok": 17, "error": 3, "cancelled": 0, "skipped": 0, "total": 20}
    assert document["created"] == CREATED.isoformat()
    assert [item["file"] for item in document["items"]] == [row["file"] or None for row in table]


async def test_build_zip_writes_the_same_archive_when_rows_stream_from_an_async_iterator(served: Served) -> None:
    store = FileStore(served.root, signer=served.signer)
    rows = await make_batch(store)
    header = ManifestHeader(job_id="j_batch", prompt="p", model="m", created_at=CREATED)
    taken = 0

    async def streamed() -> AsyncIterator[ManifestRow]:
        nonlocal taken
        for row in rows:
            taken += 1
            yield row

    listed = await build_zip(store, store, header=header, rows=rows, name="listed")
    download = await build_zip(store, store, header=header, rows=streamed(), name="streamed")

    assert taken == len(rows)  # read once: a row streamed from the ledger is named as it comes
    assert download.rows == listed.rows
    assert (download.images, download.not_included) == (17, 3)
    with (
        zipfile.ZipFile(io.BytesIO(await store.get_bytes(listed.key))) as first,
        zipfile.ZipFile(io.BytesIO(await store.get_bytes(download.key))) as second,
    ):
        assert second.namelist() == first.namelist()
        assert second.read("manifest.csv") == first.read("manifest.csv")


async def test_build_zip_reports_a_missing_image_in_the_manifest_when_its_file_is_gone(served: Served) -> None:
    store = FileStore(served.root, signer=served.signer)
    rows = await make_batch(store)
    await store.delete("outputs/j_batch/00002.png")
    header = ManifestHeader(job_id="j_batch", prompt="p", model="m", created_at=CREATED)

    download = await build_zip(store, store, header=header, rows=rows)

    made = sum(1 for row in rows if row.has_file)
    assert download.images == made - 1
    missing = [row for row in download.rows if row.index == 2]
    assert [(r.status, r.error_code, r.output_name) for r in missing] == [(ItemStatus.ERROR, "MISSING", None)]
    data = await store.get_bytes(download.key)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        document = json.loads(archive.read("manifest.json"))
    assert len([n for n in names if n.endswith(".png")]) == made - 1
    assert [i["error_code"] for i in document["items"] if i["index"] == 2] == ["MISSING"]


async def test_build_zip_links_through_given_signer_when_store_is_memory(served: Served, http: ClientSession) -> None:
    store = MemoryStore()
    await store.put("outputs/g_1/00000.png", png(0))
    rows = [ManifestRow(index=0, status=ItemStatus.OK, prompt="p", model="m", output_key="outputs/g_1/00000.png")]
    header = ManifestHeader(job_id="g_1", prompt="p", model="m", created_at=CREATED)
    download = await build_zip(
        store, store, header=header, rows=rows, name="thread", filename="My thread.zip", signer=served.signer
    )
    assert download.key == "zips/g_1/thread.zip"
    assert download.filename == "My thread.zip"
    assert await store.exists(download.key)
    assert [row.output_name for row in download.rows] == ["p-00001.png"]  # no input: named after its prompt


@pytest.mark.parametrize(
    ("owner", "name"), [("../x", "a"), ("j", "a/../../b"), ("j", ""), ("", "a"), ("j", "a/b"), ("j", "a b")]
)
def test_zip_key_raises_when_id_or_name_is_malformed(owner: str, name: str) -> None:
    with pytest.raises(InvalidKeyError):
        zip_key(owner, name)


async def test_build_zip_marks_exactly_the_missing_images_when_a_big_batch_lost_some(served: Served) -> None:
    store = MemoryStore()
    n, lost = 300, {0, 127, 128, 299}  # across the checking slices
    rows = []
    for i in range(n):
        key = f"outputs/j_big/{i:05d}.png"
        if i not in lost:
            await store.put(key, png(i % 8))
        rows.append(ManifestRow(index=i, status=ItemStatus.OK, prompt="p", model="m", output_key=key))
    header = ManifestHeader(job_id="j_big", prompt="p", model="m", created_at=CREATED)

    download = await build_zip(store, store, header=header, rows=rows, signer=served.signer)

    assert download.images == n - len(lost)
    assert [r.index for r in download.rows] == list(range(n))  # every row, in order
    assert {r.index for r in download.rows if r.error_code == "MISSING"} == lost
