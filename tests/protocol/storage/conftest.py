"""The `store` fixture of the storage contract suite, parametrized over every backend."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage import LinkSigner, Store, open_store
from storage.file import FileStore
from tests.fakes.s3 import MotoS3, moto_s3, s3_bucket

__all__ = ["moto_s3", "s3_bucket"]  # fixtures re-exported for the tests of this folder

SECRET = b"contract-suite-secret"
BASE_URL = "http://127.0.0.1:8080"


@dataclass
class StoreCase:
    """A store under test, with what the tests need to know about its backend."""

    kind: str
    store: Store
    signer: LinkSigner
    root: Path | None = None  # the file store's root directory
    moto: MotoS3 | None = None  # the S3 server and bucket of an S3 store
    bucket: str | None = None


async def make_case(
    kind: str, tmp_path: Path, name: str = "store", moto: MotoS3 | None = None, prefix: str = ""
) -> StoreCase:
    signer = LinkSigner(SECRET, BASE_URL)
    if kind == "memory":
        return StoreCase(kind, open_store("memory://", signer=signer), signer)
    if kind == "file":
        root = tmp_path / name
        return StoreCase(kind, open_store(f"file://{root}", signer=signer), signer, root=root)
    if kind == "s3":
        assert moto is not None
        bucket = await moto.create_bucket()
        return StoreCase(kind, moto.make_store(bucket, prefix), signer, moto=moto, bucket=bucket)
    raise AssertionError(kind)


async def drop_case(case: StoreCase) -> None:
    await case.store.close()
    if case.moto is not None and case.bucket is not None:
        await case.moto.drop_bucket(case.bucket)


def moto_for(kind: str, request: pytest.FixtureRequest) -> MotoS3 | None:
    """Start (once per session) the moto server only when an S3 case asks for it."""
    return request.getfixturevalue("moto_s3") if kind == "s3" else None


@pytest.fixture(params=["memory", "file", "s3", "s3-prefixed"])
def backend(request: pytest.FixtureRequest) -> tuple[str, MotoS3 | None, str]:
    """The backend kind, its S3 server if any, and a key prefix (a sync fixture: starting moto blocks)."""
    kind, _, prefixed = request.param.partition("-")
    return kind, moto_for(kind, request), "some/prefix" if prefixed else ""


@pytest.fixture
async def case(backend: tuple[str, MotoS3 | None, str], tmp_path: Path) -> AsyncIterator[StoreCase]:
    kind, moto, prefix = backend
    made = await make_case(kind, tmp_path, moto=moto, prefix=prefix)
    yield made
    await drop_case(made)


@pytest.fixture
def store(case: StoreCase) -> Store:
    return case.store


@pytest.fixture
def file_store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "root", signer=LinkSigner(SECRET, BASE_URL))
