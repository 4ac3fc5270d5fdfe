"""The playground's REST API v10: users, commands, guilds, channels, messages, reactions, threads, webhooks.

Each handler parses the request, asks :class:`~local.discord.state.PlaygroundState` to act, and answers with
Discord's JSON; validation and Discord's error codes live in the state and :mod:`local.discord.rules`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from local.discord.ratelimit import EXTRA_DECISION, NameChangeLimit
from local.discord.rules import JSON, ApiError
from local.discord.state import THREAD_TYPES, PlaygroundState
from local.discord.wire import Handler, RateLimitedError, json_response, no_content, read_body, read_json_list
from local.discord.world import GUILD_MEMBERS_FLAGS

if TYPE_CHECKING:
    from collections.abc import Callable

    from local.discord.ratelimit import RateLimits


class RestApi:
    """Discord's REST routes over the playground's world (mounted under ``/api/v{n}`` by the server)."""

    def __init__(
        self,
        state: PlaygroundState,
        rate_limits: RateLimits,
        *,
        gateway_url: Callable[[], str],
        name_changes: NameChangeLimit | None = None,
    ) -> None:
        self.state = state
        self.rate_limits = rate_limits
        self._gateway_url = gateway_url
        self.name_changes = name_changes or NameChangeLimit(clock=state.clock)

    def routes(self) -> list[tuple[str, str, Handler]]:
        """Return ``(method, path under the API prefix, handler)`` for every REST route."""
        return [
            ("GET", "/gateway", self.get_gateway),
            ("GET", "/gateway/bot", self.get_gateway_bot),
            ("GET", "/users/@me", self.get_me),
            ("GET", "/users/{uid}", self.get_user),
            ("POST", "/users/@me/channels", self.create_dm),
            ("GET", "/users/@me/guilds", self.get_my_guilds),
            ("GET", "/oauth2/applications/@me", self.get_application),
            ("GET", "/applications/@me", self.get_application),
            ("GET", "/applications/{app}/commands", self.get_commands),
            ("PUT", "/applications/{app}/commands", self.put_commands),
            ("POST", "/applications/{app}/commands", self.post_command),
            ("GET", "/applications/{app}/commands/{cmd}", self.get_command),
            ("PATCH", "/applications/{app}/commands/{cmd}", self.edit_command),
            ("DELETE", "/applications/{app}/commands/{cmd}", self.delete_command),
            ("GET", "/applications/{app}/guilds/{gid}/commands", self.get_commands),
            ("PUT", "/applications/{app}/guilds/{gid}/commands", self.put_commands),
            ("POST", "/applications/{app}/guilds/{gid}/commands", self.post_command),
            ("GET", "/applications/{app}/guilds/{gid}/commands/{cmd}", self.get_command),
            ("PATCH", "/applications/{app}/guilds/{gid}/commands/{cmd}", self.edit_command),
            ("DELETE", "/applications/{app}/guilds/{gid}/commands/{cmd}", self.delete_command),
            ("POST", "/interactions/{iid}/{token}/callback", self.interaction_callback),
            ("POST", "/webhooks/{app}/{token}", self.webhook_execute),
            ("GET", "/webhooks/{app}/{token}/messages/{mid}", self.webhook_get),
            ("PATCH", "/webhooks/{app}/{token}/messages/{mid}", self.webhook_edit),
            ("DELETE", "/webhooks/{app}/{token}/messages/{mid}", self.webhook_delete),
            ("GET", "/guilds/{gid}", self.get_guild),
            ("GET", "/guilds/{gid}/channels", self.get_guild_channels),
            ("GET", "/guilds/{gid}/members", self.list_members),
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

    # ----------------------------------------------------------------- basics
    async def get_gateway(self, request: web.Request) -> web.Response:
        """``GET /gateway``."""
        return json_response({"url": self._gateway_url()})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        """``GET /gateway/bot``, which AutoShardedClient asks for."""
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return json_response({"url": self._gateway_url(), "shards": 1, "session_start_limit": limit})

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

    async def get_my_guilds(self, request: web.Request) -> web.Response:
        """``GET /users/@me/guilds``: the bot's one guild as a partial guild with the bot's permissions in it.

        https://discord.com/developers/docs/resources/user#get-current-user-guilds; ``limit`` is 1-200.
        """
        try:
            limit = int(request.query.get("limit", "200"))
        except ValueError:
            raise ApiError(400, 50035, "Invalid Form Body") from None
        if not 1 <= limit <= 200:
            raise ApiError(400, 50035, "Invalid Form Body")
        state = self.state
        guild = state.guild_object()
        return json_response(
            [
                {
                    "id": state.guild_id,
                    "name": guild["name"],
                    "icon": None,
                    "banner": None,
                    "owner": guild["owner_id"] == state.app_id,
                    "permissions": state.permissions_of(state.app_id),
                    "features": [],
                }
            ]
        )

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
                "flags": state.app_flags,
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

    async def get_command(self, request: web.Request) -> web.Response:
        """``GET .../commands/{id}``: one global or guild command."""
        # https://discord.com/developers/docs/interactions/application-commands#get-global-application-command
        self._check_app(request)
        return json_response(self.state.find_command(request.match_info["cmd"], request.match_info.get("gid")))

    async def edit_command(self, request: web.Request) -> web.Response:
        """``PATCH .../commands/{id}``: every field optional, those given replace the old ones (#edit-...-command)."""
        self._check_app(request)
        body, _ = await read_body(request, 0)
        cmd = self.state.edit_command(request.match_info["cmd"], request.match_info.get("gid"), body)
        return json_response(cmd)

    async def delete_command(self, request: web.Request) -> web.Response:
        """``DELETE .../commands/{id}``: 204 No Content (#delete-global-application-command)."""
        self._check_app(request)
        self.state.delete_command(request.match_info["cmd"], request.match_info.get("gid"))
        return no_content()

    async def get_guild(self, request: web.Request) -> web.Response:
        """``GET /guilds/{id}``."""
        self._guild(request)
        return json_response(self.state.guild_object())

    def _guild(self, request: web.Request) -> None:
        if request.match_info["gid"] != self.state.guild_id:
            raise ApiError(404, 10004, "Unknown Guild")

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        """``GET /guilds/{id}/channels``."""
        self._guild(request)
        return json_response(self.state.guild_channels())

    async def list_members(self, request: web.Request) -> web.Response:
        """``GET /guilds/{id}/members``: members by user id after ``after``, ``limit`` 1-1000 (default 1).

        https://discord.com/developers/docs/resources/guild#list-guild-members: it needs the Server Members
        privileged intent, so an application without it in its flags gets 403 Missing Access.
        """
        self._guild(request)
        if not self.state.app_flags & GUILD_MEMBERS_FLAGS:
            raise ApiError(403, 50001, "Missing Access")
        errors: JSON = {}
        limit = _int_query(request, "limit", 1, errors, low=1, high=1000)
        after = _int_query(request, "after", 0, errors, low=0, high=(1 << 64) - 1)
        if errors:
            raise ApiError(400, 50035, "Invalid Form Body", errors)
        uids = sorted((uid for uid in self.state.member_roles if int(uid) > after), key=int)
        return json_response([self.state.member(uid) for uid in uids[:limit]])

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
        if isinstance(body.get("name"), str) and body["name"] != channel.get("name"):
            retry_after = self.name_changes.retry_after(channel["id"])
            if retry_after is not None:
                return RateLimitedError(
                    {"message": "You are being rate limited.", "retry_after": retry_after, "global": False},
                    {
                        "Retry-After": str(max(1, round(retry_after))),
                        "X-RateLimit-Scope": "shared",
                        "Via": "1.1 google",
                    },
                ).response()
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

    async def edit_message(self, request: web.Request) -> web.Response:
        """``PATCH /channels/{id}/messages/{id}`` (the ``message-edit`` bucket); only the author may edit."""
        msg = self.state.find_message(request.match_info["cid"], request.match_info["mid"])
        body, files = await read_body(request, self.state.upload_limit)
        if msg["author"]["id"] != self.state.app_id and set(body) - {"flags"}:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        return json_response(self.state.edit_message(msg, body, files))

    async def delete_message(self, request: web.Request) -> web.Response:
        """``DELETE /channels/{id}/messages/{id}``."""
        self.state.delete_message(self.state.find_message(request.match_info["cid"], request.match_info["mid"]))
        return no_content()

    async def typing(self, request: web.Request) -> web.Response:
        """``POST /channels/{id}/typing``."""
        channel = self._channel(request)
        self.state.emit("TYPING_START", {"channel_id": channel["id"], "user_id": self.state.app_id}, gateway=False)
        return no_content()

    async def add_reaction(self, request: web.Request) -> web.Response:
        """``PUT .../reactions/{emoji}/@me``."""
        msg = self.state.find_message(request.match_info["cid"], request.match_info["mid"])
        self.state.react(msg, request.match_info["emoji"], self.state.app_id)
        return no_content()

    async def remove_reaction(self, request: web.Request) -> web.Response:
        """``DELETE .../reactions/{emoji}/{@me|user}``."""
        msg = self.state.find_message(request.match_info["cid"], request.match_info["mid"])
        uid = request.match_info["uid"]
        self.state.react(msg, request.match_info["emoji"], self.state.app_id if uid == "@me" else uid, add=False)
        return no_content()

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
        return no_content()

    # ----------------------------------------------------------- interactions
    async def interaction_callback(self, request: web.Request) -> web.Response:
        """``POST /interactions/{id}/{token}/callback``: 204, or 200 with the callback response when asked.

        https://discord.com/developers/docs/interactions/receiving-and-responding#create-interaction-response:
        "Returns 204 unless with_response is set to true"; discord.py 2.7 always sends ``with_response=1``.
        """
        errors: JSON = {}
        with_response = _bool_query(request, "with_response", errors)
        if errors:
            raise ApiError(400, 50035, "Invalid Form Body", errors)
        body, files = await read_body(request, self.state.upload_limit)
        out = self.state.respond(request.match_info["iid"], request.match_info["token"], body, files)
        return json_response(out) if with_response else no_content()

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
        """``PATCH /webhooks/{app}/{token}/messages/{id|@original}``: counts against its channel's edits too.

        The ``webhook`` bucket limits the token; an edit of a message still counts against the channel's
        ``message-edit`` bucket, as Peel's edit pacing assumes (stricter than Discord, never looser).
        """
        self._check_webhook_app(request)
        msg = self.state.webhook_message(request.match_info["token"], request.match_info["mid"])
        body, files = await read_body(request, self.state.upload_limit)
        decision = self.rate_limits.hit("message-edit", f"cid:{msg['channel_id']}")
        if not decision.allowed:
            return RateLimitedError(decision.body(), decision.headers()).response()
        request[EXTRA_DECISION] = decision
        return json_response(self.state.edit_message(msg, body, files))

    async def webhook_delete(self, request: web.Request) -> web.Response:
        """``DELETE /webhooks/{app}/{token}/messages/{id|@original}``."""
        self._check_webhook_app(request)
        self.state.delete_message(self.state.webhook_message(request.match_info["token"], request.match_info["mid"]))
        return no_content()


def _int_query(request: web.Request, name: str, default: int, errors: JSON, *, low: int, high: int) -> int:
    """Read an integer query parameter in ``low..high``; record Discord's form error for it otherwise."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        errors[name] = {"_errors": [{"code": "NUMBER_TYPE_COERCE", "message": f'Value "{raw}" is not int.'}]}
        return default
    if value > high:
        errors[name] = {"_errors": [{"code": "NUMBER_TYPE_MAX", "message": f"int value should be <= {high}."}]}
    elif value < low:
        errors[name] = {"_errors": [{"code": "NUMBER_TYPE_MIN", "message": f"int value should be >= {low}."}]}
    return value


def _bool_query(request: web.Request, name: str, errors: JSON) -> bool:
    """Read a boolean query parameter as Discord does (``True``/``true``/``1``, ``False``/``false``/``0``).

    https://discord.com/developers/docs/reference#boolean-query-strings; anything else is a form error.
    """
    raw = request.query.get(name)
    if raw is None or raw in ("False", "false", "0"):
        return False
    if raw in ("True", "true", "1"):
        return True
    errors[name] = {"_errors": [{"code": "BOOLEAN_TYPE_CONVERT", "message": "Must be either true or false."}]}
    return False
