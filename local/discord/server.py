"""The playground server: Discord's REST API v10, its gateway, a CDN path, and the browser page, on 127.0.0.1.

``async with Playground() as pg:`` runs it; point a real discord.py client at ``pg.api_base`` and
``pg.gateway_url`` (see :mod:`local.discord.discord_py`) and act as a user with ``pg.driver()`` or the page at
``pg.url``. The REST routes are in :mod:`local.discord.rest`, the page's in :mod:`local.discord.page`; this
module binds them, with the gateway and the CDN path, to one port and checks the bot's token.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import TYPE_CHECKING, Self

from aiohttp import web

from bot.core.hosts import url_host
from local.discord import actions
from local.discord.discord_py import discord_py_pointed_at
from local.discord.driver import Driver
from local.discord.gateway import Gateway, GatewayLimits
from local.discord.page import BrowserPage
from local.discord.persist import WorldFile
from local.discord.ratelimit import EXTRA_DECISION, Decision, Limit, RateLimits
from local.discord.rest import RestApi
from local.discord.rules import ApiError
from local.discord.state import DEFAULT_UPLOAD_LIMIT, PlaygroundState, bot_token
from local.discord.wire import Handler, json_response
from local.discord.world import APPLICATION_FLAGS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from contextlib import AbstractContextManager
    from pathlib import Path
    from types import TracebackType


log = logging.getLogger(__name__)

API = r"/api/v{version:\d+}"
_API_TEMPLATE = re.compile(r"^/api/v\{version\}")


class Playground:
    """A local Discord: one guild, REST + gateway for a real bot, a browser page and a driver for tests."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
        interaction_deadline_s: float = 3.0,
        token_lifetime_s: float = 15 * 60,
        edit_rate_limit: int | None = None,
        edit_rate_window_s: float | None = None,
        rate_limits: Mapping[str, Limit] | None = None,
        rate_window_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        bot_name: str = "Peel",
        gateway_limits: GatewayLimits | None = None,
        app_flags: int = APPLICATION_FLAGS,
        data_dir: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.state = PlaygroundState(
            upload_limit=upload_limit,
            interaction_deadline_s=interaction_deadline_s,
            token_lifetime_s=token_lifetime_s,
            clock=clock,
            bot_name=bot_name,
            app_flags=app_flags,
        )
        overrides = dict(rate_limits or {})
        if edit_rate_limit is not None or edit_rate_window_s is not None:
            overrides["message-edit"] = Limit(edit_rate_limit or 5, edit_rate_window_s or 5.0 * rate_window_scale)
        self.rate_limits = RateLimits(overrides=overrides, window_scale=rate_window_scale, clock=clock)
        # The default is Discord-shaped and carries the bot's id, as the developer portal's tokens do.
        self._token_given = token is not None
        self.token = token if token is not None else bot_token(self.state.app_id)
        # With a data directory the world outlives the process (see :mod:`.persist`); without, it lives in memory.
        self.world_file = WorldFile(data_dir) if data_dir is not None else None
        self.gateway = Gateway(self.state, self.token, url=lambda: self.gateway_url, limits=gateway_limits)
        self.rest = RestApi(self.state, self.rate_limits, gateway_url=lambda: self.gateway_url)
        self.page = BrowserPage(
            self.state, self.gateway, api_base=lambda: self.api_base, gateway_url=lambda: self.gateway_url
        )
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------- lifecycle
    @property
    def _url_host(self) -> str:
        # Bound to every interface (in a container), it is still reached from this machine on loopback.
        return url_host(self.host)

    @property
    def url(self) -> str:
        """Return the browser page's URL."""
        return f"http://{self._url_host}:{self.port}/"

    @property
    def api_base(self) -> str:
        """Return the REST base, as discord.py's ``Route.BASE``."""
        return f"http://{self._url_host}:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        """Return the gateway websocket URL."""
        return f"ws://{self._url_host}:{self.port}/gateway"

    async def start(self) -> Self:
        """Bind the server (port 0 picks a free port) and start serving."""
        await self.page.load()
        saved = await asyncio.to_thread(self.world_file.read) if self.world_file is not None else None
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.state.base_url = f"http://{self._url_host}:{self.port}"
        if saved is not None:  # before the first request: nothing in between awaits
            WorldFile.restore(self.state, saved)
            if not self._token_given:  # the default token carries the bot's id, which the saved world holds
                self.token = bot_token(self.state.app_id)
                self.gateway.accept_token(self.token)
        if self.world_file is not None:
            self.world_file.watch(self.state)
        log.info("playground listening on %s", self.url)
        return self

    async def stop(self) -> None:
        """Close every socket and stop the server."""
        await self.gateway.close()
        await self.page.close()
        if self.world_file is not None:
            await self.world_file.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def driver(self, user: str = "alice") -> Driver:
        """Return a test driver acting as ``user`` (``alice``, ``bob`` or ``admin``)."""
        return Driver(self.state, user)

    def discord_py(self) -> AbstractContextManager[None]:
        """Point discord.py at this playground inside a ``with`` block (``with pg.discord_py(): ...``)."""
        return discord_py_pointed_at(self.api_base, self.gateway_url)

    async def wait_for_bot(self, timeout_s: float = 10.0) -> None:
        """Wait until a bot has identified on the gateway."""
        await asyncio.wait_for(self.gateway.ready.wait(), timeout_s)

    # ------------------------------------------------------------------- app
    def make_app(self) -> web.Application:
        """Build the aiohttp application with every route."""
        app = web.Application(client_max_size=self.state.upload_limit + 8 * 1024 * 1024, middlewares=[self._middleware])
        r = app.router
        r.add_get("/gateway", self.gateway.handle)
        r.add_get("/gateway/", self.gateway.handle)
        r.add_get("/cdn/attachments/{cid}/{aid}/{filename}", self.rest.cdn)
        self.page.add_routes(r)
        for method, path, handler in self.rest.routes():
            r.add_route(method, API + path, handler)
        r.add_route("*", "/{tail:.*}", self.not_found)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        limited: Decision | None = None
        response: web.StreamResponse
        try:
            needs_auth = path.startswith("/api/") and not re.match(r"/api/v\d+/(interactions|webhooks)/", path)
            if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise ApiError(401, 0, "401: Unauthorized")
            limited = self._rate_limit(request)
            if limited is not None and not limited.allowed:
                response = json_response(limited.body(), 429, limited.headers())
            else:
                response = await handler(request)
        except ApiError as exc:
            response = json_response(exc.body(), exc.status)
        except actions.ActionError as exc:
            response = json_response({"error": str(exc)}, 400)
        if limited is not None and response.status != 429:
            # A route counted against a second bucket (a webhook edit against its channel's edits) answers with
            # whichever has less left, so the client paces itself by the tighter one.
            extra: Decision | None = request.get(EXTRA_DECISION)
            chosen = extra if extra is not None and extra.remaining < limited.remaining else limited
            response.headers.update(chosen.headers())
        if path.startswith("/api/"):
            self.state.requests.append(f"{request.method} {path} -> {response.status}")
            if response.status >= 400 and response.status != 429:
                log.debug("%s %s -> %s", request.method, path, response.status)
        return response

    def _rate_limit(self, request: web.Request) -> Decision | None:
        """Count a REST request against the global limit and its route's bucket (see :mod:`.ratelimit`)."""
        resource = request.match_info.route.resource
        if resource is None or not request.path.startswith("/api/"):
            return None
        template, prefixed = _API_TEMPLATE.subn("", resource.canonical)
        if not prefixed:  # the catch-all that answers unknown routes
            return None
        token = request.headers.get("Authorization", "")
        return self.rate_limits.check(request.method, template, request.match_info, token)

    async def not_found(self, request: web.Request) -> web.Response:
        """Answer unknown routes like Discord (404, code 0) and log them, so a missing route shows up."""
        log.warning("playground has no route for %s %s", request.method, request.path)
        return json_response({"message": "404: Not Found", "code": 0}, 404)
