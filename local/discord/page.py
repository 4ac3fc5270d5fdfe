"""The playground's browser page: its files, what it shows, the user actions it sends, and its event socket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from local.discord.gateway import Gateway, write_frames
from local.discord.view import run_page_action, snapshot
from local.discord.wire import Handler, json_response, read_body

if TYPE_CHECKING:
    from collections.abc import Callable

    from local.discord.state import PlaygroundState

STATIC_DIR = Path(__file__).parent / "static"
PAGE_ACTIONS = ("command", "context", "click", "select", "modal", "message", "react", "autocomplete", "thread")


class BrowserPage:
    """The page at ``/``, its static files, its JSON API under ``/playground/api`` and its websocket."""

    def __init__(
        self,
        state: PlaygroundState,
        gateway: Gateway,
        *,
        api_base: Callable[[], str],
        gateway_url: Callable[[], str],
    ) -> None:
        self.state = state
        self.gateway = gateway
        self._api_base = api_base
        self._gateway_url = gateway_url
        self._static: dict[str, bytes] = {}
        self._browsers: set[web.WebSocketResponse] = set()

    async def load(self) -> None:
        """Read the page's static files (once, at start)."""
        self._static = await asyncio.to_thread(_load_static)

    async def close(self) -> None:
        """Close every browser socket."""
        for ws in list(self._browsers):
            await ws.close()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Add the page's routes to ``router``."""
        router.add_get("/", self.page)
        router.add_get("/favicon.ico", self.favicon)
        router.add_get("/static/{name}", self.static)
        router.add_get("/playground/ws", self.browser_socket)
        router.add_get("/playground/api/state", self.pg_state)
        router.add_get("/playground/api/interactions/{iid}", self.pg_interaction)
        for name in PAGE_ACTIONS:
            router.add_post(f"/playground/api/{name}", self._pg_action(name))

    async def page(self, request: web.Request) -> web.Response:
        """Serve the browser page."""
        return web.Response(body=self._static.get("index.html", b""), content_type="text/html")

    async def favicon(self, request: web.Request) -> web.Response:
        """Answer the browser's favicon request quietly."""
        return web.Response(status=204)

    async def static(self, request: web.Request) -> web.Response:
        """Serve the page's CSS and JavaScript."""
        name = request.match_info["name"]
        data = self._static.get(name)
        if data is None or name == "index.html":
            raise web.HTTPNotFound
        kind = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}.get(name.rsplit(".", 1)[-1])
        return web.Response(body=data, content_type=kind or "application/octet-stream")

    async def pg_state(self, request: web.Request) -> web.Response:
        """Return everything the page shows, as seen by ``?user=``."""
        user = self.state.user_named(request.query.get("user", "alice"))
        return json_response(
            snapshot(
                self.state,
                user["id"],
                bot_connected=self.gateway.connected > 0,
                api_base=self._api_base(),
                gateway_url=self._gateway_url(),
            )
        )

    async def pg_interaction(self, request: web.Request) -> web.Response:
        """Return what the bot answered to one interaction (for remote drivers)."""
        interaction = self.state.interactions.get(request.match_info["iid"])
        if interaction is None:
            raise web.HTTPNotFound
        return json_response(
            {
                "id": interaction.id,
                "acked": interaction.acked,
                "failed": interaction.failed,
                "callback_type": interaction.callback_type,
                "modal": interaction.modal,
                "choices": interaction.choices,
                "original_id": interaction.original_id,
                "followups": interaction.followups,
            }
        )

    async def browser_socket(self, request: web.Request) -> web.WebSocketResponse:
        """Push every world event to the page."""
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        outbox: asyncio.Queue[str] = asyncio.Queue()

        def on_event(event: Any) -> None:
            outbox.put_nowait(json.dumps({"t": event.name, "d": event.data, "visible_to": event.visible_to}))

        unsubscribe = self.state.subscribe(on_event)
        self._browsers.add(ws)
        writer = asyncio.create_task(write_frames(ws, outbox))
        try:
            async for _ in ws:
                pass
        finally:
            unsubscribe()
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            self._browsers.discard(ws)
        return ws

    def _pg_action(self, name: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            body, files = await read_body(request, self.state.upload_limit)
            return json_response(await run_page_action(self.state, name, body, files))

        return handler


def _load_static() -> dict[str, bytes]:
    if not STATIC_DIR.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in STATIC_DIR.iterdir() if p.is_file()}
