"""Stable links: short URLs of the bot's web server that keep working for as long as the object exists.

A stable link is `{base_url}/l/{token}`. The token names a store key (and the file name a download is saved as)
and is signed with the link secret, so only the bot can make one and nobody can guess another object's: it is
`base64url(key [+ newline + filename]) + "." + base64url(HMAC-SHA256(secret, domain + payload)[:16])`. It never
expires; following it answers a redirect to a fresh, short-lived store URL (`bot.web.app`), so a link posted in
Discord stays short (a link button takes 512 characters at most, and an S3 presigned URL made with temporary
credentials is about 1,000) and keeps opening the object after every store URL it once led to has expired.

Stateless on purpose: nothing is stored per link, so no migration, and a link outlives a restart as long as the
link secret does. Pure (no I/O): checking a token is the web server's first step, before any store is asked.
"""

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

ROUTE = "/l/"

# 128 bits of HMAC-SHA256 (22 characters instead of 43): truncation is allowed by NIST SP 800-107 Rev. 1 §5.3.4,
# and 2^128 tries is past any online guessing.
_MAC_BYTES = 16
# The HMAC input starts with this, so a stable-link signature can never pass for any other signature the same
# secret makes (the `/files/…` links sign `key\nexp\nfilename`).
_DOMAIN = b"peel stable link v1\n"
# Keys are at most 1,024 characters (storage.keys) and file names short; anything longer is refused unread.
MAX_TOKEN_CHARS = 4096


@dataclass(frozen=True, slots=True)
class StableTarget:
    """What a valid token names: a store key, and the file name a download is saved as (None: shown inline)."""

    key: str
    filename: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Decode unpadded base64url; raise ValueError on anything else (binascii.Error is a ValueError)."""
    if not text or not text.isascii() or "=" in text:
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class StableLinks:
    """Make and check stable links under `base_url` with `secret` (the runtime's link secret)."""

    secret: bytes
    base_url: str

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self.secret, _DOMAIN + payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def token(self, key: str, *, filename: str | None = None) -> str:
        """Return the token that names `key` (and `filename`); the same inputs always give the same token."""
        payload = key.encode() if not filename else f"{key}\n{filename}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def url(self, key: str, *, filename: str | None = None) -> str:
        """Return the stable link to `key`, downloaded as `filename` when given."""
        return f"{self.base_url.rstrip('/')}{ROUTE}{self.token(key, filename=filename)}"

    def resolve(self, token: str) -> StableTarget | None:
        """Return what `token` names, or None when the bot did not make it (forged, altered or malformed).

        The key is returned as signed; the caller still validates it as a store key before use.
        """
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            return None
        encoded, _, mac = token.partition(".")
        try:
            payload, signature = _unb64(encoded), _unb64(mac)
        except (ValueError, binascii.Error):
            return None
        if not hmac.compare_digest(self._mac(payload), signature):
            return None
        try:
            text = payload.decode()
        except UnicodeDecodeError:  # only a token made with a leaked secret gets here
            return None
        key, newline, filename = text.partition("\n")
        return StableTarget(key, filename if newline else None)


__all__ = ["MAX_TOKEN_CHARS", "ROUTE", "StableLinks", "StableTarget"]
