"""`open_store(url)`: pick a store backend from its URL."""

from urllib.parse import urlsplit

from storage.base import Store
from storage.errors import StoreConfigError
from storage.file import FileStore
from storage.links import LinkSigner
from storage.memory import MemoryStore


def open_store(url: str, *, signer: LinkSigner | None = None) -> Store:
    """Open the store named by `url`: `memory://`, `file://PATH` or `s3://BUCKET/PREFIX`.

    Args:
        url: the store URL.
        signer: signs links for stores that cannot presign (file and memory); S3 ignores it.

    Raises:
        StoreConfigError: the URL's scheme is unknown or the URL is malformed.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryStore(url, signer=signer)
    if scheme == "file":
        return FileStore.from_url(url, signer=signer)
    raise StoreConfigError(f"unsupported store URL scheme {scheme!r} (use memory://, file:// or s3://)")
