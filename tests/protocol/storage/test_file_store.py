"""What only the file store promises: nothing outside the root, URL forms, hidden temporary files."""

import asyncio
import errno
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import InvalidKeyError, ObjectNotFoundError, StorageUnavailableError, StoreConfigError, open_store
from storage.file import FileStore, _threaded, path_from_file_url


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


async def test_nothing_lands_outside_root_when_a_symlink_inside_points_out(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"

    def plant() -> None:
        root.mkdir()
        outside.mkdir()
        (outside / "secret.txt").write_text("do not touch")
        (root / "escape").symlink_to(outside, target_is_directory=True)
        (root / "leak.png").symlink_to(outside / "secret.txt")

    await asyncio.to_thread(plant)
    store = FileStore(root)
    for key in ["escape/x.png", "escape/new/dir/x.png", "leak.png", "escape/secret.txt"]:
        with pytest.raises(InvalidKeyError):
            await store.put(key, b"evil")

        async def body() -> AsyncIterator[bytes]:
            yield b"evil"

        with pytest.raises(InvalidKeyError):
            await store.put(key, body())
        with pytest.raises(InvalidKeyError):
            await store.delete(key)
        with pytest.raises(InvalidKeyError):
            await store.get_bytes(key)
    with pytest.raises(InvalidKeyError):
        await store.local_path("escape/secret.txt")
    assert await asyncio.to_thread(tree, outside) == ["secret.txt"]
    assert await asyncio.to_thread((outside / "secret.txt").read_text) == "do not touch"
    assert [info.key async for info in store.list()] == []  # symlinks are not listed
    assert [info.key async for info in store.list("escape/")] == []  # nor followed out of the root
    assert [info.key async for info in store.list("escape/sec")] == []


def test_path_for_resolves_like_realpath_when_keys_run_through_links_files_or_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "file.png").write_bytes(b"x")
    (root / "inner").symlink_to(root / "a", target_is_directory=True)  # a link that stays inside
    (root / "a" / "up").symlink_to(root, target_is_directory=True)
    (root / "loop").symlink_to(root / "loop")
    store = FileStore(root)
    keys = ["a/b/c.png", "a/file.png", "a/file.png/below.png", "missing/deeper/x.png", "inner/b/c.png"]
    keys += ["a/up/a/file.png", "inner/up/inner/file.png", "loop/x.png"]
    inside = root.resolve()
    for key in keys:
        expected = Path(os.path.realpath(root / key))
        if expected.is_relative_to(inside) and expected != inside:
            assert store.path_for(key) == expected, key
            assert store.fs_path(key) == str(expected), key  # what the store's own reads and writes open
        else:
            with pytest.raises(InvalidKeyError):
                store.path_for(key)
            with pytest.raises(InvalidKeyError):
                store.fs_path(key)


async def test_put_refuses_traversal_when_key_tries_to_leave_root(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "root")
    for key in ["../x.png", "a/../../x.png", "/tmp/x.png", "..\\x.png"]:
        with pytest.raises(InvalidKeyError):
            await store.put(key, b"evil")
    assert await asyncio.to_thread(tree, tmp_path) == []


async def test_path_for_stays_inside_root_when_key_is_valid(file_store: FileStore, tmp_path: Path) -> None:
    await file_store.put("outputs/j/00000.png", b"png")
    path = await file_store.local_path("outputs/j/00000.png")
    assert path == await asyncio.to_thread((tmp_path / "root" / "outputs" / "j" / "00000.png").resolve)
    assert await asyncio.to_thread(path.read_bytes) == b"png"
    with pytest.raises(ObjectNotFoundError):
        await file_store.local_path("outputs/j/00001.png")
    with pytest.raises(ObjectNotFoundError):
        await file_store.local_path("outputs/j")


async def test_list_hides_temp_files_when_a_write_is_in_progress(file_store: FileStore, tmp_path: Path) -> None:
    release = asyncio.Event()
    written = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"a" * (2 * 1024 * 1024)  # over the write buffer, so the temp file has bytes on disk
        written.set()
        await release.wait()
        yield b"b"

    task = asyncio.create_task(file_store.put("w/slow.png", slow()))
    await written.wait()
    await asyncio.sleep(0.05)
    on_disk = await asyncio.to_thread(tree, tmp_path / "root")
    assert any("~" in name for name in on_disk)  # the temp file exists...
    assert [info.key async for info in file_store.list()] == []  # ...but is not an object
    assert not await file_store.exists("w/slow.png")
    release.set()
    await task
    assert [info.key async for info in file_store.list()] == ["w/slow.png"]
    assert await asyncio.to_thread(tree, tmp_path / "root") == ["w", "w/slow.png"]


async def test_put_refuses_key_when_it_runs_through_an_existing_object(file_store: FileStore) -> None:
    await file_store.put("a/b", b"file")
    with pytest.raises(InvalidKeyError):
        await file_store.put("a/b/c.png", b"x")
    with pytest.raises(InvalidKeyError):
        await file_store.put("a", b"x")
    assert await file_store.get_bytes("a/b") == b"file"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("file:///data/store", "/data/store"),
        ("file://localhost/data/store", "/data/store"),
        ("file://./data/store", "./data/store"),
        ("file://data/store", "data/store"),
        ("file://./data%20x/store", "./data x/store"),
    ],
)
def test_path_from_file_url_reads_path_when_url_is_absolute_or_relative(url: str, expected: str) -> None:
    assert path_from_file_url(url) == Path(expected)


@pytest.mark.parametrize("url", ["file://", "file:///data?x=1", "s3://bucket"])
def test_path_from_file_url_raises_config_error_when_url_is_unusable(url: str) -> None:
    with pytest.raises(StoreConfigError):
        path_from_file_url(url)


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # in a sync fixture: chdir blocks, and no event loop runs here
    return tmp_path


async def test_relative_url_writes_under_working_directory_when_opened_with_dot(in_tmp_cwd: Path) -> None:
    tmp_path = in_tmp_cwd
    store = open_store("file://./data/store")
    assert store.url == "file://./data/store"
    await store.put("x/y.png", b"relative")
    assert await asyncio.to_thread((tmp_path / "data" / "store" / "x" / "y.png").read_bytes) == b"relative"


async def test_head_reports_none_when_key_is_a_directory(file_store: FileStore) -> None:
    await file_store.put("dir/inner.png", b"x")
    assert await file_store.head("dir") is None
    with pytest.raises(ObjectNotFoundError):
        await file_store.get_bytes("dir")
    with pytest.raises(InvalidKeyError):
        await file_store.delete("dir")


async def test_put_raises_unavailable_when_the_disk_fails() -> None:
    def broken_disk() -> None:
        raise OSError(errno.EIO, "I/O error")

    with pytest.raises(StorageUnavailableError) as caught:
        await _threaded(broken_disk)
    assert isinstance(caught.value.__cause__, OSError)


async def test_a_stream_put_cancelled_while_its_temp_file_opens_leaves_no_file_and_no_open_handle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path / "root")
    entered, release = asyncio.Event(), threading.Event()
    loop = asyncio.get_running_loop()
    opened: list[object] = []
    real_open_temp = store._open_temp

    def slow_open_temp(key: str) -> tuple[str, str, object]:
        loop.call_soon_threadsafe(entered.set)
        release.wait(5)
        result = real_open_temp(key)
        opened.append(result[2])
        return result

    monkeypatch.setattr(store, "_open_temp", slow_open_temp)

    async def body() -> AsyncIterator[bytes]:
        yield b"x"

    task = asyncio.create_task(store.put("a/b.png", body()))
    await entered.wait()
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert opened and getattr(opened[0], "closed", False)
    assert await asyncio.to_thread(tree, tmp_path / "root") == ["a"]  # the directory only: no temp file
