"""The playground server: Discord's REST API v10, its gateway, a CDN path, and the browser page, on 127.0.0.1.

``async with Playground() as pg:`` runs it; point a real discord.py client at ``pg.api_base`` and
``pg.gateway_url`` (see :mod:`local.discord.discord_py`) and act as a user with ``pg.driver()`` or the page at
``pg.url``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from aiohttp import BodyPartReader, web

from local.discord import actions
from local.discord.discord_py import discord_py_pointed_at
from local.discord.driver import Driver
from local.discord.gateway import Gateway, write_frames
from local.discord.ratelimit import RateLimiter
from local.discord.rules import JSON, ApiError
from local.discord.state import DEFAULT_TOKEN, DEFAULT_UPLOAD_LIMIT, THREAD_TYPES, PlaygroundState, Upload
from local.discord.view import run_page_action, snapshot

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from types import TracebackType


log = logging.getLogger(__name__)

API = r"/api/v{version:\d+}"
STATIC_DIR = Path(__file__).parent / "static"
_FILES_PART = re.compile(r"files\[(\d+)\]")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Return JSON with ``Content-Type`` exactly ``application/json``, which discord.py compares for equality."""
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json", **(headers or {})}
    )


def _no_content() -> web.Response:
    return web.Response(status=204)


async def read_json_list(request: web.Request) -> list[JSON]:
    """Read a JSON array body (command bulk overwrites), or raise Discord's 50035."""
    try:
        body = json.loads(await request.read() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, 50109, "The request body contains invalid JSON.") from exc
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        error = {"code": "LIST_TYPE_CONVERT", "message": "Must be an array of objects."}
        raise ApiError(400, 50035, "Invalid Form Body", {"_errors": [error]})
    return body


async def read_body(request: web.Request, limit: int) -> tuple[JSON, dict[int, Upload]]:
    """Read a JSON or multipart (``payload_json`` + ``files[n]``) body, enforcing the upload size limit.

    Raises:
        ApiError: 413/40005 when the files exceed ``limit``; 400/50109 for a body that is not JSON.
    """
    files: dict[int, Upload] = {}
    payload: JSON = {}
    try:
        if request.content_type.startswith("multipart/"):
            total = 0
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "payload_json":
                    payload = json.loads(await part.text())
                    if not isinstance(payload, dict):
                        raise ApiError(400, 50109, "The request body contains invalid JSON.")
                    continue
                chunks: list[bytes] = []
                while chunk := await part.read_chunk():
                    total += len(chunk)
                    if total <= limit:  # keep draining past the limit, so the 413 reaches the client
                        chunks.append(chunk)
                match = _FILES_PART.fullmatch(part.name or "")
                index = int(match.group(1)) if match else len(files)
                files[index] = Upload(
                    part.filename or f"file{index}", b"".join(chunks), part.headers.get("Content-Type")
                )
            if total > limit:
                raise ApiError(413, 40005, "Request entity too large")
        elif request.body_exists:
            raw = await request.read()
            payload = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, 50109, "The request body contains invalid JSON.") from exc
    if not isinstance(payload, dict):
        raise ApiError(400, 50109, "The request body contains invalid JSON.")
    return payload, files


class Playground:
    """A local Discord: one guild, REST + gateway for a real bot, a browser page and a driver for tests."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = DEFAULT_TOKEN,
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
        interaction_deadline_s: float = 3.0,
        token_lifetime_s: float = 15 * 60,
        edit_rate_limit: int = 5,
        edit_rate_window_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        bot_name: str = "Peel",
    ) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.state = PlaygroundState(
            upload_limit=upload_limit,
            interaction_deadline_s=interaction_deadline_s,
            token_lifetime_s=token_lifetime_s,
            clock=clock,
            bot_name=bot_name,
        )
        self.edit_limiter = RateLimiter(limit=edit_rate_limit, window_s=edit_rate_window_s, clock=clock)
        self.gateway = Gateway(self.state, token, url=lambda: self.gateway_url)
        self._static: dict[str, bytes] = {}
        self._runner: web.AppRunner | None = None
        self._browsers: set[web.WebSocketResponse] = set()

    # ------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        """Return the browser page's URL."""
        return f"http://{self.host}:{self.port}/"

    @property
    def api_base(self) -> str:
        """Return the REST base, as discord.py's ``Route.BASE``."""
        return f"http://{self.host}:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        """Return the gateway websocket URL."""
        return f"ws://{self.host}:{self.port}/gateway"

    async def start(self) -> Self:
        """Bind the server (port 0 picks a free port) and start serving."""
        self._static = await asyncio.to_thread(_load_static)
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.state.base_url = f"http://{self.host}:{self.port}"
        log.info("playground listening on %s", self.url)
        return self

    async def stop(self) -> None:
        """Close every socket and stop the server."""
        await self.gateway.close()
        for ws in list(self._browsers):
            await ws.close()
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
        r.add_get("/cdn/attachments/{cid}/{aid}/{filename}", self.cdn)
        r.add_get("/", self.page)
        r.add_get("/favicon.ico", self.favicon)
        r.add_get("/static/{name}", self.static)
        r.add_get("/playground/ws", self.browser_socket)
        r.add_get("/playground/api/state", self.pg_state)
        r.add_get("/playground/api/interactions/{iid}", self.pg_interaction)
        actions_ = ("command", "context", "click", "select", "modal", "message", "react", "autocomplete", "thread")
        for name in actions_:
            r.add_post(f"/playground/api/{name}", self._pg_action(name))
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/gateway", self.get_gateway),
            ("GET", "/gateway/bot", self.get_gateway_bot),
            ("GET", "/users/@me", self.get_me),
            ("GET", "/users/{uid}", self.get_user),
            ("POST", "/users/@me/channels", self.create_dm),
            ("GET", "/oauth2/applications/@me", self.get_application),
            ("GET", "/applications/@me", self.get_application),
            ("GET", "/applications/{app}/commands", self.get_commands),
            ("PUT", "/applications/{app}/commands", self.put_commands),
            ("POST", "/applications/{app}/commands", self.post_command),
            ("GET", "/applications/{app}/guilds/{gid}/commands", self.get_commands),
            ("PUT", "/applications/{app}/guilds/{gid}/commands", self.put_commands),
            ("POST", "/applications/{app}/guilds/{gid}/commands", self.post_command),
            ("POST", "/interactions/{iid}/{token}/callback", self.interaction_callback),
            ("POST", "/webhooks/{app}/{token}", self.webhook_execute),
            ("GET", "/webhooks/{app}/{token}/messages/{mid}", self.webhook_get),
            ("PATCH", "/webhooks/{app}/{token}/messages/{mid}", self.webhook_edit),
            ("DELETE", "/webhooks/{app}/{token}/messages/{mid}", self.webhook_delete),
            ("GET", "/guilds/{gid}", self.get_guild),
            ("GET", "/guilds/{gid}/channels", self.get_guild_channels),
            ("GET", "/guilds/{gid}/members/{uid}", self.get_member),
            ("GET", "/guilds/{gid}/roles", self.get_roles),
            ("GET", "/channels/{cid}", self.get_channel),
            ("PATCH", "/channels/{cid}", self.edit_channel),
            ("DELETE", "/channels/{cid}", self.delete_channel),
            ("GET", "/channels/{cid}/messages", self.list_messages),
            ("POST", "/channels/{cid}/messages", self.post_message),
            ("GET", "/channels/{cid}/messages/{mid}", self.get_message),
            ("PATCH", "/channels/{cid}/messages/{mid}", self.edit_message),
            ("DELETE", "/channels/{cid}/messages/{mid}", self.delete_message),
            ("POST", "/channels/{cid}/typing", self.typing),
            ("PUT", "/channels/{cid}/messages/{mid}/reactions/{emoji}/@me", self.add_reaction),
            ("DELETE", "/channels/{cid}/messages/{mid}/reactions/{emoji}/{uid}", self.remove_reaction),
            ("GET", "/channels/{cid}/messages/{mid}/reactions/{emoji}", self.get_reactions),
            ("POST", "/channels/{cid}/threads", self.create_thread),
            ("POST", "/channels/{cid}/messages/{mid}/threads", self.create_thread),
            ("PUT", "/channels/{cid}/thread-members/@me", self.join_thread),
            ("DELETE", "/channels/{cid}/thread-members/@me", self.join_thread),
        ]
        for method, path, handler in routes:
            r.add_route(method, API + path, handler)
        r.add_route("*", "/{tail:.*}", self.not_found)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        try:
            needs_auth = path.startswith("/api/") and not re.match(r"/api/v\d+/(interactions|webhooks)/", path)
            if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise ApiError(401, 0, "401: Unauthorized")
            response = await handler(request)
        except ApiError as exc:
            response = json_response(exc.body(), exc.status)
        except actions.ActionError as exc:
            response = json_response({"error": str(exc)}, 400)
        if path.startswith("/api/"):
            self.state.requests.append(f"{request.method} {path} -> {response.status}")
            if response.status >= 400 and response.status != 429:
                log.debug("%s %s -> %s", request.method, path, response.status)
        return response

    async def not_found(self, request: web.Request) -> web.Response:
        """Answer unknown routes like Discord (404, code 0) and log them, so a missing route shows up."""
        log.warning("playground has no route for %s %s", request.method, request.path)
        return json_response({"message": "404: Not Found", "code": 0}, 404)

    # ----------------------------------------------------------------- basics
    async def get_gateway(self, request: web.Request) -> web.Response:
        """``GET /gateway``."""
        return json_response({"url": self.gateway_url})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        """``GET /gateway/bot``, which AutoShardedClient asks for."""
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return json_response({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    async def get_me(self, request: web.Request) -> web.Response:
        """``GET /users/@me``."""
        return json_response(self.state.bot_user)

    async def get_user(self, request: web.Request) -> web.Response:
        """``GET /users/{id}``."""
        user = self.state.users.get(request.match_info["uid"])
        if user is None:
            raise ApiError(404, 10013, "Unknown User")
        return json_response(user)

    async def create_dm(self, request: web.Request) -> web.Response:
        """``POST /users/@me/channels``: open a DM."""
        body, _ = await read_body(request, 0)
        return json_response(self.state.open_dm(str(body.get("recipient_id"))))

    async def get_application(self, request: web.Request) -> web.Response:
        """``GET /oauth2/applications/@me``."""
        state = self.state
        return json_response(
            {
                "id": state.app_id,
                "name": state.bot_user["global_name"],
                "description": "Peel in the local playground",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": state.user_named("admin"),
                "flags": 0,
                "team": None,
                "summary": "",
                "interactions_endpoint_url": None,
                "bot": state.bot_user,
                "guild_id": state.guild_id,
            }
        )

    def _check_app(self, request: web.Request) -> None:
        if request.match_info.get("app") not in (None, self.state.app_id):
            raise ApiError(404, 10002, "Unknown Application")

    async def get_commands(self, request: web.Request) -> web.Response:
        """List global or guild commands."""
        self._check_app(request)
        gid = request.match_info.get("gid")
        return json_response([c for c in self.state.commands.values() if c.get("guild_id") == gid])

    async def put_commands(self, request: web.Request) -> web.Response:
        """Bulk-overwrite global or guild commands."""
        self._check_app(request)
        commands = await read_json_list(request)
        return json_response(self.state.set_commands(commands, request.match_info.get("gid")))

    async def post_command(self, request: web.Request) -> web.Response:
        """Create or replace one command by name."""
        self._check_app(request)
        body, _ = await read_body(request, 0)
        gid = request.match_info.get("gid")
        others = [c for c in self.state.commands.values() if c.get("guild_id") == gid and c["name"] != body.get("name")]
        created = self.state.set_commands([*others, body], gid)
        return json_response(created[-1], 201)

    async def get_guild(self, request: web.Request) -> web.Response:
        """``GET /guilds/{id}``."""
        self._guild(request)
        data = self.state.guild_payload()
        return json_response({k: v for k, v in data.items() if k not in ("channels", "threads", "members")})

    def _guild(self, request: web.Request) -> None:
        if request.match_info["gid"] != self.state.guild_id:
            raise ApiError(404, 10004, "Unknown Guild")

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        """``GET /guilds/{id}/channels``."""
        self._guild(request)
        return json_response(self.state.guild_payload()["channels"])

    async def get_member(self, request: web.Request) -> web.Response:
        """``GET /guilds/{id}/members/{user}``."""
        self._guild(request)
        uid = request.match_info["uid"]
        if uid not in self.state.member_roles:
            raise ApiError(404, 10007, "Unknown Member")
        return json_response(self.state.member(uid))

    async def get_roles(self, request: web.Request) -> web.Response:
        """``GET /guilds/{id}/roles``."""
        self._guild(request)
        return json_response(list(self.state.roles.values()))

    async def cdn(self, request: web.Request) -> web.Response:
        """Serve an attachment's bytes."""
        stored = self.state.files.get(request.match_info["aid"])
        if stored is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=stored.data, headers={"Content-Type": stored.content_type})

    # --------------------------------------------------------------- channels
    def _channel(self, request: web.Request) -> JSON:
        channel = self.state.channels.get(request.match_info["cid"])
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        return channel

    async def get_channel(self, request: web.Request) -> web.Response:
        """``GET /channels/{id}``."""
        return json_response(self._channel(request))

    async def edit_channel(self, request: web.Request) -> web.Response:
        """``PATCH /channels/{id}``: rename a channel or thread, archive or lock a thread."""
        channel = self._channel(request)
        body, _ = await read_body(request, 0)
        return json_response(self.state.edit_channel(channel, body))

    async def delete_channel(self, request: web.Request) -> web.Response:
        """``DELETE /channels/{id}``: delete a channel or thread (answers with the channel, as Discord does)."""
        return json_response(self.state.delete_channel(self._channel(request)))

    async def list_messages(self, request: web.Request) -> web.Response:
        """``GET /channels/{id}/messages`` (newest first, ``limit``/``before``/``after``)."""
        channel = self._channel(request)
        messages = self.state.messages_in(channel["id"])
        before, after = request.query.get("before"), request.query.get("after")
        if before:
            messages = [m for m in messages if int(m["id"]) < int(before)]
        if after:
            messages = [m for m in messages if int(m["id"]) > int(after)]
        limit = min(100, int(request.query.get("limit", 50)))
        newest = list(reversed(messages))
        return json_response(newest[-limit:] if after else newest[:limit])

    async def post_message(self, request: web.Request) -> web.Response:
        """``POST /channels/{id}/messages`` (JSON or multipart)."""
        channel = self._channel(request)
        body, files = await read_body(request, self.state.upload_limit)
        return json_response(self.state.create_message(channel["id"], self.state.bot_user, body, files))

    async def get_message(self, request: web.Request) -> web.Response:
        """``GET /channels/{id}/messages/{id}``."""
        return json_response(self.state.find_message(request.match_info["cid"], request.match_info["mid"]))

    def _rate_limited(self, key: str) -> dict[str, str]:
        decision = self.edit_limiter.hit(key)
        if not decision.allowed:
            raise RateLimitedError(decision.body(), decision.headers())
        return decision.headers()

    async def edit_message(self, request: web.Request) -> web.Response:
        """``PATCH /channels/{id}/messages/{id}``: rate-limited per channel; only the author may edit."""
        msg = self.state.find_message(request.match_info["cid"], request.match_info["mid"])
        body, files = await read_body(request, self.state.upload_limit)
        try:
            headers = self._rate_limited(msg["channel_id"])
        except RateLimitedError as exc:
            return exc.response()
        if msg["author"]["id"] != self.state.app_id and set(body) - {"flags"}:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        return json_response(self.state.edit_message(msg, body, files), headers=headers)

    async def delete_message(self, request: web.Request) -> web.Response:
        """``DELETE /channels/{id}/messages/{id}``."""
        self.state.delete_message(self.state.find_message(request.match_info["cid"], request.match_info["mid"]))
        return _no_content()

    async def typing(self, request: web.Request) -> web.Response:
        """``POST /channels/{id}/typing``."""
        channel = self._channel(request)
        self.state.emit("TYPING_START", {"channel_id": channel["id"], "user_id": self.state.app_id}, gateway=False)
        return _no_content()

    async def add_reaction(self, request: web.Request) -> web.Response:
        """``PUT .../reactions/{emoji}/@me``."""
        msg = self.state.find_message(request.match_info["cid"], request.match_info["mid"])
        self.state.react(msg, request.match_info["emoji"], self.state.app_id)
        return _no_content()

    async def remove_reaction(self, request: web.Request) -> web.Response:
        """``DELETE .../reactions/{emoji}/{@me|user}``."""
        msg = self.state.find_message(request.match_info["cid"], request.match_info["mid"])
        uid = request.match_info["uid"]
        self.state.react(msg, request.match_info["emoji"], self.state.app_id if uid == "@me" else uid, add=False)
        return _no_content()

    async def get_reactions(self, request: web.Request) -> web.Response:
        """``GET .../reactions/{emoji}``: the users who reacted."""
        msg = self.state.find_message(request.match_info["cid"], request.match_info["mid"])
        key = self.state.emoji_key(request.match_info["emoji"])
        return json_response([self.state.users[u] for u in self.state.reactors.get((msg["id"], key), [])])

    async def create_thread(self, request: web.Request) -> web.Response:
        """Create a thread from a message (``.../messages/{id}/threads``) or standalone."""
        body, _ = await read_body(request, 0)
        thread = self.state.create_thread(
            request.match_info["cid"],
            str(body.get("name") or ""),
            owner_id=self.state.app_id,
            message_id=request.match_info.get("mid"),
            thread_type=int(body.get("type") or 11),
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
        )
        return json_response(thread, 201)

    async def join_thread(self, request: web.Request) -> web.Response:
        """Join or leave a thread."""
        channel = self._channel(request)
        if channel["type"] not in THREAD_TYPES:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        return _no_content()

    # ----------------------------------------------------------- interactions
    async def interaction_callback(self, request: web.Request) -> web.Response:
        """``POST /interactions/{id}/{token}/callback`` (answered with the ``with_response`` body)."""
        body, files = await read_body(request, self.state.upload_limit)
        out = self.state.respond(request.match_info["iid"], request.match_info["token"], body, files)
        return json_response(out)

    async def webhook_execute(self, request: web.Request) -> web.Response:
        """``POST /webhooks/{app}/{token}``: an interaction follow-up."""
        self._check_webhook_app(request)
        body, files = await read_body(request, self.state.upload_limit)
        msg = self.state.followup(request.match_info["token"], body, files, thread_id=request.query.get("thread_id"))
        return json_response(msg)

    def _check_webhook_app(self, request: web.Request) -> None:
        if request.match_info["app"] != self.state.app_id:
            raise ApiError(404, 10015, "Unknown Webhook")

    async def webhook_get(self, request: web.Request) -> web.Response:
        """``GET /webhooks/{app}/{token}/messages/{id|@original}``."""
        self._check_webhook_app(request)
        return json_response(self.state.webhook_message(request.match_info["token"], request.match_info["mid"]))

    async def webhook_edit(self, request: web.Request) -> web.Response:
        """``PATCH /webhooks/{app}/{token}/messages/{id|@original}``: rate-limited like channel edits."""
        self._check_webhook_app(request)
        msg = self.state.webhook_message(request.match_info["token"], request.match_info["mid"])
        body, files = await read_body(request, self.state.upload_limit)
        try:
            headers = self._rate_limited(msg["channel_id"])
        except RateLimitedError as exc:
            return exc.response()
        return json_response(self.state.edit_message(msg, body, files), headers=headers)

    async def webhook_delete(self, request: web.Request) -> web.Response:
        """``DELETE /webhooks/{app}/{token}/messages/{id|@original}``."""
        self._check_webhook_app(request)
        self.state.delete_message(self.state.webhook_message(request.match_info["token"], request.match_info["mid"]))
        return _no_content()

    # ---------------------------------------------------------------- browser
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
                api_base=self.api_base,
                gateway_url=self.gateway_url,
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


class RateLimitedError(Exception):
    """A request over its rate limit; becomes Discord's 429 response."""

    def __init__(self, body: JSON, headers: dict[str, str]) -> None:
        super().__init__("rate limited")
        self.body = body
        self.headers = headers

    def response(self) -> web.Response:
        """Return the 429 response."""
        return json_response(self.body, 429, self.headers)


def _load_static() -> dict[str, bytes]:
    if not STATIC_DIR.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in STATIC_DIR.iterdir() if p.is_file()}
