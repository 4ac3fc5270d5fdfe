"""A real S3 wire endpoint for tests: moto's `ThreadedMotoServer` on 127.0.0.1, one per session.

Use the fixtures by importing them into a conftest (`from tests.fakes.s3 import moto_s3, s3_bucket`):
`moto_s3` is the running server, `s3_bucket` a fresh, empty bucket per test that is emptied and dropped after it.
"""

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import boto3
import pytest
from moto.server import ThreadedMotoServer

from storage.s3 import S3Store

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

REGION = "us-east-1"
ACCESS_KEY_ID = "testing-access-key"
SECRET_ACCESS_KEY = "testing-secret-key"  # moto accepts any credentials


@dataclass
class MotoS3:
    """A running moto S3 server."""

    endpoint_url: str
    _client: "S3Client | None" = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client(self) -> "S3Client":
        """Return the shared boto3 client for the server (blocking to build: call it from a thread)."""
        with self._lock:
            if self._client is None:
                self._client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    region_name=REGION,
                    aws_access_key_id=ACCESS_KEY_ID,
                    aws_secret_access_key=SECRET_ACCESS_KEY,
                )
            return self._client

    def store_url(self, bucket: str, prefix: str = "") -> str:
        """Return the `s3://` URL of a bucket (and prefix) on this server, without credentials."""
        return f"s3://{bucket}/{prefix}?endpoint={self.endpoint_url}&region={REGION}"

    def env(self) -> dict[str, str]:
        """Return the `STORAGE_*` settings that hold this server's credentials."""
        return {"STORAGE_ACCESS_KEY_ID": ACCESS_KEY_ID, "STORAGE_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}

    def make_store(self, bucket: str, prefix: str = "") -> S3Store:
        """Open a store on `bucket` of this server."""
        return S3Store.from_url(self.store_url(bucket, prefix), env=self.env())

    async def create_bucket(self) -> str:
        """Create an empty bucket with a fresh name and return the name."""
        name = f"test-{uuid.uuid4().hex[:20]}"
        await asyncio.to_thread(lambda: self.client().create_bucket(Bucket=name))
        return name

    async def drop_bucket(self, name: str) -> None:
        """Delete every object, pending multipart upload and then the bucket (frees moto's memory)."""

        def drop() -> None:
            client = self.client()
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                for item in page.get("Contents", []):
                    client.delete_object(Bucket=name, Key=item["Key"])
            for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
                client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
            client.delete_bucket(Bucket=name)

        await asyncio.to_thread(drop)

    async def pending_uploads(self, bucket: str) -> list[str]:
        """Return the keys of multipart uploads started and neither completed nor aborted."""

        def uploads() -> list[str]:
            response = self.client().list_multipart_uploads(Bucket=bucket)
            return [upload["Key"] for upload in response.get("Uploads", [])]

        return await asyncio.to_thread(uploads)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """Start moto's S3 server on a free port of 127.0.0.1 for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoS3(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
async def s3_bucket(moto_s3: MotoS3) -> AsyncIterator[str]:
    """Create a fresh bucket for one test; empty and delete it afterwards."""
    name = await moto_s3.create_bucket()
    yield name
    await moto_s3.drop_bucket(name)
