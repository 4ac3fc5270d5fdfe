"""A store in an S3-compatible bucket (`s3://BUCKET/PREFIX`): AWS S3, Cloudflare R2, MinIO, GCS interop, moto.

boto3 is blocking, so every call runs in a worker thread (`asyncio.to_thread`); the client is built lazily, in a
thread, on first use (building it reads botocore's service models from disk). A streamed `put` is a multipart
upload of 8 MiB parts that is aborted on any failure, so a half-written object never becomes visible; a stream
shorter than one part is sent as a single `PutObject`.

Settings come from the URL query (`?endpoint=http://127.0.0.1:9000&region=us-east-1`) or `STORAGE_*`
(`storage.s3settings.S3Settings`, from the environment); without credentials boto3's default chain applies.
Credentials never appear in `url`, `repr` or logs.
"""

import asyncio
import logging
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import boto3
import botocore.exceptions
from botocore.config import Config

from storage.base import DEFAULT_CHUNK_BYTES, Body, ObjectInfo
from storage.errors import (
    InvalidKeyError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
    StoreConfigError,
)
from storage.keys import validate_key, validate_prefix
from storage.links import content_disposition
from storage.memory import guess_content_type
from storage.s3settings import S3Settings, reveal

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_s3.type_defs import CompletedPartTypeDef, CopySourceTypeDef

log = logging.getLogger(__name__)

T = TypeVar("T")

PART_BYTES = 8 * 1024 * 1024
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_UNAVAILABLE = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
        "429",
    }
)
_CONFIG_ERRORS = frozenset(
    {
        "NoSuchBucket",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "403",
        "AuthorizationHeaderMalformed",
    }
)
_ADDRESSING_STYLES: dict[str, Literal["auto", "virtual", "path"]] = {
    "auto": "auto",
    "virtual": "virtual",
    "path": "path",
}
_SECRET_QUERY_KEYS = frozenset({"access_key_id", "secret_access_key", "session_token"})
_KNOWN_QUERY_KEYS = frozenset({"endpoint", "region", "addressing"}) | _SECRET_QUERY_KEYS


class S3Store:
    """Objects in an S3 bucket under a key prefix; links are presigned GET URLs."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        addressing_style: str | None = None,
        url: str | None = None,
        part_bytes: int = PART_BYTES,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 4,
    ) -> None:
        if not bucket:
            raise StoreConfigError("an s3:// store URL needs a bucket")
        prefix = prefix.strip("/")
        if prefix:
            try:
                validate_key(prefix)
            except InvalidKeyError as exc:
                raise StoreConfigError(f"unusable S3 key prefix: {exc}") from exc
        if part_bytes < 5 * 1024 * 1024:
            raise StoreConfigError("S3 multipart parts must be at least 5 MiB")
        style = _ADDRESSING_STYLES.get(addressing_style or ("path" if endpoint_url else "auto"))
        if style is None:
            raise StoreConfigError(f"unknown S3 addressing style {addressing_style!r} (use path, virtual or auto)")
        self._bucket = bucket
        self._prefix = f"{prefix}/" if prefix else ""
        self._url = url or f"s3://{bucket}/{prefix}"
        self._part_bytes = part_bytes
        self._client_kwargs: dict[str, Any] = {
            "endpoint_url": endpoint_url or None,
            "region_name": region or None,
            "aws_access_key_id": access_key_id or None,
            "aws_secret_access_key": secret_access_key or None,
            "aws_session_token": session_token or None,
            "config": Config(
                connect_timeout=connect_timeout_s,
                read_timeout=read_timeout_s,
                retries={"max_attempts": max_attempts, "mode": "standard"},
                # Path style for custom endpoints (MinIO, moto, R2 by account endpoint) unless told otherwise.
                s3={"addressing_style": style},
                signature_version="s3v4",
                # Checksums only where S3 requires them: several S3-compatible services reject the newer
                # default CRC trailers (https://github.com/boto/boto3/issues/4392).
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                max_pool_connections=32,
            ),
        }
        self._client: S3Client | None = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, *, env: Mapping[str, str] | None = None) -> "S3Store":
        """Open `s3://BUCKET/PREFIX?endpoint=…&region=…`; missing settings come from `STORAGE_*` in `env`.

        Raises:
            StoreConfigError: the URL names no bucket, has an unknown query parameter or a bad prefix.
        """
        env_settings = S3Settings.from_env(env)
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise StoreConfigError("an S3 store URL looks like s3://BUCKET/PREFIX")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = set(query) - _KNOWN_QUERY_KEYS
        if unknown:
            raise StoreConfigError(f"unknown s3:// URL parameter(s): {', '.join(sorted(unknown))}")
        public_query = urlencode({k: v for k, v in query.items() if k not in _SECRET_QUERY_KEYS})
        public_url = f"s3://{parts.netloc}{parts.path}" + (f"?{public_query}" if public_query else "")
        return cls(
            bucket=parts.netloc,
            prefix=parts.path,
            endpoint_url=query.get("endpoint") or env_settings.endpoint_url,
            region=query.get("region") or env_settings.region,
            access_key_id=query.get("access_key_id") or env_settings.access_key_id,
            secret_access_key=query.get("secret_access_key") or reveal(env_settings.secret_access_key),
            session_token=query.get("session_token") or reveal(env_settings.session_token),
            addressing_style=query.get("addressing") or env_settings.addressing_style,
            url=public_url,
        )

    @property
    def url(self) -> str:
        """The URL this store was opened from, without credentials."""
        return self._url

    @property
    def bucket(self) -> str:
        """The bucket's name."""
        return self._bucket

    def __repr__(self) -> str:
        return f"S3Store({self._url!r})"

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _get_client(self) -> "S3Client":
        # Blocking (reads botocore's JSON models): only ever called in a worker thread.
        with self._client_lock:
            if self._client is None:
                self._client = _new_client(self._client_kwargs)
            return self._client

    def object_key(self, key: str) -> str:
        """Return the bucket key of a store key (the prefix added), after validating the key."""
        return self._prefix + validate_key(key)

    async def _call(self, key: str | None, func: Callable[["S3Client"], T]) -> T:
        """Run `func(client)` in a thread and translate botocore failures."""

        def run() -> T:
            return func(self._get_client())

        try:
            return await asyncio.to_thread(run)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            _translate(exc, key, self._url)

    # -- writing ----------------------------------------------------------------------------------------------

    async def put(self, key: str, body: Body, *, content_type: str | None = None) -> ObjectInfo:
        """Write `body` under `key`: bytes with one PutObject, a stream as an all-or-nothing multipart upload."""
        object_key = self.object_key(key)
        content_type = content_type or guess_content_type(key)
        if isinstance(body, bytes | bytearray | memoryview):
            size = await self._put_object(key, object_key, bytes(body), content_type)
        else:
            size = await self._put_stream(key, object_key, body, content_type)
        log.debug("put s3 object %s (%d bytes)", object_key, size)
        return ObjectInfo(key=key, size=size, content_type=content_type, modified_at=datetime.now(UTC))

    async def _put_object(self, key: str, object_key: str, data: bytes, content_type: str) -> int:
        await self._call(
            key,
            lambda c: c.put_object(Bucket=self._bucket, Key=object_key, Body=data, ContentType=content_type),
        )
        return len(data)

    async def _put_stream(self, key: str, object_key: str, body: AsyncIterable[bytes], content_type: str) -> int:
        iterator = aiter(body)
        first = await _read_part(iterator, self._part_bytes)
        if len(first) < self._part_bytes:  # the whole stream fits in one part
            return await self._put_object(key, object_key, bytes(first), content_type)
        created = await self._call(
            key,
            lambda c: c.create_multipart_upload(Bucket=self._bucket, Key=object_key, ContentType=content_type),
        )
        upload_id = created["UploadId"]
        completed = False
        # One part uploads in a thread while the next is read from the stream: at most two parts in memory.
        # The upload is shielded, so a cancel reaches the abort below while the part is still tracked.
        in_flight: asyncio.Task[CompletedPartTypeDef] | None = None
        try:
            parts: list[CompletedPartTypeDef] = []
            size, number = 0, 0
            part = first
            while part:
                number += 1
                size += len(part)
                data = bytes(part)
                del part
                if in_flight is not None:
                    parts.append(await asyncio.shield(in_flight))
                in_flight = asyncio.create_task(self._upload_part(key, object_key, upload_id, number, data))
                del data
                part = await _read_part(iterator, self._part_bytes)
            if in_flight is not None:
                parts.append(await asyncio.shield(in_flight))
            await self._call(
                key,
                lambda c: c.complete_multipart_upload(
                    Bucket=self._bucket, Key=object_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                ),
            )
            completed = True
            return size
        finally:
            if not completed:
                await asyncio.shield(self._abort(object_key, upload_id, in_flight))

    async def _upload_part(
        self, key: str, object_key: str, upload_id: str, number: int, data: bytes
    ) -> "CompletedPartTypeDef":
        uploaded = await self._call(
            key,
            lambda c: c.upload_part(
                Bucket=self._bucket, Key=object_key, UploadId=upload_id, PartNumber=number, Body=data
            ),
        )
        return {"PartNumber": number, "ETag": uploaded["ETag"]}

    async def _abort(
        self, object_key: str, upload_id: str, in_flight: "asyncio.Task[CompletedPartTypeDef] | None"
    ) -> None:
        if in_flight is not None:
            # Let a part still uploading in its thread finish first: S3 may keep a part that lands after the abort.
            await asyncio.wait({in_flight})
            if not in_flight.cancelled():
                in_flight.exception()  # retrieved, so asyncio does not log "exception was never retrieved"
        try:
            await self._call(
                None, lambda c: c.abort_multipart_upload(Bucket=self._bucket, Key=object_key, UploadId=upload_id)
            )
        except StorageError:
            # The upload stays invisible either way; a bucket lifecycle rule should expire stray parts.
            log.warning("could not abort multipart upload of %s", object_key, exc_info=True)

    # -- reading ----------------------------------------------------------------------------------------------

    async def read(self, key: str, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> AsyncIterator[bytes]:
        """Yield the object's bytes in chunks of at most `chunk_bytes`."""
        object_key = self.object_key(key)
        response = await self._call(key, lambda c: c.get_object(Bucket=self._bucket, Key=object_key))
        stream = response["Body"]
        try:
            while True:
                chunk = await self._call(key, lambda _c: stream.read(chunk_bytes))
                if not chunk:
                    break
                yield chunk
        finally:
            await asyncio.shield(asyncio.to_thread(stream.close))

    async def read_range(self, key: str, start: int, end: int) -> bytes:
        """Return bytes `start` to `end` (exclusive); fewer when the object is shorter."""
        if start < 0 or end < start:
            raise ValueError(f"bad range {start}-{end}")
        object_key = self.object_key(key)
        if start == end:
            if await self.head(key) is None:
                raise ObjectNotFoundError(key)
            return b""

        def get(client: "S3Client") -> bytes:
            try:
                response = client.get_object(Bucket=self._bucket, Key=object_key, Range=f"bytes={start}-{end - 1}")
            except botocore.exceptions.ClientError as exc:
                if _code(exc) == "InvalidRange":  # start is past the end of an existing object
                    return b""
                raise
            with response["Body"] as stream:
                return stream.read()

        return await self._call(key, get)

    async def get_bytes(self, key: str) -> bytes:
        """Return the whole object; for small objects only."""
        object_key = self.object_key(key)

        def get(client: "S3Client") -> bytes:
            with client.get_object(Bucket=self._bucket, Key=object_key)["Body"] as stream:
                return stream.read()

        return await self._call(key, get)

    async def head(self, key: str) -> ObjectInfo | None:
        """Return the object's size, content type and modification time, or None."""
        object_key = self.object_key(key)
        try:
            response = await self._call(key, lambda c: c.head_object(Bucket=self._bucket, Key=object_key))
        except ObjectNotFoundError:
            return None
        return ObjectInfo(
            key=key,
            size=response["ContentLength"],
            content_type=response.get("ContentType") or guess_content_type(key),
            modified_at=response.get("LastModified"),
        )

    async def exists(self, key: str) -> bool:
        """Tell whether an object exists under `key`."""
        return await self.head(key) is not None

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Yield the objects under `prefix` in key order, one page (≤1000 keys) in memory at a time.

        S3 listings carry no content type, so it is guessed from each key's extension.
        """
        validate_prefix(prefix)
        full_prefix = self._prefix + prefix
        pages = await self._call(
            None,
            lambda c: iter(c.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=full_prefix)),
        )
        while True:
            page = await self._call(None, lambda _c: next(pages, None))
            if page is None:
                return
            for item in page.get("Contents", []):
                key = item["Key"].removeprefix(self._prefix)
                if not _is_key(key):  # an object written by something else, under a name we would refuse
                    continue
                yield ObjectInfo(
                    key=key,
                    size=item["Size"],
                    content_type=guess_content_type(key),
                    modified_at=item.get("LastModified"),
                )

    # -- the rest ---------------------------------------------------------------------------------------------

    async def delete(self, key: str) -> None:
        """Delete the object; a missing key is not an error."""
        object_key = self.object_key(key)
        await self._call(key, lambda c: c.delete_object(Bucket=self._bucket, Key=object_key))

    async def url_for(self, key: str, *, expires_s: int, filename: str | None = None) -> str:
        """Return a presigned GET URL; with `filename`, the response makes browsers download under that name.

        Raises:
            ObjectNotFoundError: there is no object under `key`.
        """
        object_key = self.object_key(key)
        if await self.head(key) is None:
            raise ObjectNotFoundError(key)
        params: dict[str, str] = {"Bucket": self._bucket, "Key": object_key}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        return await self._call(
            key, lambda c: c.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)
        )

    def can_copy_from(self, other: "S3Store") -> bool:
        """Tell whether this store's client can read `other`'s bucket: same endpoint, region and credentials."""
        fields = ("endpoint_url", "region_name", "aws_access_key_id", "aws_secret_access_key", "aws_session_token")
        return all(self._client_kwargs[name] == other._client_kwargs[name] for name in fields)

    async def copy_from(
        self, src: "S3Store", src_key: str, dst_key: str, *, content_type: str, size: int
    ) -> ObjectInfo:
        """Copy an object of `src` (see `can_copy_from`) under `dst_key` inside S3, multipart when large.

        The managed copy keeps the source's content type; `content_type` and `size` only fill the returned info.
        """
        source: CopySourceTypeDef = {"Bucket": src.bucket, "Key": src.object_key(src_key)}
        object_key = self.object_key(dst_key)
        await self._call(src_key, lambda c: c.copy(source, self._bucket, object_key))
        return ObjectInfo(key=dst_key, size=size, content_type=content_type, modified_at=datetime.now(UTC))

    async def close(self) -> None:
        """Close the client's connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)


_session: boto3.session.Session | None = None
_session_lock = threading.Lock()


def _new_client(kwargs: dict[str, Any]) -> "S3Client":
    """Build an S3 client from one shared session, so botocore loads its service models once per process."""
    global _session  # a process-wide cache, built lazily in a thread
    with _session_lock:  # boto3 sessions are not thread-safe; clients are
        if _session is None:
            _session = boto3.session.Session()
        return _session.client("s3", **kwargs)


async def _read_part(iterator: AsyncIterator[bytes], part_bytes: int) -> bytearray:
    """Gather at least `part_bytes` from the stream (less only at its end)."""
    part = bytearray()
    while len(part) < part_bytes:
        try:
            chunk = await anext(iterator)
        except StopAsyncIteration:
            break
        part += chunk
    return part


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _translate(
    exc: botocore.exceptions.BotoCoreError | botocore.exceptions.ClientError, key: str | None, url: str
) -> NoReturn:
    """Raise the storage error for a botocore failure (never echoing credentials or presigned URLs)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code = _code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code in _NOT_FOUND and key is not None:
            raise ObjectNotFoundError(key) from exc
        if code in _UNAVAILABLE or status >= 500 or status == 429:
            raise StorageUnavailableError(f"S3 store {url} is unavailable: {code or status}") from exc
        if code in _CONFIG_ERRORS:
            raise StoreConfigError(f"S3 store {url} refused the request: {code}") from exc
        raise StorageError(f"S3 store {url} failed: {code or status}") from exc
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        raise StoreConfigError(f"S3 store {url} has no usable credentials") from exc
    if isinstance(
        exc,
        botocore.exceptions.HTTPClientError
        | botocore.exceptions.ConnectionError
        | botocore.exceptions.IncompleteReadError
        | botocore.exceptions.CredentialRetrievalError,
    ):
        raise StorageUnavailableError(f"S3 store {url} is unreachable: {type(exc).__name__}") from exc
    raise StorageError(f"S3 store {url} failed: {type(exc).__name__}") from exc


def _is_key(key: str) -> bool:
    try:
        validate_key(key)
    except StorageError:
        return False
    return True
