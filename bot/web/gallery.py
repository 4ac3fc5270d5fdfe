"""Gallery pages: a group's images behind a capability URL, `/g/{token}`, rendered on the server (Jinja2).

Routes (every one answers only for the items of the token's group):

- `GET /g/{token}`: the grid, newest job first; `filter=made|failed|blocked|favourites`, `q=` (a word of the
  prompt), `job=` (one batch), `page=` (`PAGE_SIZE` cells each).
- `GET /g/{token}/item/{job}/{index}`: one item: the image, its prompt, seed, model, options, references, source
  file and status (a failed or blocked item's reason is its code's fixed message, never the operator's detail).
- `GET /g/{token}/thumb/{job}/{index}`, `/g/{token}/ref/{job}/{index}/{n}`: WebP thumbnails, served from the store
  (made once and stored when missing). `GET /g/{token}/image/{job}/{index}`: 302 to a fresh short-lived store URL.
- `POST /g/{token}/zip`, `/g/{token}/export`: take the checked cells (`item=job:index`, repeated) or every item the
  filter shows (`all=1`): a ZIP with both manifests (303 to it), or a copy to a configured bucket (only when the
  link was issued with export allowed).

Access: a token of the wrong shape, unknown or forged answers 404 with a bare page; a revoked one 403 saying only
that. The queries and the taking live behind `GalleryPort` (the runtime attaches `bot.app.gallery`'s), so this
module knows HTTP and HTML only.

Every gallery response carries a strict Content-Security-Policy (no inline script or style, nothing of another
origin but the store's, when images are redirected to it), `Referrer-Policy: no-referrer` (the token is in the path:
no request this page makes may carry it away) and `nosniff`; pages are `private, no-store`. Jinja2 escapes every
value (prompts and file names are hostile input).

CSRF: the POST routes need the token in their path, which a cross-site page cannot know; as a second line, a browser
request that says it comes from another site (`Sec-Fetch-Site`, https://www.w3.org/TR/fetch-metadata/) or from
another origin (`Origin`) is refused. `Origin: null` is let through: with `no-referrer` a browser sends that for
its own forms (https://fetch.spec.whatwg.org/#append-a-request-origin-header).
"""

import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot.core.gallery import (
    MAX_SELECTION,
    PAGE_SIZE,
    GalleryCounts,
    GalleryEntry,
    GalleryFilter,
    clean_query,
    is_well_formed_token,
    page_count,
    parse_selection,
)
from bot.web.links import is_presigning, link_for
from storage.base import Store
from storage.errors import InvalidKeyError, ObjectNotFoundError, StorageUnavailableError
from storage.links import LinkSigner

ROUTE = "/g/"
ASSETS = "/assets/gallery/"
_HERE = Path(__file__).parent
# Templates and assets are read once, at import, so that no request reads a file on the event loop.
_TEMPLATES = {path.name: path.read_text(encoding="utf-8") for path in sorted((_HERE / "templates").glob("*.html"))}
_ASSET_TYPES = {".css": "text/css", ".js": "text/javascript"}
_ASSETS = {
    path.name: (path.read_bytes(), _ASSET_TYPES[path.suffix])
    for path in sorted((_HERE / "static").iterdir())
    if path.suffix in _ASSET_TYPES
}
_ASSET_CACHE = "public, max-age=3600"
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
THUMB_CACHE = "private, max-age=86400"  # a thumbnail's key names one image, which never changes
_HTML_CACHE = "private, no-store"


class Revoked(Enum):
    """`GalleryPort.open`'s answer for a token that was revoked."""

    REVOKED = "revoked"


@dataclass(frozen=True, slots=True, kw_only=True)
class GalleryAccess:
    """What a valid token opens: one group, and whether its link may export (to which destinations)."""

    group_id: str
    group_name: str
    can_export: bool = False
    destinations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GallerySelection:
    """What a POST takes: the checked cells, or (`pairs` None) every item the filter, search and batch show."""

    pairs: tuple[tuple[str, int], ...] | None
    which: GalleryFilter = GalleryFilter.ALL
    job_id: str | None = None
    query: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TakenZip:
    """A ZIP written for a selection: its key in the store, the name it downloads as, and how many images."""

    key: str
    filename: str
    images: int


class GalleryRefusedError(Exception):
    """A take the gallery cannot do (nothing selected, export not allowed, …); `message` is for the user."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class GalleryPort(Protocol):
    """What the pages need of the rest of Peel: reads scoped to the token's group, thumbnails, ZIPs, exports."""

    async def open(self, token: str) -> GalleryAccess | Revoked | None:
        """Return what `token` opens, `Revoked.REVOKED`, or None for a token no link has."""
        ...

    async def counts(self, access: GalleryAccess, *, job_id: str | None, query: str) -> GalleryCounts:
        """Return the count of each filter."""
        ...

    async def entries(
        self,
        access: GalleryAccess,
        *,
        which: GalleryFilter,
        job_id: str | None,
        query: str,
        limit: int,
        offset: int,
    ) -> list[GalleryEntry]:
        """Return one page of the group's items."""
        ...

    async def entry(self, access: GalleryAccess, job_id: str, index: int) -> GalleryEntry | None:
        """Return one of the group's items (None when the job is not the group's)."""
        ...

    async def thumbnail(self, key: str) -> str | None:
        """Return the key of the image's thumbnail, made and stored when missing; None when the image is gone."""
        ...

    async def take_zip(self, access: GalleryAccess, selection: GallerySelection) -> TakenZip:
        """Write a ZIP of the selection (made images only) with both manifests."""
        ...

    async def export(self, access: GalleryAccess, selection: GallerySelection, destination: str) -> str:
        """Copy the selection to a configured destination; return what to tell the user."""
        ...


@dataclass(slots=True)
class GalleryMount:
    """Where the runtime's gallery port is attached once the service exists; until then `/g/…` answers 404."""

    port: GalleryPort | None = field(default=None)

    def attach(self, port: GalleryPort) -> None:
        """Serve the gallery pages with `port`."""
        self.port = port


class _AccessError(Exception):
    def __init__(self, status: int, template: str) -> None:
        super().__init__(template)
        self.status = status
        self.template = template


def _origin(url: str) -> str | None:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in {"http", "https"} and parts.netloc else None


def content_security_policy(store_origin: str | None) -> str:
    """Return the gallery's CSP: only this origin, plus the store's for redirected images and ZIPs."""
    extra = f" {store_origin}" if store_origin else ""
    return (
        f"default-src 'none'; img-src 'self'{extra}; style-src 'self'; script-src 'self';"
        f" form-action 'self'{extra}; base-uri 'none'; frame-ancestors 'none'"
    )


def _same_site(request: web.Request) -> bool:
    """Tell whether a POST may come from this origin's own page (see the module's CSRF note)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in {"same-origin", "none"}:
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return True
    parts = urllib.parse.urlsplit(origin)
    return parts.netloc == request.host


class _Gallery:
    def __init__(self, mount: GalleryMount, store: Store, secret: bytes, expires_s: int) -> None:
        self._mount = mount
        self._store = store
        self._secret = secret
        self._expires_s = expires_s
        self._store_origin: str | None = None
        self._origin_known = not is_presigning(store)

    async def store_origin(self) -> str | None:
        """Return the origin redirected images live at: None (this server) unless the store presigns its URLs."""
        if not self._origin_known:
            # A presigned URL names the store's origin; presigning needs no object, so any key shows it.
            self._store_origin = _origin(await self._store.url_for("gallery/origin.png", expires_s=60))
            self._origin_known = True
        return self._store_origin

    async def _open(self, request: web.Request) -> tuple[GalleryPort, GalleryAccess, str]:
        token = request.match_info["token"]
        port = self._mount.port
        if port is None or not is_well_formed_token(token):
            raise _AccessError(404, "gallery_missing.html")
        opened = await port.open(token)
        if opened is None:
            raise _AccessError(404, "gallery_missing.html")
        if opened is Revoked.REVOKED:
            raise _AccessError(403, "gallery_revoked.html")
        assert isinstance(opened, GalleryAccess)
        return port, opened, f"{ROUTE}{token}"

    def _wrap(
        self, handler: Callable[[web.Request, GalleryPort, GalleryAccess, str], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                port, access, base = await self._open(request)
                return await handler(request, port, access, base)
            except _AccessError as refused:
                return self._page(request, refused.template, {}, status=refused.status)
            except GalleryRefusedError as refused:
                return self._page(request, "gallery_message.html", {"message": refused.message}, status=refused.status)
            except StorageUnavailableError:
                message = "Storage is unavailable; try again in a moment."
                return self._page(request, "gallery_message.html", {"message": message}, status=503)

        return handle

    def _page(
        self, request: web.Request, template: str, context: Mapping[str, object], *, status: int = 200
    ) -> web.Response:
        response = aiohttp_jinja2.render_template(template, request, dict(context), status=status)
        response.headers["Cache-Control"] = _HTML_CACHE
        return response

    # ---- pages -------------------------------------------------------------------------------------------------

    async def grid(
        self, request: web.Request, port: GalleryPort, access: GalleryAccess, base: str
    ) -> web.StreamResponse:
        which = GalleryFilter.parse(request.query.get("filter"))
        query = clean_query(request.query.get("q"))
        job_id = _job_param(request.query.get("job"))
        counts = await port.counts(access, job_id=job_id, query=query)
        pages = page_count(counts.of(which))
        page = min(max(1, _int(request.query.get("page"), 1)), pages)
        entries = await port.entries(
            access, which=which, job_id=job_id, query=query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        state = {"filter": which.value if which is not GalleryFilter.ALL else None, "q": query or None, "job": job_id}

        def url(**changes: object) -> str:
            merged = {**state, **changes}
            params = {k: v for k, v in merged.items() if v not in (None, "") and not (k == "page" and v == 1)}
            return base + ("?" + urllib.parse.urlencode(params) if params else "")

        context = {
            "access": access,
            "base": base,
            "counts": counts,
            "entries": entries,
            "filters": list(GalleryFilter),
            "which": which,
            "query": query,
            "job_id": job_id,
            "page": page,
            "pages": pages,
            "url": url,
        }
        return self._page(request, "gallery_grid.html", context)

    async def item(
        self, request: web.Request, port: GalleryPort, access: GalleryAccess, base: str
    ) -> web.StreamResponse:
        entry = await self._entry(request, port, access, made=False)
        return self._page(request, "gallery_item.html", {"access": access, "base": base, "e": entry})

    # ---- images ------------------------------------------------------------------------------------------------

    async def thumb(
        self, request: web.Request, port: GalleryPort, access: GalleryAccess, _base: str
    ) -> web.StreamResponse:
        entry = await self._entry(request, port, access)
        return await self._thumbnail_of(port, entry.output_key)

    async def ref(
        self, request: web.Request, port: GalleryPort, access: GalleryAccess, _base: str
    ) -> web.StreamResponse:
        entry = await self._entry(request, port, access, made=False)
        n = _int(request.match_info["n"], -1)
        if not 0 <= n < len(entry.ref_keys):
            raise _AccessError(404, "gallery_missing.html")
        return await self._thumbnail_of(port, entry.ref_keys[n])

    async def image(
        self, request: web.Request, port: GalleryPort, access: GalleryAccess, _base: str
    ) -> web.StreamResponse:
        entry = await self._entry(request, port, access)
        assert entry.output_key is not None  # `_entry` answers made items only
        # Relative, as the stable links do: `../../../../files/…` from `/g/{token}/image/{job}/{index}`.
        location = await self._redirect_to(entry.output_key, None, "../../../..")
        return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})

    async def _thumbnail_of(self, port: GalleryPort, key: str | None) -> web.StreamResponse:
        try:
            thumb = await port.thumbnail(key) if key is not None else None
            data = await self._store.get_bytes(thumb) if thumb is not None else None
        except (ObjectNotFoundError, InvalidKeyError):
            data = None
        if data is None:
            return web.Response(status=404, text="Not found.\n", headers={"Cache-Control": "no-store"})
        return web.Response(body=data, content_type="image/webp", headers={"Cache-Control": THUMB_CACHE})

    async def _redirect_to(self, key: str, filename: str | None, relative_root: str) -> str:
        try:
            return await link_for(
                self._store,
                key,
                expires_s=self._expires_s,
                filename=filename,
                signer=LinkSigner(self._secret, relative_root),
            )
        except (ObjectNotFoundError, InvalidKeyError):
            raise _AccessError(404, "gallery_missing.html") from None

    async def _entry(
        self, request: web.Request, port: GalleryPort, access: GalleryAccess, *, made: bool = True
    ) -> GalleryEntry:
        """Return the item the path names, only when its job is the group's (and, with `made`, its image exists)."""
        job_id = _job_param(request.match_info["job"])
        index = _int(request.match_info["index"], -1)
        entry = await port.entry(access, job_id, index) if job_id is not None and index >= 0 else None
        if entry is None or (made and not entry.made):
            raise _AccessError(404, "gallery_missing.html")
        return entry

    # ---- taking ------------------------------------------------------------------------------------------------

    async def _selection(self, request: web.Request) -> GallerySelection:
        if not _same_site(request):
            raise GalleryRefusedError("This form was sent from another site.", status=403)
        form = await request.post()
        which = GalleryFilter.parse(_text(form.get("filter")))
        query = clean_query(_text(form.get("q")))
        job_id = _job_param(_text(form.get("job")))
        if _text(form.get("all")) == "1":
            return GallerySelection(pairs=None, which=which, job_id=job_id, query=query)
        pairs = parse_selection([_text(v) for v in form.getall("item", [])])
        if not pairs:
            raise GalleryRefusedError("Select at least one image first.")
        return GallerySelection(pairs=tuple(pairs[:MAX_SELECTION]), which=which, job_id=job_id, query=query)

    async def zip(
        self, request: web.Request, port: GalleryPort, access: GalleryAccess, _base: str
    ) -> web.StreamResponse:
        taken = await port.take_zip(access, await self._selection(request))
        # `../../files/…` from `/g/{token}/zip`; 303: the browser GETs the archive.
        location = await self._redirect_to(taken.key, taken.filename, "../..")
        return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})

    async def export(
        self, request: web.Request, port: GalleryPort, access: GalleryAccess, base: str
    ) -> web.StreamResponse:
        if not access.can_export:
            raise GalleryRefusedError("This gallery link may not export; ask the group's owner.", status=403)
        selection = await self._selection(request)
        form = await request.post()
        destination = _text(form.get("destination"))
        if destination not in access.destinations:
            raise GalleryRefusedError("Choose one of the export destinations offered.")
        message = await port.export(access, selection, destination)
        return self._page(request, "gallery_message.html", {"message": message, "base": base})


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: str | None, default: int) -> int:
    return int(value) if value is not None and value.isdigit() and len(value) <= 9 else default


def _job_param(value: str | None) -> str | None:
    return value if value and _JOB_ID.match(value) else None


async def _asset(request: web.Request) -> web.Response:
    found = _ASSETS.get(request.match_info["name"])
    if found is None:
        return web.Response(status=404, text="Not found.\n")
    body, content_type = found
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers={"Cache-Control": _ASSET_CACHE})


def add_gallery_routes(
    app: web.Application, mount: GalleryMount, store: Store, secret: bytes, *, expires_s: int
) -> None:
    """Add the gallery's routes, templates and assets to `app`, with its security headers on every response."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.DictLoader(_TEMPLATES),
        autoescape=True,  # every value is escaped: prompts and file names are hostile input
        undefined=jinja2.StrictUndefined,
    )
    gallery = _Gallery(mount, store, secret, expires_s)
    route = ROUTE + "{token}"
    app.router.add_get(route, gallery._wrap(gallery.grid), name="gallery")
    app.router.add_get(route + "/item/{job}/{index}", gallery._wrap(gallery.item), name="gallery-item")
    app.router.add_get(route + "/thumb/{job}/{index}", gallery._wrap(gallery.thumb), name="gallery-thumb")
    app.router.add_get(route + "/image/{job}/{index}", gallery._wrap(gallery.image), name="gallery-image")
    app.router.add_get(route + "/ref/{job}/{index}/{n}", gallery._wrap(gallery.ref), name="gallery-ref")
    app.router.add_post(route + "/zip", gallery._wrap(gallery.zip), name="gallery-zip")
    app.router.add_post(route + "/export", gallery._wrap(gallery.export), name="gallery-export")
    app.router.add_get(ASSETS + "{name}", _asset, name="gallery-assets")

    async def secure(request: web.Request, response: web.StreamResponse) -> None:
        if not request.path.startswith((ROUTE, ASSETS)):
            return
        response.headers["Content-Security-Policy"] = content_security_policy(await gallery.store_origin())
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Cache-Control", _HTML_CACHE)

    app.on_response_prepare.append(secure)


__all__ = [
    "ASSETS",
    "ROUTE",
    "GalleryAccess",
    "GalleryMount",
    "GalleryPort",
    "GalleryRefusedError",
    "GallerySelection",
    "Revoked",
    "TakenZip",
    "add_gallery_routes",
    "content_security_policy",
]
