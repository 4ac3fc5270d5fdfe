"""A link server on 127.0.0.1 serving a file store, with a secret file right next to the store's root."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.web import LinkServer, make_app
from storage.file import FileStore
from storage.links import LinkSigner
from tests.fakes.s3 import moto_s3, s3_bucket

__all__ = ["moto_s3", "s3_bucket"]  # fixtures re-exported for the tests of this folder

SECRET = b"web-test-secret"
SECRET_FILE_TEXT = "TOP-SECRET-do-not-serve-3f9c1a"


@dataclass
class Served:
    """A running link server and what the tests need to make and check links."""

    server: LinkServer
    store: FileStore
    signer: LinkSigner
    root: Path
    secret_file: Path

    @property
    def base_url(self) -> str:
        return self.server.base_url


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    root = tmp_path / "store"
    secret_file = tmp_path / "secret.txt"
    await asyncio.to_thread(secret_file.write_text, SECRET_FILE_TEXT)
    # The app only needs the signer's secret; links are made with the bound address once the server runs.
    store = FileStore(root)
    server = LinkServer(make_app(store, LinkSigner(SECRET, "http://unused")), host="127.0.0.1", port=0)
    await server.start()
    try:
        yield Served(server, store, LinkSigner(SECRET, server.base_url), root, secret_file)
    finally:
        await server.close()
