"""HMAC-signed, expiring links for objects of stores that cannot presign (file and memory stores).

A link is `{base_url}/files/{key}?exp={unix_seconds}&sig={hex}`; the optional `dl` parameter (a download file name)
is covered by the signature too. The bot's web server verifies links with the same secret. `content_disposition`
is the header that download name becomes, both from that server and in an S3 presigned URL.
"""

import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from storage.keys import validate_key


@dataclass(frozen=True, slots=True)
class LinkSigner:
    """Make and check signed links to keys under `base_url`."""

    secret: bytes
    base_url: str

    def _sig(self, key: str, exp: int, filename: str | None) -> str:
        message = f"{key}\n{exp}\n{filename or ''}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def sign(self, key: str, *, expires_s: int, filename: str | None = None, now: float | None = None) -> str:
        """Return a link to `key` valid for `expires_s` seconds from `now` (default: the current time)."""
        validate_key(key)
        exp = int((time.time() if now is None else now) + expires_s)
        query = {"exp": str(exp), "sig": self._sig(key, exp, filename)}
        if filename:
            query["dl"] = filename
        return f"{self.base_url.rstrip('/')}/files/{quote(key)}?{urlencode(query)}"

    def verify(self, key: str, *, exp: str, sig: str, filename: str | None = None, now: float | None = None) -> bool:
        """Tell whether `sig` signs `key` (and `filename`) and `exp` has not passed."""
        try:
            exp_s = int(exp)
        except ValueError:
            return False
        if exp_s < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self._sig(key, exp_s, filename), sig)


def content_disposition(filename: str) -> str:
    """Return an `attachment` Content-Disposition for `filename` (RFC 6266 with an RFC 5987 `filename*`).

    The quoted `filename` is an ASCII fallback: characters outside printable ASCII, quotes, backslashes and path
    separators become `_`. When that changes the name, `filename*` carries the exact UTF-8 name.
    """
    name = filename.replace("/", "_").replace("\\", "_")
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c != '"' else "_" for c in name).strip() or "download"
    value = f'attachment; filename="{fallback}"'
    if name and fallback != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value
