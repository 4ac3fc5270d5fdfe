"""`python -m bot batch` copies the finished ZIP out of the store to `--out`, from a file store or any other."""

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot.app.downloads import copy_out
from storage.errors import ObjectNotFoundError
from storage.file import FileStore
from storage.memory import MemoryStore

if TYPE_CHECKING:
    from storage.base import Store

BODY = bytes(range(256)) * 9000  # over 2 MiB: more than one streamed chunk


@pytest.mark.parametrize("kind", ["file", "memory"])
async def test_copy_out_writes_the_whole_object_and_no_part_file_when_the_store_is_file_or_not(
    kind: str, tmp_path: Path
) -> None:
    store: Store = FileStore(tmp_path / "store") if kind == "file" else MemoryStore()
    await store.put("zips/j_1/results.zip", BODY)
    dest = tmp_path / "out" / "results.zip"

    await copy_out(store, "zips/j_1/results.zip", dest)

    assert await asyncio.to_thread(dest.read_bytes) == BODY
    assert await asyncio.to_thread(lambda: sorted(p.name for p in dest.parent.iterdir())) == ["results.zip"]


@pytest.mark.parametrize("kind", ["file", "memory"])
async def test_copy_out_raises_not_found_and_writes_nothing_when_the_object_is_missing(
    kind: str, tmp_path: Path
) -> None:
    store: Store = FileStore(tmp_path / "store") if kind == "file" else MemoryStore()
    dest = tmp_path / "out" / "results.zip"
    with pytest.raises(ObjectNotFoundError):
        await copy_out(store, "zips/j_1/results.zip", dest)
    assert await asyncio.to_thread(lambda: list(dest.parent.iterdir())) == []  # no part file left either
