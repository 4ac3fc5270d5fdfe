"""Safe intake of uploads against a hostile corpus built at test time (tests/fakes/hostile.py)."""

import asyncio
import hashlib
import io
import os
import re
import struct
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import storage.zipread as zipread_module
from storage.base import Body, ObjectInfo, Store
from storage.errors import StorageUnavailableError
from storage.file import FileStore
from storage.intake import (
    AcceptedImage,
    IntakeLimits,
    IntakeRefusedError,
    IntakeSettings,
    RefusalReason,
    SkippedEntry,
    SkipReason,
    UploadIntake,
    is_clutter,
    unsafe_path_reason,
)
from storage.memory import MemoryStore
from tests.fakes.hostile import (
    Corpus,
    ZipBuilder,
    as_zip64,
    gzip_bytes,
    hostile_corpus,
    make_gif,
    make_jpeg,
    make_png,
    make_webp,
    many_entries_zip,
    png_claiming,
    png_with_tar_magic,
    tar_bytes,
    text_named_png,
    truncated_jpeg,
)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return hostile_corpus()


@pytest.fixture
def memory_store() -> MemoryStore:
    return MemoryStore()


def _tree(root: Path) -> dict[str, int]:
    return {
        str(Path(dirpath, name).relative_to(root)): Path(dirpath, name).stat().st_size
        for dirpath, dirnames, filenames in os.walk(root)
        for name in filenames + dirnames
    }


async def tree(root: Path) -> dict[str, int]:
    """Snapshot every file and directory under `root` (relative path -> size)."""
    return await asyncio.to_thread(_tree, root)


async def write(path: Path, data: bytes) -> Path:
    await asyncio.to_thread(path.write_bytes, data)
    return path


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def stored_keys(store: MemoryStore | FileStore) -> list[str]:
    return [info.key async for info in store.list()]


def key_of(data: bytes, ext: str) -> str:
    return f"inputs/{hashlib.sha256(data).hexdigest()}.{ext}"


def check_corpus_report(corpus: Corpus, report_accepted: tuple[AcceptedImage, ...], reasons: dict[str, str]) -> None:
    assert reasons == corpus.skipped
    by_name = {image.name: image for image in report_accepted}
    assert set(by_name) == set(corpus.good) | set(corpus.duplicates)
    for name, data in corpus.good.items():
        image = by_name[name]
        assert image.key == key_of(data, image.format.value)
        assert image.size_bytes == len(data)
        assert image.duplicate_of is None
    for name, first in corpus.duplicates.items():
        assert by_name[name].duplicate_of == first
        assert by_name[name].key == by_name[first].key


# What a foreign exception's text looks like in a message: an errno, a path, a repr, a library's own phrasing.
LEAK = re.compile(
    r"Errno|/tmp|\b0x[0-9a-f]{6,}|<[a-z_.]+ |Error|Bad magic|File is not|Truncated|invalid (block|distance)"
)


# ---- the hostile corpus ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("parallel", [1, 3])
async def test_each_hostile_entry_gets_its_reason_when_mixed_zip_taken_from_file(
    corpus: Corpus, memory_store: MemoryStore, tmp_path: Path, parallel: int
) -> None:
    upload = await write(tmp_path / "upload.zip", corpus.data)
    before = await tree(tmp_path)

    report = await UploadIntake(memory_store, max_parallel_checks=parallel).zip_file(upload)

    check_corpus_report(corpus, report.accepted, {e.name: e.reason.value for e in report.skipped})
    assert all(entry.message for entry in report.skipped)
    leaks = [e.message for e in report.skipped if LEAK.search(e.message)]
    assert leaks == []  # users read Peel's own words, never zipfile's, zlib's or Pillow's exception text
    assert report.clutter_count == len(corpus.clutter)
    assert report.directory_count == len(corpus.directories)
    assert report.skip_counts() == Counter(SkipReason(reason) for reason in corpus.skipped.values())
    assert next(iter(report.skip_counts())) is SkipReason.UNSAFE_PATH  # the most frequent reason first
    assert not any(is_clutter(entry.name) for entry in report.skipped)
    assert await tree(tmp_path) == before  # nothing extracted next to the upload or anywhere else
    by_name = {image.name: image for image in report.accepted}
    expected = {key_of(data, by_name[name].format.value) for name, data in corpus.good.items()}
    assert sorted(await stored_keys(memory_store)) == sorted(expected)
    assert set(report.keys) == expected
    for name, data in corpus.good.items():
        key = next(image.key for image in report.accepted if image.name == name)
        assert await memory_store.get_bytes(key) == data


async def test_parallel_checks_report_entries_in_zip_order_when_they_finish_out_of_order(
    corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload = await write(tmp_path / "upload.zip", corpus.data)
    serial = await UploadIntake(MemoryStore()).zip_file(upload)
    real_load = zipread_module.load_entry
    overlap, running, lock = [0], [0], threading.Lock()

    def shuffled_load(archive: Any, info: Any, limits: Any) -> Any:  # early entries finish last
        with lock:
            running[0] += 1
            overlap[0] = max(overlap[0], running[0])
        try:
            time.sleep(0.004 * (len(info.filename) % 3))
            return real_load(archive, info, limits)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(zipread_module, "load_entry", shuffled_load)
    parallel = await UploadIntake(MemoryStore(), max_parallel_checks=4).zip_file(upload)

    assert overlap[0] > 1  # the checks did run at once
    assert [(a.name, a.key, a.duplicate_of) for a in parallel.accepted] == [
        (a.name, a.key, a.duplicate_of) for a in serial.accepted
    ]
    assert [(e.name, e.reason) for e in parallel.skipped] == [(e.name, e.reason) for e in serial.skipped]
    assert (parallel.clutter_count, parallel.directory_count) == (serial.clutter_count, serial.directory_count)


async def test_formats_and_sizes_are_read_from_content_when_names_lie(
    corpus: Corpus, memory_store: MemoryStore
) -> None:
    report = await UploadIntake(memory_store).zip_stream(chunks(corpus.data))
    facts = {image.name: (image.format.value, image.width, image.height) for image in report.accepted}
    assert facts["photos/a.png"] == ("png", 80, 60)
    assert facts["photos/b.jpg"] == ("jpg", 120, 90)
    assert facts["photos/c.webp"] == ("webp", 50, 40)
    assert facts["photos/d.webp"] == ("webp", 33, 21)
    assert facts["misnamed.gif"] == ("png", 20, 20)
    info = await memory_store.head(next(i.key for i in report.accepted if i.name == "photos/b.jpg"))
    assert info is not None
    assert info.content_type == "image/jpeg"


async def test_only_inputs_land_in_file_store_when_hostile_zip_streamed(corpus: Corpus, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    spool = tmp_path / "spool"
    await asyncio.to_thread(spool.mkdir)
    before = await tree(tmp_path)

    report = await UploadIntake(store, spool_dir=spool).zip_stream(chunks(corpus.data, 1 << 20))

    check_corpus_report(corpus, report.accepted, {e.name: e.reason.value for e in report.skipped})
    after = await tree(tmp_path)
    new = {path for path in after if path not in before}
    assert new == {"store", "store/inputs"} | {f"store/{key}" for key in report.keys}
    assert await tree(spool) == {}  # the spool is anonymous and gone
    assert sorted(await stored_keys(store)) == sorted(report.keys)
    await store.close()


async def test_stored_once_when_same_image_comes_twice_across_uploads(memory_store: MemoryStore) -> None:
    png = make_png(seed=11)
    intake = UploadIntake(memory_store)
    first = await intake.zip_stream(chunks(ZipBuilder().add("x.png", png).add("y.png", png).build()))
    second = await intake.zip_stream(chunks(ZipBuilder().add("z.png", png).build()))

    assert [i.duplicate_of for i in first.accepted] == [None, "x.png"]
    assert [i.already_stored for i in first.accepted] == [False, False]
    assert second.accepted[0].already_stored
    assert len(first.keys) == 1
    assert await stored_keys(memory_store) == [key_of(png, "png")]


# ---- whole-ZIP refusals ----------------------------------------------------------------------------------------


async def test_zip_refused_from_end_record_when_60000_entries(memory_store: MemoryStore, tmp_path: Path) -> None:
    upload = await write(tmp_path / "many.zip", many_entries_zip(60_000))
    with pytest.raises(IntakeRefusedError) as caught:
        await UploadIntake(memory_store).zip_file(upload)
    assert caught.value.reason is RefusalReason.TOO_MANY_ENTRIES
    assert "60,000" in caught.value.user_message
    assert await stored_keys(memory_store) == []


async def test_zip64_end_records_read_when_zip_uses_them(memory_store: MemoryStore) -> None:
    png, jpeg = make_png(seed=41), make_jpeg(seed=42)
    data = as_zip64(ZipBuilder().add("a.png", png).add("b.jpg", jpeg).build())
    report = await UploadIntake(memory_store).zip_stream(chunks(data))
    assert [image.name for image in report.accepted] == ["a.png", "b.jpg"]


async def test_zip_refused_from_zip64_end_record_when_it_claims_too_many_entries(memory_store: MemoryStore) -> None:
    data = as_zip64(ZipBuilder().add("a.png", make_png()).build(), claimed_entries=10**9)
    with pytest.raises(IntakeRefusedError) as caught:
        await UploadIntake(memory_store).zip_stream(chunks(data))
    assert caught.value.reason is RefusalReason.TOO_MANY_ENTRIES
    assert "1,000,000,000" in caught.value.user_message


@pytest.mark.parametrize(
    ("start", "stop"),
    [pytest.param(-42, -22, id="locator"), pytest.param(-98, -42, id="zip64-record")],
)
async def test_zip_refused_as_malformed_when_zip64_end_records_damaged(
    memory_store: MemoryStore, start: int, stop: int
) -> None:
    data = bytearray(as_zip64(ZipBuilder().add("a.png", make_png()).build()))
    data[start:stop] = bytes(stop - start)
    with pytest.raises(IntakeRefusedError) as caught:
        await UploadIntake(memory_store).zip_stream(chunks(bytes(data)))
    assert caught.value.reason is RefusalReason.NOT_A_ZIP
    assert "ZIP64" in caught.value.user_message


async def test_zip_refused_when_end_record_understates_entry_count(memory_store: MemoryStore) -> None:
    data = bytearray(many_entries_zip(12_000))
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, eocd + 8, 5, 5)  # claim 5 entries; the directory still holds 12,000
    with pytest.raises(IntakeRefusedError) as caught:
        await UploadIntake(memory_store).zip_stream(chunks(bytes(data)))
    assert caught.value.reason is RefusalReason.TOO_MANY_ENTRIES
    assert await stored_keys(memory_store) == []


async def test_zip_refused_when_central_directory_too_big_for_entry_limit(memory_store: MemoryStore) -> None:
    limits = IntakeLimits(max_entries=2, max_text_entries=0, max_central_directory_bytes_per_entry=10)
    data = ZipBuilder().add("a.png", make_png()).add("b.png", make_png(seed=1)).build()
    with pytest.raises(IntakeRefusedError) as caught:
        await UploadIntake(memory_store, limits=limits).zip_stream(chunks(data))
    assert caught.value.reason is RefusalReason.TOO_MANY_ENTRIES


def test_zip_opened_when_10000_images_come_with_prompts_csv_and_a_caption_each() -> None:
    captions = [f"img{i:06d}.txt" for i in range(10_000)]
    data = many_entries_zip(10_000, extra=["prompts.csv", *captions])  # 20,001 entries

    with zipread_module.open_zip(io.BytesIO(data), IntakeLimits()) as archive:  # the defaults
        assert len(archive.infolist()) == 20_001


@pytest.mark.parametrize(
    ("images", "texts", "refused"),
    [
        pytest.param(5, ["prompts.csv", *(f"img{i:06d}.txt" for i in range(4))], None, id="at-both-limits"),
        pytest.param(6, ["prompts.csv"], "6 entries besides its text files", id="one-image-over"),
        pytest.param(4, ["prompts.csv", *(f"c{i}.txt" for i in range(5))], "6 text files", id="one-text-over"),
        pytest.param(5, ["sub/prompts.csv"], "6 entries besides", id="a-table-below-the-root-is-no-text"),
    ],
)
def test_images_and_text_files_count_against_their_own_entry_limits(
    images: int, texts: list[str], refused: str | None
) -> None:
    limits = IntakeLimits(max_entries=5, max_text_entries=5)
    data = many_entries_zip(images, extra=texts)

    if refused is None:
        zipread_module.open_zip(io.BytesIO(data), limits).close()
        return
    with pytest.raises(IntakeRefusedError) as caught:
        zipread_module.open_zip(io.BytesIO(data), limits)
    assert caught.value.reason is RefusalReason.TOO_MANY_ENTRIES
    assert refused in caught.value.user_message


async def test_zip_refused_when_total_uncompressed_over_limit(memory_store: MemoryStore) -> None:
    pngs = [make_png(seed=s) for s in range(3)]
    builder = ZipBuilder()
    for index, png in enumerate(pngs):
        builder.add(f"{index}.png", png)
    limits = IntakeLimits(max_total_uncompressed_bytes=sum(map(len, pngs)) - 1)
    with pytest.raises(IntakeRefusedError) as caught:
        await UploadIntake(memory_store, limits=limits).zip_stream(chunks(builder.build()))
    assert caught.value.reason is RefusalReason.TOO_MUCH_DATA
    assert await stored_keys(memory_store) == []


async def test_zip_refused_when_total_claimed_by_headers_is_huge(memory_store: MemoryStore) -> None:
    builder = ZipBuilder()
    for index in range(3):
        builder.add(f"{index}.png", make_png(seed=index), declared_size=0xFFFF_FFF0)  # 3 x 4 GiB claimed
    with pytest.raises(IntakeRefusedError) as caught:
        await UploadIntake(memory_store).zip_stream(chunks(builder.build()))
    assert caught.value.reason is RefusalReason.TOO_MUCH_DATA


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda zip_bytes: text_named_png(), id="text"),
        pytest.param(lambda zip_bytes: b"", id="empty"),
        pytest.param(lambda zip_bytes: make_png(), id="png"),
        pytest.param(lambda zip_bytes: zip_bytes[:-40], id="truncated-central-directory"),
        pytest.param(lambda zip_bytes: zip_bytes[: len(zip_bytes) // 2], id="cut-in-half"),
        pytest.param(
            lambda zip_bytes: zip_bytes[: zip_bytes.rfind(b"PK\x01\x02") + 10] + zip_bytes[-22:],
            id="central-directory-hole",
        ),
    ],
)
async def test_zip_refused_as_malformed_when_not_a_whole_zip(memory_store: MemoryStore, mangle: object) -> None:
    good = ZipBuilder().add("a.png", make_png()).add("b.png", make_png(seed=2)).build()
    data = mangle(good)  # type: ignore[operator]
    with pytest.raises(IntakeRefusedError) as caught:
        await UploadIntake(memory_store).zip_stream(chunks(data))
    assert caught.value.reason is RefusalReason.NOT_A_ZIP
    assert not LEAK.search(caught.value.user_message), caught.value.user_message
    assert await stored_keys(memory_store) == []


async def test_stream_refused_and_spool_gone_when_upload_over_limit(memory_store: MemoryStore, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    await asyncio.to_thread(spool.mkdir)
    consumed = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal consumed
        while True:
            consumed += 1
            yield b"PK" * 512

    intake = UploadIntake(memory_store, limits=IntakeLimits(max_upload_bytes=10_000), spool_dir=spool)
    with pytest.raises(IntakeRefusedError) as caught:
        await intake.zip_stream(endless())
    assert caught.value.reason is RefusalReason.UPLOAD_TOO_LARGE
    assert consumed == 10  # stopped reading at the cap
    assert await tree(spool) == {}


async def test_zip_refused_when_path_does_not_exist(memory_store: MemoryStore, tmp_path: Path) -> None:
    with pytest.raises(IntakeRefusedError) as caught:
        await UploadIntake(memory_store).zip_file(tmp_path / "missing.zip")
    assert caught.value.reason is RefusalReason.NOT_A_ZIP
    assert str(tmp_path) not in caught.value.user_message and "Errno" not in caught.value.user_message


# ---- single images ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "ext", "size"),
    [
        pytest.param(make_png(31, 17, seed=21), "png", (31, 17), id="png"),
        pytest.param(make_jpeg(640, 480, seed=22), "jpg", (640, 480), id="jpeg"),
        pytest.param(make_webp(256, 128, seed=23), "webp", (256, 128), id="webp"),
        pytest.param(make_webp(9, 7, seed=24, lossless=True), "webp", (9, 7), id="webp-lossless"),
        pytest.param(png_with_tar_magic(), "png", (16, 16), id="png-with-ustar-at-257"),
    ],
)
async def test_image_stored_under_content_key_when_valid(
    memory_store: MemoryStore, data: bytes, ext: str, size: tuple[int, int]
) -> None:
    result = await UploadIntake(memory_store).image(chunks(data, 100), name="upload")
    assert isinstance(result, AcceptedImage)
    assert (result.key, result.format.value, (result.width, result.height)) == (key_of(data, ext), ext, size)
    assert await memory_store.get_bytes(result.key) == data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(png_claiming(100_000, 100_000), SkipReason.TOO_MANY_PIXELS, id="100k-square-png"),
        pytest.param(png_claiming(12_000, 12_000), SkipReason.TOO_MANY_PIXELS, id="in-pillow-warning-band"),
        pytest.param(png_claiming(8_000, 6_000), SkipReason.TOO_MANY_PIXELS, id="48-megapixels"),
        pytest.param(png_claiming(0, 10), SkipReason.CORRUPT_IMAGE, id="zero-width"),
        pytest.param(text_named_png(), SkipReason.NOT_AN_IMAGE, id="text"),
        pytest.param(make_gif(), SkipReason.NOT_AN_IMAGE, id="gif"),
        pytest.param(truncated_jpeg(), SkipReason.CORRUPT_IMAGE, id="truncated-jpeg"),
        pytest.param(make_jpeg()[:-2], SkipReason.CORRUPT_IMAGE, id="jpeg-without-eoi"),
        pytest.param(make_webp()[:-20], SkipReason.CORRUPT_IMAGE, id="truncated-webp"),
        pytest.param(ZipBuilder().add("a", b"a").build(), SkipReason.NESTED_ARCHIVE, id="zip"),
        pytest.param(tar_bytes(), SkipReason.NESTED_ARCHIVE, id="tar"),
        pytest.param(gzip_bytes(), SkipReason.NESTED_ARCHIVE, id="gzip"),
    ],
)
async def test_image_skipped_with_reason_when_hostile(
    memory_store: MemoryStore, data: bytes, reason: SkipReason
) -> None:
    result = await UploadIntake(memory_store).image(data, name="x.png")
    assert isinstance(result, SkippedEntry)
    assert (result.name, result.reason) == ("x.png", reason)
    assert await stored_keys(memory_store) == []


def webp_claiming_16k_square() -> bytes:
    data = bytearray(make_webp(64, 64, lossless=True))
    # VP8X header claiming a 16384 x 16384 canvas (268 megapixels): libwebp would allocate it on open.
    vp8x = b"VP8X" + struct.pack("<L", 10) + b"\x00\x00\x00\x00" + (16383).to_bytes(3, "little") * 2
    data = data[:12] + bytearray(vp8x) + data[12:]
    struct.pack_into("<L", data, 4, len(data) - 8)
    return bytes(data)


async def test_webp_canvas_checked_before_decoder_when_huge(memory_store: MemoryStore) -> None:
    result = await UploadIntake(memory_store).image(webp_claiming_16k_square())
    assert isinstance(result, SkippedEntry)
    assert result.reason is SkipReason.TOO_MANY_PIXELS


async def test_pillow_bomb_error_becomes_skip_when_limit_set_above_pillows(memory_store: MemoryStore) -> None:
    intake = UploadIntake(memory_store, limits=IntakeLimits(max_pixels=10**12))
    result = await intake.image(webp_claiming_16k_square())
    assert isinstance(result, SkippedEntry)
    assert result.reason is SkipReason.TOO_MANY_PIXELS
    assert "decompression bomb" in result.message


async def test_image_skipped_when_pixels_over_configured_limit(memory_store: MemoryStore) -> None:
    intake = UploadIntake(memory_store, limits=IntakeLimits(max_pixels=32 * 32))
    small, large = make_png(32, 32), make_png(33, 32)
    assert isinstance(await intake.image(small), AcceptedImage)
    result = await intake.image(large)
    assert isinstance(result, SkippedEntry)
    assert result.reason is SkipReason.TOO_MANY_PIXELS


async def test_stream_stops_when_image_over_byte_limit(memory_store: MemoryStore) -> None:
    data = make_png(64, 64)
    result = await UploadIntake(memory_store, limits=IntakeLimits(max_image_bytes=len(data) - 1)).image(
        chunks(data, 1000)
    )
    assert isinstance(result, SkippedEntry)
    assert result.reason is SkipReason.TOO_LARGE
    bytes_result = await UploadIntake(memory_store, limits=IntakeLimits(max_image_bytes=len(data) - 1)).image(data)
    assert isinstance(bytes_result, SkippedEntry)
    assert bytes_result.reason is SkipReason.TOO_LARGE


async def test_loose_images_deduplicated_when_taken_together(memory_store: MemoryStore) -> None:
    png, jpeg = make_png(seed=31), make_jpeg(seed=32)
    report = await UploadIntake(memory_store).images(
        [("a.png", png), ("b.jpg", jpeg), ("c.png", png), ("d.txt", text_named_png())]
    )
    assert [(i.name, i.duplicate_of) for i in report.accepted] == [("a.png", None), ("b.jpg", None), ("c.png", "a.png")]
    assert report.reasons() == {"d.txt": SkipReason.NOT_AN_IMAGE}
    assert sorted(await stored_keys(memory_store)) == sorted([key_of(png, "png"), key_of(jpeg, "jpg")])


# ---- pure helpers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "unsafe"),
    [
        ("a.png", False),
        ("dir/sub/a.png", False),
        ("./a.png", False),
        ("a..b.png", False),
        ("../a.png", True),
        ("dir/../../a.png", True),
        ("/etc/a.png", True),
        ("\\\\server\\share\\a.png", True),
        ("dir\\..\\..\\a.png", True),
        ("C:\\a.png", True),
        ("c:a.png", True),
        ("a\x00.png", True),
        ("a\n.png", True),
    ],
)
def test_unsafe_path_detected_when_name_could_escape(name: str, unsafe: bool) -> None:
    assert (unsafe_path_reason(name) is not None) is unsafe


@pytest.mark.parametrize(
    ("name", "clutter"),
    [
        ("__MACOSX/a.png", True),
        ("x/__MACOSX/._a.png", True),
        (".DS_Store", True),
        ("a/b/.DS_Store", True),
        ("THUMBS.DB", True),
        ("Desktop.ini", True),
        (".hidden.png", True),
        (".git/HEAD", True),
        ("a.png", False),
        ("./a.png", False),
        ("../a.png", False),
        ("macosx/a.png", False),
        ("thumbs.db.png", False),
    ],
)
def test_clutter_detected_when_os_metadata(name: str, clutter: bool) -> None:
    assert is_clutter(name) is clutter


def test_limits_read_from_environment_when_settings_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_INTAKE_MAX_ENTRIES", "123")
    limits = IntakeSettings().limits()
    assert limits.max_entries == 123
    assert limits.max_pixels == IntakeLimits().max_pixels


# ---- cancellation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("parallel", [1, 2])
async def test_cancel_waits_for_entry_thread_when_cancelled_mid_entry(
    memory_store: MemoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: int
) -> None:
    started, release = threading.Semaphore(0), threading.Event()
    events: list[str] = []
    real_load = zipread_module.load_entry

    def slow_load(*args: Any) -> Any:
        started.release()
        release.wait(5)
        events.append("entry thread done")
        return real_load(*args)

    real_make_spool = zipread_module.make_spool

    def make_spool(spool_dir: Path | None) -> Any:
        spool = real_make_spool(spool_dir)
        real_close = spool.close

        def close() -> None:
            events.append("spool closed")
            real_close()

        spool.close = close  # type: ignore[method-assign]
        return spool

    monkeypatch.setattr(zipread_module, "load_entry", slow_load)
    monkeypatch.setattr(zipread_module, "make_spool", make_spool)
    spool = tmp_path / "spool"
    await asyncio.to_thread(spool.mkdir)
    data = ZipBuilder().add("a.png", make_png()).add("b.png", make_png(seed=1)).build()
    intake = UploadIntake(memory_store, spool_dir=spool, max_parallel_checks=parallel)
    task = asyncio.create_task(intake.zip_stream(chunks(data)))
    for _ in range(parallel):  # every check is in its thread
        assert await asyncio.to_thread(started.acquire, timeout=5)

    task.cancel()
    # A plain to_thread would let the task end now and close the spool under the thread still reading it.
    done, _ = await asyncio.wait([task], timeout=0.3)
    assert not done
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == ["entry thread done"] * parallel + ["spool closed"]  # every check's thread, then the spool
    assert await stored_keys(memory_store) == []
    assert await tree(spool) == {}


async def test_cancel_propagates_when_cancelled_during_store_put(memory_store: MemoryStore, tmp_path: Path) -> None:
    entered, never = asyncio.Event(), asyncio.Event()

    class StuckStore(MemoryStore):
        async def put(self, key: str, body: Body, *, content_type: str | None = None) -> ObjectInfo:
            entered.set()
            await never.wait()
            raise AssertionError("unreachable")

    upload = await write(tmp_path / "up.zip", ZipBuilder().add("a.png", make_png()).build())
    task = asyncio.create_task(UploadIntake(StuckStore()).zip_file(upload))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_writes_overlap_the_next_checks_but_stay_bounded_and_a_failed_one_fails_the_intake(
    tmp_path: Path,
) -> None:
    at_once, most = 0, 0

    class SlowStore(MemoryStore):
        async def put(self, key: str, body: Body, *, content_type: str | None = None) -> ObjectInfo:
            nonlocal at_once, most
            at_once += 1
            most = max(most, at_once)
            try:
                await asyncio.sleep(0.02)
                if len(self._objects) == 6:
                    raise StorageUnavailableError("disk went away")
                return await super().put(key, body, content_type=content_type)
            finally:
                at_once -= 1

    builder = ZipBuilder()
    for i in range(12):
        builder.add(f"{i:02d}.png", make_png(seed=i))
    upload = await write(tmp_path / "up.zip", builder.build())
    store = SlowStore()

    with pytest.raises(StorageUnavailableError, match="disk went away"):
        await UploadIntake(store).zip_file(upload)

    assert 1 < most <= 4  # writes ran behind the checks, never more than four at once
    await asyncio.sleep(0.05)
    assert at_once == 0  # the writes still running when one failed were cancelled, not left behind


async def test_corpus_lands_only_under_inputs_when_taken_into_any_backend(corpus: Corpus, store: Store) -> None:
    # `store` is the storage contract suite's fixture: memory, file, S3 on moto, S3 with a key prefix.
    report = await UploadIntake(store).zip_stream(chunks(corpus.data, 256 * 1024))

    check_corpus_report(corpus, report.accepted, {e.name: e.reason.value for e in report.skipped})
    listed = [info async for info in store.list()]
    assert sorted(info.key for info in listed) == sorted(report.keys)
    by_name = {image.name: image for image in report.accepted}
    for name, data in corpus.good.items():
        assert await store.get_bytes(by_name[name].key) == data
    assert {info.content_type for info in listed} == {"image/png", "image/jpeg", "image/webp"}


async def test_prompt_table_and_captions_come_back_as_texts_within_their_limits(
    memory_store: MemoryStore, tmp_path: Path
) -> None:
    builder = ZipBuilder()
    builder.add("prompts.csv", "\ufefffile,prompt\nset/a.png,é\n".encode())
    builder.add("set/a.png", make_png(8, 8))
    builder.add("set/a.txt", b"a caption")
    builder.add("set/big.txt", b"x" * 65)
    builder.add("latin1.txt", "café".encode("latin-1"))
    builder.add("set/prompts.csv", b"file,prompt\n")  # a table counts at the root only
    builder.add("c.txt", b"y" * 40)
    builder.add("d.txt", b"z" * 40)
    limits = IntakeLimits(max_caption_bytes=64, max_text_bytes_total=120)
    upload = await write(tmp_path / "upload.zip", builder.build())

    report = await UploadIntake(memory_store, limits=limits).zip_file(upload)

    assert [(t.name, t.text) for t in report.texts] == [
        ("prompts.csv", "\ufefffile,prompt\nset/a.png,é\n"),
        ("set/a.txt", "a caption"),
        ("c.txt", "y" * 40),
    ]
    assert [image.name for image in report.accepted] == ["set/a.png"]
    assert {e.name: e.reason for e in report.skipped} == {
        "set/big.txt": SkipReason.TOO_LARGE,
        "latin1.txt": SkipReason.NOT_UTF8,
        "set/prompts.csv": SkipReason.NOT_AN_IMAGE,
        "d.txt": SkipReason.TOO_LARGE,  # over the texts' budget in all
    }
