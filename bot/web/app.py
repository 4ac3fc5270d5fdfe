"""The link server: serves HMAC-signed, expiring links to objects of file and memory stores.

`GET`/`HEAD /files/{key}?exp=…&sig=…[&dl=…]` streams one object. The key is checked twice before any byte is
read: by the signature (only the bot can mint a link) and by `storage.keys.validate_key` (no `..`, no absolute
path, no backslash, ASCII only), and the file store refuses any key whose resolved path leaves its root. Anything
refused answers 403 or 404 with a short plain-text message and never a byte of the object.

S3 stores need none of this: their links are presigned URLs that S3 serves (see `bot.web.links.link_for`).

`GET`/`HEAD /l/{token}` is a stable link (`bot.web.stable`): it never expires, and answers 302 to a fresh,
short-lived store URL (a presigned S3 URL, or a `/files/…` link of this server) for as long as the object exists;
410 once it is gone (for a ZIP, saying how to get a fresh one), 404 with no detail for a token the bot did not make.

`/g/{token}…` are a group's gallery pages (`bot.web.gallery`), served when the runtime passes its `GalleryMount`.

The same server answers the container's probes: `/healthz` (the process lives, no I/O) and `/readyz` (every
registered readiness check answers, see `bot.web.readiness`).

Signed URLs are secrets until they expire, so the access log leaves out query strings.
"""

import logging
import time
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import datetime

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from bot.core.hosts import url_host
from bot.web.gallery import GalleryMount, add_gallery_routes
from bot.web.headers import (
    ByteRange,
    UnsatisfiableRangeError,
    content_type_for,
    etag_matches,
    http_date,
    make_etag,
    parse_range,
)
from bot.web.links import link_for
from bot.web.readiness import Readiness
from bot.web.stable import ROUTE, StableLinks
from storage.base import ObjectInfo, Store
from storage.errors import InvalidKeyError, ObjectNotFoundError, StorageUnavailableError
from storage.keys import is_valid_key, validate_key
from storage.links import LinkSigner, content_disposition

log = logging.getLogger(__name__)

# How long the store URL a stable link redirects to works: the browser follows it at once, and an hour lets a slow
# download be resumed (Range) from the same URL, while a URL copied out of the address bar soon stops working.
REDIRECT_EXPIRES_S = 3600

# What a stable link to a ZIP answers once the ZIP is gone (the bucket's lifecycle rule deletes ZIPs, docs/deploy.md):
# the images are still there, and Peel writes a new ZIP of them on request.
ZIP_GONE = (
    "This ZIP is no longer kept (ZIPs are deleted after a while; the images are not). "
    'For a fresh one, press "New link" under the batch\'s summary in Discord, '
    "or run /group download again in the group's thread."
)

# Bytes per read from the store while streaming a body: big enough for few thread hops, small enough that
# serving many downloads at once stays in bounded memory.
STREAM_CHUNK_BYTES = 256 * 1024

_SAFETY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Objects are data, never pages of this origin: a browser that opens one runs no script in it.
    "Content-Security-Policy": "sandbox",
}


class _RefusedError(Exception):
    """A request answered with a short plain-text error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            text=self.message + "\n",
            headers={"Cache-Control": "no-store", **_SAFETY_HEADERS},
        )


class _FileHandler:
    def __init__(self, store: Store, signer: LinkSigner, clock: Callable[[], float]) -> None:
        self._store = store
        self._signer = signer
        self._clock = clock

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._serve(request)
        except _RefusedError as refused:
            return refused.response()

    def _check_link(self, request: web.Request) -> tuple[str, str | None]:
        key = request.match_info["key"]
        exp, sig, filename = request.query.get("exp"), request.query.get("sig"), request.query.get("dl")
        if not exp or not sig:
            raise _RefusedError(403, "This link is not signed.")
        try:
            validate_key(key)
        except InvalidKeyError:
            raise _RefusedError(403, "This link is not valid.") from None
        # Checking the signature with the clock at 0 first tells an expired link apart from a forged one, and
        # says "expired" only about links the bot really made.
        if not self._signer.verify(key, exp=exp, sig=sig, filename=filename, now=0.0):
            raise _RefusedError(403, "This link is not valid.")
        if not self._signer.verify(key, exp=exp, sig=sig, filename=filename, now=self._clock()):
            raise _RefusedError(403, "This link has expired; ask the bot for a new one.")
        return key, filename

    async def _head(self, key: str) -> ObjectInfo:
        try:
            info = await self._store.head(key)
        except InvalidKeyError:  # e.g. resolves through a symlink out of the file store's root
            info = None
        except StorageUnavailableError:
            raise _RefusedError(503, "Storage is unavailable; try again in a moment.") from None
        if info is None:
            raise _RefusedError(404, "This file does not exist (any more).")
        return info

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        key, filename = self._check_link(request)
        info = await self._head(key)
        etag = make_etag(info.size, info.modified_at)
        headers = {
            "Content-Type": content_type_for(key, info.content_type),
            "Accept-Ranges": "bytes",
            "Cache-Control": "private",
            **_SAFETY_HEADERS,
        }
        if etag is not None:
            headers["ETag"] = etag
        if info.modified_at is not None:
            headers["Last-Modified"] = http_date(info.modified_at)
        if filename:
            headers["Content-Disposition"] = content_disposition(filename)

        if _not_modified(request, etag, info.modified_at):
            return web.Response(status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"})

        byte_range: ByteRange | None = None
        if _range_applies(request, etag, info.modified_at):
            try:
                byte_range = parse_range(request.headers.get("Range"), info.size)
            except UnsatisfiableRangeError:
                headers["Content-Range"] = f"bytes */{info.size}"
                headers["Content-Type"] = "text/plain; charset=utf-8"
                return web.Response(status=416, text="Requested range not satisfiable.\n", headers=headers)

        response = web.StreamResponse(status=200 if byte_range is None else 206, headers=headers)
        if byte_range is None:
            length = info.size
            body = self._store.read(key, chunk_bytes=STREAM_CHUNK_BYTES)
        else:
            length = byte_range.length
            response.headers["Content-Range"] = byte_range.content_range(info.size)
            body = self._read_range(key, byte_range)
        response.content_length = length
        if request.method == "HEAD" or length == 0:
            await response.prepare(request)
            return response
        return await self._stream(request, response, key, body, length)

    async def _read_range(self, key: str, byte_range: ByteRange) -> AsyncIterator[bytes]:
        position, stop = byte_range.start, byte_range.end + 1
        while position < stop:
            chunk = await self._store.read_range(key, position, min(stop, position + STREAM_CHUNK_BYTES))
            if not chunk:
                return
            position += len(chunk)
            yield chunk

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        key: str,
        body: AsyncIterator[bytes],
        length: int,
    ) -> web.StreamResponse:
        try:
            # The first chunk is read before the status line goes out, so a file deleted since `head` still
            # gets a clean 404 instead of a broken 200.
            try:
                first = await anext(body, b"")
            except (ObjectNotFoundError, InvalidKeyError):
                raise _RefusedError(404, "This file does not exist (any more).") from None
            except StorageUnavailableError:
                raise _RefusedError(503, "Storage is unavailable; try again in a moment.") from None
            await response.prepare(request)
            sent = 0
            chunk = first
            while chunk:
                if len(chunk) > length - sent:
                    chunk = chunk[: length - sent]
                await response.write(chunk)
                sent += len(chunk)
                if sent >= length:
                    break
                chunk = await anext(body, b"")
        finally:
            if isinstance(body, AsyncGenerator):
                await body.aclose()
        if sent < length:
            # The object was replaced by a shorter one mid-download; closing the connection tells the client
            # the body is incomplete instead of leaving it waiting for the missing bytes.
            log.warning("object %s shrank while being served (%d of %d bytes sent)", key, sent, length)
            response.force_close()
        await response.write_eof()
        return response


class _StableHandler:
    """`/l/{token}`: check the token, then redirect to a fresh store URL of the object it names."""

    def __init__(self, store: Store, secret: bytes, expires_s: int) -> None:
        self._store = store
        self._links = StableLinks(secret, "")
        # A relative target: `../files/…` from `/l/{token}` is `/files/…` on whatever address (and path prefix, for
        # a proxy serving the bot under one) the browser reached this link at.
        self._signer = LinkSigner(secret, "..")
        self._expires_s = expires_s

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return await self._redirect(request)
        except _RefusedError as refused:
            return refused.response()

    async def _redirect(self, request: web.Request) -> web.Response:
        target = self._links.resolve(request.match_info["token"])
        if target is None or not is_valid_key(target.key):
            raise _RefusedError(404, "Not found.")  # no detail: a prober learns nothing from a forged token
        try:
            if not await self._store.exists(target.key):
                raise ObjectNotFoundError(target.key)
            url = await link_for(
                self._store, target.key, expires_s=self._expires_s, filename=target.filename, signer=self._signer
            )
        except (ObjectNotFoundError, InvalidKeyError):
            raise _RefusedError(410, ZIP_GONE if target.key.endswith(".zip") else "This file was deleted.") from None
        except StorageUnavailableError:
            raise _RefusedError(503, "Storage is unavailable; try again in a moment.") from None
        # The target expires soon: no cache may keep the redirect, and the target's query (a signature) is not
        # sent on as a Referer from the page it opens.
        headers = {"Location": url, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", **_SAFETY_HEADERS}
        return web.Response(status=302, headers=headers)


def _not_modified(request: web.Request, etag: str | None, modified_at: datetime | None) -> bool:
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        return etag is not None and etag_matches(if_none_match, etag)
    since = request.if_modified_since
    return since is not None and modified_at is not None and int(modified_at.timestamp()) <= int(since.timestamp())


def _range_applies(request: web.Request, etag: str | None, modified_at: datetime | None) -> bool:
    """Apply `If-Range`: a Range only counts when the client's copy is still the current version."""
    if_range = request.headers.get("If-Range")
    if if_range is None:
        return True
    if if_range.startswith(('"', "W/")):
        return etag is not None and if_range == etag  # strong comparison (RFC 9110 §13.1.5)
    since = request.if_range
    return since is not None and modified_at is not None and int(modified_at.timestamp()) == int(since.timestamp())


async def _healthz(_request: web.Request) -> web.Response:
    """Liveness: the process runs its event loop. No I/O, so a slow service never gets the process restarted."""
    return web.Response(text="ok\n", headers={"Cache-Control": "no-store"})


def _readyz(readiness: Readiness) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(_request: web.Request) -> web.Response:
        """Readiness: 200 when every registered check answers ok, else 503; the body lists each check's code."""
        report = await readiness.report()
        return web.json_response(
            report.to_json(), status=200 if report.ready else 503, headers={"Cache-Control": "no-store"}
        )

    return handle


def make_app(
    store: Store,
    signer: LinkSigner,
    *,
    clock: Callable[[], float] = time.time,
    readiness: Readiness | None = None,
    serve_files: bool = True,
    redirect_expires_s: int = REDIRECT_EXPIRES_S,
    gallery: GalleryMount | None = None,
) -> web.Application:
    """Build the bot's web app: `/files/{key}`, `/l/{token}` (links to `store`), `/healthz` and `/readyz` probes.

    With `gallery`, also the gallery pages `/g/{token}…` and their assets (`bot.web.gallery`).

    Args:
        store: the store links point into (file or memory; any store works).
        signer: checks links; only its secret matters here, its `base_url` is for making links.
        clock: the current Unix time, for link expiry.
        readiness: the checks `/readyz` runs (none given: no `/readyz`).
        serve_files: serve `/files/…` (off for stores that serve their own links, e.g. S3's presigned URLs).
        redirect_expires_s: how long the store URL a stable link (or a gallery image or ZIP) redirects to works.
        gallery: where the gallery's port is attached (the runtime's; none given: no gallery routes).
    """
    app = web.Application()
    if serve_files:
        app.router.add_get("/files/{key:.+}", _FileHandler(store, signer, clock).handle, name="files")
    stable = _StableHandler(store, signer.secret, redirect_expires_s)
    app.router.add_get(ROUTE + "{token}", stable.handle, name="stable")
    app.router.add_get("/healthz", _healthz, name="healthz")
    if readiness is not None:
        app.router.add_get("/readyz", _readyz(readiness), name="readyz")
    if gallery is not None:
        add_gallery_routes(app, gallery, store, signer.secret, expires_s=redirect_expires_s)
    return app


# What an access-log path keeps as it is: RFC 3986 path characters. Everything else, CR, LF and every other control
# character, spaces and non-ASCII included, is percent-encoded, so a path cannot forge or garble a log line.
_LOGGED_PATH_SAFE = "/:@!$&'()*+,;="


_PROBE_PATHS = frozenset({"/healthz", "/readyz"})


class QuietAccessLogger(AbstractAccessLogger):
    """An access log that leaves out query strings, which carry link signatures, and escapes paths.

    Probes that pass (`/healthz`, `/readyz` answering 200, every few seconds from Docker or an orchestrator) are
    logged at DEBUG, so the log keeps the requests people make; a failing probe is logged like any request.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Log method, path (percent-encoded), status and size of one request at INFO (passing probes at DEBUG)."""
        level = logging.DEBUG if request.path in _PROBE_PATHS and response.status == 200 else logging.INFO
        path = urllib.parse.quote(request.path, safe=_LOGGED_PATH_SAFE)
        method = urllib.parse.quote(request.method, safe="")
        self.logger.log(level, "%s %s %d %d %.3fs", method, path, response.status, response.body_length, time)


class LinkServer:
    """Run an app (see `make_app`) on a TCP port; `port=0` picks a free one, read back from `base_url`."""

    def __init__(self, app: web.Application, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """The server's own URL, `http://host:port`; loopback when bound to every interface (`0.0.0.0`).

        A public URL (behind a proxy, or the host's address when it runs in a container) comes from settings.
        """
        if self._runner is None:
            raise RuntimeError("the link server is not running")
        return f"http://{url_host(self._host)}:{self._port}"

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (host, port) of every socket the server listens on."""
        if self._runner is None:
            raise RuntimeError("the link server is not running")
        return [(str(address[0]), int(address[1])) for address in self._runner.addresses]

    async def start(self) -> None:
        """Start listening."""
        if self._runner is not None:
            raise RuntimeError("the link server is already running")
        runner = web.AppRunner(self._app, access_log_class=QuietAccessLogger, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        log.info("link server listening on %s", self.base_url)

    async def close(self) -> None:
        """Stop listening and finish open responses (bounded by a short shutdown timeout)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> "LinkServer":
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()
