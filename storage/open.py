"""`open_store(url)`: pick a store backend from its URL."""

from collections.abc import Mapping
from urllib.parse import urlsplit

from storage.base import Store
from storage.errors import StoreConfigError
from storage.file import FileStore
from storage.links import LinkSigner
from storage.memory import MemoryStore


def open_store(url: str, *, signer: LinkSigner | None = None, env: Mapping[str, str] | None = None) -> Store:
    """Open the store named by `url`: `memory://`, `file://PATH` or `s3://BUCKET/PREFIX`.

    Args:
        url: the store URL.
        signer: signs links for stores that cannot presign (file and memory); S3 ignores it.
        env: where S3 settings missing from the URL are looked up (`STORAGE_*`); default `os.environ`.

    Raises:
        StoreConfigError: the URL's scheme is unknown or the URL is malformed.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryStore(url, signer=signer)
    if scheme == "file":
        return FileStore.from_url(url, signer=signer)
    if scheme == "s3":
        # Imported here so that processes that never use S3 do not pay for importing boto3.
        from storage.s3 import S3Store

        return S3Store.from_url(url, env=env)
    raise StoreConfigError(f"unsupported store URL scheme {scheme!r} (use memory://, file:// or s3://)")
