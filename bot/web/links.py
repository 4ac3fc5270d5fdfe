"""`link_for`: one way to get a download URL for an object of any store."""

from urllib.parse import urlsplit

from storage.base import Store
from storage.errors import ObjectNotFoundError
from storage.links import LinkSigner

# SigV4 presigned URLs cannot live longer than a week.
MAX_PRESIGNED_EXPIRES_S = 7 * 24 * 3600

_PRESIGNING_SCHEMES = frozenset({"s3"})


def is_presigning(store: Store) -> bool:
    """Tell whether the store's backend serves its own links (S3 presigned URLs), so the link server is not needed."""
    return urlsplit(store.url).scheme in _PRESIGNING_SCHEMES


async def link_for(
    store: Store, key: str, *, expires_s: int, filename: str | None = None, signer: LinkSigner | None = None
) -> str:
    """Return a URL that downloads `key` for `expires_s` seconds, as `filename` when given.

    S3 stores answer with a presigned URL (capped at a week); file and memory stores with a link to the bot's
    link server, signed by `signer` when given, else by the signer the store was opened with.

    Raises:
        ValueError: `expires_s` is not positive.
        ObjectNotFoundError: there is no object under `key`.
        StoreConfigError: a file or memory store without a signer, and no `signer` given.
    """
    if expires_s <= 0:
        raise ValueError(f"expires_s must be positive, not {expires_s}")
    if is_presigning(store):
        return await store.url_for(key, expires_s=min(expires_s, MAX_PRESIGNED_EXPIRES_S), filename=filename)
    if signer is None:
        return await store.url_for(key, expires_s=expires_s, filename=filename)
    if not await store.exists(key):
        raise ObjectNotFoundError(key)
    return signer.sign(key, expires_s=expires_s, filename=filename)
