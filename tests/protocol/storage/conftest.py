"""The `store` fixture of the storage contract suite, parametrized over every backend."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage import LinkSigner, Store, open_store
from storage.file import FileStore

SECRET = b"contract-suite-secret"
BASE_URL = "http://127.0.0.1:8080"


@dataclass
class StoreCase:
    """A store under test, with what the tests need to know about its backend."""

    kind: str
    store: Store
    signer: LinkSigner
    root: Path | None = None  # the file store's root directory


async def make_case(kind: str, tmp_path: Path, name: str = "store") -> StoreCase:
    signer = LinkSigner(SECRET, BASE_URL)
    if kind == "memory":
        return StoreCase(kind, open_store("memory://", signer=signer), signer)
    if kind == "file":
        root = tmp_path / name
        return StoreCase(kind, open_store(f"file://{root}", signer=signer), signer, root=root)
    raise AssertionError(kind)


@pytest.fixture(params=["memory", "file"])
async def case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreCase]:
    made = await make_case(request.param, tmp_path)
    yield made
    await made.store.close()


@pytest.fixture
def store(case: StoreCase) -> Store:
    return case.store


@pytest.fixture
def file_store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "root", signer=LinkSigner(SECRET, BASE_URL))
