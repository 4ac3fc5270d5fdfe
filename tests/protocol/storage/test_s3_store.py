"""What only the S3 store promises: multipart streams, all-or-nothing uploads, settings, error translation."""

import asyncio
import socket
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest

from storage import (
    InvalidKeyError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
    StoreConfigError,
    open_store,
)
from storage.s3 import S3Store
from tests.fakes.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, MotoS3

MIB = 1024 * 1024


async def chunks(total_bytes: int, *, fail: bool = False) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total_bytes:
        yield bytes([sent // MIB % 256]) * MIB
        sent += MIB
    if fail:
        raise RuntimeError("the source broke")


async def test_stream_is_uploaded_in_parts_when_larger_than_one_part(moto_s3: MotoS3, s3_bucket: str) -> None:
    store = moto_s3.make_store(s3_bucket, "p")
    await store.put("zips/g/all.zip", chunks(20 * MIB))
    response = await asyncio.to_thread(lambda: moto_s3.client().head_object(Bucket=s3_bucket, Key="p/zips/g/all.zip"))
    assert response["ETag"].strip('"').endswith("-3")  # a multipart ETag: 8 + 8 + 4 MiB
    assert response["ContentType"] == "application/zip"
    assert await store.read_range("zips/g/all.zip", 8 * MIB - 1, 8 * MIB + 1) == bytes([7, 8])
    await store.close()


async def test_failed_multipart_upload_is_aborted_when_stream_raises(moto_s3: MotoS3, s3_bucket: str) -> None:
    store = moto_s3.make_store(s3_bucket)
    with pytest.raises(RuntimeError):
        await store.put("big.bin", chunks(18 * MIB, fail=True))
    assert await moto_s3.pending_uploads(s3_bucket) == []
    assert not await store.exists("big.bin")
    await store.close()


async def test_cancelled_multipart_upload_is_aborted_when_task_is_cancelled(moto_s3: MotoS3, s3_bucket: str) -> None:
    store = moto_s3.make_store(s3_bucket)
    parts_sent = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        sent = 0
        while True:
            yield b"z" * MIB
            sent += MIB
            if sent > 10 * MIB:
                parts_sent.set()
                await asyncio.sleep(3600)

    task = asyncio.create_task(store.put("never.bin", endless()))
    await parts_sent.wait()
    assert await moto_s3.pending_uploads(s3_bucket) == ["never.bin"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await moto_s3.pending_uploads(s3_bucket) == []
    assert [info async for info in store.list()] == []
    await store.close()


async def test_put_keeps_given_content_type_when_one_is_passed(moto_s3: MotoS3, s3_bucket: str) -> None:
    store = moto_s3.make_store(s3_bucket)
    await store.put("m/manifest", b"{}", content_type="application/json")
    info = await store.head("m/manifest")
    assert info is not None
    assert info.content_type == "application/json"
    await store.close()


async def test_list_skips_foreign_objects_when_names_are_not_valid_keys(moto_s3: MotoS3, s3_bucket: str) -> None:
    def plant() -> None:
        client = moto_s3.client()
        for key in ["pre/ok.png", "pre/bad name.png", "pre/a//b.png", "other/x.png"]:
            client.put_object(Bucket=s3_bucket, Key=key, Body=b"1")

    await asyncio.to_thread(plant)
    store = moto_s3.make_store(s3_bucket, "pre")
    assert [info.key async for info in store.list()] == ["ok.png"]
    await store.close()


def test_from_url_takes_settings_from_query_and_env_when_both_given() -> None:
    store = S3Store.from_url(
        "s3://bucket/some/prefix/?endpoint=http://127.0.0.1:9&region=eu-west-1&access_key_id=AK&secret_access_key=SK",
        env={"STORAGE_REGION": "us-east-2", "STORAGE_ENDPOINT_URL": "http://elsewhere"},
    )
    assert store.url == "s3://bucket/some/prefix/?endpoint=http%3A%2F%2F127.0.0.1%3A9&region=eu-west-1"
    assert "SK" not in repr(store)
    assert store.bucket == "bucket"
    assert store.object_key("a/b.png") == "some/prefix/a/b.png"
    with pytest.raises(InvalidKeyError):
        store.object_key("../b.png")


def test_open_store_returns_s3_store_when_url_is_s3() -> None:
    store = open_store("s3://bucket", env={"STORAGE_SECRET_ACCESS_KEY": "hidden"})
    assert isinstance(store, S3Store)
    assert store.url == "s3://bucket"
    assert store.object_key("x.png") == "x.png"


@pytest.mark.parametrize(
    "url",
    ["s3://", "s3:///prefix", "s3://bucket/../up", "s3://bucket/?color=blue", "s3://bucket?addressing=sideways"],
)
def test_from_url_raises_config_error_when_url_is_unusable(url: str) -> None:
    with pytest.raises(StoreConfigError):
        S3Store.from_url(url, env={})


def test_open_store_raises_config_error_when_scheme_is_unknown() -> None:
    with pytest.raises(StoreConfigError):
        open_store("ftp://host/dir")


async def test_calls_raise_unavailable_when_endpoint_refuses_connections() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = S3Store(
        bucket="b",
        endpoint_url=f"http://127.0.0.1:{port}",
        region="us-east-1",
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        max_attempts=1,
        connect_timeout_s=2,
    )
    with pytest.raises(StorageUnavailableError) as caught:
        await store.put("x.png", b"x")
    assert caught.value.__cause__ is not None
    with pytest.raises(StorageUnavailableError):
        await store.head("x.png")
    await store.close()


async def test_calls_raise_config_error_when_bucket_does_not_exist(moto_s3: MotoS3) -> None:
    store = moto_s3.make_store("no-such-bucket-here")
    with pytest.raises(StoreConfigError):
        await store.put("x.png", b"x")
    with pytest.raises(StorageError):
        await store.get_bytes("x.png")
    await store.close()


async def test_presigned_url_carries_expiry_and_no_secret_when_made(moto_s3: MotoS3, s3_bucket: str) -> None:
    # moto does not enforce expiry or signatures, so check what S3 would: the signed expiry and the credential.
    store = moto_s3.make_store(s3_bucket)
    await store.put("e.png", b"short-lived")
    query = parse_qs(urlsplit(await store.url_for("e.png", expires_s=90)).query)
    assert query["X-Amz-Expires"] == ["90"]
    assert query["X-Amz-Credential"][0].startswith(f"{ACCESS_KEY_ID}/")
    assert "X-Amz-Signature" in query
    assert "response-content-disposition" not in query
    assert SECRET_ACCESS_KEY not in str(query)
    with pytest.raises(ObjectNotFoundError):
        await store.url_for("missing.png", expires_s=60)
    await store.close()


async def test_upload_is_aborted_when_a_part_upload_fails(
    moto_s3: MotoS3, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = moto_s3.make_store(s3_bucket)
    real_upload_part = store._upload_part

    async def flaky_upload_part(key: str, object_key: str, upload_id: str, number: int, data: bytes) -> object:
        if number == 2:
            raise StorageUnavailableError("S3 said 503")
        return await real_upload_part(key, object_key, upload_id, number, data)

    monkeypatch.setattr(store, "_upload_part", flaky_upload_part)
    with pytest.raises(StorageUnavailableError):
        await store.put("flaky.bin", chunks(30 * MIB))
    assert await moto_s3.pending_uploads(s3_bucket) == []
    assert not await store.exists("flaky.bin")
    await store.close()


async def test_open_store_reaches_bucket_when_settings_come_only_from_env(moto_s3: MotoS3, s3_bucket: str) -> None:
    env = moto_s3.env() | {"STORAGE_ENDPOINT_URL": moto_s3.endpoint_url, "STORAGE_REGION": "us-east-1"}
    store = open_store(f"s3://{s3_bucket}/env-prefix", env=env)
    assert store.url == f"s3://{s3_bucket}/env-prefix"
    await store.put("x.png", b"from env")
    direct = moto_s3.make_store(s3_bucket)
    assert await direct.get_bytes("env-prefix/x.png") == b"from env"
    await store.close()
    await direct.close()
